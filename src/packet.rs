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

// ---------------------------------------------------------------------------
// Receiver errors
// ---------------------------------------------------------------------------

/// Why a receiver stopped, by what a caller does about it (in the style of
/// retina's error kinds). It is the last item on a receiver's channel and
/// what opening a source fails with.
///
/// `Display` is one line naming the problem, without the source's name (the
/// command puts the redacted name in front). [`SourceError::is_fatal`] is
/// what the reconnect supervisor asks about a source that had streamed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The address does not lead to a server: the name does not resolve,
    /// the network is unreachable, or the connection or TLS handshake
    /// failed on the way.
    #[error("{0}")]
    Unreachable(String),
    /// The server is there and says no: the connection was refused, or it
    /// answered with an HTTP or RTSP status that is not about credentials.
    #[error("{0}")]
    Refused(String),
    /// The server wants credentials and none were given (HTTP or RTSP 401),
    /// or asks for an authentication camflow does not speak.
    #[error("{0}")]
    AuthWanted(String),
    /// Credentials were given and the server refused them.
    #[error("{0}")]
    AuthRefused(String),
    /// The server's TLS certificate is not trusted (`--ca-cert`,
    /// `--insecure`).
    #[error("{0}")]
    Untrusted(String),
    /// Nothing usable arrived within `--timeout`: no answer, or no whole
    /// item (JPEG, fragment, picture) however many bytes came.
    #[error("{0}")]
    Timeout(String),
    /// The answer is not a video stream camflow reads, or no longer is.
    #[error("{0}")]
    NotVideo(String),
    /// An item is over `--max-message-bytes` or `--max-frame-bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The bytes break the rules of the format being parsed.
    #[error("{message}")]
    Protocol {
        /// What was being parsed: `JPEG`, `multipart`, `EvoStream`, `fMP4`,
        /// `WebSocket`, `RTSP`.
        what: &'static str,
        /// Where in that stream (bytes from its start), when known.
        pos: Option<u64>,
        /// The one-line message.
        message: String,
    },
    /// The stream ended or the connection was lost: before any video, or in
    /// the middle of an item.
    #[error("{0}")]
    Ended(String),
    /// The source's settings cannot work (a header that is not one, a URL
    /// without a host, an unreadable `--ca-cert`).
    #[error("{0}")]
    Settings(String),
    /// Something on this machine failed (a thread, a file read, TLS set-up).
    #[error("{0}")]
    Local(String),
    /// Ctrl-C came before the source opened.
    #[error("stopped before the source opened")]
    Stopped,
}

impl SourceError {
    /// Whether a source that has streamed gives up on this error rather
    /// than reconnecting (under `--reconnect on-error` or `always`). A
    /// source that never delivered anything gives up on any error: it never
    /// worked, and retrying would only hide why.
    ///
    /// - Never retried: `AuthWanted`, `AuthRefused` (the credentials will
    ///   not change by themselves), `Untrusted` (nor will the certificate),
    ///   `NotVideo` (the camera now serves something else), `TooLarge` (the
    ///   camera would send the same item again: the limit must be raised),
    ///   `Settings`, `Local` and `Stopped`.
    /// - Retried: `Unreachable` and `Refused` (a camera that restarts
    ///   refuses or is gone for a while, and answers 503 while it boots),
    ///   `Timeout` (a stalled stream), `Ended` (a dropped connection) and
    ///   `Protocol` (a corrupt stream; a new connection starts clean).
    pub fn is_fatal(&self) -> bool {
        match self {
            SourceError::AuthWanted(_)
            | SourceError::AuthRefused(_)
            | SourceError::Untrusted(_)
            | SourceError::NotVideo(_)
            | SourceError::TooLarge(_)
            | SourceError::Settings(_)
            | SourceError::Local(_)
            | SourceError::Stopped => true,
            SourceError::Unreachable(_)
            | SourceError::Refused(_)
            | SourceError::Timeout(_)
            | SourceError::Ended(_)
            | SourceError::Protocol { .. } => false,
        }
    }

    /// A protocol error in `what`, at `pos` when known.
    pub fn protocol(what: &'static str, pos: Option<u64>, message: impl Into<String>) -> Self {
        SourceError::Protocol {
            what,
            pos,
            message: message.into(),
        }
    }

    /// The same error with `text` added to its message (what the receiver
    /// was in the middle of, or what it saw before).
    pub fn with_suffix(mut self, text: &str) -> Self {
        match &mut self {
            SourceError::Unreachable(m)
            | SourceError::Refused(m)
            | SourceError::AuthWanted(m)
            | SourceError::AuthRefused(m)
            | SourceError::Untrusted(m)
            | SourceError::Timeout(m)
            | SourceError::NotVideo(m)
            | SourceError::TooLarge(m)
            | SourceError::Protocol { message: m, .. }
            | SourceError::Ended(m)
            | SourceError::Settings(m)
            | SourceError::Local(m) => m.push_str(text),
            SourceError::Stopped => {}
        }
        self
    }
}
