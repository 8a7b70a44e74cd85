//! Receivers: each owns its sockets, speaks one protocol and emits a clean
//! stream for the pipeline. Files and stdin need no receiver: libavformat
//! reads them itself.

pub mod deadline;
mod error;
pub mod file;
pub mod http;
pub mod reconnect;
pub mod rtsp;
pub mod tcp;
pub mod tls;
pub mod ws;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use url::Url;

use crate::cli::SourceArgs;
use crate::packet::Arrived;
use crate::proto::evostream;

/// Default bound on one network message or fragment. A 1080p H.264 keyframe
/// is rarely over 1 MiB; EvoStream's 3-byte length field tops out at 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 8 << 20;

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
    File(PathBuf),
    Stdin,
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

/// The URL as text with any password replaced.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
        return u.to_string();
    }
    // `ws://admin:123/secret@host/` parses as host "admin", port 123: the
    // password hides in the path. Any `@` after the scheme is masked.
    let s = u.to_string();
    mask_userinfo(&s).unwrap_or(s)
}

/// `scheme://***@rest` when `s` has an `@` after its scheme: everything up
/// to the last `@` is masked (masking too much is harmless).
fn mask_userinfo(s: &str) -> Option<String> {
    let start = s.find("://")? + 3;
    let at = s.get(start..)?.rfind('@')? + start;
    Some(format!("{}***{}", s.get(..start)?, s.get(at..)?))
}

/// Masks the password of every URL quoted in `text` (`scheme://user:***@…`),
/// and nothing else. Error texts from lower layers (HTTP and WebSocket
/// clients) sometimes quote the URL they were given. Only the credential
/// part of a URL is touched: replacing the password's text wherever it
/// occurs would mangle the message (a password `e` would star every `e`) and
/// the pattern of stars would give the password away.
pub fn redact_text(text: &str, spec: &SourceSpec) -> String {
    let mut t = text.to_string();
    // A URL whose password hides in what parsed as its path
    // (`ws://admin:123/secret@host/`) is masked whole, as `redact` shows it.
    if let Some(u) = spec.url() {
        let raw = u.as_str();
        if raw.contains('@') {
            let shown = redact(u);
            if shown != raw {
                t = t.replace(raw, &shown);
            }
        }
    }
    mask_url_passwords(&t)
}

/// `scheme://user:pass@host` → `scheme://user:***@host` for every URL in
/// `text`. A URL's authority ends at `/`, `?`, `#`, white space or a quote;
/// its userinfo is everything before the authority's last `@`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "/?#\"'<>`()".contains(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Source settings, checked.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub spec: SourceSpec,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub ws_send: Vec<String>,
    pub ws_framing: WsFraming,
    pub max_message: usize,
    pub vbc_hello: Vec<u8>,
    pub max_frame: usize,
    pub user: Option<String>,
    pub password: Option<String>,
    pub reconnect: reconnect::ReconnectPolicy,
    pub rtsp_transport: rtsp::RtspTransport,
    /// Which certificates https:// and wss:// sources accept.
    pub tls: tls::TlsSettings,
    /// HTTP cameras that serve one JPEG per request: pictures asked for per
    /// second (a command's `--fps`); `None` asks as fast as the camera
    /// answers, at most once a second.
    pub poll_fps: Option<f64>,
}

impl SourceOptions {
    /// A warning about the source (what a receiver noticed and dealt
    /// with), logged with the source's name in front.
    pub fn say(&self, text: &str) {
        log::warn!("{}: {text}", self.spec.display_name());
    }

    pub fn from_args(a: &SourceArgs) -> anyhow::Result<SourceOptions> {
        let spec = SourceSpec::parse(&a.source)
            .map_err(|e| anyhow::anyhow!("{}: {e}", redact_arg(&a.source)))?;
        let timeout = Duration::try_from_secs_f64(a.timeout)
            .ok()
            .filter(|t| !t.is_zero() && t.as_secs() <= 86_400)
            .ok_or_else(|| {
                anyhow::anyhow!("--timeout must be more than 0 and at most 86400 seconds")
            })?;
        let mut headers = Vec::new();
        for h in &a.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("header {h:?} is not `Name: value`"))?;
            let name = name.trim();
            if name.is_empty() {
                anyhow::bail!("header {h:?} has no name");
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        if a.max_message_bytes < 1024 {
            anyhow::bail!("--max-message-bytes must be at least 1024");
        }
        if a.max_frame_bytes < 1024 {
            anyhow::bail!("--max-frame-bytes must be at least 1024");
        }
        let vbc_hello = unescape(&a.vbc_hello)
            .map_err(|e| anyhow::anyhow!("--vbc-hello {:?}: {e}", a.vbc_hello))?;
        if let Some(path) = &a.ca_cert {
            // Read now so that a bad file is one line before anything starts.
            tls::load_ca_file(path).map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(SourceOptions {
            spec,
            timeout,
            headers,
            ws_send: a.ws_send.clone(),
            ws_framing: a.ws_framing,
            max_message: a.max_message_bytes,
            vbc_hello,
            max_frame: a.max_frame_bytes,
            user: a.user.clone(),
            password: a.password.clone(),
            reconnect: a.reconnect,
            rtsp_transport: a.rtsp_transport,
            tls: tls::TlsSettings {
                insecure: a.insecure,
                ca_cert: a.ca_cert.clone(),
            },
            poll_fps: None,
        })
    }
}

/// Bytes from text with C-style escapes: `\n`, `\r`, `\t`, `\0`, `\\` and
/// `\xNN`.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x needs two hex digits")?;
                out.push(v);
            }
            _ => return Err(r"unknown escape (use \n \r \t \0 \\ \xNN)".into()),
        }
    }
    if out.is_empty() {
        return Err("empty".into());
    }
    Ok(out)
}

/// Password removal for a source argument that may not parse as a URL:
/// anything between `://` and the `@` of the authority is masked.
fn redact_arg(s: &str) -> String {
    if let Ok(u) = Url::parse(s) {
        return redact(&u);
    }
    mask_userinfo(s).unwrap_or_else(|| s.to_string())
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
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// `N packets lost, M frames dropped` for an RTP source, else `None`.
    pub fn loss_text(&self) -> Option<String> {
        let is_rtp = self.rtsp.lock().is_ok_and(|r| r.is_some());
        if !is_rtp && self.counts_jpegs.load(Ordering::Relaxed) {
            let broken = self.broken_jpegs.load(Ordering::Relaxed);
            let mut text = format!("{} dropped", crate::progress::count(broken, "broken JPEG"));
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
    pub rx: mpsc::Receiver<Result<Arrived, SourceError>>,
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

/// A JPEG frame from a raw-MJPEG receiver and when its last byte arrived.
#[derive(Debug, Clone)]
pub struct JpegFrame {
    pub data: bytes::Bytes,
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

/// A running MJPEG receiver: whole JPEGs arrive on `rx`; an `Err` item
/// comes last if it failed.
pub struct JpegStream {
    pub rx: mpsc::Receiver<Result<JpegFrame, SourceError>>,
    pub stats: Arc<SourceStats>,
}

/// A running receiver of coded video packets (RTSP H.264); an `Err` item
/// comes last if it failed.
pub struct PacketStream {
    pub rx: mpsc::Receiver<Result<crate::packet::VideoPacket, SourceError>>,
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
    fn password_is_redacted() {
        let u = Url::parse("wss://me:s3cret@example.com:8420/x.vod?progressive").unwrap();
        let s = redact(&u);
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("me:***@example.com"), "{s}");
    }

    #[test]
    fn password_is_redacted_even_in_a_url_that_does_not_parse() {
        let s = redact_arg("ws://admin:hunter2@cam.example:99999/live");
        assert_eq!(s, "ws://***@cam.example:99999/live");
        for weird in [
            "ws://admin:se/cret@cam.example:99999/live",
            "ws://admin:se?cret@cam.example:99999/live",
            "ws://admin:se#cret@cam.example/live",
            "ws://admin:123/secret@127.0.0.1:1/live",
        ] {
            let s = redact_arg(weird);
            assert!(!s.contains("cret"), "{weird} → {s}");
        }
    }

    #[test]
    fn only_the_url_password_is_masked_in_a_message() {
        let spec = SourceSpec::parse("rtsp://admin:e@127.0.0.1:554/live").unwrap();
        let msg = "rtsp://admin:e@127.0.0.1:554/live: Unable to connect to RTSP server: \
                   Connection refused";
        assert_eq!(
            redact_text(msg, &spec),
            "rtsp://admin:***@127.0.0.1:554/live: Unable to connect to RTSP server: \
             Connection refused"
        );
        // Any URL quoted by a lower layer, in parentheses or at the end.
        assert_eq!(
            mask_url_passwords(
                "error sending request for url (http://u:p%40ss@h:1/x) or ws://a:b@c"
            ),
            "error sending request for url (http://u:***@h:1/x) or ws://a:***@c"
        );
        // A user name alone is no secret; text without URLs is untouched.
        assert_eq!(mask_url_passwords("http://u@h/ fine"), "http://u@h/ fine");
        assert_eq!(mask_url_passwords("a :// b @ c"), "a :// b @ c");
        // A password that parsed as a path is masked with the whole URL.
        let odd = "ws://admin:123/secret@127.0.0.1:1/live";
        let spec = SourceSpec::parse(odd).unwrap();
        let s = redact_text(&format!("{odd}: refused"), &spec);
        assert!(!s.contains("secret"), "{s}");
        assert!(s.ends_with(": refused"), "{s}");
    }

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
    fn hello_escapes() {
        assert_eq!(unescape(r"\n\n\n\n").unwrap(), b"\n\n\n\n");
        assert_eq!(unescape(r"a\x0Ab\0").unwrap(), b"a\nb\0");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape("").is_err());
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
