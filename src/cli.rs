//! The command line: the clap structs `main` parses the arguments into, and
//! the only place camflow uses clap.
//!
//! Out: a [`Cli`] whose [`Command`] `main` hands to its `cmd` module. The
//! source flags become the library's settings here ([`SourceArgs::config`]
//! gives a [`SourceConfig`], [`SourceArgs::options`] the checked
//! [`SourceOptions`]), and the library's own enums become clap values here
//! (mux's [`Container`] for `--to`, the camera's [`CameraProtocol`] and
//! [`CameraFault`]), so nothing below `cmd` imports clap or this module.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::camera::{CameraFault, CameraProtocol};
use crate::pipeline::decode::JpegDecoder;
use crate::pipeline::mux::Container;
use crate::proto::rtp_h264::OnLoss;
use crate::source::{SourceConfig, SourceOptions, WsFraming};

#[derive(Debug, Parser)]
#[command(
    name = "camflow",
    version,
    about = "Get video out of network cameras: numpy frames, clean MP4 files and more",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode a source into BGR frames (numpy .npy files) plus a CSV index.
    Decode(DecodeArgs),
    /// Save the stream as received, without re-encoding, as an MP4 file.
    Record(RecordArgs),
    /// Re-serve a source as FLV/H.264: to a file or an RTMP server.
    Transcode(TranscodeArgs),
    /// Serve a source as HLS with fMP4 segments, live or VOD, in a folder.
    Hls(HlsArgs),
    /// Package a file as MPEG-DASH with its video encrypted (ClearKey).
    Package(PackageArgs),
    /// The packaging service: upload files, package them, serve the results.
    #[command(subcommand)]
    Packager(PackagerCommand),
    /// Describe a source: protocol, container, codec, size, frame rate.
    Probe(ProbeArgs),
    /// Run a simulated camera that serves a test pattern or a file.
    Camera(CameraArgs),
}

impl Command {
    /// `-q`: no progress and no log lines, errors only.
    pub fn quiet(&self) -> bool {
        match self {
            Command::Decode(a) => a.quiet,
            Command::Record(a) => a.quiet,
            Command::Transcode(a) => a.quiet,
            Command::Hls(a) => a.quiet,
            Command::Package(a) => a.quiet,
            Command::Probe(_) | Command::Packager(_) | Command::Camera(_) => false,
        }
    }
}

/// Options shared by every command that reads a source.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// What to read: a file path, `-` for stdin, an http(s)://, ws(s):// or
    /// rtsp:// URL, or an MJPEG camera's tcp://host:port or vbc://host[:port]
    /// (default port 65310).
    // This text is also --help's, word for word: `[:port]` is left as it
    // is, and rustdoc must not read it as a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    pub source: String,

    /// Connect and read timeout, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,

    /// Add a request header, `Name: value` (repeatable). Sites often check Origin and User-Agent.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Send this text message after the WebSocket connects (repeatable).
    #[arg(long = "ws-send", value_name = "TEXT")]
    pub ws_send: Vec<String>,

    /// How WebSocket binary messages are framed: `auto` recognises EvoStream framing
    /// from the first message; `raw` takes every message as plain fMP4 bytes.
    #[arg(long = "ws-framing", value_name = "MODE", default_value_t = WsFraming::Auto)]
    pub ws_framing: WsFraming,

    /// Largest message or fragment accepted from the network, in bytes.
    #[arg(long = "max-message-bytes", value_name = "BYTES", default_value_t = crate::source::DEFAULT_MAX_MESSAGE)]
    pub max_message_bytes: usize,

    /// vbc://: the handshake sent after connecting (escapes: \n \r \t \0 \xNN).
    #[arg(long = "vbc-hello", value_name = "BYTES", default_value = r"\n\n\n\n")]
    pub vbc_hello: String,

    /// Reconnect a live source: `on-error` after a dropped connection or a
    /// stalled stream, `always` also after a clean end, `never`.
    #[arg(long, value_name = "WHEN", default_value_t = crate::source::reconnect::ReconnectPolicy::OnError)]
    pub reconnect: crate::source::reconnect::ReconnectPolicy,

    /// User name for cameras that ask for one (HTTP and RTSP Basic or Digest, WebSocket Basic);
    /// `user:password@` in the URL does the same.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Password for --user.
    #[arg(long, value_name = "PASSWORD", requires = "user")]
    pub password: Option<String>,

    /// rtsp://: carry RTP in the RTSP connection (`tcp`, works through NAT
    /// and firewalls, nothing lost on the way) or in UDP datagrams (`udp`,
    /// lower latency on a clean LAN; lost or reordered packets drop frames).
    /// `auto` tries TCP and uses UDP if the camera refuses TCP.
    #[arg(long = "rtsp-transport", value_name = "auto|tcp|udp", default_value_t = crate::source::rtsp::RtspTransport::Auto)]
    pub rtsp_transport: crate::source::rtsp::RtspTransport,

    /// rtsp:// H.264 and H.265, after a lost packet: `skip-to-keyframe`
    /// drops the damaged picture and every picture until the next keyframe
    /// (nothing smeared is decoded or recorded), `conceal` hands on what
    /// arrived and lets the decoder conceal the rest, as ffmpeg does.
    #[arg(long = "on-loss", value_name = "skip-to-keyframe|conceal", default_value_t = OnLoss::SkipToKeyframe)]
    pub on_loss: OnLoss,

    /// Largest picture accepted, in bytes: a JPEG from tcp://, vbc://,
    /// http:// or rtsp://, or an H.264 picture from rtsp://. A larger one
    /// is dropped and counted, and the stream goes on (H.264: from the next
    /// IDR): over RTSP, and over HTTP (a multipart part is dropped as it
    /// arrives, up to its Content-Length or its next delimiter; a snapshot
    /// when it has arrived). On tcp:// and vbc://, where a picture's end is
    /// known only from its own bytes, it is an error that closes the
    /// connection, and --reconnect decides what follows.
    #[arg(long = "max-frame-bytes", value_name = "BYTES", default_value_t = crate::proto::jpeg::DEFAULT_MAX_FRAME)]
    pub max_frame_bytes: usize,

    /// https:// and wss://: accept the camera's certificate without checking
    /// it (as curl -k): for a camera with a self-signed certificate on a
    /// network you trust. The connection is still encrypted.
    #[arg(long, conflicts_with = "ca_cert")]
    pub insecure: bool,

    /// https:// and wss://: trust the certificates in this PEM file instead
    /// of the system's authorities (as curl --cacert): the camera's own CA,
    /// or the camera's self-signed certificate itself.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl SourceArgs {
    /// The flags as the library's settings, checked.
    pub fn options(&self) -> anyhow::Result<SourceOptions> {
        Ok(SourceOptions::try_from(self.config())?)
    }

    /// The flags as the library's unchecked settings, field for field.
    pub fn config(&self) -> SourceConfig {
        SourceConfig {
            source: self.source.clone(),
            timeout: self.timeout,
            headers: self.headers.clone(),
            ws_send: self.ws_send.clone(),
            ws_framing: self.ws_framing,
            max_message_bytes: self.max_message_bytes,
            vbc_hello: self.vbc_hello.clone(),
            reconnect: self.reconnect,
            user: self.user.clone(),
            password: self.password.clone(),
            rtsp_transport: self.rtsp_transport,
            on_loss: self.on_loss,
            max_frame_bytes: self.max_frame_bytes,
            insecure: self.insecure,
            ca_cert: self.ca_cert.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Folder for frame_NNNNNN.npy files and frames.csv (created if missing).
    #[arg(long = "frames-dir", value_name = "DIR")]
    pub frames_dir: PathBuf,

    /// Stop after this many frames.
    #[arg(long = "max-frames", value_name = "N")]
    pub max_frames: Option<u64>,

    /// Stop after this many seconds of stream time.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// Keep at most F frames per second of stream time (frames are dropped, never duplicated).
    #[arg(long, value_name = "F", value_parser = parse_fps, allow_negative_numbers = true)]
    pub fps: Option<f64>,

    /// MJPEG sources: write each JPEG exactly as the camera sent it
    /// (frame_NNNNNN.jpg), without decoding.
    #[arg(long = "save-jpeg")]
    pub save_jpeg: bool,

    /// MJPEG sources: decode with libjpeg-turbo (straight to BGR, JPEGs in
    /// parallel) or with libavcodec's mjpeg decoder and swscale.
    #[arg(long = "jpeg-decoder", value_enum, default_value_t = JpegDecoder::Turbojpeg)]
    pub jpeg_decoder: JpegDecoder,

    /// Keep pictures as stored, ignoring the stream's display matrix (by
    /// default a rotated video, as phones record it, is turned upright as
    /// players and the ffmpeg CLI show it; frames.csv has the turned size).
    #[arg(long = "no-autorotate")]
    pub no_autorotate: bool,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Output MP4 file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Stop after this many seconds of stream time.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

/// How the video is (re-)encoded. H.264 in is copied unless one of
/// `--fps`, `--size`, `--bitrate` asks for a change.
#[derive(Debug, Args, Clone)]
pub struct EncodeArgs {
    /// Limit the output frame rate, dropping frames evenly (re-encodes).
    #[arg(long, value_name = "F", value_parser = parse_fps, allow_negative_numbers = true)]
    pub fps: Option<f64>,

    /// Scale to this size, e.g. 1280x720; both even (re-encodes).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub size: Option<(u32, u32)>,

    /// Target bit rate, e.g. 1M, 800k, 1500000 (re-encodes); without it
    /// x264 aims at constant quality (CRF 23).
    #[arg(long, value_name = "BITS", value_parser = parse_bitrate)]
    pub bitrate: Option<u64>,

    /// libx264 preset: speed against size.
    #[arg(long, value_enum, default_value_t = X264Preset::Veryfast)]
    pub preset: X264Preset,

    /// Stop after this many seconds of stream time.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// Send a file at its own frame rate, as a live camera would (like
    /// `ffmpeg -re`).
    #[arg(long)]
    pub realtime: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum X264Preset {
    Ultrafast,
    Superfast,
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
    Slower,
    Veryslow,
}

impl X264Preset {
    pub fn name(self) -> &'static str {
        match self {
            X264Preset::Ultrafast => "ultrafast",
            X264Preset::Superfast => "superfast",
            X264Preset::Veryfast => "veryfast",
            X264Preset::Faster => "faster",
            X264Preset::Fast => "fast",
            X264Preset::Medium => "medium",
            X264Preset::Slow => "slow",
            X264Preset::Slower => "slower",
            X264Preset::Veryslow => "veryslow",
        }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{s}' is not WIDTHxHEIGHT (e.g. 1280x720)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(2..=16384).contains(&w) || !(2..=16384).contains(&h) {
        return Err(format!(
            "'{s}': width and height must be between 2 and 16384"
        ));
    }
    if w % 2 != 0 || h % 2 != 0 {
        return Err(format!(
            "'{s}': width and height must be even (H.264 with 4:2:0 colour)"
        ));
    }
    Ok((w, h))
}

/// `--fps` of every command that takes it (decode, transcode, hls): one
/// bound for all, checked as the argument is read. 1000 is far above any
/// camera's rate; far above it, the rate limiter's slot numbers overflow
/// and it drops frames it should keep.
fn parse_fps(s: &str) -> Result<f64, String> {
    let f: f64 = s.trim().parse().map_err(|_| "not a number".to_string())?;
    if !(f.is_finite() && f > 0.0 && f <= 1000.0) {
        return Err("must be more than 0 and at most 1000".to_string());
    }
    Ok(f)
}

fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a bit rate (e.g. 1M, 800k, 1500000)"))?;
    let bits = v * mult;
    if !(bits.is_finite() && (10_000.0..=1e9).contains(&bits)) {
        return Err(format!("'{s}': the bit rate must be between 10k and 1000M"));
    }
    Ok(bits as u64)
}

/// `--to`'s values: the list `--help` and a bad value show, each with its
/// line of help, read into a [`Container`] by its `FromStr`.
fn containers() -> impl TypedValueParser<Value = Container> {
    let values = Container::ALL.map(|c| PossibleValue::new(c.name()).help(container_help(c)));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Container>())
}

/// A container's line under `--to` in `--help`.
fn container_help(c: Container) -> &'static str {
    match c {
        Container::Flv => "Flash Video: files, and what RTMP servers take",
        Container::Mp4 => concat!(
            "MP4 with H.264 video, fragmented at keyframes (as `record` writes it), ",
            "so that a run cut short leaves a file that plays"
        ),
    }
}

#[derive(Debug, Args)]
pub struct TranscodeArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Output container.
    #[arg(long, value_parser = containers())]
    pub to: Container,

    /// A file, or an RTMP server's URL (rtmp://host/app/stream) to push to.
    #[arg(short, long, value_name = "FILE|URL")]
    pub output: String,

    #[command(flatten)]
    pub encode: EncodeArgs,

    /// A keyframe at least every this many seconds when encoding.
    #[arg(
        long = "gop-seconds",
        value_name = "SECS",
        default_value_t = 2.0,
        allow_negative_numbers = true
    )]
    pub gop_seconds: f64,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct HlsArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// The folder for index.m3u8, init.mp4 and the segments (created if
    /// missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Target segment length; a segment always starts on a keyframe, so
    /// copied video cuts where its keyframes are.
    #[arg(
        long = "segment-seconds",
        value_name = "SECS",
        default_value_t = 2.0,
        allow_negative_numbers = true
    )]
    pub segment_seconds: f64,

    /// Live: segments in the playlist (older ones are deleted).
    #[arg(long, value_name = "N", default_value_t = 6, conflicts_with = "vod")]
    pub window: u32,

    /// Keep every segment: a VOD playlist.
    #[arg(long)]
    pub vod: bool,

    #[command(flatten)]
    pub encode: EncodeArgs,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CencScheme {
    /// AES-CBC, 1 of every 10 blocks (what Apple devices and most players
    /// take).
    Cbcs,
    /// AES-CTR over every protected byte.
    Cenc,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// A file with H.264 video (and optionally AAC audio).
    pub input: PathBuf,

    /// Content key: 22 characters of base64url or 32 hex digits.
    #[arg(long)]
    pub key: String,

    /// Key ID, as the key.
    #[arg(long)]
    pub kid: String,

    /// Common Encryption scheme.
    #[arg(long, value_enum, default_value_t = CencScheme::Cbcs)]
    pub scheme: CencScheme,

    /// Output folder (created): stream.mpd, init and media segments.
    /// Default: INPUT's name with `-dash`, next to it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Target segment length (segments start on keyframes).
    #[arg(long = "segment-seconds", value_name = "SECS", default_value_t = 4.0)]
    pub segment_seconds: f64,

    /// Also write HLS playlists (master.m3u8) over the same segments.
    #[arg(long)]
    pub hls: bool,

    /// Re-encode video that is not H.264 (libx264) instead of refusing it.
    #[arg(long)]
    pub transcode: bool,

    /// No progress display; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The camera's policies as clap values: their spellings, each with its
/// variant's doc comment as help, as `#[derive(ValueEnum)]` would give.
fn camera_value(name: &'static str, describe: String) -> PossibleValue {
    // clap's derive drops the period that ends a one-sentence help.
    PossibleValue::new(name).help(describe.trim_end_matches('.').to_string())
}

/// The library's policy enum as a clap value, spelled as its `Display`.
impl ValueEnum for JpegDecoder {
    fn value_variants<'a>() -> &'a [Self] {
        &[JpegDecoder::Turbojpeg, JpegDecoder::Libav]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            JpegDecoder::Turbojpeg => "turbojpeg",
            JpegDecoder::Libav => "libav",
        }))
    }
}

impl ValueEnum for CameraProtocol {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(camera_value(self.name(), self.describe()))
    }
}

impl ValueEnum for CameraFault {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(camera_value(self.name(), self.describe()))
    }
}

#[derive(Debug, Args)]
pub struct CameraArgs {
    /// Protocol to serve.
    #[arg(long, value_enum, default_value_t)]
    pub protocol: CameraProtocol,

    /// Address to listen on; port 0 picks a free port. The URL is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Serve this instead of the test pattern: a video file (H.264 is sent as
    /// is, anything else is encoded), or for tcp-mjpeg and vbc a folder of
    /// .jpg files (sent as they are, in name order, at --fps).
    #[arg(long, value_name = "PATH", conflicts_with = "size")]
    pub input: Option<PathBuf>,

    /// Test pattern size, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,

    /// Frame rate of the test pattern or of a folder of JPEGs.
    #[arg(long)]
    pub fps: Option<f64>,

    /// mjpeg-http: ask for HTTP Basic authentication with this user:password.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub auth: Option<String>,

    /// With --auth: ask for HTTP Digest (MD5, qop=auth) instead of Basic.
    #[arg(long, requires = "auth")]
    pub digest: bool,

    /// tcp-mjpeg, vbc and mjpeg-http: put an EXIF-style thumbnail (a whole small JPEG
    /// inside APP1) in every frame, as many cameras do.
    #[arg(long = "exif-thumbnail")]
    pub exif_thumbnail: bool,

    /// End each client's stream normally after this many frames (default: endless for the pattern).
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,

    /// Misbehave on purpose, for testing clients.
    #[arg(long, value_enum)]
    pub fault: Option<CameraFault>,

    /// With --fault: how many good fragments to send first.
    #[arg(long = "fault-after", value_name = "N", default_value_t = 5)]
    pub fault_after: u64,

    /// With --fault: misbehave with the first client only; later clients (a
    /// client reconnecting) get a good stream.
    #[arg(long = "fault-once", requires = "fault")]
    pub fault_once: bool,

    /// Refuse the WebSocket upgrade (HTTP 403) unless the request carries this
    /// header, `Name: value`, as sites that check Origin do.
    #[arg(long = "require-header", value_name = "NAME: VALUE")]
    pub require_header: Option<String>,

    /// Send nothing until the client sends this text message (the site in the
    /// seeds waits for "ping").
    #[arg(long = "expect-text", value_name = "TEXT")]
    pub expect_text: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PackagerCommand {
    /// Run the packaging service: a JSON API to upload files and package
    /// them (encrypted DASH, ClearKey), the packaged files, and a page that
    /// lists and plays them. Prints its URL once listening.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the URL printed says which).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    pub listen: std::net::SocketAddr,

    /// Folder of the service's state: camflow.db (SQLite), uploads/, content/.
    #[arg(long, value_name = "DIR", default_value = "camflow-data")]
    pub data: PathBuf,

    /// Largest upload accepted (bytes, or with k, M, G: powers of 1024).
    #[arg(long = "max-upload", value_name = "SIZE", default_value = "2G", value_parser = crate::service::parse_size)]
    pub max_upload: u64,

    /// Packaging jobs run at once (each on its own thread).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// Shaka Player's `shaka-player.compiled.js`, served to the page as
    /// /static/shaka-player.compiled.js. Default: the copy under
    /// tests/browser/node_modules, if there is one in the current folder.
    #[arg(long = "shaka-js", value_name = "PATH")]
    pub shaka_js: Option<PathBuf>,
}
