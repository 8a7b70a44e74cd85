use std::process::ExitCode;

use clap::Parser;

use camflow::cli::{Cli, Command};
use camflow::cmd;
use camflow::shutdown::Shutdown;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    cmd::log::install(cli.command.quiet());
    if let Err(e) = camflow::init() {
        eprintln!("camflow: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("camflow-tokio")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("camflow: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        match cli.command {
            Command::Decode(a) => cmd::decode::run(a, shutdown).await,
            Command::Record(a) => cmd::record::run(a, shutdown).await,
            Command::Transcode(a) => cmd::transcode::run(a, shutdown).await,
            Command::Hls(a) => cmd::transcode::run_hls(a, shutdown).await,
            Command::Package(a) => cmd::package::run(a, shutdown).await,
            Command::Packager(c) => cmd::packager::run(c, shutdown).await,
            Command::Probe(a) => cmd::probe::run(a, shutdown).await,
            Command::Camera(a) => cmd::camera::run(a, shutdown).await,
        }
    });
    // RTSP sessions get their TEARDOWN, if the camera answers quickly.
    rt.block_on(camflow::source::rtsp::wait_for_teardown(
        std::time::Duration::from_secs(2),
    ));
    // Receivers may still be winding down; none of them holds data we need.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the source, then what went wrong.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("camflow: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// What clap found wrong with the arguments, as one line like every other
/// error (its tip, usage and "For more information" lines go; `--help`
/// says all that). Help and version are not errors: clap prints them as it
/// always has.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // Display leaves out clap's colours. The message is the first paragraph:
    // its first line, and for some errors the arguments it names on the
    // lines right below (the missing ones, the possible values).
    let text = e.to_string();
    let msg = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
    eprintln!("camflow: error: {msg}");
    // 2, as clap exits on a usage error.
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}
