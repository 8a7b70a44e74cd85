//! One file per subcommand, each `run(args) -> anyhow::Result<ExitCode>`.

pub mod camera;
pub mod decode;
pub mod log;
pub mod package;
pub mod packager;
pub mod probe;
pub mod record;
pub mod transcode;

use crate::pipeline::input::{ChunkFeed, InputSource};
use crate::shutdown::Shutdown;
use crate::source::{
    self, http, rtsp, ChunkStream, JpegStream, PacketStream, SourceError, SourceOptions, SourceSpec,
};

/// A source, opened: what the pipeline gets from it.
pub enum Opened {
    /// Whole JPEGs (tcp://, vbc://, multipart MJPEG over HTTP, RTSP MJPEG).
    Jpegs(JpegStream),
    /// Coded video packets with their parameters (RTSP H.264).
    Packets(PacketStream),
    /// Clean fMP4 chunks (ws://, wss://).
    Chunks(ChunkStream),
    /// What libavformat reads itself (files, stdin, other HTTP).
    Libav(InputSource),
}

impl Opened {
    /// Received-bytes counter of a network receiver.
    pub fn stats(&self) -> Option<std::sync::Arc<source::SourceStats>> {
        match self {
            Opened::Jpegs(j) => Some(j.stats.clone()),
            Opened::Packets(p) => Some(p.stats.clone()),
            Opened::Chunks(c) => Some(c.stats.clone()),
            Opened::Libav(_) => None,
        }
    }

    /// For the libav stage: chunks become a custom-AVIO input; JPEGs and
    /// packets are handed on as they are.
    pub fn into_input(self) -> Fed {
        match self {
            Opened::Jpegs(j) => Fed::Jpegs(j),
            Opened::Packets(p) => Fed::Packets(p),
            Opened::Chunks(c) => Fed::Input(InputSource::Chunks(ChunkFeed::new(c.rx))),
            Opened::Libav(i) => Fed::Input(i),
        }
    }
}

pub use crate::pipeline::Fed;

/// Starts the receiver a source needs (HTTP first looks at the answer).
/// Ctrl-C while connecting ends it with [`SourceError::Stopped`]; commands check
/// `shutdown.is_triggered()` and end cleanly.
pub async fn open_source(opts: &SourceOptions, shutdown: &Shutdown) -> Result<Opened, SourceError> {
    let mut stop = shutdown.subscribe();
    tokio::select! {
        r = open_source_inner(opts, shutdown) => r,
        _ = stop.wait_for(|s| *s) => Err(SourceError::Stopped),
    }
}

async fn open_source_inner(
    opts: &SourceOptions,
    shutdown: &Shutdown,
) -> Result<Opened, SourceError> {
    if let Some(j) = source::spawn_jpeg_receiver(opts, shutdown.subscribe()) {
        return Ok(Opened::Jpegs(j));
    }
    if let Some(c) = source::spawn_receiver(opts, shutdown.subscribe()) {
        return Ok(Opened::Chunks(c));
    }
    Ok(match &opts.spec {
        SourceSpec::Http(url) => match http::open(url, opts, shutdown.subscribe()).await? {
            http::Opened::Mjpeg(j) => Opened::Jpegs(j),
            http::Opened::Other(body) => {
                Opened::Libav(InputSource::Chunks(ChunkFeed::opaque(body.rx)))
            }
        },
        SourceSpec::Rtsp(url) => match rtsp::open(url, opts, shutdown.subscribe()).await? {
            rtsp::Opened::Jpegs(j) => Opened::Jpegs(j),
            rtsp::Opened::Packets(p) => Opened::Packets(p),
        },
        SourceSpec::Stdin => Opened::Libav(InputSource::Stdin),
        // JPEGs back to back (an MJPEG camera's dump) take the MJPEG path.
        SourceSpec::File(p) if source::file::is_jpeg_stream(p) => Opened::Jpegs(
            source::file::spawn_jpeg_file(p.clone(), opts, shutdown.subscribe()),
        ),
        SourceSpec::File(p) => Opened::Libav(InputSource::Path(p.clone())),
        SourceSpec::WebSocket(_) | SourceSpec::Tcp(_) | SourceSpec::Vbc(_) => {
            return Err(SourceError::Local("no receiver for this source".into()))
        }
    })
}

/// [`open_source`] for a command: `Ok(None)` when Ctrl-C came first (a
/// clean stop), else the source or a one-line error naming it.
pub async fn open_or_stop(
    opts: &SourceOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Opened>> {
    match open_source(opts, shutdown).await {
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
            crate::progress::Progress::summary(
                self.quiet,
                &format!("warning: {}: {what}", self.name),
            );
        }
    }
}
