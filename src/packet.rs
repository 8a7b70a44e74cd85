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
}

impl Chunk {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Chunk::Init(b) | Chunk::Fragment(b) => b,
        }
    }
}
