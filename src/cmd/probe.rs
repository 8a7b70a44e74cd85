pub async fn run(
    _a: crate::cli::ProbeArgs,
    _s: crate::shutdown::Shutdown,
) -> anyhow::Result<std::process::ExitCode> {
    todo!()
}
