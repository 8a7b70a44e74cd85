//! The output engine of `transcode` and `hls`: H.264 in is copied into the
//! muxer as it is, and H.265 too when the output is HLS (fMP4 with `hvc1`);
//! anything else, or when the output must change (`--fps`, `--size`,
//! `--bitrate`), is decoded and encoded with libx264.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ffmpeg::{codec, media, Rational};
use ffmpeg_next as ffmpeg;

use super::decode::{self, DecodeSettings};
use super::encode::{self, EncodeSettings, EncoderSpec, Pacer};
use super::input::{self, InputSource};
use super::mux::{self, MuxSummary, Target, VideoMuxer};
use super::remux::DtsMaker;
use super::rotation::DisplayMatrix;
use super::{Fed, PipelineError};
use crate::packet::{Items, Limits};
use crate::packet::{VideoCodec, VideoPacket};

/// Everything about the output but the source.
#[derive(Debug, Clone)]
pub struct OutputJob {
    /// Where the stream is written.
    pub target: Target,
    /// How pictures are encoded when the video cannot be copied.
    pub encode: EncodeSettings,
    /// Re-encode even H.264 (the user asked for a change).
    pub force_encode: bool,
    /// Output frame rate limit (forces encoding).
    pub fps: Option<f64>,
    /// Stop after this many seconds of stream time.
    pub duration: Option<f64>,
    /// Pace a file at its own rate.
    pub realtime: bool,
}

/// How an output run went, for the closing line.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutputSummary {
    /// What the muxer wrote.
    pub mux: MuxSummary,
    /// Stream copy (no re-encoding).
    pub copied: bool,
    /// The input has audio, which these outputs leave out.
    pub audio_left_out: bool,
    /// The video copied is H.265 (else H.264).
    pub h265: bool,
    /// Why the video was encoded when the user asked for no change, e.g.
    /// "FLV cannot carry H.265".
    pub encoded_because: Option<&'static str>,
}

/// Time base of the copy paths' timestamps before the muxer rescales them.
const TB: Rational = Rational(1, 90_000);

/// Writes `fed`'s video to `job.target`: copied when it is H.264 every
/// player decodes and nothing asks for a change, else decoded and encoded
/// to H.264. Returns when the source ends, `job.duration` is reached or
/// `stop` is set; `on_frame` hears the running totals after each packet
/// written, `bytes_read` counts what a file or stream input reads.
pub fn run(
    fed: Fed,
    job: &OutputJob,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
    on_frame: &mut (dyn FnMut(&MuxSummary) + Send),
) -> Result<OutputSummary, PipelineError> {
    let settings = DecodeSettings {
        limits: Limits {
            max_frames: None,
            duration: job.duration,
            fps: job.fps,
        },
        ..DecodeSettings::default()
    };
    let pacer = || job.realtime.then(|| Pacer::new(stop.clone()));
    match fed {
        Fed::Jpegs(jpegs) => {
            let out = EncoderSpec {
                settings: job.encode.clone(),
                target: &job.target,
                stop: stop.clone(),
                pacer: pacer(),
                on_frame,
            };
            encoded(encode::overlapped(out, |p| {
                decode::run_jpegs(jpegs, &settings, stop.clone(), p)
            }))
        }
        Fed::Packets(mut packets) => {
            // The first picture's parameters say whether a copy would play.
            let mut failure = None;
            let first = loop {
                match super::next_item(&mut packets, &stop, &mut failure) {
                    Some(p) if p.params.is_some() => break Some(p),
                    Some(_) => continue,
                    None => break None,
                }
            };
            if let Some(f) = failure {
                return Err(f);
            }
            let codec = first.as_ref().and_then(|p| p.params.as_ref()).map(|p| {
                let profile = p.extradata.get(1).copied().map(i32::from);
                (super::codec_id(p.codec), profile)
            });
            let copy = codec.map_or(Ok(false), |(id, profile)| {
                copy_plays(&job.target, id, profile, None)
            });
            if copy == Ok(true) && !job.force_encode {
                return copy_packets(packets, first, job, &stop, on_frame);
            }
            let because = copy.err();
            let out = EncoderSpec {
                settings: job.encode.clone(),
                target: &job.target,
                stop: stop.clone(),
                pacer: pacer(),
                on_frame,
            };
            encoded(encode::overlapped(out, |p| {
                decode::run_packets(packets, first, &settings, stop.clone(), p)
            }))
            .map(|s| OutputSummary {
                encoded_because: because.filter(|_| !job.force_encode),
                ..s
            })
        }
        Fed::Input(src) => {
            let explain = |e: PipelineError| match &src {
                InputSource::Chunks(feed) => feed.error().map(PipelineError::Source).unwrap_or(e),
                _ => e,
            };
            let ictx = input::open(&src, stop.clone(), bytes_read.clone())
                .map_err(|e| explain(PipelineError::Open(e.to_string())))?;
            let video = ictx
                .streams()
                .best(media::Type::Video)
                .ok_or(PipelineError::NoVideo)?;
            let rate = video.avg_frame_rate();
            let has_audio = ictx.streams().best(media::Type::Audio).is_some();
            let with_audio = |mut s: OutputSummary| {
                s.audio_left_out = has_audio;
                s
            };
            let copy = copyable(&job.target, &ictx, &video.parameters());
            if copy == Ok(true) && !job.force_encode {
                return copy_input(&src, ictx, job, &stop, &bytes_read, on_frame)
                    .map(with_audio)
                    .map_err(explain);
            }
            let because = copy.err().filter(|_| !job.force_encode);
            let mut encode = job.encode.clone();
            if rate.numerator() > 0 && rate.denominator() > 0 {
                // --fps only lowers the rate.
                let r = f64::from(rate);
                encode.frame_rate = Some(encode.frame_rate.map_or(r, |f| f.min(r)));
            }
            let out = EncoderSpec {
                settings: encode,
                target: &job.target,
                stop: stop.clone(),
                pacer: pacer(),
                on_frame,
            };
            encoded(encode::overlapped(out, |p| {
                decode::run(src, Some(ictx), &settings, stop.clone(), bytes_read, p)
            }))
            .map(with_audio)
            .map(|s| OutputSummary {
                encoded_because: because,
                ..s
            })
        }
    }
}

/// A copy into FLV loses a display matrix (FLV has no place for it), and
/// the picture then plays as stored: said once, with the way out. A copy
/// stays a copy (lossless, and fast); re-encoding turns it upright.
fn warn_if_sideways(target: &Target, matrix: Option<DisplayMatrix>) {
    let Some(angle) = matrix
        .filter(|_| !target.keeps_display_matrix())
        .and_then(|m| m.rotation())
    else {
        return;
    };
    if angle.abs() >= 1.0 {
        log::warn!(
            "warning: the video is rotated {angle:.0}° clockwise for display, which FLV cannot \
             record: players will show it as stored; --bitrate or --size re-encodes it upright"
        );
    }
}

/// Whether the video copied as it is plays where `target` goes
/// ([`copy_plays`]), with timestamps to time it; `Err` says why a copy is
/// impossible where the user might expect one.
fn copyable(
    target: &Target,
    ictx: &ffmpeg::format::context::Input,
    par: &codec::Parameters,
) -> Result<bool, &'static str> {
    // SAFETY: plain reads of the stream's own parameters.
    let (profile, format, delay) = unsafe {
        let p = par.as_ptr();
        ((*p).profile, (*p).format, (*p).video_delay)
    };
    // A raw H.264 or H.265 stream has no timestamps: with B-frames, a copy
    // cannot be timed (presentation order is in the slices); decoding
    // orders the pictures.
    let untimed = matches!(ictx.format().name(), "h264" | "hevc");
    Ok(copy_plays(target, par.id(), Some(profile), Some(format))? && !(untimed && delay > 0))
}

/// Whether video of this codec, profile and pixel format (when known)
/// plays copied into `target`: H.264 every player decodes, anywhere; H.265
/// 4:2:0 only in HLS, whose fMP4 carries it as `hvc1` (FFmpeg 5.1's FLV has
/// no H.265, so there it is `Err`, the reason it is encoded).
fn copy_plays(
    target: &Target,
    id: codec::Id,
    profile: Option<i32>,
    format: Option<i32>,
) -> Result<bool, &'static str> {
    use ffmpeg::ffi::AVPixelFormat::*;
    match id {
        codec::Id::H264 => Ok(plays_everywhere(profile, format)),
        codec::Id::HEVC => match target {
            Target::Hls(_) => Ok(format.is_none_or(|f| {
                f < 0 || f == AV_PIX_FMT_YUV420P as i32 || f == AV_PIX_FMT_YUV420P10LE as i32
            })),
            Target::Stream {
                container: mux::Container::Flv,
                ..
            } => Err("FLV cannot carry H.265"),
            Target::Stream { .. } => Ok(false),
        },
        _ => Ok(false),
    }
}

/// H.264 profiles (and pixel formats, when known) every player decodes.
fn plays_everywhere(profile: Option<i32>, format: Option<i32>) -> bool {
    use ffmpeg::ffi::AVPixelFormat::*;
    // profile_idc, constraint flags aside: Baseline 66, Main 77, Extended
    // 88, High 100; unknown (-99 in libav) is let through, the pixel format
    // decides then.
    let profile_ok = match profile {
        Some(p) => p < 0 || matches!(p & 0xff, 66 | 77 | 88 | 100),
        None => true,
    };
    let format_ok = match format {
        Some(f) => f < 0 || f == AV_PIX_FMT_YUV420P as i32 || f == AV_PIX_FMT_YUVJ420P as i32,
        None => true,
    };
    profile_ok && format_ok
}

/// The result of a decode into the encoder: the decode's error first, then
/// the output's.
fn encoded(
    (decoded, finished): (
        Result<decode::DecodeSummary, PipelineError>,
        Result<MuxSummary, PipelineError>,
    ),
) -> Result<OutputSummary, PipelineError> {
    decoded?;
    Ok(OutputSummary {
        mux: finished?,
        copied: false,
        audio_left_out: false,
        h265: false,
        encoded_because: None,
    })
}

/// Stream copy of H.264 that libavformat demuxes (files, stdin, fMP4 from
/// a WebSocket). A network stream's new init segment starts a new demuxer;
/// the copy goes on if its parameters are the same ones, on one clock.
fn copy_input(
    src: &InputSource,
    mut ictx: ffmpeg::format::context::Input,
    job: &OutputJob,
    stop: &Arc<AtomicBool>,
    bytes_read: &Arc<AtomicU64>,
    on_frame: &mut dyn FnMut(&MuxSummary),
) -> Result<OutputSummary, PipelineError> {
    let mut pacer = job.realtime.then(|| Pacer::new(stop.clone()));
    let mut mux: Option<(VideoMuxer, Vec<u8>)> = None;
    let mut h265 = false;
    // Stream time: where this session starts on the output's clock.
    let mut offset = 0.0f64;
    let mut last_t: Option<f64> = None;
    let mut step = 0.04f64;
    let mut failure = None;
    'sessions: loop {
        let Some(ist) = ictx.streams().best(media::Type::Video) else {
            return Err(PipelineError::NoVideo);
        };
        let index = ist.index();
        let tb = ist.time_base();
        let par = ist.parameters();
        if copyable(&job.target, &ictx, &par) != Ok(true) {
            failure = Some(PipelineError::Output(
                "the stream changed its codec or format; a stream copy cannot follow \
                 (--bitrate re-encodes)"
                    .into(),
            ));
            break;
        }
        let extradata = extradata_of(&par);
        h265 = par.id() == codec::Id::HEVC;
        let rate = ist.avg_frame_rate();
        let rate_ok = rate.numerator() > 0 && rate.denominator() > 0;
        if rate_ok {
            step = 1.0 / f64::from(rate);
        }
        match &mux {
            None => {
                let matrix = DisplayMatrix::of_stream(&ist);
                warn_if_sideways(&job.target, matrix);
                let rate = rate_ok.then_some(rate);
                let m = VideoMuxer::open_rotated(&job.target, &par, TB, rate, matrix, stop)?;
                mux = Some((m, extradata));
            }
            Some((_, first)) if *first != extradata => {
                let name = if par.id() == codec::Id::HEVC {
                    "H.265"
                } else {
                    "H.264"
                };
                failure = Some(PipelineError::Output(format!(
                    "the stream's {name} parameters changed; a stream copy cannot follow them \
                     (--bitrate re-encodes)"
                )));
                break;
            }
            Some(_) => {}
        }
        let Some((m, _)) = mux.as_mut() else { break };
        let mut first: Option<i64> = None;
        let mut first_pts: Option<i64> = None;
        let mut next_dts = 0i64;
        let mut pkt = ffmpeg::Packet::empty();
        let count_bytes = matches!(src, InputSource::Path(_));
        // Raw .h264 has no timestamps: one frame per packet, as the ffmpeg
        // CLI counts them.
        let tick = if rate_ok && tb.numerator() > 0 {
            ((f64::from(rate.invert()) / f64::from(tb)).round() as i64).max(1)
        } else {
            1
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'sessions;
            }
            match input::read_packet(&mut ictx, &mut pkt) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Exit) => break 'sessions,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(e) => {
                    failure = Some(PipelineError::Read(e.to_string()));
                    break 'sessions;
                }
            }
            if count_bytes {
                bytes_read.fetch_add(pkt.size() as u64, Ordering::Relaxed);
            }
            if pkt.stream() != index || input::cut_off(src, &pkt) {
                continue;
            }
            if pkt.dts().is_none() && pkt.pts().is_none() {
                pkt.set_dts(Some(next_dts));
                pkt.set_pts(Some(next_dts));
            }
            if pkt.duration() <= 0 {
                pkt.set_duration(tick);
            }
            next_dts = pkt.dts().or(pkt.pts()).unwrap_or(next_dts) + pkt.duration();
            let Some(ts) = pkt.pts().or(pkt.dts()) else {
                continue;
            };
            // A copy starts at a keyframe: what comes before one cannot be
            // decoded (a stream joined in the middle, a cut file).
            if first.is_none() && !pkt.is_key() {
                continue;
            }
            let f = *first.get_or_insert(pkt.dts().unwrap_or(ts));
            let secs = |v: i64| offset + (v - f) as f64 * f64::from(tb);
            let t = secs(ts);
            // --duration counts presentation time from the first picture.
            let shown = offset + (ts - *first_pts.get_or_insert(ts)) as f64 * f64::from(tb);
            if job.duration.is_some_and(|d| shown >= d) {
                break 'sessions;
            }
            if let Some(p) = pacer.as_mut() {
                p.wait(t);
            }
            last_t = Some(last_t.map_or(t, |l: f64| l.max(t)));
            let to_tb = |v: i64| (secs(v) / f64::from(TB)).round() as i64;
            pkt.set_pts(pkt.pts().map(to_tb));
            pkt.set_dts(pkt.dts().map(to_tb));
            pkt.set_duration(
                (pkt.duration() as f64 * f64::from(tb) / f64::from(TB)).round() as i64,
            );
            if let Err(e) = m.write(&mut pkt, TB) {
                failure = Some(e);
                break 'sessions;
            }
            on_frame(&m.summary);
        }
        match src {
            InputSource::Chunks(feed) if feed.next_session() => {
                offset = last_t.map_or(offset, |l| l + step);
                ictx = input::open(src, stop.clone(), bytes_read.clone())
                    .map_err(|e| PipelineError::Open(e.to_string()))?;
            }
            _ => break,
        }
    }
    if let InputSource::Chunks(feed) = src {
        feed.close();
        if failure.is_none() {
            failure = feed.error().map(PipelineError::Source);
        }
    }
    let Some((m, _)) = mux else {
        return Err(failure.unwrap_or(PipelineError::NoVideo));
    };
    copied(m, h265, failure)
}

/// Finishes a stream copy's output; the error that stopped it first.
fn copied(
    m: VideoMuxer,
    h265: bool,
    failure: Option<PipelineError>,
) -> Result<OutputSummary, PipelineError> {
    let finished = m.finish();
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(OutputSummary {
        mux: finished?,
        copied: true,
        audio_left_out: false,
        h265,
        encoded_because: None,
    })
}

fn extradata_of(par: &codec::Parameters) -> Vec<u8> {
    // SAFETY: reads the parameters' own extradata buffer of the size they
    // give.
    unsafe {
        let p = par.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec()
    }
}

/// Stream copy of coded packets from a receiver (RTSP H.264): from the
/// first IDR on, decode times made up as `record` does (RTP has none).
fn copy_packets(
    mut rx: Items<VideoPacket>,
    first: Option<VideoPacket>,
    job: &OutputJob,
    stop: &Arc<AtomicBool>,
    on_frame: &mut dyn FnMut(&MuxSummary),
) -> Result<OutputSummary, PipelineError> {
    let mut mux: Option<(VideoMuxer, (u32, u32))> = None;
    let mut params = None;
    let mut first_pts = None;
    let mut dts = DtsMaker::default();
    let mut failure = None;
    let ticks = |t: f64| (t / f64::from(TB)).round() as i64;
    let write = |m: &mut VideoMuxer, p: &VideoPacket, pts: i64, dts: i64| {
        let mut pkt = ffmpeg::Packet::copy(&p.data);
        pkt.set_pts(Some(pts));
        pkt.set_dts(Some(dts));
        if p.key {
            pkt.set_flags(ffmpeg::packet::Flags::KEY);
        }
        m.write(&mut pkt, TB)
    };
    let mut first = first;
    while let Some(pkt) = first
        .take()
        .or_else(|| super::next_item(&mut rx, stop, &mut failure))
    {
        if let Some(p) = &pkt.params {
            params = Some(p.clone());
        }
        let Some(current) = params.clone() else {
            continue;
        };
        if mux.is_none() {
            if !pkt.key {
                continue;
            }
            let par = mux::params_of(&current)?;
            let m = VideoMuxer::open(&job.target, &par, TB, None, stop)?;
            mux = Some((m, (current.width, current.height)));
        }
        let Some((m, size)) = mux.as_mut() else {
            continue;
        };
        if *size != (current.width, current.height) {
            failure = Some(PipelineError::Output(format!(
                "the camera changed its picture size from {}x{} to {}x{}; a stream copy ends there \
                 (--size re-encodes to one size)",
                size.0, size.1, current.width, current.height
            )));
            break;
        }
        let t = pkt.pts - *first_pts.get_or_insert(pkt.pts);
        if job.duration.is_some_and(|d| t >= d) {
            break;
        }
        if let Some((p, pts, d)) = dts.push(pkt, ticks(t)) {
            if let Err(e) = write(m, &p, pts, d) {
                failure = Some(e);
                break;
            }
            on_frame(&m.summary);
        }
    }
    rx.close();
    let Some((mut m, _)) = mux else {
        return Err(failure.unwrap_or_else(|| {
            PipelineError::Output("the stream ended before any picture arrived".into())
        }));
    };
    if !matches!(failure, Some(PipelineError::Output(_))) {
        while let Some((p, pts, d)) = dts.pop() {
            if let Err(e) = write(&mut m, &p, pts, d) {
                failure = Some(e);
                break;
            }
            on_frame(&m.summary);
        }
    }
    let h265 = params.is_some_and(|p| p.codec == VideoCodec::H265);
    copied(m, h265, failure)
}
