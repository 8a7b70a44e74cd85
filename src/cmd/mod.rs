//! The CLI's commands: what `main` runs with the parsed [`cli`](crate::cli)
//! structs.
//!
//! One file per subcommand (`transcode.rs` holds `transcode` and `hls`),
//! each with an async `run(args, shutdown) -> anyhow::Result<ExitCode>`: it
//! turns the flags into the library's settings, opens the source
//! ([`open_or_stop`]), wires a pipeline to a sink, and ends with a summary
//! line or a one-line error. Beside them sit the CLI's
//! presentation: [`log`], the logger that prints the library's `log`
//! records as camflow's stderr lines (silent with `-q`), and [`progress`],
//! the live progress line and the closing summary. `anyhow` lives here and
//! in `main`; the library returns typed errors.

pub mod camera;
pub mod decode;
pub mod log;
pub mod package;
pub mod packager;
pub mod probe;
pub mod progress;
pub mod record;
pub mod transcode;

use crate::shutdown::Shutdown;
use crate::source::{self, Opened, SourceOptions};

/// [`source::open()`] for a command: `Ok(None)` when Ctrl-C came first (a
/// clean stop), else the source or a one-line error naming it.
pub async fn open_or_stop(
    opts: &SourceOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Opened>> {
    match source::open(opts, shutdown).await {
        Ok(o) => Ok(Some(o)),
        Err(_) if shutdown.is_triggered() => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "{}: {}",
            opts.spec.display_name(),
            source::redact_text(&e.to_string(), &opts.spec)
        )),
    }
}

/// Whether two paths name one file (device and inode), both existing.
pub(crate) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    matches!((file_id(a), file_id(b)), (Some(x), Some(y)) if x == y)
}

/// Which file is at `path` (through a symbolic link), if any: its device
/// and inode.
pub(crate) fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The one warning for a source file cut short, as the ffmpeg CLI warns
/// "partial file": made before a run, said once the run has read what the
/// file holds.
pub(crate) struct PartialCheck {
    file: Option<std::path::PathBuf>,
    name: String,
    quiet: bool,
}

impl PartialCheck {
    pub fn new(opts: &SourceOptions, quiet: bool) -> Self {
        let file = match &opts.spec {
            source::SourceSpec::File(path) => Some(path.clone()),
            _ => None,
        };
        PartialCheck {
            file,
            name: opts.spec.display_name(),
            quiet,
        }
    }

    pub fn warn(&self) {
        if let Some(what) = self
            .file
            .as_deref()
            .and_then(crate::pipeline::input::partial_file)
        {
            progress::Progress::summary(self.quiet, &format!("warning: {}: {what}", self.name));
        }
    }
}
