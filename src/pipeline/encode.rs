//! Decoded pictures → H.264 (libx264 through libavcodec) → a muxer: the
//! encoding half of `transcode` and `hls`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video;
use ffmpeg::{codec, encoder, Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use super::decode::{PictureInfo, Pictures};
use super::mux::{GapCloser, MuxSummary, Target, VideoMuxer};
use super::rotation::{DisplayMatrix, Turn};
use super::PipelineError;

/// How pictures are encoded.
#[derive(Debug, Clone)]
pub struct EncodeSettings {
    /// Output size; `None`: the input's (rounded down to even numbers,
    /// which 4:2:0 H.264 needs).
    pub size: Option<(u32, u32)>,
    /// Target bits per second (with a VBV of twice that); `None`: x264's
    /// constant-quality default (CRF 23).
    pub bitrate: Option<u64>,
    /// A keyframe at least this often, in stream time.
    pub gop_seconds: f64,
    /// libx264 preset.
    pub preset: String,
    /// `tune=zerolatency` (live sources: no B-frames, no lookahead delay).
    pub zerolatency: bool,
    /// The output frame rate if known (`--fps`, or the input's), for x264's
    /// rate control; cameras that do not say get 25.
    pub frame_rate: Option<f64>,
}

/// Time base of the encoder and of the packets it hands the muxer.
const TIME_BASE: Rational = Rational(1, 90_000);

/// Holds output time to wall-clock time (`--realtime`, as `ffmpeg -re`):
/// a picture at stream time t goes out no earlier than t after the first.
pub struct Pacer {
    start: Option<(Instant, f64)>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    /// A pacer whose clock starts with the first picture; it stops waiting
    /// once `stop` is set.
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Pacer { start: None, stop }
    }

    /// Waits until stream time `t` is due (or Ctrl-C).
    pub fn wait(&mut self, t: f64) {
        let (at, t0) = *self.start.get_or_insert((Instant::now(), t));
        let due = at + Duration::from_secs_f64((t - t0).clamp(0.0, 86_400.0));
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}

struct Open {
    enc: encoder::Video,
    /// The encoder's pixel format and size.
    fmt: Pixel,
    width: u32,
    height: u32,
    mux: VideoMuxer,
    /// For pictures not already in the encoder's format and size.
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    scaled: Video,
    packet: ffmpeg::Packet,
    /// How pictures are turned upright before encoding: for outputs that
    /// cannot carry a display matrix (FLV), as the ffmpeg CLI's autorotate
    /// turns them. Identity otherwise.
    turn: Turn,
    /// To 4:2:0 at the stored size, for pictures to be turned in another
    /// format or of an odd size.
    to_420: Option<(scaling::Context, Pixel, u32, u32)>,
}

/// A [`Pictures`] consumer that encodes to H.264 and writes to `target`.
/// The encoder and the output open with the first picture (its size).
pub struct H264Out<'a> {
    settings: EncodeSettings,
    target: &'a Target,
    stop: Arc<AtomicBool>,
    open: Option<Open>,
    pacer: Option<Pacer>,
    on_frame: &'a mut (dyn FnMut(&MuxSummary) + Send),
    next_key: f64,
    last_pts: Option<i64>,
    smoother: Smoother,
    /// HLS: pauses are cut out before keyframes are placed, so that the
    /// keyframe grid, and with it the segments, keep their length.
    gaps: Option<GapCloser>,
    failure: Option<PipelineError>,
}

/// Evens out pictures that came in a burst. A camera without timestamps
/// is timed by arrival, and a reader that was held up reads several
/// pictures at once: they would get nearly the same time, which players
/// and the ffmpeg CLI take for a broken stream. A picture goes out at
/// least 0.9 of the usual interval (the median of the last 15) after the
/// one before; later pictures, arriving on time, take back the delay.
/// (`record` of such a camera evens its times the same way.)
#[derive(Default)]
pub(crate) struct Smoother {
    intervals: Intervals,
    last_in: Option<f64>,
    last_out: Option<f64>,
}

impl Smoother {
    pub(crate) fn time(&mut self, t: f64) -> f64 {
        if let Some(d) = self.last_in.map(|l| t - l) {
            self.intervals.push(d);
        }
        self.last_in = Some(t);
        let out = match (self.last_out, self.intervals.median()) {
            (Some(last), Some(median)) => t.max(last + 0.9 * median),
            _ => t,
        };
        self.last_out = Some(out);
        out
    }
}

/// The usual gap between pictures: the median of the last 15 (positive)
/// intervals, once there are 5.
#[derive(Default)]
pub(crate) struct Intervals(std::collections::VecDeque<f64>);

impl Intervals {
    pub(crate) fn push(&mut self, d: f64) {
        if d > 0.0 {
            if self.0.len() == 15 {
                self.0.pop_front();
            }
            self.0.push_back(d);
        }
    }

    pub(crate) fn median(&self) -> Option<f64> {
        if self.0.len() < 5 {
            return None;
        }
        let mut sorted: Vec<f64> = self.0.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }
}

impl<'a> H264Out<'a> {
    /// An output that opens nothing yet (the first picture gives the size);
    /// `on_frame` hears the running totals after each packet written.
    pub fn new(
        settings: EncodeSettings,
        target: &'a Target,
        stop: Arc<AtomicBool>,
        pacer: Option<Pacer>,
        on_frame: &'a mut (dyn FnMut(&MuxSummary) + Send),
    ) -> Self {
        H264Out {
            settings,
            target,
            stop,
            open: None,
            pacer,
            on_frame,
            next_key: 0.0,
            last_pts: None,
            smoother: Smoother::default(),
            gaps: matches!(target, Target::Hls(_)).then(GapCloser::default),
            failure: None,
        }
    }

    /// Drains the encoder and finishes the output. The error that stopped
    /// the pictures (if any) comes first.
    pub fn finish(mut self) -> Result<MuxSummary, PipelineError> {
        let failure = self.failure.take();
        let Some(mut open) = self.open.take() else {
            return Err(failure.unwrap_or_else(|| {
                PipelineError::Output("the stream ended before any picture arrived".into())
            }));
        };
        if failure.is_none() {
            let _ = open.enc.send_eof();
            drain(&mut open, self.on_frame)?;
        }
        let removed = self.gaps.as_ref().map_or(0.0, GapCloser::removed);
        let summary = open.mux.finish().map(|mut s| {
            s.pauses_removed += removed;
            s
        });
        match failure {
            Some(f) => Err(f),
            None => summary,
        }
    }

    /// `matrix`: the pictures' display matrix, which the output keeps (they
    /// are encoded as stored).
    fn open(&mut self, frame: &Video, matrix: Option<DisplayMatrix>) -> Result<(), PipelineError> {
        // FLV has no place for the matrix: a player would show the picture
        // as stored (sideways, for a phone's portrait video), so it is
        // encoded upright, with the size that implies (`--size` is of the
        // upright picture, as the ffmpeg CLI's `-s` after autorotate).
        // A turn that is not a quarter turn is left as stored.
        let turn = matrix
            .filter(|_| !self.target.keeps_display_matrix())
            .and_then(|m| m.turn())
            .unwrap_or_default();
        let matrix = if turn.is_identity() { matrix } else { None };
        let (shown_w, shown_h) = turn.size(frame.width(), frame.height());
        let (width, height) = match self.settings.size {
            Some(s) => s,
            None => ((shown_w & !1).max(2), (shown_h & !1).max(2)),
        };
        // 4:2:0 as it comes (full-range JPEG pictures stay full range, as
        // the ffmpeg CLI keeps them); anything else is converted.
        let fmt = match frame.format() {
            f @ (Pixel::YUV420P | Pixel::YUVJ420P) => f,
            _ => Pixel::YUV420P,
        };
        let enc = x264(&self.settings, width, height, fmt)?;
        let par = codec::Parameters::from(&enc);
        let rate = self.settings.frame_rate.map(rational);
        let mux = VideoMuxer::open_rotated(self.target, &par, TIME_BASE, rate, matrix, &self.stop)?;
        self.open = Some(Open {
            enc,
            fmt,
            width,
            height,
            mux,
            scaler: None,
            scaled: Video::empty(),
            packet: ffmpeg::Packet::empty(),
            turn,
            to_420: None,
        });
        Ok(())
    }
}

impl Pictures for H264Out<'_> {
    fn picture(&mut self, frame: &mut Video, info: &PictureInfo) -> Result<bool, PipelineError> {
        if self.open.is_none() {
            self.open(frame, info.display_matrix)?;
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(false);
        };
        let mut turned = if open.turn.is_identity() {
            None
        } else {
            Some(upright(open, frame)?)
        };
        let frame = match turned.as_mut() {
            Some(t) => t,
            None => frame,
        };
        if let Some(p) = self.pacer.as_mut() {
            p.wait(info.t);
        }
        let t = match self.gaps.as_mut() {
            Some(g) => g.time(info.t),
            None => info.t,
        };
        let t = self.smoother.time(t);
        let mut pts = (t / f64::from(TIME_BASE)).round() as i64;
        if let Some(last) = self.last_pts {
            pts = pts.max(last + 1);
        }
        self.last_pts = Some(pts);
        // A keyframe every --gop-seconds of stream time, whatever the
        // camera's frame rate; the decoder's picture types are not the
        // encoder's business.
        let key = t + 1e-6 >= self.next_key;
        if key {
            self.next_key = t + self.settings.gop_seconds;
        }
        let kind = if key {
            ffmpeg::picture::Type::I
        } else {
            ffmpeg::picture::Type::None
        };
        let direct = frame.format() == open.fmt
            && frame.width() == open.width
            && frame.height() == open.height;
        let sent = if direct {
            frame.set_pts(Some(pts));
            frame.set_kind(kind);
            open.enc.send_frame(frame)
        } else {
            let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
            let rebuild =
                !matches!(&open.scaler, Some((_, f, sw, sh)) if *f == fmt && *sw == w && *sh == h);
            if rebuild {
                let sc = scaling::Context::get(
                    fmt,
                    w,
                    h,
                    open.fmt,
                    open.width,
                    open.height,
                    scaling::Flags::BILINEAR,
                )
                .map_err(|e| PipelineError::Decoder(format!("no converter from {fmt:?}: {e}")))?;
                open.scaler = Some((sc, fmt, w, h));
            }
            let Some((sc, ..)) = open.scaler.as_mut() else {
                return Ok(false);
            };
            sc.run(frame, &mut open.scaled)
                .map_err(|e| PipelineError::Decoder(format!("pixel conversion failed: {e}")))?;
            open.scaled.set_pts(Some(pts));
            open.scaled.set_kind(kind);
            open.enc.send_frame(&open.scaled)
        };
        sent.map_err(|e| PipelineError::Output(format!("libx264: {e}")))?;
        if let Err(e) = drain(open, self.on_frame) {
            self.failure = Some(e);
            return Ok(false);
        }
        Ok(true)
    }
}

/// `frame` turned by `open.turn`, as 4:2:0 (full-range JPEG pictures stay
/// full range): converted first at the stored size where it is in another
/// format or of an odd size, then each plane turned on its own (a 4:2:0
/// picture turned is 4:2:0 again, its chroma turned with it).
fn upright(open: &mut Open, frame: &Video) -> Result<Video, PipelineError> {
    let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
    let (ew, eh) = ((w & !1).max(2), (h & !1).max(2));
    let out_fmt = match fmt {
        Pixel::YUVJ420P => Pixel::YUVJ420P,
        _ => Pixel::YUV420P,
    };
    let mut converted = Video::empty();
    let stored = if fmt == out_fmt && w == ew && h == eh {
        frame
    } else {
        let rebuild =
            !matches!(&open.to_420, Some((_, f, sw, sh)) if *f == fmt && *sw == w && *sh == h);
        if rebuild {
            let sc = scaling::Context::get(fmt, w, h, out_fmt, ew, eh, scaling::Flags::BILINEAR)
                .map_err(|e| PipelineError::Decoder(format!("no converter from {fmt:?}: {e}")))?;
            open.to_420 = Some((sc, fmt, w, h));
        }
        let Some((sc, ..)) = open.to_420.as_mut() else {
            return Err(PipelineError::Decoder("no converter".into()));
        };
        sc.run(frame, &mut converted)
            .map_err(|e| PipelineError::Decoder(format!("pixel conversion failed: {e}")))?;
        &converted
    };
    let (ow, oh) = open.turn.size(ew, eh);
    let mut out = Video::new(out_fmt, ow, oh);
    for plane in 0..3 {
        // Luma at full size, chroma at half in each direction.
        let (pw, ph) = if plane == 0 {
            (ew, eh)
        } else {
            (ew / 2, eh / 2)
        };
        let (src_stride, dst_stride) = (stored.stride(plane), out.stride(plane));
        open.turn.apply_samples::<1>(
            stored.data(plane),
            src_stride,
            (pw as usize, ph as usize),
            out.data_mut(plane),
            dst_stride,
        );
    }
    // SAFETY: plain field copies between two live frames.
    unsafe {
        let (src, dst) = (stored.as_ptr(), out.as_mut_ptr());
        (*dst).color_range = (*src).color_range;
        (*dst).colorspace = (*src).colorspace;
        (*dst).color_primaries = (*src).color_primaries;
        (*dst).color_trc = (*src).color_trc;
    }
    Ok(out)
}

/// What [`overlapped`] builds its [`H264Out`] from, on the encoder thread.
pub struct EncoderSpec<'a> {
    /// How the pictures are encoded.
    pub settings: EncodeSettings,
    /// Where the encoded stream is written.
    pub target: &'a Target,
    /// Set at Ctrl-C: a push blocked on a stalled server gives up rather
    /// than wait out its timeout, and a pacer stops waiting.
    pub stop: Arc<AtomicBool>,
    /// Holds pictures to wall-clock time (`--realtime`); `None`: as fast as
    /// they come.
    pub pacer: Option<Pacer>,
    /// Hears the running totals after each packet written (the progress line).
    pub on_frame: &'a mut (dyn FnMut(&MuxSummary) + Send),
}

/// Runs `decode` with the encoder on a thread of its own, fed through a
/// channel of two pictures: the next picture decodes while this one
/// encodes (libx264's slice threads leave gaps a decoder can fill; the
/// ffmpeg CLI does one after the other). Returns the decode's result and
/// the output's.
pub fn overlapped<R>(
    spec: EncoderSpec<'_>,
    decode: impl FnOnce(&mut dyn Pictures) -> R,
) -> (R, Result<MuxSummary, PipelineError>) {
    let EncoderSpec {
        settings,
        target,
        stop,
        pacer,
        on_frame,
    } = spec;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Video, PictureInfo)>(2);
        let encoder = std::thread::Builder::new()
            .name("camflow-encode".into())
            .spawn_scoped(s, move || {
                // Made here: libav's scaler and codec contexts stay on the
                // thread that uses them.
                let mut out = H264Out::new(settings, target, stop, pacer, on_frame);
                for (mut frame, info) in rx {
                    match out.picture(&mut frame, &info) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            out.failure.get_or_insert(e);
                            break;
                        }
                    }
                }
                out.finish()
            });
        let encoder = match encoder {
            Ok(h) => h,
            Err(e) => {
                let e = PipelineError::Output(format!("cannot start the encoder thread: {e}"));
                let mut refuse = Refuse;
                return (decode(&mut refuse), Err(e));
            }
        };
        let mut feed = Feed { tx };
        let r = decode(&mut feed);
        drop(feed);
        let out = encoder.join().unwrap_or_else(|_| {
            Err(PipelineError::Output(
                "internal error: the encoder thread panicked".into(),
            ))
        });
        (r, out)
    })
}

/// The decode side of [`overlapped`]: a new reference to each picture goes
/// to the encoder thread.
struct Feed {
    tx: std::sync::mpsc::SyncSender<(Video, PictureInfo)>,
}

impl Pictures for Feed {
    fn picture(&mut self, frame: &mut Video, info: &PictureInfo) -> Result<bool, PipelineError> {
        // The encoder stopped on its own error: no more pictures.
        Ok(self.tx.send((frame.clone(), *info)).is_ok())
    }
}

/// Takes no pictures (the encoder thread could not start).
struct Refuse;

impl Pictures for Refuse {
    fn picture(&mut self, _: &mut Video, _: &PictureInfo) -> Result<bool, PipelineError> {
        Ok(false)
    }
}

/// Hands every packet the encoder has ready to the muxer.
fn drain(open: &mut Open, on_frame: &mut dyn FnMut(&MuxSummary)) -> Result<(), PipelineError> {
    while open.enc.receive_packet(&mut open.packet).is_ok() {
        open.mux.write(&mut open.packet, TIME_BASE)?;
        on_frame(&open.mux.summary);
    }
    Ok(())
}

fn rational(f: f64) -> Rational {
    // Whole rates stay exact; 29.97 and friends to a thousandth.
    if (f - f.round()).abs() < 1e-9 {
        Rational::new(f.round() as i32, 1)
    } else {
        Rational::new((f * 1000.0).round() as i32, 1000)
    }
}

/// Opens libx264 for pictures of this size and format.
fn x264(
    s: &EncodeSettings,
    width: u32,
    height: u32,
    fmt: Pixel,
) -> Result<encoder::Video, PipelineError> {
    let err = |what: &str, e: ffmpeg::Error| PipelineError::Output(format!("{what}: {e}"));
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| PipelineError::Output("this FFmpeg has no libx264 encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| err("libx264", e))?;
    let fps = s
        .frame_rate
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(25.0);
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(fmt);
    if fmt == Pixel::YUVJ420P {
        enc.set_color_range(ffmpeg::color::Range::JPEG);
    }
    enc.set_time_base(TIME_BASE);
    enc.set_frame_rate(Some(rational(fps)));
    // Keyframes are forced on stream time (see `picture`); this cap only
    // matters if the camera runs much faster than its rate says.
    let gop_frames = (s.gop_seconds * fps * 2.0).round().clamp(1.0, 100_000.0) as u32;
    enc.set_gop(gop_frames);
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    let mut opts = Dictionary::new();
    opts.set("preset", &s.preset);
    if s.zerolatency {
        opts.set("tune", "zerolatency");
    }
    if let Some(b) = s.bitrate {
        enc.set_bit_rate(b as usize);
        enc.set_max_bit_rate(b as usize);
        // SAFETY: a plain field write before the encoder is opened.
        unsafe {
            (*enc.as_mut_ptr()).rc_buffer_size =
                i32::try_from(b.saturating_mul(2)).unwrap_or(i32::MAX);
        }
    }
    enc.open_with(opts).map_err(|e| err("opening libx264", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_spread_out_and_the_clock_catches_up() {
        let mut s = Smoother::default();
        // 25 fps, then a 200 ms hold-up and five pictures at once.
        let mut arrivals: Vec<f64> = (0..10).map(|i| i as f64 * 0.04).collect();
        arrivals.extend([0.56, 0.561, 0.562, 0.563, 0.564]);
        arrivals.extend((0..60).map(|i| 0.6 + i as f64 * 0.04));
        let out: Vec<f64> = arrivals.iter().map(|t| s.time(*t)).collect();
        for w in out.windows(2) {
            assert!(w[1] - w[0] >= 0.9 * 0.04 - 1e-9, "{out:?}");
        }
        // Steady pictures keep their times; the end is on time again.
        assert_eq!(out[..10], arrivals[..10]);
        assert!(
            (out[out.len() - 1] - arrivals[arrivals.len() - 1]).abs() < 1e-9,
            "{out:?}"
        );
    }

    #[test]
    fn regular_and_slowing_streams_are_left_alone() {
        let mut s = Smoother::default();
        let arrivals: Vec<f64> = (0..50)
            .map(|i| i as f64 * 0.1 + (i as f64 * 0.37).sin() * 0.004)
            .collect();
        for t in &arrivals {
            assert_eq!(s.time(*t), *t);
        }
    }
}
