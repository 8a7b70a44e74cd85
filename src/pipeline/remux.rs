//! Stream copy of a file or stdin into MP4 with libavformat (no
//! re-encoding): the video and every audio stream MP4 can hold, timestamps
//! rescaled (and made up, like the ffmpeg CLI does, for raw streams that
//! carry none), codec tags left to the muxer. The output is fragmented at
//! keyframes, so a recording cut short by a fault or a full disk still
//! plays up to its last whole fragment. Network sources that already
//! deliver fMP4 are recorded as received instead (`sink::fmp4_file`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ffmpeg::{codec, encoder, media, Rational};
use ffmpeg_next as ffmpeg;

use tokio::sync::mpsc;

use super::input::{self, InputSource};
use super::PipelineError;
use crate::proto::jpeg;
use crate::source::{JpegClock, JpegFrame, SourceError};

#[derive(Debug, Default, Clone, Copy)]
pub struct RemuxSummary {
    pub packets: u64,
    pub video_frames: u64,
    pub seconds: f64,
    /// The video had no timestamps and uses frame reordering (B-frames):
    /// the copy is timed in decode order, as the ffmpeg CLI would do it.
    pub untimed_reordered_video: bool,
    /// The muxer refused the audio when writing the header; the copy holds
    /// the video only.
    pub audio_dropped: bool,
}

pub fn run(
    src: &InputSource,
    out_path: &Path,
    duration: Option<f64>,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
) -> Result<RemuxSummary, PipelineError> {
    let mut ictx = input::open(src, stop.clone(), bytes_read.clone())
        .map_err(|e| PipelineError::Open(e.to_string()))?;
    let video = ictx
        .streams()
        .best(media::Type::Video)
        .map(|s| s.index())
        .ok_or(PipelineError::NoVideo)?;

    let out_err = |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", out_path.display()));
    // What was at the output path is never removed: only a regular file
    // this run created, when it could not even get a header.
    let existed = out_path.exists();
    let discard = |e: PipelineError| {
        if !existed && out_path.is_file() {
            let _ = std::fs::remove_file(out_path);
        }
        e
    };

    let streams = ictx.nb_streams() as usize;
    let mut in_tb: Vec<Rational> = vec![Rational::new(0, 1); streams];
    // For packets without timestamps: the next dts, and one frame's length.
    let mut next_dts: Vec<i64> = vec![0; streams];
    let mut tick: Vec<i64> = vec![1; streams];
    let video_delay = ictx
        .stream(video)
        // SAFETY: a plain read of the stream's own parameters.
        .map(|s| unsafe { (*s.parameters().as_ptr()).video_delay })
        .unwrap_or(0);
    // The streams to copy, decided before the output is opened: the video,
    // and each audio stream MP4 can carry (G.711, for one, it cannot).
    let mut keep = Vec::new();
    for ist in ictx.streams() {
        let kind = ist.parameters().medium();
        in_tb[ist.index()] = ist.time_base();
        if kind != media::Type::Video && kind != media::Type::Audio {
            continue;
        }
        let id = ist.parameters().id();
        if !mp4_can_hold(id) {
            if ist.index() == video {
                return Err(PipelineError::Output(format!(
                    "MP4 cannot hold {} video",
                    id.name()
                )));
            }
            continue;
        }
        if kind == media::Type::Video && ist.index() != video {
            continue;
        }
        let rate = ist.avg_frame_rate();
        if ist.time_base().numerator() > 0 && rate.numerator() > 0 && rate.denominator() > 0 {
            let t = f64::from(rate.invert()) / f64::from(ist.time_base());
            tick[ist.index()] = (t.round() as i64).max(1);
        }
        keep.push(ist.index());
    }
    let mut summary = RemuxSummary::default();
    let (mut octx, map) = match open_output(&ictx, out_path, &keep) {
        Ok(o) => o,
        // The muxer refuses some audio only when writing the header (MP3 at
        // 8 kHz, say): the video matters more, so go on without the audio.
        Err(_) if keep.len() > 1 => {
            summary.audio_dropped = true;
            open_output(&ictx, out_path, &[video]).map_err(|e| discard(out_err(e)))?
        }
        Err(e) => return Err(discard(out_err(e))),
    };
    // Time bases are only final after the header is written.
    let out_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();

    let mut first: Option<f64> = None;
    let mut pkt = ffmpeg::Packet::empty();
    let mut failure = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) | Err(ffmpeg::Error::Exit) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => {
                failure = Some(PipelineError::Read(e.to_string()));
                break;
            }
        }
        let i = pkt.stream();
        let Some(Some(o)) = map.get(i).copied() else {
            continue;
        };
        if matches!(src, InputSource::Path(_)) {
            bytes_read.fetch_add(pkt.size() as u64, Ordering::Relaxed);
        }
        // Raw streams (an .h264 dump) come without timestamps: count them
        // on, one frame per packet, as the ffmpeg CLI does.
        // (A pts without a dts, as Matroska gives, is completed by the muxer
        // from the codec's reorder delay.)
        if pkt.dts().is_none() && pkt.pts().is_none() {
            pkt.set_dts(Some(next_dts[i]));
            pkt.set_pts(Some(next_dts[i]));
            if i == video && video_delay > 0 {
                summary.untimed_reordered_video = true;
            }
        }
        if pkt.duration() <= 0 {
            pkt.set_duration(tick[i]);
        }
        next_dts[i] = pkt.dts().or(pkt.pts()).unwrap_or(next_dts[i]) + pkt.duration();
        if i == video {
            if let Some(ts) = pkt.pts().or(pkt.dts()) {
                let t = ts as f64 * f64::from(in_tb[i]);
                let f = *first.get_or_insert(t);
                if duration.is_some_and(|d| t - f >= d) {
                    break;
                }
                summary.seconds = summary.seconds.max(t - f);
            }
            summary.video_frames += 1;
        }
        pkt.rescale_ts(in_tb[i], out_tb[o]);
        pkt.set_stream(o);
        pkt.set_position(-1);
        if let Err(e) = pkt.write_interleaved(&mut octx) {
            failure = Some(out_err(e));
            break;
        }
        summary.packets += 1;
    }
    // Always finish the file: what was copied before a fault stays playable.
    let trailer = octx.write_trailer();
    if let Some(f) = failure {
        return Err(f);
    }
    trailer.map_err(out_err)?;
    Ok(summary)
}

/// Whether the mp4 muxer knows a tag for this codec.
fn mp4_can_hold(id: codec::Id) -> bool {
    // SAFETY: both calls read libavformat's static tables.
    unsafe {
        let fmt = ffmpeg::ffi::av_guess_format(c"mp4".as_ptr(), std::ptr::null(), std::ptr::null());
        !fmt.is_null()
            && ffmpeg::ffi::avformat_query_codec(fmt, id.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL)
                == 1
    }
}

/// Opens the MP4 output with copies of the `keep` streams and writes its
/// header (fragmented at keyframes). Returns the input → output stream map.
fn open_output(
    ictx: &ffmpeg::format::context::Input,
    out_path: &Path,
    keep: &[usize],
) -> Result<(ffmpeg::format::context::Output, Vec<Option<usize>>), ffmpeg::Error> {
    let mut octx = ffmpeg::format::output_as(out_path, "mp4")?;
    let mut map = vec![None; ictx.nb_streams() as usize];
    for (n, &i) in keep.iter().enumerate() {
        let Some(ist) = ictx.stream(i) else { continue };
        let mut ost = octx.add_stream(encoder::find(codec::Id::None))?;
        ost.set_parameters(ist.parameters());
        // SAFETY: a plain field write; tags from another container can be
        // invalid in MP4, and 0 lets the muxer choose.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        if let Some(slot) = map.get_mut(i) {
            *slot = Some(n);
        }
    }
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
    octx.write_header_with(opts)?;
    Ok((octx, map))
}

/// Records whole JPEGs from an MJPEG receiver into MP4 as they are (codec
/// mjpeg), timed by arrival, fragmented at every frame so a recording cut
/// short still plays. Each packet is written when the next one arrives, so
/// that it carries its real duration.
pub fn record_jpegs(
    mut rx: mpsc::Receiver<Result<JpegFrame, SourceError>>,
    out_path: &Path,
    duration: Option<f64>,
    stop: Arc<AtomicBool>,
) -> Result<RemuxSummary, PipelineError> {
    let out_err = |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", out_path.display()));
    let mut summary = RemuxSummary::default();
    // Microseconds since the first frame arrived.
    let in_tb = Rational::new(1, 1_000_000);
    let mut clock = JpegClock::default();
    let mut octx: Option<(ffmpeg::format::context::Output, Rational)> = None;
    let mut pending: Option<(ffmpeg::Packet, i64)> = None;
    let mut failure = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let jpeg = match rx.blocking_recv() {
            None => break,
            Some(Err(e)) => {
                failure = Some(PipelineError::Source(e));
                break;
            }
            Some(Ok(j)) => j,
        };
        let t = clock.time(&jpeg);
        if duration.is_some_and(|d| t >= d) {
            break;
        }
        if octx.is_none() {
            // The first picture's frame header gives the stream its size.
            let Some((w, h)) = jpeg::dimensions(&jpeg.data) else {
                continue;
            };
            octx = Some(open_mjpeg_output(out_path, w, h).map_err(out_err)?);
        }
        let Some((out, out_tb)) = octx.as_mut() else {
            continue;
        };
        let pts = (t * 1e6).round() as i64;
        if let Some((mut prev, prev_pts)) = pending.take() {
            prev.set_duration((pts - prev_pts).max(1));
            prev.rescale_ts(in_tb, *out_tb);
            if let Err(e) = prev.write_interleaved(out) {
                failure = Some(out_err(e));
                break;
            }
        }
        let mut pkt = ffmpeg::Packet::copy(&jpeg.data);
        pkt.set_pts(Some(pts));
        pkt.set_dts(Some(pts));
        pkt.set_stream(0);
        pkt.set_flags(ffmpeg::packet::Flags::KEY);
        pending = Some((pkt, pts));
        summary.video_frames += 1;
        summary.seconds = t;
    }
    rx.close();
    let Some((mut out, out_tb)) = octx else {
        return Err(failure.unwrap_or_else(|| {
            PipelineError::Output("the stream ended before any picture arrived".into())
        }));
    };
    // The last picture lasts as long as the one before it did, on average.
    if let Some((mut last, _)) = pending.take() {
        let n = summary.video_frames.max(2) - 1;
        let avg = ((summary.seconds * 1e6) / n as f64).round() as i64;
        last.set_duration(avg.max(1));
        last.rescale_ts(in_tb, out_tb);
        if let Err(e) = last.write_interleaved(&mut out) {
            failure.get_or_insert(out_err(e));
        }
    }
    let trailer = out.write_trailer();
    if let Some(f) = failure {
        return Err(f);
    }
    trailer.map_err(out_err)?;
    Ok(summary)
}

fn open_mjpeg_output(
    out_path: &Path,
    width: u16,
    height: u16,
) -> Result<(ffmpeg::format::context::Output, Rational), ffmpeg::Error> {
    let mut octx = ffmpeg::format::output_as(out_path, "mp4")?;
    {
        let mut ost = octx.add_stream(encoder::find(codec::Id::None))?;
        ost.set_time_base(Rational::new(1, 90_000));
        // SAFETY: plain field writes on the new stream's own parameters.
        unsafe {
            let par = ost.parameters().as_mut_ptr();
            (*par).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*par).codec_id = ffmpeg::ffi::AVCodecID::AV_CODEC_ID_MJPEG;
            (*par).codec_tag = 0;
            (*par).width = i32::from(width);
            (*par).height = i32::from(height);
        }
    }
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
    octx.write_header_with(opts)?;
    let tb = octx
        .stream(0)
        .map(|s| s.time_base())
        .unwrap_or(Rational::new(1, 90_000));
    Ok((octx, tb))
}
