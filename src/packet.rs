//! The narrow waist between receivers and the libav pipeline.
//!
//! Network receivers hand the pipeline a clean container byte stream, cut at
//! the places that matter: the init segment (ftyp + moov) and each complete
//! fragment (moof + mdat). Nothing of any transport framing is left in them.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// An fMP4 init segment. A second one starts a new stream (new parameters,
    /// or a reconnect): consumers reopen their demuxer there.
    Init(Bytes),
    /// One complete fMP4 fragment (moof + mdat, with any styp/sidx before it).
    Fragment(Bytes),
    /// A piece of a container stream camflow does not look into (an HTTP
    /// body that is not MJPEG): libavformat finds the format.
    Data(Bytes),
}

/// A chunk and the wall-clock time (Unix seconds) its last byte arrived:
/// the `received_unix_seconds` of the frames in it.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub chunk: Chunk,
    pub at_unix: f64,
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Chunk {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Chunk::Init(b) | Chunk::Fragment(b) | Chunk::Data(b) => b,
        }
    }
}
