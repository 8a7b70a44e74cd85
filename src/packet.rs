//! The narrow waist: every type that crosses from `source` to `pipeline`
//! and `sink`.
//!
//! In, from the receivers, on [`Items`] channels that end with a
//! [`SourceError`] when the receiver failed: whole [`JpegFrame`]s (MJPEG
//! receivers); coded [`VideoPacket`]s with the [`VideoParams`] a decoder or
//! muxer needs (RTSP H.264, depacketized by the receiver); or container
//! bytes as [`Chunk`]s, cut at the fMP4 init segment and at each complete
//! fragment, with nothing of the transport framing left. An opened source is
//! one [`Input`]: one of those channels, or a path or stdin libavformat reads
//! itself.
//!
//! Out of the pipeline come decoded [`BgrFrame`]s. Which frames a command
//! keeps (`--max-frames`, `--duration`, `--fps`) is decided in one place,
//! [`Limits`] and its [`Gate`]. `source` produces these types; `pipeline`
//! and `sink` consume them and import nothing from `source`.

use std::path::PathBuf;

use bytes::Bytes;

/// What a receiver sends: an item, or, last, the error it ended with.
pub type Item<T> = Result<T, SourceError>;

/// The receiving end of a receiver's channel. The channel closes after the
/// last item; a failed receiver sends its error first.
pub type Items<T> = tokio::sync::mpsc::Receiver<Item<T>>;

/// An opened source, as the pipeline reads it.
pub enum Input {
    /// Whole JPEGs (tcp://, vbc://, multipart MJPEG over HTTP, RTSP MJPEG,
    /// a file of JPEGs back to back).
    Jpegs(Items<JpegFrame>),
    /// Coded pictures with their parameters (RTSP H.264 or H.265).
    Packets(Items<VideoPacket>),
    /// Clean fMP4: [`Chunk::Init`] and [`Chunk::Fragment`]s (ws://, wss://).
    Fmp4(Items<Arrived>),
    /// A container camflow does not look into ([`Chunk::Data`]), for
    /// libavformat to recognise (an HTTP body that is not MJPEG).
    Bytes(Items<Arrived>),
    /// A file libavformat opens itself.
    Path(PathBuf),
    /// Standard input, read by libavformat.
    Stdin,
}

impl Input {
    /// What the source delivers, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Jpegs(_) => "JPEG frames",
            Input::Packets(_) => "coded video packets",
            Input::Fmp4(_) => "fragmented MP4",
            Input::Bytes(_) => "a container stream",
            Input::Path(_) => "a file",
            Input::Stdin => "standard input",
        }
    }
}

/// A piece of container bytes from a receiver, cut where a consumer must
/// act: at an fMP4 init segment or fragment, or anywhere for a stream
/// camflow does not parse.
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
    /// The bytes, with where they were cut.
    pub chunk: Chunk,
    /// When the chunk's last byte arrived, Unix seconds.
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
    /// The chunk's bytes, whatever kind it is: what a demuxer or a file
    /// writer reads.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Chunk::Init(b) | Chunk::Fragment(b) | Chunk::Data(b) => b,
        }
    }
}

/// Video codecs that arrive as packets rather than in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (AVC): packets are length-prefixed NAL units, see
    /// [`VideoParams::extradata`].
    H264,
    /// H.265 (HEVC): packets are length-prefixed NAL units, see
    /// [`VideoParams::extradata`].
    H265,
}

/// What a decoder or muxer needs to know before the first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    /// Which decoder or muxer codec the packets need.
    pub codec: VideoCodec,
    /// Picture width in pixels, from the stream's parameter sets.
    pub width: u32,
    /// Picture height in pixels, from the stream's parameter sets.
    pub height: u32,
    /// H.264: the AVCDecoderConfigurationRecord (`avcC`); H.265: the
    /// HEVCDecoderConfigurationRecord (`hvcC`, see
    /// [`proto::hevc`](crate::proto::hevc)). Either also says packets are
    /// NAL units with 4-byte length prefixes.
    pub extradata: Vec<u8>,
    /// RFC 6381 codec string, e.g. `avc1.64001F` or `hvc1.1.6.L93.B0`.
    pub rfc6381: String,
}

/// One coded picture (an access unit), in decode order.
#[derive(Debug, Clone)]
pub struct VideoPacket {
    /// The access unit's NAL units, each with a 4-byte length prefix (the
    /// form `avcC` announces), as decoders and MP4 muxers take them.
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

/// A JPEG frame from a raw-MJPEG receiver and when its last byte arrived.
#[derive(Debug, Clone)]
pub struct JpegFrame {
    /// One whole JPEG, SOI to EOI.
    pub data: bytes::Bytes,
    /// When its last byte arrived, Unix seconds.
    pub at_unix: f64,
    /// The camera's own time for the frame (an `X-Timestamp` header), seconds.
    pub pts: Option<f64>,
}

impl JpegFrame {
    /// The frame's time: the camera's when it gives one, else its arrival.
    pub fn clock(&self) -> f64 {
        self.pts.unwrap_or(self.at_unix)
    }
}

/// Stream time for JPEG frames, in seconds from the first one, always
/// increasing: frames that arrive in one read share an arrival time, and a
/// camera that restarts sends its timestamps again from a lower value. Such
/// a frame is placed one frame interval after the previous one, and the
/// clock goes on from there.
#[derive(Debug, Default)]
pub struct JpegClock {
    /// Raw clock value that maps to stream time 0.
    origin: Option<f64>,
    last: Option<f64>,
    /// The last positive gap between frames: the guess for a bad one.
    step: Option<f64>,
}

impl JpegClock {
    /// `frame`'s stream time in seconds: its [`JpegFrame::clock`] less the
    /// first frame's, moved on by one frame interval when it would not be
    /// later than the previous frame's.
    pub fn time(&mut self, frame: &JpegFrame) -> f64 {
        let raw = frame.clock();
        let origin = *self.origin.get_or_insert(raw);
        // Microseconds, so that a camera's round timestamps stay round.
        let t = ((raw - origin) * 1e6).round() / 1e6;
        let Some(last) = self.last else {
            self.last = Some(t);
            return t;
        };
        if t > last {
            self.step = Some(t - last);
            self.last = Some(t);
            return t;
        }
        let step = self.step.unwrap_or(0.04).max(1e-6);
        let placed = ((last + step) * 1e6).round() / 1e6;
        // A jump back (a restart) moves the origin, so later frames follow
        // on; a repeated time keeps it.
        if t < last {
            self.origin = Some(raw - placed);
        }
        self.last = Some(placed);
        placed
    }
}

/// One decoded frame, packed BGR (`width * 3` bytes per row, no padding
/// between rows). `data` may be longer: the frame is its first
/// `width * height * 3` bytes.
pub struct BgrFrame {
    /// The frame's number among those kept, from 0.
    pub index: u64,
    /// Presentation time in seconds, when the stream has timestamps.
    pub pts_seconds: Option<f64>,
    /// When the frame's last byte arrived (or, for a file, when it was
    /// decoded), Unix seconds.
    pub received_unix: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the frame was a keyframe (an IDR, or any JPEG).
    pub keyframe: bool,
    /// The pixels; its buffer may be reused for later frames.
    pub data: Vec<u8>,
}

impl BgrFrame {
    /// The frame's bytes, `height` rows of `width * 3`.
    pub fn pixels(&self) -> &[u8] {
        let n = self.width as usize * self.height as usize * 3;
        self.data.get(..n).unwrap_or(&self.data)
    }
}

/// Which frames a command keeps: `--max-frames`, `--duration` and `--fps`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Stop after this many frames kept.
    pub max_frames: Option<u64>,
    /// Stop at this much stream time, in seconds from the first frame.
    pub duration: Option<f64>,
    /// Keep at most this many frames per second of stream time (drops,
    /// never duplicates).
    pub fps: Option<f64>,
}

/// What [`Gate::admit`] decides about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Hand it on.
    Keep,
    /// Leave it out (`--fps`), and go on.
    Skip,
    /// Leave it out and stop: a limit is reached.
    Stop,
}

impl Limits {
    /// The one-line complaint about a limit that cannot be met, naming it
    /// as the flag.
    pub fn check(&self) -> Result<(), String> {
        if self.max_frames == Some(0) {
            return Err("--max-frames must be at least 1".into());
        }
        if self.duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
            return Err("--duration must be a positive number of seconds".into());
        }
        if self
            .fps
            .is_some_and(|f| !(f.is_finite() && f > 0.0 && f <= 1000.0))
        {
            return Err("--fps must be more than 0 and at most 1000".into());
        }
        Ok(())
    }

    /// A gate applying these limits to one stream of frames.
    pub fn gate(&self) -> Gate {
        Gate {
            limits: *self,
            last_slot: None,
            kept: 0,
            skipped: 0,
        }
    }
}

/// Applies [`Limits`] to frames in stream order: [`Gate::admit`] with each
/// frame's time, then [`Gate::kept`] for each frame actually handed on.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    /// The last kept frame's 1/fps slot.
    last_slot: Option<i64>,
    kept: u64,
    skipped: u64,
}

impl Gate {
    /// Whether `--max-frames` frames were kept: nothing more is wanted.
    pub fn full(&self) -> bool {
        self.limits.max_frames.is_some_and(|m| self.kept >= m)
    }

    /// The decision for a frame at `t` seconds of stream time (from the
    /// first frame). With `--fps`, a frame is kept when it falls into a
    /// later 1/fps slot than the last kept one.
    pub fn admit(&mut self, t: f64) -> Admit {
        if self.full() || self.limits.duration.is_some_and(|d| t >= d) {
            return Admit::Stop;
        }
        if let Some(fps) = self.limits.fps {
            // The small bias keeps a 25 fps stream at exactly 5 of every 5
            // slots when asked for 5 fps despite rounding in the timestamps.
            let slot = (t * fps + 1e-6).floor() as i64;
            if self.last_slot.is_some_and(|last| slot <= last) {
                self.skipped += 1;
                return Admit::Skip;
            }
            self.last_slot = Some(slot);
        }
        Admit::Keep
    }

    /// Counts a frame handed on; true when that was the last one wanted.
    pub fn kept(&mut self) -> bool {
        self.kept += 1;
        self.full()
    }

    /// Frames kept so far.
    pub fn kept_count(&self) -> u64 {
        self.kept
    }

    /// Frames left out by `--fps`.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
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
    ///   `Settings`, `Local` and `Stopped`.
    /// - Retried: `Unreachable` and `Refused` (a camera that restarts
    ///   refuses or is gone for a while, and answers 503 while it boots),
    ///   `NotVideo` (a booting camera serves a status page in the stream's
    ///   place), `TooLarge` (on tcp:// and vbc:// one oversized picture
    ///   closes the connection, and `--reconnect` decides what follows, as
    ///   `--max-frame-bytes` says), `Timeout` (a stalled stream), `Ended` (a
    ///   dropped connection) and `Protocol` (a corrupt stream; a new
    ///   connection starts clean).
    pub fn is_fatal(&self) -> bool {
        match self {
            SourceError::AuthWanted(_)
            | SourceError::AuthRefused(_)
            | SourceError::Untrusted(_)
            | SourceError::Settings(_)
            | SourceError::Local(_)
            | SourceError::Stopped => true,
            SourceError::Unreachable(_)
            | SourceError::Refused(_)
            | SourceError::NotVideo(_)
            | SourceError::TooLarge(_)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_clock_never_goes_back() {
        let f = |pts: f64| JpegFrame {
            data: bytes::Bytes::new(),
            at_unix: 0.0,
            pts: Some(pts),
        };
        let mut c = JpegClock::default();
        let times: Vec<f64> = [5000.0, 5000.1, 5000.1, 5000.3, 10.0, 10.1]
            .iter()
            .map(|p| c.time(&f(*p)))
            .collect();
        assert_eq!(times, vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    }

    #[test]
    fn fps_keeps_one_frame_per_slot() {
        let mut g = Limits {
            fps: Some(5.0),
            ..Default::default()
        }
        .gate();
        let kept = (0..50)
            .filter(|i| g.admit(f64::from(*i) / 25.0) == Admit::Keep)
            .count();
        assert_eq!(kept, 10);
        assert_eq!(g.skipped(), 40);
        let mut g = Limits {
            fps: Some(30.0),
            ..Default::default()
        }
        .gate();
        assert!((0..25).all(|i| g.admit(f64::from(i) / 25.0) == Admit::Keep));
    }

    #[test]
    fn duration_and_max_frames_stop() {
        let mut g = Limits {
            max_frames: Some(2),
            duration: Some(1.0),
            fps: None,
        }
        .gate();
        assert_eq!(g.admit(0.0), Admit::Keep);
        assert!(!g.kept());
        assert_eq!(g.admit(1.0), Admit::Stop);
        assert_eq!(g.admit(0.5), Admit::Keep);
        assert!(g.kept());
        assert_eq!(g.admit(0.6), Admit::Stop);
        assert!(Limits {
            max_frames: Some(0),
            ..Default::default()
        }
        .check()
        .is_err());
    }
}
