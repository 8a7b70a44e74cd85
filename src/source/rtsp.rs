//! RTSP cameras, on retina.
//!
//! In: an `rtsp://` URL. Credentials may be in it or come from
//! `--user`/`--password`; retina takes them in its session options and
//! refuses a URL that carries them, so they are taken out here. Out:
//!
//! - MJPEG cameras (RFC 2435): whole JPEGs ([`JpegStream`]), rebuilt by
//!   camflow's own depacketizer ([`rtp_jpeg`]) from retina's raw RTP
//!   packets. retina's JPEG depacketizer keeps no in-band quantization tables
//!   (a frame with Q ≥ 128 and no tables must reuse the last ones sent for
//!   that Q) and does not check fragment offsets (a lost packet must drop the
//!   frame, not yield a corrupt JPEG).
//! - H.264 (RFC 6184) and H.265 (RFC 7798) cameras: access units as
//!   4-byte-length NAL units with their `avcC`/`hvcC` ([`PacketStream`]),
//!   depacketized by camflow ([`rtp_h264`](crate::proto::rtp_h264),
//!   [`rtp_h265`](crate::proto::rtp_h265)) from the raw RTP packets, the
//!   decoder configuration made from the SDP's parameter sets and those the
//!   camera sends in band (`rtsp_coded`).
//!
//! retina does the RTSP control (OPTIONS, DESCRIBE, SETUP, PLAY, keepalives
//! while playing, TEARDOWN when a session is dropped), Basic and Digest auth,
//! and both transports. Its UDP transport has no reorder buffer (a packet
//! that arrives out of order counts as lost, and its frame is dropped) and
//! sends no RTCP receiver reports, so TCP is tried first. Some servers
//! (VLC's) have no RTP over TCP: they answer its SETUP with 461 or close
//! the connection. With `auto` (the default) the session then starts over
//! on UDP, once, and later sessions of the source keep the transport that
//! worked.
//!
//! Only the video track is set up. A camera that refuses to PLAY a partial
//! presentation gets every track set up on a second try; the other tracks'
//! packets are ignored.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use retina::client::{
    Credentials, Described, InitialTimestampPolicy, PacketItem, PlayOptions, Playing, Session,
    SessionGroup, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{FrameFormat, ParameterSetInsertion, ParametersRef};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use url::Url;

use super::deadline::{within, ItemDeadline};
use super::rtsp_coded::{Depack, Sets};
use super::{JpegFrame, JpegStream, PacketStream, SourceError, SourceOptions, SourceStats};
use crate::packet::{unix_now, VideoCodec, VideoPacket, VideoParams};
use crate::proto::rtp_jpeg;

/// How RTP travels from the camera (`--rtsp-transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RtspTransport {
    /// TCP, and UDP if the camera refuses TCP (461 Unsupported Transport,
    /// or the connection closed on SETUP): what works on the first try.
    #[default]
    Auto,
    /// Interleaved in the RTSP TCP connection (RFC 2326 §10.12): one
    /// connection, through NAT and firewalls, nothing lost on the way.
    Tcp,
    /// RTP and RTCP in UDP datagrams to ports camflow opens: lower latency
    /// on a clean LAN; a lost or late packet costs its frame.
    Udp,
}

impl fmt::Display for RtspTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RtspTransport::Auto => "auto",
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        })
    }
}

impl FromStr for RtspTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RtspTransport::Auto),
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            _ => Err(format!(
                "unknown RTSP transport {s:?} (expected auto, tcp or udp)"
            )),
        }
    }
}

impl RtspTransport {
    /// retina's transport; `Auto` begins with TCP.
    fn retina(self) -> Transport {
        match self {
            RtspTransport::Auto | RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        }
    }
}

/// One media section of the camera's SDP, for `probe`.
#[derive(Debug, Clone, Serialize)]
pub struct SdpMedia {
    /// `video`, `audio`, `application`...
    pub media: String,
    /// The RTP encoding name, lower case (`jpeg`, `h264`, `pcmu`).
    pub encoding: String,
    /// The RTP payload type the track's packets carry (`m=` line).
    pub payload_type: u8,
    /// The RTP clock rate in Hz (`a=rtpmap`), 90000 for video.
    pub clock_rate: u32,
    /// Audio channels, when the SDP says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
    /// Picture width in pixels, when the SDP carries the codec parameters
    /// (H.264's parameter sets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Picture height in pixels, from the same parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frames per second: `a=framerate`, else the codec parameters' timing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// RFC 6381 codec string, when the SDP gives the parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Whether camflow reads this track.
    pub used: bool,
}

/// What an RTSP camera offers and how camflow reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RtspInfo {
    /// The transport in use (`tcp` or `udp`; `auto` only until the first
    /// SETUP has settled it).
    pub transport: RtspTransportName,
    /// Every media section of the SDP, the track camflow reads marked.
    pub media: Vec<SdpMedia>,
    /// The server's name (`Server:` header), if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The transport as `probe` names it.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(into = "String")]
pub struct RtspTransportName(pub RtspTransport);

impl From<RtspTransportName> for String {
    fn from(t: RtspTransportName) -> String {
        t.0.to_string()
    }
}

/// The video codecs camflow reads from RTSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Jpeg,
    H264,
    H265,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Jpeg => "MJPEG",
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
        }
    }
}

/// An RTSP source, opened: which of the two streams depends on the codec.
pub enum Opened {
    /// An MJPEG camera: whole JPEGs, rebuilt by camflow's depacketizer.
    Jpegs(JpegStream),
    /// An H.264 camera: access units with their parameters.
    Packets(PacketStream),
}

type JpegTx = mpsc::Sender<Result<JpegFrame, SourceError>>;
type PacketTx = mpsc::Sender<Result<VideoPacket, SourceError>>;

enum Tx {
    Jpeg(JpegTx),
    Packets(PacketTx),
}

impl Tx {
    async fn closed(&self) {
        match self {
            Tx::Jpeg(t) => t.closed().await,
            Tx::Packets(t) => t.closed().await,
        }
    }

    /// The receiver's last word; a consumer already gone does not need it.
    async fn fail(&self, e: SourceError) {
        match self {
            Tx::Jpeg(t) => drop(t.send(Err(e)).await),
            Tx::Packets(t) => drop(t.send(Err(e)).await),
        }
    }
}

/// Session groups and receiver tasks of this process, so that `main` can
/// wait (briefly) for their TEARDOWNs before the runtime goes away.
static LIVE: Mutex<Vec<(Arc<SessionGroup>, tokio::task::JoinHandle<()>)>> = Mutex::new(Vec::new());

/// Waits up to `limit` for every RTSP receiver to end and its sessions to
/// be torn down. Called once, as the process ends.
pub async fn wait_for_teardown(limit: Duration) {
    let live: Vec<_> = match LIVE.lock() {
        Ok(mut l) => l.drain(..).collect(),
        Err(_) => return,
    };
    if live.is_empty() {
        return;
    }
    let _ = timeout(limit, async {
        for (group, task) in live {
            let _ = task.await;
            let _ = group.await_teardown().await;
        }
    })
    .await;
}

/// Everything a session needs, shared by the sessions of one source.
struct Ctx {
    url: Url,
    creds: Option<Credentials>,
    group: Arc<SessionGroup>,
    opts: SourceOptions,
    codec: Codec,
    stats: Arc<SourceStats>,
    timeline: Mutex<Timeline>,
    /// The H.264 parameters last handed on: a reconnect that brings the
    /// same ones does not restart the decoder.
    last_params: Mutex<Option<Arc<VideoParams>>>,
    /// The transport of the next session: `--rtsp-transport`, until `auto`
    /// is settled by the first SETUP that works.
    transport: Mutex<RtspTransport>,
}

impl Ctx {
    fn transport(&self) -> RtspTransport {
        self.transport
            .lock()
            .map(|t| *t)
            .unwrap_or(self.opts.rtsp_transport)
    }

    /// The transport that worked: later sessions use it, and `probe` shows
    /// it.
    fn settle(&self, transport: RtspTransport) {
        if let Ok(mut t) = self.transport.lock() {
            *t = transport;
        }
        if let Ok(mut info) = self.stats.rtsp.lock() {
            if let Some(info) = info.as_mut() {
                info.transport = RtspTransportName(transport);
            }
        }
    }
}

/// Connects (DESCRIBE), picks the video track, and starts the receiver.
pub async fn open(
    url: &Url,
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Opened, SourceError> {
    let (url, creds) = split_credentials(url, opts)?;
    let group = Arc::new(SessionGroup::default());
    let stats = Arc::new(SourceStats::default());
    let mut ctx = Ctx {
        url,
        creds,
        group: group.clone(),
        opts: opts.clone(),
        codec: Codec::Jpeg,
        stats: stats.clone(),
        timeline: Mutex::new(Timeline::default()),
        last_params: Mutex::new(None),
        transport: Mutex::new(opts.rtsp_transport),
    };
    let described = describe(&ctx).await?;
    let (video, codec) = pick_video(described.streams())?;
    ctx.codec = codec;
    if let Ok(mut info) = stats.rtsp.lock() {
        *info = Some(describe_info(&described, video, opts.rtsp_transport));
    }
    let (opened, tx) = match codec {
        Codec::Jpeg => {
            let (tx, rx) = mpsc::channel(super::JPEG_QUEUE);
            (
                Opened::Jpegs(JpegStream {
                    rx,
                    stats: stats.clone(),
                }),
                Tx::Jpeg(tx),
            )
        }
        Codec::H264 | Codec::H265 => {
            let (tx, rx) = mpsc::channel(PACKET_QUEUE);
            (
                Opened::Packets(PacketStream {
                    rx,
                    stats: stats.clone(),
                }),
                Tx::Packets(tx),
            )
        }
    };
    let task = tokio::spawn(run(ctx, described, tx, shutdown));
    if let Ok(mut l) = LIVE.lock() {
        l.push((group, task));
    }
    Ok(opened)
}

/// Coded frames in flight to the libav thread (a second or so of video).
const PACKET_QUEUE: usize = 32;

/// Takes `user:password@` out of the URL (retina wants credentials apart);
/// `--user`/`--password` win over the URL's.
fn split_credentials(
    url: &Url,
    opts: &SourceOptions,
) -> Result<(Url, Option<Credentials>), SourceError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                SourceError::Settings(
                    "the user name or password in the URL is not valid UTF-8".into(),
                )
            })
    };
    let creds = match &opts.user {
        Some(user) => Some(Credentials {
            username: user.clone(),
            password: opts.password.clone().unwrap_or_default(),
        }),
        None if url.username().is_empty() => None,
        None => Some(Credentials {
            username: decode(url.username())?,
            password: decode(url.password().unwrap_or(""))?,
        }),
    };
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    Ok((bare, creds))
}

async fn describe(ctx: &Ctx) -> Result<Session<Described>, SourceError> {
    let options = SessionOptions::default()
        .creds(ctx.creds.clone())
        .user_agent(format!("camflow/{}", env!("CARGO_PKG_VERSION")))
        .session_group(ctx.group.clone());
    let secs = ctx.opts.timeout.as_secs_f64();
    within(
        ctx.opts.timeout,
        Session::describe(ctx.url.clone(), options),
        || format!("no answer to DESCRIBE within {secs} s"),
    )
    .await?
    .map_err(|e| failure(ctx, &e))
}

/// A retina error as a kind. retina's error is opaque but for its status
/// code; the rest is told from its first line, which names the failure.
fn failure(ctx: &Ctx, e: &retina::Error) -> SourceError {
    let message = retina_error(e, ctx.opts.rtsp_transport);
    if let Some(status) = e.status_code() {
        return match status {
            401 if ctx.creds.is_some() => SourceError::AuthRefused(message),
            401 => SourceError::AuthWanted(message),
            _ => SourceError::Refused(message),
        };
    }
    let text = e.to_string();
    if text.starts_with("Unable to connect") {
        if text.contains("Connection refused") {
            SourceError::Refused(message)
        } else {
            SourceError::Unreachable(message)
        }
    } else if text.starts_with("Error reading")
        || text.starts_with("Error writing")
        || text.starts_with("Error receiving")
    {
        SourceError::Ended(message)
    } else if text.starts_with("Invalid argument") {
        SourceError::Settings(message)
    } else if text.starts_with("Timeout") {
        SourceError::Timeout(message)
    } else {
        SourceError::protocol("RTSP", None, message)
    }
}

/// retina's errors start with the connection context in brackets, and an
/// RTSP error answer carries the whole response; one line is kept.
fn retina_error(e: &retina::Error, asked: RtspTransport) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    let refused = match asked {
        RtspTransport::Tcp => {
            " (the camera refused RTP over TCP: try the other --rtsp-transport, udp, or auto)"
        }
        RtspTransport::Udp => {
            " (the camera refused RTP over UDP: try the other --rtsp-transport, tcp, or auto)"
        }
        // Auto lets a 461 through only from UDP, tried after TCP, or from a
        // later session over the transport that worked before.
        RtspTransport::Auto => " (the camera refused the transport)",
    };
    let hint = match first.get(..4) {
        Some("401 ") => " (wrong or missing user name or password)",
        Some("404 ") => " (no stream at this path)",
        Some("453 ") | Some("503 ") => {
            " (the camera is busy or takes no more sessions; try again later)"
        }
        Some("461 ") => refused,
        _ => "",
    };
    if first.is_empty() {
        "RTSP error".into()
    } else if first.contains("framing error") {
        // What follows "buffered:" is a dump of the bytes, on later lines.
        let what = first
            .trim_end_matches("buffered:")
            .trim_end()
            .trim_end_matches(';');
        format!("the server's answer is not RTSP ({what})")
    } else {
        format!("{first}{hint}")
    }
}

/// The first video track camflow can read.
fn pick_video(streams: &[retina::client::Stream]) -> Result<(usize, Codec), SourceError> {
    for (i, s) in streams.iter().enumerate() {
        match (s.media(), s.encoding_name()) {
            ("video" | "image", "jpeg") => return Ok((i, Codec::Jpeg)),
            ("video", "h264") => return Ok((i, Codec::H264)),
            ("video", "h265") => return Ok((i, Codec::H265)),
            _ => {}
        }
    }
    let offered: Vec<String> = streams
        .iter()
        .map(|s| format!("{} {}", s.media(), s.encoding_name()))
        .collect();
    Err(SourceError::NotVideo(format!(
        "the camera offers no MJPEG, H.264 or H.265 video (its SDP has: {})",
        if offered.is_empty() {
            "nothing".to_string()
        } else {
            offered.join(", ")
        }
    )))
}

fn describe_info(session: &Session<Described>, video: usize, transport: RtspTransport) -> RtspInfo {
    let media = session
        .streams()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut m = SdpMedia {
                media: s.media().to_string(),
                encoding: s.encoding_name().to_string(),
                payload_type: s.rtp_payload_type(),
                clock_rate: s.clock_rate_hz(),
                channels: s.channels().map(|c| c.get()),
                width: None,
                height: None,
                fps: s
                    .framerate()
                    .map(f64::from)
                    .filter(|f| f.is_finite() && *f > 0.0),
                codec: None,
                used: i == video,
            };
            if let Some(ParametersRef::Video(v)) = s.parameters() {
                let (w, h) = v.pixel_dimensions();
                m.width = Some(w);
                m.height = Some(h);
                m.codec = Some(v.rfc6381_codec().to_string());
                if m.fps.is_none() {
                    m.fps = v
                        .frame_rate()
                        .filter(|(num, _)| *num > 0)
                        .map(|(num, den)| f64::from(den) / f64::from(num));
                }
            }
            m
        })
        .collect();
    RtspInfo {
        transport: RtspTransportName(transport),
        media,
        // `Tool` is the `Server:` header's text (it derefs to str).
        server: session.tool().map(|t| t.to_string()),
    }
}

/// Stream time across sessions: within a session it is the RTP time since
/// the session's first packet; a new session (a reconnect) starts where
/// the wall clock says the outage ended (at least one frame after the last
/// time handed on), so time never goes back and outages stay visible.
#[derive(Debug, Default)]
struct Timeline {
    offset: f64,
    last: Option<f64>,
    step: Option<f64>,
    last_at: Option<std::time::Instant>,
    /// The RTP time of this session's first picture: with several tracks
    /// set up, RTP-Info may map it a little after 0.
    first: Option<f64>,
}

impl Timeline {
    fn new_session(&mut self) {
        self.first = None;
    }

    fn time(&mut self, elapsed_secs: f64) -> f64 {
        if self.first.is_none() {
            // The session's first picture handed on: the outage lasted
            // until now (reconnecting, and waiting for an IDR).
            if let Some(last) = self.last {
                let step = self.step.unwrap_or(0.04);
                let outage = self.last_at.map_or(0.0, |at| at.elapsed().as_secs_f64());
                self.offset = last + step.max(outage);
            }
        }
        self.last_at = Some(std::time::Instant::now());
        let first = *self.first.get_or_insert(elapsed_secs);
        let t = self.offset + (elapsed_secs - first);
        match self.last {
            Some(last) if t > last => {
                self.step = Some(t - last);
                self.last = Some(t);
            }
            Some(_) => {}
            None => self.last = Some(t),
        }
        t
    }
}

async fn run(ctx: Ctx, described: Session<Described>, tx: Tx, mut shutdown: watch::Receiver<bool>) {
    let mut first = Some(described);
    let for_sessions = shutdown.clone();
    let sessions = super::supervised(&ctx.opts, shutdown.clone(), |_, streamed| {
        let pre = first.take();
        session(&ctx, pre, &tx, for_sessions.clone(), streamed)
    });
    let result = tokio::select! {
        r = sessions => r,
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
        _ = tx.closed() => Ok(()),
    };
    if let Err(e) = result {
        tx.fail(e).await;
    }
}

/// One RTSP session: DESCRIBE (unless done already), SETUP, PLAY, then
/// frames until the camera ends the stream, an error, or the consumer or
/// Ctrl-C stops it. Dropping the session sends the TEARDOWN.
async fn session(
    ctx: &Ctx,
    described: Option<Session<Described>>,
    tx: &Tx,
    shutdown: watch::Receiver<bool>,
    streamed: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let (playing, video, fmtp) = start(ctx, described).await?;
    if let Ok(mut t) = ctx.timeline.lock() {
        t.new_session();
    }
    match tx {
        Tx::Jpeg(tx) => jpegs(ctx, playing, video, tx, shutdown, streamed).await,
        Tx::Packets(tx) => coded(ctx, playing, video, &fmtp, tx, shutdown, streamed).await,
    }
}

/// SETUP and PLAY over the source's transport. With `auto` not yet
/// settled, TCP is tried first; a camera that refuses it gets a new
/// session over UDP, and the reason is said once.
async fn start(ctx: &Ctx, described: Option<Session<Described>>) -> Result<Started, SourceError> {
    let transport = ctx.transport();
    if transport != RtspTransport::Auto {
        return start_over(ctx, described, transport)
            .await
            .map_err(|(e, _)| e);
    }
    match start_over(ctx, described, RtspTransport::Tcp).await {
        Ok(p) => {
            ctx.settle(RtspTransport::Tcp);
            Ok(p)
        }
        Err((_, Some(why))) => {
            let p = start_over(ctx, None, RtspTransport::Udp)
                .await
                .map_err(|(e, _)| e)?;
            ctx.settle(RtspTransport::Udp);
            ctx.opts.say(&format!("{why}; using UDP"));
            Ok(p)
        }
        Err((e, None)) => Err(e),
    }
}

/// A playing session: the session, its video track's index, and that
/// track's SDP `fmtp` parameters (retina drops the SDP at PLAY).
type Started = (Session<Playing>, usize, Vec<(String, String)>);

/// Why SETUP over TCP failed, when it was the transport the camera refused:
/// the words for the line that says UDP is used instead.
type Refused = Option<&'static str>;

/// SETUP and PLAY over `transport`: the video track alone, or every track
/// when the camera will not play only some.
async fn start_over(
    ctx: &Ctx,
    described: Option<Session<Described>>,
    transport: RtspTransport,
) -> Result<Started, (SourceError, Refused)> {
    let session = match described {
        Some(s) => s,
        None => describe(ctx).await.map_err(|e| (e, None))?,
    };
    match play(ctx, session, false, transport).await {
        Ok(p) => Ok(p),
        // Only a camera that answered PLAY with an error status gets a
        // second try; a timeout or a failed SETUP would fail again.
        Err(Failed::PlayStatus(first)) => {
            let Ok(session) = describe(ctx).await else {
                return Err((first, None));
            };
            if session.streams().len() < 2 {
                return Err((first, None));
            }
            play(ctx, session, true, transport)
                .await
                .map_err(|_| (first, None))
        }
        Err(Failed::Transport(e, why)) => Err((e, Some(why))),
        Err(Failed::Other(e)) => Err((e, None)),
    }
}

/// How SETUP and PLAY failed, for what to try next.
enum Failed {
    /// PLAY got an error status: the camera may want every track set up.
    PlayStatus(SourceError),
    /// SETUP over TCP got 461, or the connection closed on it.
    Transport(SourceError, &'static str),
    Other(SourceError),
}

/// SETUP and PLAY.
async fn play(
    ctx: &Ctx,
    mut session: Session<Described>,
    all_tracks: bool,
    transport: RtspTransport,
) -> Result<Started, Failed> {
    let (video, codec) = pick_video(session.streams()).map_err(Failed::Other)?;
    let fmtp = crate::proto::sdp::fmtp(session.sdp(), video);
    if codec != ctx.codec {
        return Err(Failed::Other(SourceError::NotVideo(format!(
            "the camera now sends {} instead of {}",
            codec.name(),
            ctx.codec.name()
        ))));
    }
    let secs = ctx.opts.timeout.as_secs_f64();
    let tracks: Vec<usize> = if all_tracks {
        (0..session.streams().len()).collect()
    } else {
        vec![video]
    };
    for i in tracks {
        // MP4 framing (length-prefixed NAL units, parameter sets as avcC),
        // plus changed parameter sets in band, so a recording can go on
        // when a camera sends new ones for the same picture size.
        let format = FrameFormat {
            parameter_set_insertion: ParameterSetInsertion::OnChange,
            ..FrameFormat::MP4
        };
        let setup = SetupOptions::default()
            .transport(transport.retina())
            .frame_format(format);
        within(ctx.opts.timeout, session.setup(i, setup), || {
            format!("no answer to SETUP within {secs} s")
        })
        .await
        .map_err(Failed::Other)?
        .map_err(|e| {
            let error = failure(ctx, &e);
            match refused(transport, &e, &error) {
                Some(why) => Failed::Transport(error, why),
                None => Failed::Other(error),
            }
        })?;
    }
    // With several tracks, each one's RTP time is mapped through RTP-Info
    // when the camera gives it, and starts at its first packet otherwise.
    let policy = if all_tracks {
        InitialTimestampPolicy::Permissive
    } else {
        InitialTimestampPolicy::Ignore
    };
    let playing = within(
        ctx.opts.timeout,
        session.play(PlayOptions::default().initial_timestamp(policy)),
        || format!("no answer to PLAY within {secs} s"),
    )
    .await
    .map_err(Failed::Other)?
    .map_err(|e| match e.status_code() {
        Some(_) => Failed::PlayStatus(failure(ctx, &e)),
        None => Failed::Other(failure(ctx, &e)),
    })?;
    Ok((playing, video, fmtp))
}

/// Whether a failed SETUP over TCP means the camera has no RTP over TCP:
/// 461 Unsupported Transport, or (some servers) the connection closed.
fn refused(transport: RtspTransport, e: &retina::Error, error: &SourceError) -> Refused {
    if transport != RtspTransport::Tcp {
        return None;
    }
    match (e.status_code(), error) {
        (Some(461), _) => Some("the camera refused RTP over TCP (461 Unsupported Transport)"),
        (None, SourceError::Ended(_)) => {
            Some("the camera closed the connection when asked for RTP over TCP")
        }
        _ => None,
    }
}

/// The end of a session's wait for the next item.
enum Next<T> {
    Item(T),
    /// Ctrl-C, or the consumer has all it wants.
    Stop,
}

/// Waits for the next item of a playing session, up to `deadline`.
async fn next<S, T>(
    ctx: &Ctx,
    stream: &mut S,
    deadline: &ItemDeadline,
    closed: impl std::future::Future<Output = ()>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Next<T>, SourceError>
where
    S: futures_util::Stream<Item = Result<T, retina::Error>> + Unpin,
{
    let secs = deadline.secs();
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => Ok(Next::Stop),
        _ = closed => Ok(Next::Stop),
        r = deadline.read(stream.next(), || format!("no video for {secs} s")) => match r? {
            None => Err(SourceError::Ended("the camera ended the session".into())),
            Some(Err(e)) => Err(failure(ctx, &e)),
            Some(Ok(item)) => Ok(Next::Item(item)),
        },
    }
}

/// MJPEG: raw RTP packets of the video track through the RFC 2435
/// depacketizer.
async fn jpegs(
    ctx: &Ctx,
    mut playing: Session<Playing>,
    video: usize,
    tx: &JpegTx,
    mut shutdown: watch::Receiver<bool>,
    streamed: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let mut depack = rtp_jpeg::Depacketizer::new(ctx.opts.max_frame);
    // The depacketizer's count is exact (one packet can end two frames);
    // the source's count runs on across sessions.
    let dropped_before = ctx.stats.dropped_frames.load(Ordering::Relaxed);
    let mut last_drop: Option<rtp_jpeg::Dropped> = None;
    // Only a whole picture moves the deadline: a camera that sends packets
    // but never a complete frame must still time out.
    let mut deadline = ItemDeadline::new(ctx.opts.timeout);
    loop {
        let item = next(ctx, &mut playing, &deadline, tx.closed(), &mut shutdown)
            .await
            .map_err(|e| match &last_drop {
                // Packets came, pictures did not: say why.
                Some(d) => e.with_suffix(&format!("; the last dropped frame: {d}")),
                None => e,
            })?;
        let pkt = match item {
            Next::Stop => return Ok(()),
            Next::Item(PacketItem::Rtp(p)) if p.stream_id() == video => p,
            Next::Item(PacketItem::Rtcp(c)) if c.stream_id() == video && is_bye(&c) => {
                say_bye(ctx);
                return Ok(());
            }
            Next::Item(_) => continue,
        };
        ctx.stats.add_bytes(pkt.raw().len());
        ctx.stats
            .lost_packets
            .fetch_add(u64::from(pkt.loss()), Ordering::Relaxed);
        let elapsed = pkt.timestamp().elapsed_secs();
        let pushed = depack.push(
            pkt.sequence_number(),
            pkt.header().timestamp(),
            pkt.mark(),
            pkt.payload(),
        );
        ctx.stats.dropped_frames.store(
            dropped_before + depack.stats().dropped_frames,
            Ordering::Relaxed,
        );
        let frame = match pushed {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(d) => {
                last_drop = Some(d);
                continue;
            }
        };
        let pts = ctx.timeline.lock().map(|mut t| t.time(elapsed)).ok();
        let frame = JpegFrame {
            data: frame.data,
            at_unix: unix_now(),
            pts,
        };
        if tx.send(Ok(frame)).await.is_err() {
            return Ok(());
        }
        streamed.store(true, Ordering::Relaxed);
        deadline.reset();
    }
}

/// H.264 and H.265: raw RTP packets of the video track through camflow's
/// depacketizer. Access units are handed on from the first keyframe, with
/// the decoder configuration made from the parameter sets (the SDP's, then
/// the camera's in band); a lost packet costs what `--on-loss` says.
async fn coded(
    ctx: &Ctx,
    mut playing: Session<Playing>,
    video: usize,
    fmtp: &[(String, String)],
    tx: &PacketTx,
    mut shutdown: watch::Receiver<bool>,
    streamed: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let codec = match ctx.codec {
        Codec::H265 => VideoCodec::H265,
        _ => VideoCodec::H264,
    };
    let mut depack = Depack::new(codec, ctx.opts.max_frame, ctx.opts.on_loss, fmtp);
    let mut sets = Sets::from_sdp(codec, fmtp);
    let mut sdp_problem_said = false;
    // Whether a picture was handed on this session; the skips before it,
    // and the pictures given up for want of parameter sets.
    let mut started = false;
    let mut skipped_at_start = 0;
    let mut loss_seen = false;
    let mut given_up = 0;
    // Since the last picture handed on (or the start), packets did come:
    // a timeout then says that no picture could be made of them.
    let mut packets_came = false;
    // The depacketizer counts per session; the source's counts run on.
    let dropped_before = ctx.stats.dropped_frames.load(Ordering::Relaxed);
    let mut last_drop: Option<crate::proto::rtp_h264::Dropped> = None;
    let mut oversize_said = false;
    // RTP time → stream time of the last few packets: an access unit ends
    // with its own packet or the next one's.
    let mut times: std::collections::VecDeque<(u32, f64)> = std::collections::VecDeque::new();
    // Only a picture handed on moves the deadline: a camera that sends
    // packets but never a whole keyframe must still time out.
    let mut deadline = ItemDeadline::new(ctx.opts.timeout);
    loop {
        let item = next(ctx, &mut playing, &deadline, tx.closed(), &mut shutdown)
            .await
            .map_err(|e| match (&e, &sets.problem) {
                (SourceError::Timeout(_), Some(p)) => {
                    e.with_suffix(&format!("; no usable parameter sets ({p})"))
                }
                // Packets came, pictures did not.
                (SourceError::Timeout(_), None) if packets_came => {
                    let key = match codec {
                        VideoCodec::H264 => "an IDR",
                        VideoCodec::H265 => "an IRAP picture",
                    };
                    let e = SourceError::Timeout(format!(
                        "no decodable picture (waiting for {key}) for {} s",
                        deadline.secs()
                    ));
                    match &last_drop {
                        Some(d) => e.with_suffix(&format!("; the last dropped picture: {d}")),
                        None => e,
                    }
                }
                _ => e,
            })?;
        let pkt = match item {
            Next::Stop => return Ok(()),
            Next::Item(PacketItem::Rtp(p)) if p.stream_id() == video => p,
            Next::Item(PacketItem::Rtcp(c)) if c.stream_id() == video && is_bye(&c) => {
                say_bye(ctx);
                return Ok(());
            }
            Next::Item(_) => continue,
        };
        ctx.stats.add_bytes(pkt.raw().len());
        packets_came = true;
        ctx.stats
            .lost_packets
            .fetch_add(u64::from(pkt.loss()), Ordering::Relaxed);
        let rtp_time = pkt.header().timestamp();
        if times.back().is_none_or(|(t, _)| *t != rtp_time) {
            times.push_back((rtp_time, pkt.timestamp().elapsed_secs()));
            if times.len() > 8 {
                times.pop_front();
            }
        }
        let pushed = depack.push(pkt.sequence_number(), rtp_time, pkt.mark(), pkt.payload());
        if let Err(d) = pushed {
            if matches!(d.what, crate::proto::rtp_h264::Reason::TooLarge { .. }) && !oversize_said {
                ctx.opts.say(&format!(
                    "a picture too large to keep, over --max-frame-bytes ({}), is dropped",
                    ctx.opts.max_frame
                ));
                oversize_said = true;
            }
            last_drop = Some(d);
        }
        // Pictures skipped before this session's first keyframe were never
        // wanted (a session joins mid-GOP), unless a loss came first: then
        // they wait for a keyframe because of it (the first keyframe lost
        // its head), and count as dropped, as every skip after the start.
        let st = depack.stats();
        loss_seen |= pkt.loss() > 0 || st.lost_packets > 0;
        if !started && !loss_seen {
            skipped_at_start = st.skipped_units;
        }
        let depacketizer_dropped = st.dropped_units + st.skipped_units - skipped_at_start;
        let count_dropped = |given_up: u64| {
            ctx.stats.dropped_frames.store(
                dropped_before + given_up + depacketizer_dropped,
                Ordering::Relaxed,
            );
        };
        count_dropped(given_up);
        while let Some(unit) = depack.pull(&mut sets) {
            let Some(params) = sets.params().cloned() else {
                if let (Some(p), false) = (&sets.problem, sdp_problem_said) {
                    ctx.opts
                        .say(&format!("{p}; waiting for parameter sets in band"));
                    sdp_problem_said = true;
                }
                given_up += 1;
                count_dropped(given_up);
                continue;
            };
            started = true;
            let changed = {
                let mut last = ctx
                    .last_params
                    .lock()
                    .map_err(|_| SourceError::Local("internal error: poisoned lock".into()))?;
                if last.as_ref() != Some(&params) {
                    *last = Some(params.clone());
                    Some(params)
                } else {
                    None
                }
            };
            let elapsed = times
                .iter()
                .rev()
                .find(|(t, _)| *t == unit.timestamp)
                .map_or(0.0, |(_, e)| *e);
            let pts = ctx
                .timeline
                .lock()
                .map(|mut t| t.time(elapsed))
                .unwrap_or_default();
            let packet = VideoPacket {
                data: unit.data,
                pts,
                key: unit.key,
                at_unix: unix_now(),
                params: changed,
            };
            if tx.send(Ok(packet)).await.is_err() {
                return Ok(());
            }
            streamed.store(true, Ordering::Relaxed);
            packets_came = false;
            deadline.reset();
        }
    }
}

/// Says why a run stops early: the camera itself ended the stream.
fn say_bye(ctx: &Ctx) {
    ctx.opts.say("the camera ended the stream (RTCP BYE)");
}

/// RTCP BYE (RFC 3550 §6.6): the camera ends the stream.
fn is_bye(c: &retina::rtcp::ReceivedCompoundPacket) -> bool {
    c.pkts().any(|p| p.payload_type() == 203)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(user: Option<&str>, password: Option<&str>) -> SourceOptions {
        let mut o = SourceOptions::new(crate::source::SourceSpec::parse("rtsp://cam/x").unwrap());
        o.user = user.map(String::from);
        o.password = password.map(String::from);
        o
    }

    #[test]
    fn credentials_leave_the_url() {
        let url = Url::parse("rtsp://admin:p%40ss%20w@cam:8554/live?x=1").unwrap();
        let (bare, creds) = split_credentials(&url, &opts(None, None)).unwrap();
        assert_eq!(bare.as_str(), "rtsp://cam:8554/live?x=1");
        let c = creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss w")
        );
    }

    #[test]
    fn flags_win_over_the_url() {
        let url = Url::parse("rtsp://a:b@cam/live").unwrap();
        let (_, creds) = split_credentials(&url, &opts(Some("u"), Some("p"))).unwrap();
        let c = creds.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let (_, none) =
            split_credentials(&Url::parse("rtsp://cam/live").unwrap(), &opts(None, None)).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn time_goes_on_across_sessions() {
        let mut t = Timeline::default();
        t.new_session();
        assert_eq!(t.time(0.0), 0.0);
        assert_eq!(t.time(0.04), 0.04);
        assert_eq!(t.time(0.08), 0.08);
        // The camera restarts at once: its RTP time begins again.
        t.new_session();
        let a = t.time(0.0);
        assert!((a - 0.12).abs() < 1e-3, "{a}");
        let b = t.time(0.04);
        assert!((b - a - 0.04).abs() < 1e-9, "{b}");
        // An outage of 0.3 s shows in the time.
        std::thread::sleep(std::time::Duration::from_millis(300));
        t.new_session();
        let c = t.time(0.0);
        assert!(c >= b + 0.3 && c < b + 0.6, "{b} → {c}");
    }

    #[test]
    fn transport_names() {
        assert_eq!("udp".parse::<RtspTransport>(), Ok(RtspTransport::Udp));
        assert_eq!(RtspTransport::default().to_string(), "auto");
        assert_eq!("auto".parse::<RtspTransport>(), Ok(RtspTransport::Auto));
        assert!("http".parse::<RtspTransport>().is_err());
    }
}
