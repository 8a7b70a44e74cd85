//! The narrow waist between receivers and the libav pipeline.
//!
//! Network receivers hand the pipeline a clean container byte stream, cut at
//! the places that matter: the init segment (ftyp + moov) and each complete
//! fragment (moof + mdat). Nothing of any transport framing is left in them.
//!
//! Receivers that depacketize themselves (RTSP H.264) hand over coded
//! frames instead: [`VideoPacket`]s, with the [`VideoParams`] a decoder or a
//! muxer needs.

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

/// Video codecs that arrive as packets rather than in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
}

/// What a decoder or muxer needs to know before the first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    /// H.264: the AVCDecoderConfigurationRecord (`avcC`), which also says
    /// packets are NAL units with 4-byte length prefixes.
    pub extradata: Vec<u8>,
    /// RFC 6381 codec string, e.g. `avc1.64001F`.
    pub rfc6381: String,
}

/// One coded picture (an access unit), in decode order.
#[derive(Debug, Clone)]
pub struct VideoPacket {
    pub data: Bytes,
    /// Stream time in seconds from the first packet, never going back
    /// across reconnects.
    pub pts: f64,
    /// A picture decoding can start at (IDR).
    pub key: bool,
    /// When its last byte arrived, Unix seconds.
    pub at_unix: f64,
    /// Set on the first packet and whenever the parameters change.
    pub params: Option<std::sync::Arc<VideoParams>>,
}
