//! A file of JPEGs back to back (what an MJPEG camera's stream looks like
//! when saved): read on a thread of its own and split like a camera's
//! stream, so it takes the same fast MJPEG path. Such a file has no
//! timestamps; frames are 1/25 s apart, as libavformat's mjpeg demuxer
//! assumes too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{JpegFrame, JpegStream, SourceError, SourceOptions, SourceStats, JPEG_QUEUE};
use crate::packet::unix_now;
use crate::proto::jpeg;

/// The frame rate assumed for a file of JPEGs.
pub const FILE_FPS: f64 = 25.0;

/// True if the file starts like a JPEG (SOI, then a marker).
pub fn is_jpeg_stream(path: &Path) -> bool {
    let mut head = [0u8; 3];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == [0xFF, 0xD8, 0xFF]
}

/// Starts reading a file of JPEGs on a thread of its own: out come the
/// same whole-JPEG items an MJPEG camera's receiver gives, paced only by
/// the consumer, ending at the file's end or at `shutdown`.
pub fn spawn_jpeg_file(
    path: PathBuf,
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> JpegStream {
    let (tx, rx) = mpsc::channel(JPEG_QUEUE);
    let stats = Arc::new(SourceStats::default());
    let max = opts.max_frame;
    let counter = stats.clone();
    let spawned = std::thread::Builder::new()
        .name("camflow-file".into())
        .spawn(move || {
            if let Err(e) = read(&path, max, &tx, &counter, &shutdown) {
                let _ = tx.blocking_send(Err(e));
            }
        });
    if let Err(e) = spawned {
        // The receiver sees the error as the stream's only item.
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(SourceError::Local(format!(
            "cannot start a reader thread: {e}"
        ))));
        return JpegStream { rx, stats };
    }
    JpegStream { rx, stats }
}

fn read(
    path: &Path,
    max: usize,
    tx: &mpsc::Sender<Result<JpegFrame, SourceError>>,
    stats: &SourceStats,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let local = |e: std::io::Error| SourceError::Local(e.to_string());
    let mut file = std::fs::File::open(path).map_err(local)?;
    let mut splitter = jpeg::Splitter::new(max);
    let mut buf = vec![0u8; 1 << 20];
    let mut index = 0u64;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let n = file.read(&mut buf).map_err(local)?;
        if n == 0 {
            return Ok(());
        }
        stats.add_bytes(n);
        splitter.feed(buf.get(..n).unwrap_or_default());
        while let Some(data) = splitter.next_frame()? {
            let frame = JpegFrame {
                data,
                at_unix: unix_now(),
                pts: Some(index as f64 / FILE_FPS),
            };
            if tx.blocking_send(Ok(frame)).is_err() {
                return Ok(());
            }
            index += 1;
        }
    }
}
