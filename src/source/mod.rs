//! Opening a source: the library's way in.
//!
//! In: a [`SourceOptions`] (plain settings, made in code, from a
//! [`SourceConfig`], or by the CLI from its flags) and a
//! [`Shutdown`](crate::shutdown::Shutdown). [`open()`] starts the receiver
//! the source needs and returns an [`Opened`]: the
//! [`Input`](crate::packet::Input) the pipeline reads (whole JPEGs, coded
//! packets, fMP4 or other container chunks, or a path or stdin that
//! libavformat reads itself) and the receiver's [`SourceStats`].
//!
//! Each receiver ([`http`], [`rtsp`], [`tcp`], [`ws`], and [`file`](mod@file) for a
//! file of JPEGs) owns its sockets, speaks one protocol, hands items on
//! through a bounded channel and ends with a [`SourceError`] of a kind the
//! caller acts on; receivers never retry themselves: [`supervised`] runs
//! their sessions under the [`reconnect`] policy. Network receivers run as
//! tasks on the caller's tokio runtime.

pub mod deadline;
mod error;
pub mod file;
pub mod http;
pub mod open;
pub mod options;
pub mod reconnect;
pub mod rtsp;
mod rtsp_coded;
pub mod tcp;
pub mod tls;
pub mod ws;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use url::Url;

use crate::packet::Arrived;
pub use crate::packet::{JpegClock, JpegFrame};
use crate::proto::evostream;
pub use crate::redact::redact;
pub use open::{open, Opened};
pub use options::{OptionError, SourceConfig, SourceOptions, DEFAULT_MAX_MESSAGE};

/// Chunks in flight between a receiver and the libav thread: enough to ride
/// out a slow disk for a moment, small enough that memory stays bounded.
pub const CHUNK_QUEUE: usize = 64;

/// How WebSocket binary messages carry the video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WsFraming {
    /// Recognise the framing from the first binary message.
    #[default]
    Auto,
    /// EvoStream media server: tagged messages around fMP4 pieces.
    Evostream,
    /// Every binary message is plain fMP4 bytes.
    Raw,
}

impl fmt::Display for WsFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WsFraming::Auto => "auto",
            WsFraming::Evostream => "evostream",
            WsFraming::Raw => "raw",
        })
    }
}

impl FromStr for WsFraming {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(WsFraming::Auto),
            "evostream" => Ok(WsFraming::Evostream),
            "raw" => Ok(WsFraming::Raw),
            _ => Err(format!(
                "unknown framing {s:?} (expected auto, evostream or raw)"
            )),
        }
    }
}

/// Where the video comes from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A file: libavformat reads it, or the MJPEG path does when it holds
    /// JPEGs back to back.
    File(PathBuf),
    /// Standard input (`-`), read by libavformat.
    Stdin,
    /// ws:// or wss://: fMP4 in WebSocket binary messages, plain or in
    /// EvoStream's framing.
    WebSocket(Url),
    /// Raw JPEGs back to back on a TCP connection.
    Tcp(Url),
    /// A Canon VB camera's port: a hello, then raw JPEGs.
    Vbc(Url),
    /// HTTP: multipart MJPEG, or anything libavformat reads over HTTP.
    Http(Url),
    /// An RTSP camera (MJPEG or H.264 over RTP).
    Rtsp(Url),
}

impl SourceSpec {
    /// What the user typed as the source: a URL by its scheme, `-` for
    /// stdin, anything else a path. The error is one line saying what is
    /// wrong with it.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        if s == "-" {
            return Ok(SourceSpec::Stdin);
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            return match scheme.as_str() {
                "ws" | "wss" => {
                    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err("the URL has no host".into());
                    }
                    Ok(SourceSpec::WebSocket(url))
                }
                "http" | "https" => {
                    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
                    Ok(SourceSpec::Http(url))
                }
                "tcp" | "vbc" => {
                    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err("the URL has no host".into());
                    }
                    if scheme == "tcp" {
                        if url.port().is_none() {
                            return Err("tcp:// needs a port (tcp://host:port)".into());
                        }
                        Ok(SourceSpec::Tcp(url))
                    } else {
                        Ok(SourceSpec::Vbc(url))
                    }
                }
                "rtsp" => {
                    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err("the URL has no host".into());
                    }
                    Ok(SourceSpec::Rtsp(url))
                }
                "file" => Url::parse(s)
                    .ok()
                    .and_then(|u| u.to_file_path().ok())
                    .map(SourceSpec::File)
                    .ok_or_else(|| "not a valid file:// URL".to_string()),
                _ => Err(format!(
                    "unknown scheme {scheme:?} (camflow reads files, `-` for stdin, http://, https://, ws://, wss://, rtsp://, tcp:// and vbc://)"
                )),
            };
        }
        Ok(SourceSpec::File(PathBuf::from(s)))
    }

    /// Protocol name, as `probe` shows it.
    pub fn protocol(&self) -> &'static str {
        match self {
            SourceSpec::File(_) => "file",
            SourceSpec::Stdin => "stdin",
            SourceSpec::WebSocket(u) if u.scheme() == "wss" => "wss",
            SourceSpec::WebSocket(_) => "ws",
            SourceSpec::Tcp(_) => "tcp",
            SourceSpec::Vbc(_) => "vbc",
            SourceSpec::Http(u) if u.scheme() == "https" => "https",
            SourceSpec::Http(_) => "http",
            SourceSpec::Rtsp(_) => "rtsp",
        }
    }

    /// The name used in messages: never contains a password.
    pub fn display_name(&self) -> String {
        match self {
            SourceSpec::File(p) => p.display().to_string(),
            SourceSpec::Stdin => "stdin".into(),
            SourceSpec::WebSocket(u)
            | SourceSpec::Tcp(u)
            | SourceSpec::Vbc(u)
            | SourceSpec::Http(u)
            | SourceSpec::Rtsp(u) => redact(u),
        }
    }

    /// The URL of a network source.
    pub fn url(&self) -> Option<&Url> {
        match self {
            SourceSpec::File(_) | SourceSpec::Stdin => None,
            SourceSpec::WebSocket(u)
            | SourceSpec::Tcp(u)
            | SourceSpec::Vbc(u)
            | SourceSpec::Http(u)
            | SourceSpec::Rtsp(u) => Some(u),
        }
    }

    /// Sources that deliver JPEG frames rather than a container.
    pub fn is_mjpeg(&self) -> bool {
        matches!(self, SourceSpec::Tcp(_) | SourceSpec::Vbc(_))
    }
}

/// Masks the password of every URL quoted in `text`, and the source's own
/// URL however it is written: for error texts from lower layers.
pub fn redact_text(text: &str, spec: &SourceSpec) -> String {
    crate::redact::redact_text(text, spec.url())
}

/// Runs a live source's sessions under its reconnect policy
/// ([`reconnect::run_sessions`]): `session` gets the attempt number and a
/// flag to set once it has delivered something. A failure before anything
/// was ever delivered is fatal; after that, [`SourceError::is_fatal`]
/// decides. Reconnect attempts are logged with the source's name.
pub async fn supervised<F, Fut>(
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
    session: F,
) -> Result<(), SourceError>
where
    F: FnMut(u64, Arc<std::sync::atomic::AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), SourceError>>,
{
    let name = opts.spec.display_name();
    let seed = std::process::id() as u64 ^ (crate::packet::unix_now() * 1e6) as u64;
    reconnect::run_sessions(
        opts.reconnect,
        reconnect::Backoff::new(seed),
        shutdown,
        session,
        |line| log::warn!("{name}: {line}"),
    )
    .await
}

/// What a receiver has seen, shared with progress display and `probe`.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Bytes received from the network (payload, before de-framing).
    pub bytes: AtomicU64,
    /// The framing recognised on a WebSocket source.
    pub framing: Mutex<Option<WsFraming>>,
    /// EvoStream de-framer counters, when that framing is in use.
    pub evostream: Mutex<Option<evostream::Stats>>,
    /// RTSP: what the camera's SDP offers and the transport in use.
    pub rtsp: Mutex<Option<rtsp::RtspInfo>>,
    /// RTP packets of the video that never arrived (sequence-number gaps).
    pub lost_packets: AtomicU64,
    /// Frames thrown away because packets of theirs were lost (or, for
    /// H.264, because they depend on a picture that was).
    pub dropped_frames: AtomicU64,
    /// Set by a receiver of JPEG parts or pictures over HTTP: its counts of
    /// broken and oversized ones are shown.
    pub counts_jpegs: std::sync::atomic::AtomicBool,
    /// HTTP: parts or pictures that should have been a JPEG and were not a
    /// whole one (cut short, corrupt), dropped.
    pub broken_jpegs: AtomicU64,
    /// HTTP: pictures over `--max-frame-bytes`, skipped.
    pub oversized_jpegs: AtomicU64,
    /// HTTP: how the pictures come (multipart and its boundary, or one
    /// picture per request), as `probe` shows it.
    pub http_framing: Mutex<Option<String>>,
}

impl SourceStats {
    /// Counts `n` more bytes received (called by the receivers).
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Bytes received so far, for progress lines.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// `N packets lost, M frames dropped` for an RTP source, else `None`.
    pub fn loss_text(&self) -> Option<String> {
        let is_rtp = self.rtsp.lock().is_ok_and(|r| r.is_some());
        if !is_rtp && self.counts_jpegs.load(Ordering::Relaxed) {
            let broken = self.broken_jpegs.load(Ordering::Relaxed);
            let plural = if broken == 1 { "" } else { "s" };
            let mut text = format!("{broken} broken JPEG{plural} dropped");
            let big = self.oversized_jpegs.load(Ordering::Relaxed);
            if big > 0 {
                text.push_str(&format!(", {big} over --max-frame-bytes skipped"));
            }
            return Some(text);
        }
        is_rtp.then(|| {
            format!(
                "{} RTP packets lost, {} frames dropped",
                self.lost_packets.load(Ordering::Relaxed),
                self.dropped_frames.load(Ordering::Relaxed)
            )
        })
    }
}

/// Error a receiver ends with, by kind. The message names the problem; the
/// command adds the source's (redacted) name in front.
pub use crate::packet::SourceError;

/// A running network receiver: clean chunks arrive on `rx`; the channel
/// closes after the last one, an `Err` item first if the receiver failed.
pub struct ChunkStream {
    /// The receiver's chunks, bounded by [`CHUNK_QUEUE`].
    pub rx: mpsc::Receiver<Result<Arrived, SourceError>>,
    /// What the receiver has seen, updated as it runs.
    pub stats: Arc<SourceStats>,
}

/// Starts the receiver for a network source on the current tokio runtime.
/// Returns `None` for sources libavformat reads itself (files, stdin).
pub fn spawn_receiver(
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> Option<ChunkStream> {
    match &opts.spec {
        SourceSpec::WebSocket(url) => {
            let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
            let stats = Arc::new(SourceStats::default());
            tokio::spawn(ws::run(
                url.clone(),
                opts.clone(),
                tx,
                stats.clone(),
                shutdown,
            ));
            Some(ChunkStream { rx, stats })
        }
        _ => None,
    }
}

/// A running MJPEG receiver: whole JPEGs arrive on `rx`; an `Err` item
/// comes last if it failed.
pub struct JpegStream {
    /// The receiver's JPEGs, bounded by [`JPEG_QUEUE`].
    pub rx: mpsc::Receiver<Result<JpegFrame, SourceError>>,
    /// What the receiver has seen, updated as it runs.
    pub stats: Arc<SourceStats>,
}

/// A running receiver of coded video packets (RTSP H.264); an `Err` item
/// comes last if it failed.
pub struct PacketStream {
    /// The camera's pictures in decode order, with parameters on the first.
    pub rx: mpsc::Receiver<Result<crate::packet::VideoPacket, SourceError>>,
    /// What the receiver has seen, updated as it runs.
    pub stats: Arc<SourceStats>,
}

/// Frames in flight between an MJPEG receiver and its consumer.
pub const JPEG_QUEUE: usize = 16;

/// Starts the receiver for an MJPEG source (`tcp://`, `vbc://`).
pub fn spawn_jpeg_receiver(
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> Option<JpegStream> {
    let (url, hello) = match &opts.spec {
        SourceSpec::Tcp(u) => (u.clone(), None),
        SourceSpec::Vbc(u) => (u.clone(), Some(opts.vbc_hello.clone())),
        _ => return None,
    };
    let (tx, rx) = mpsc::channel(JPEG_QUEUE);
    let stats = Arc::new(SourceStats::default());
    tokio::spawn(tcp::run(
        url,
        hello,
        opts.clone(),
        tx,
        stats.clone(),
        shutdown,
    ));
    Some(JpegStream { rx, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_is_named() {
        let e = SourceSpec::parse("foo://bar/x").unwrap_err();
        assert!(e.contains("unknown scheme \"foo\""), "{e}");
    }

    #[test]
    fn tcp_needs_a_port_and_vbc_has_one() {
        assert!(SourceSpec::parse("tcp://cam").is_err());
        assert!(matches!(
            SourceSpec::parse("tcp://cam:4000"),
            Ok(SourceSpec::Tcp(_))
        ));
        assert!(matches!(
            SourceSpec::parse("vbc://cam"),
            Ok(SourceSpec::Vbc(_))
        ));
    }

    #[test]
    fn dash_is_stdin_and_plain_text_is_a_path() {
        assert!(matches!(SourceSpec::parse("-"), Ok(SourceSpec::Stdin)));
        assert!(matches!(
            SourceSpec::parse("a/b.mp4"),
            Ok(SourceSpec::File(_))
        ));
        assert!(matches!(
            SourceSpec::parse("WS://127.0.0.1:1/live"),
            Ok(SourceSpec::WebSocket(_))
        ));
    }
}
