//! `camflow packager serve`: the packaging service; the work is
//! [`crate::service`]'s.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::PackagerCommand;
use crate::service::{self, Settings, UPLOAD_IDLE};
use crate::shutdown::Shutdown;

/// Overrides [`UPLOAD_IDLE`] (seconds): a test seam, so that a test of a
/// stalled upload or request takes seconds rather than a minute. Not an
/// option.
const UPLOAD_IDLE_ENV: &str = "CAMFLOW_UPLOAD_IDLE_SECS";

pub async fn run(cmd: PackagerCommand, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match cmd {
        PackagerCommand::Serve(a) => {
            let settings = Settings {
                listen: a.listen,
                data: a.data,
                max_upload: a.max_upload,
                workers: a.workers as usize,
                shaka_js: a.shaka_js,
                upload_idle: upload_idle()?,
            };
            service::serve(settings, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn upload_idle() -> anyhow::Result<Duration> {
    let Ok(text) = std::env::var(UPLOAD_IDLE_ENV) else {
        return Ok(UPLOAD_IDLE);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("{UPLOAD_IDLE_ENV}={text:?}: expected seconds, above 0"))
}
