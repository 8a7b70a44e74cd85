//! `camflow packager serve`: the packaging service; the work is
//! [`crate::service`]'s.

use std::process::ExitCode;

use crate::cli::PackagerCommand;
use crate::service::{self, Settings};
use crate::shutdown::Shutdown;

pub async fn run(cmd: PackagerCommand, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match cmd {
        PackagerCommand::Serve(a) => {
            let settings = Settings {
                listen: a.listen,
                data: a.data,
                max_upload: a.max_upload,
                workers: a.workers as usize,
                shaka_js: a.shaka_js,
            };
            service::serve(settings, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
