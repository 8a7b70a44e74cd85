//! One file per subcommand, each `run(args) -> anyhow::Result<ExitCode>`.

pub mod camera;
pub mod decode;
pub mod probe;
pub mod record;
