//! Demux → decode, on the libav thread, for every kind of input.
//!
//! In: a container ([`run`]), whole JPEGs ([`run_jpegs`]) or coded packets
//! ([`run_packets`]), with the [`DecodeSettings`]. Out: decoded pictures,
//! after the frame limits, to a [`Pictures`] consumer: [`BgrOut`] (packed
//! BGR frames through a bounded channel to the consumer's thread, so file
//! writes overlap with decoding; their buffers come back through a pool and
//! are reused) or the H.264 encoder of `transcode` and `hls`.
//!
//! [`frames`] is the way in for a library caller: an opened source's
//! [`Input`] in, an iterator of [`BgrFrame`]s out, decoded on a thread of
//! its own (whole JPEGs by libjpeg-turbo, `super::turbo`, unless
//! [`JpegDecoder::Libav`] is asked for).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;

use super::input::{self, InputSource};
use super::rotation::{DisplayMatrix, Turn};
use super::PipelineError;
use crate::packet::{
    unix_now, Admit, BgrFrame, Gate, Input, Items, JpegClock, JpegFrame, Limits, VideoPacket,
    VideoParams,
};

/// How a decode runs: which frames are kept, how, and the name its
/// warnings are logged under.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    /// `--max-frames`, `--duration`, `--fps`.
    pub limits: Limits,
    /// The source's name (password masked) that warnings are logged under.
    pub name: String,
    /// Which decoder whole JPEGs go through.
    pub jpeg_decoder: JpegDecoder,
    /// Turn pictures upright as players show them (the display matrix),
    /// as the ffmpeg CLI does unless given `-noautorotate`.
    pub autorotate: bool,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            limits: Limits::default(),
            name: String::new(),
            jpeg_decoder: JpegDecoder::default(),
            autorotate: true,
        }
    }
}

/// Which decoder MJPEG goes through (`--jpeg-decoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JpegDecoder {
    /// libjpeg-turbo straight to BGR, JPEGs decoded in parallel: the
    /// fastest, and what `djpeg` gives.
    #[default]
    Turbojpeg,
    /// libavcodec's mjpeg decoder and swscale, as the ffmpeg CLI decodes.
    Libav,
}

impl std::fmt::Display for JpegDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JpegDecoder::Turbojpeg => "turbojpeg",
            JpegDecoder::Libav => "libav",
        })
    }
}

impl std::str::FromStr for JpegDecoder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "turbojpeg" => Ok(JpegDecoder::Turbojpeg),
            "libav" => Ok(JpegDecoder::Libav),
            _ => Err(format!(
                "unknown JPEG decoder {s:?} (expected turbojpeg or libav)"
            )),
        }
    }
}

/// Frames in flight between the decoder and the consumer of [`frames`]:
/// two or three let the consumer's work (file writes) overlap with
/// decoding; more would only hold memory (6 MB each at 1080p).
pub const FRAME_QUEUE: usize = 3;

/// Decoded BGR frames from a running decode, in order: an iterator that
/// ends when the decode does. [`Frames::finish`] then says how it ended.
pub struct Frames {
    rx: std::sync::mpsc::Receiver<BgrFrame>,
    pool: std::sync::mpsc::Sender<Vec<u8>>,
    thread: std::thread::JoinHandle<Result<DecodeSummary, PipelineError>>,
    bytes_read: Arc<AtomicU64>,
}

impl Iterator for Frames {
    type Item = BgrFrame;
    fn next(&mut self) -> Option<BgrFrame> {
        self.rx.recv().ok()
    }
}

impl Frames {
    /// Gives a frame's buffer back, to be filled again: no allocation per
    /// frame once a few buffers circulate.
    pub fn recycle(&self, data: Vec<u8>) {
        let _ = self.pool.send(data);
    }

    /// Bytes libavformat has read (files, stdin, a container over HTTP);
    /// network receivers count theirs in their stats.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The frames wanted are all taken (or none is wanted any more): the
    /// decode stops at its next frame, and its summary or error is
    /// returned. Blocks until the decode thread has ended.
    pub fn finish(self) -> Result<DecodeSummary, PipelineError> {
        drop(self.rx);
        self.thread
            .join()
            .map_err(|_| PipelineError::Decoder("the decode thread panicked".into()))?
    }
}

/// Starts decoding `input` to BGR frames on an OS thread of its own (JPEGs
/// with libjpeg-turbo: on a thread per core). The decode ends at the
/// source's end, a limit, `stop`, or when the [`Frames`] are finished.
pub fn frames(
    input: Input,
    settings: DecodeSettings,
    stop: Arc<AtomicBool>,
) -> Result<Frames, PipelineError> {
    let (frame_tx, rx) = std::sync::mpsc::sync_channel::<BgrFrame>(FRAME_QUEUE);
    let (pool, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let bytes_read = Arc::new(AtomicU64::new(0));
    let counter = bytes_read.clone();
    let bgr_out = {
        let (autorotate, name) = (settings.autorotate, settings.name.clone());
        move |tx, pool| BgrOut::new(tx, pool).with_orientation(autorotate, name)
    };
    let work = move || match super::Fed::from(input) {
        super::Fed::Jpegs(jpegs) if settings.jpeg_decoder == JpegDecoder::Libav => {
            run_jpegs(jpegs, &settings, stop, &mut bgr_out(frame_tx, pool_rx))
        }
        super::Fed::Jpegs(jpegs) => {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            super::turbo::run(jpegs, &settings, stop, frame_tx, pool_rx, workers)
        }
        super::Fed::Packets(packets) => run_packets(
            packets,
            None,
            &settings,
            stop,
            &mut bgr_out(frame_tx, pool_rx),
        ),
        super::Fed::Input(src) => run(
            src,
            None,
            &settings,
            stop,
            counter,
            &mut bgr_out(frame_tx, pool_rx),
        ),
    };
    let thread = super::spawn("camflow-decode", work)
        .map_err(|e| PipelineError::Decoder(format!("cannot start the decode thread: {e}")))?;
    Ok(Frames {
        rx,
        pool,
        thread,
        bytes_read,
    })
}

/// How a decode ended, for the command's closing line: what
/// [`Frames::finish`] returns.
#[derive(Debug, Default, Clone, Copy)]
pub struct DecodeSummary {
    /// Frames handed to the consumer.
    pub frames: u64,
    /// Frames left out because `--fps` asked for fewer.
    pub dropped_by_fps: u64,
    /// Whole JPEGs the decoder refused (damage the splitter cannot see, a
    /// coding the decoder lacks, a picture over the size limit): dropped,
    /// and counted so that the summary says so.
    pub undecodable_jpegs: u64,
    /// The command stopped before the stream's end (a limit, Ctrl-C, or the
    /// sink hung up).
    pub stopped_early: bool,
}

/// A decoded picture's place in the stream, as [`Pictures`] gets it.
#[derive(Debug, Clone, Copy)]
pub struct PictureInfo {
    /// Pictures handed on before this one.
    pub index: u64,
    /// Stream time: seconds from the first picture, continued across
    /// sessions (reconnects, new init segments).
    pub t: f64,
    /// The source's own presentation time, seconds, if it has one.
    pub pts_seconds: Option<f64>,
    /// When the picture's bytes arrived (from a file: when decoded).
    pub received_unix: f64,
    /// How a player turns the picture: the frame's own display matrix, or
    /// else its stream's.
    pub display_matrix: Option<DisplayMatrix>,
}

/// Where decoded pictures go, after `--duration` and `--fps` were applied.
pub trait Pictures {
    /// One picture. `Ok(false)`: the consumer wants no more (it stopped on
    /// its own error, which it reports itself).
    fn picture(&mut self, frame: &mut Video, info: &PictureInfo) -> Result<bool, PipelineError>;
}

/// Pictures as packed BGR frames into a bounded channel, in buffers taken
/// from (and given back to) a pool.
pub struct BgrOut {
    out: SyncSender<BgrFrame>,
    pool: Receiver<Vec<u8>>,
    scaler: Option<(scaling::Context, ScalerKey)>,
    /// Turn pictures as players show them (the ffmpeg CLI's autorotate).
    autorotate: bool,
    /// Where a picture to be turned is converted first (reused).
    unturned: Vec<u8>,
    /// The name warnings are logged under, and whether an angle that
    /// cannot be followed was already reported.
    name: String,
    odd_angle_said: bool,
}

impl BgrOut {
    /// BGR frames turned for display, as the ffmpeg CLI gives them.
    pub fn new(out: SyncSender<BgrFrame>, pool: Receiver<Vec<u8>>) -> Self {
        BgrOut {
            out,
            pool,
            scaler: None,
            autorotate: true,
            unturned: Vec::new(),
            name: String::new(),
            odd_angle_said: false,
        }
    }

    /// `autorotate: false` keeps pictures in their stored orientation
    /// (`ffmpeg -noautorotate`); `name` names the source in warnings.
    pub fn with_orientation(mut self, autorotate: bool, name: String) -> Self {
        self.autorotate = autorotate;
        self.name = name;
        self
    }

    fn turn_for(&mut self, info: &PictureInfo) -> Turn {
        let Some(m) = info.display_matrix.filter(|_| self.autorotate) else {
            return Turn::default();
        };
        match m.turn() {
            Some(t) => t,
            None => {
                if !self.odd_angle_said {
                    let name = &self.name;
                    let angle = m.rotation().unwrap_or_default();
                    log::warn!(
                        "{name}: the display matrix turns pictures by {angle:.0}°, not a \
                         quarter turn; frames keep their stored orientation"
                    );
                }
                self.odd_angle_said = true;
                Turn::default()
            }
        }
    }
}

impl Pictures for BgrOut {
    fn picture(&mut self, frame: &mut Video, info: &PictureInfo) -> Result<bool, PipelineError> {
        let (w, h) = (frame.width(), frame.height());
        let key = ScalerKey::of(frame);
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            self.scaler = Some((key.scaler()?, key));
        }
        let turn = self.turn_for(info);
        let Some((scaler, _)) = self.scaler.as_mut() else {
            return Ok(true);
        };
        let (row, stride, rows) = (w as usize * 3, conversion_stride(w), h as usize);
        let mut buf = self.pool.try_recv().unwrap_or_default();
        if turn.is_identity() {
            buf.resize(stride * rows + SWS_PADDING, 0);
            scale_into(scaler, frame, &mut buf, stride)?;
            compact_rows(&mut buf, row, stride, rows);
        } else {
            // A turn reads the whole picture: convert aside, then turn into
            // the frame's buffer.
            self.unturned.resize(stride * rows + SWS_PADDING, 0);
            scale_into(scaler, frame, &mut self.unturned, stride)?;
            compact_rows(&mut self.unturned, row, stride, rows);
            buf.resize(row * rows, 0);
            turn.apply(&self.unturned, w as usize, rows, &mut buf);
        }
        let (width, height) = turn.size(w, h);
        let out = BgrFrame {
            index: info.index,
            pts_seconds: info.pts_seconds,
            received_unix: info.received_unix,
            width,
            height,
            keyframe: frame.is_key(),
            data: buf,
        };
        // A closed channel: the sink stopped (its own error, reported by
        // the command).
        Ok(self.out.send(out).is_ok())
    }
}

/// What a converter to BGR was built for; a change of any of it (a new
/// stream, a camera that switches its range) builds a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScalerKey {
    format: Pixel,
    width: u32,
    height: u32,
    colorspace: ffmpeg::ffi::AVColorSpace,
    range: ffmpeg::ffi::AVColorRange,
}

impl ScalerKey {
    fn of(frame: &Video) -> Self {
        // SAFETY: plain reads of the frame's own fields.
        let (colorspace, range) = unsafe {
            let f = frame.as_ptr();
            ((*f).colorspace, (*f).color_range)
        };
        ScalerKey {
            format: frame.format(),
            width: frame.width(),
            height: frame.height(),
            colorspace,
            range,
        }
    }

    /// A converter that gives the pixels `ffmpeg -i X -pix_fmt bgr24` gives.
    /// The ffmpeg CLI converts with the scale filter it inserts itself,
    /// with `flags=bicubic` (fftools' default `sws_flags`), and that filter
    /// sets the matrix and range from each frame (libavfilter/vf_scale.c,
    /// FFmpeg 5.1, `in_color_matrix=auto`): the frame's colorspace, or
    /// BT.601 when it is unspecified or one swscale has no coefficients
    /// for; the frame's range, or else swscale's default for the format
    /// (full for the yuvj formats of JPEG, limited otherwise).
    fn scaler(&self) -> Result<scaling::Context, PipelineError> {
        use ffmpeg::ffi;
        let (w, h, fmt) = (self.width, self.height, self.format);
        let mut ctx = scaling::Context::get(fmt, w, h, Pixel::BGR24, w, h, scaling::Flags::BICUBIC)
            .map_err(|e| PipelineError::Decoder(format!("no converter from {fmt:?}: {e}")))?;
        let colorspace = match self.colorspace as i32 {
            // AVCOL_SPC_YCGCO (8) and values past BT.2020 CL (10) have no
            // coefficients in swscale.
            c @ 1..=10 if c != 8 => c,
            _ => ffi::SWS_CS_ITU601,
        };
        // SAFETY: the context is ours and alive; the details are read
        // into locals and handed back with the matrix swscale returns
        // (a static table).
        unsafe {
            let c = ctx.as_mut_ptr();
            let mut inv_table = std::ptr::null_mut();
            let mut table = std::ptr::null_mut();
            let (mut src_range, mut dst_range) = (0, 0);
            let (mut brightness, mut contrast, mut saturation) = (0, 0, 0);
            let got = ffi::sws_getColorspaceDetails(
                c,
                &mut inv_table,
                &mut src_range,
                &mut table,
                &mut dst_range,
                &mut brightness,
                &mut contrast,
                &mut saturation,
            );
            if got >= 0 {
                let coefficients = ffi::sws_getCoefficients(colorspace);
                match self.range {
                    ffi::AVColorRange::AVCOL_RANGE_JPEG => src_range = 1,
                    ffi::AVColorRange::AVCOL_RANGE_MPEG => src_range = 0,
                    _ => {}
                }
                ffi::sws_setColorspaceDetails(
                    c,
                    coefficients,
                    src_range,
                    coefficients,
                    dst_range,
                    brightness,
                    contrast,
                    saturation,
                );
            }
        }
        Ok(ctx)
    }
}

/// The row stride swscale converts to BGR with: the packed `width * 3`
/// rounded up to whole groups of 8 pixels. FFmpeg 5.1's x86 YUV→RGB
/// converter (libswscale/x86/yuv2rgb.c, `YUV2RGB_LOOP`) works on groups of
/// 8 pixels and, when the rounded-up row would pass the destination stride,
/// drops the last group: at widths like 854 the rightmost 2–6 columns were
/// never written. The ffmpeg CLI never meets this, as its frames have
/// aligned strides; here the rows are packed together afterwards
/// ([`compact_rows`]).
fn conversion_stride(width: u32) -> usize {
    (width as usize).div_ceil(8) * 8 * 3
}

/// Moves rows converted at `stride` together to packed `row` bytes each,
/// in place (each row moves towards the start, so none is overwritten
/// before it is moved).
fn compact_rows(buf: &mut [u8], row: usize, stride: usize, rows: usize) {
    if stride == row {
        return;
    }
    for r in 1..rows {
        buf.copy_within(r * stride..r * stride + row, r * row);
    }
}

struct Run<'a> {
    sink: &'a mut dyn Pictures,
    stop: &'a AtomicBool,
    /// `--max-frames`, `--duration`, `--fps`.
    gate: Gate,
    /// Stream time: `first_pts` is this session's first timestamp, and
    /// earlier sessions (a new init segment restarts timestamps) add
    /// `elapsed_before`, so --duration and --fps run on across them.
    first_pts: Option<f64>,
    elapsed_before: f64,
    last_t: Option<f64>,
    /// Frames decoded in this session, and its frame rate: the clock for
    /// streams without timestamps (raw H.264 on stdin).
    session_frames: u64,
    frame_rate: f64,
    summary: DecodeSummary,
    /// Arrival time of each video packet from the network, by pts, until
    /// its frame comes out of the decoder (libav reads ahead while probing,
    /// and frame threads hold a few frames).
    arrivals: BTreeMap<i64, f64>,
    /// The display matrix of this session's stream (libavformat inputs).
    stream_matrix: Option<DisplayMatrix>,
    done: bool,
}

/// Runs the whole decode. Returns when the stream ends, a limit is hit,
/// `stop` is set, or the sink hangs up (then `stopped_early`). `opened`:
/// the input, already opened by a caller that looked at it first (else it
/// is opened here).
pub fn run(
    src: InputSource,
    mut opened: Option<ffmpeg::format::context::Input>,
    settings: &DecodeSettings,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
    sink: &mut dyn Pictures,
) -> Result<DecodeSummary, PipelineError> {
    let mut run = Run::new(settings, sink, &stop);
    // When a receiver failed, its error says why libav could not go on.
    let explain = |e: PipelineError| match &src {
        InputSource::Chunks(feed) => feed.error().map(PipelineError::Source).unwrap_or(e),
        _ => e,
    };
    loop {
        let ictx = match opened.take() {
            Some(i) => i,
            None => input::open(&src, stop.clone(), bytes_read.clone())
                .map_err(|e| explain(PipelineError::Open(e.to_string())))?,
        };
        run.session(ictx, &src, &bytes_read).map_err(explain)?;
        if run.done {
            run.summary.stopped_early = true;
            break;
        }
        // A network stream that sent a new init segment goes on with a new
        // demuxer; frame numbering simply continues.
        match &src {
            InputSource::Chunks(feed) if feed.next_session() => continue,
            _ => break,
        }
    }
    if let InputSource::Chunks(feed) = &src {
        feed.close();
        if !run.done {
            if let Some(se) = feed.error() {
                return Err(PipelineError::Source(se));
            }
        }
    }
    Ok(run.summary)
}

/// Decodes whole JPEGs from an MJPEG receiver with libavcodec's mjpeg
/// decoder. The camera sends no timestamps: a frame's stream time is when
/// it arrived, counted from the first one.
pub fn run_jpegs(
    mut rx: Items<JpegFrame>,
    settings: &DecodeSettings,
    stop: Arc<AtomicBool>,
    sink: &mut dyn Pictures,
) -> Result<DecodeSummary, PipelineError> {
    let mut run = Run::new(settings, sink, &stop);
    let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::MJPEG)
        .ok_or_else(|| PipelineError::Decoder("this FFmpeg has no mjpeg decoder".into()))?;
    let mut decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|e| PipelineError::Decoder(e.to_string()))?;
    // Microseconds since the first frame arrived.
    let time_base = Rational::new(1, 1_000_000);
    let mut clock = JpegClock::default();
    let mut frame = Video::empty();
    let mut failure = None;
    while let Some(jpeg) = run.next(&mut rx, &mut failure) {
        let t = clock.time(&jpeg);
        if !run.decode_one(&mut decoder, &jpeg.data, t, true, jpeg.at_unix, &mut frame)? {
            run.summary.undecodable_jpegs += 1;
        }
    }
    if !run.done {
        let _ = decoder.send_eof();
        run.receive(&mut decoder, &mut frame, time_base)?;
    }
    rx.close();
    run.finish(failure)
}

/// Decodes coded packets (RTSP H.264 or H.265; `first`, one a caller already took
/// from `rx`) with the parameters they come with;
/// a packet with new parameters gets a new decoder. Times are the
/// receiver's (RTP time, continued across reconnects).
pub fn run_packets(
    mut rx: Items<VideoPacket>,
    first: Option<VideoPacket>,
    settings: &DecodeSettings,
    stop: Arc<AtomicBool>,
    sink: &mut dyn Pictures,
) -> Result<DecodeSummary, PipelineError> {
    let mut run = Run::new(settings, sink, &stop);
    let time_base = Rational::new(1, 1_000_000);
    let mut decoder: Option<ffmpeg::decoder::Video> = None;
    let mut frame = Video::empty();
    let mut failure = None;
    let mut first = first;
    while let Some(pkt) = first.take().or_else(|| run.next(&mut rx, &mut failure)) {
        if let Some(params) = &pkt.params {
            // Frames still inside the old decoder come out first.
            if let Some(mut old) = decoder.take() {
                let _ = old.send_eof();
                run.receive(&mut old, &mut frame, time_base)?;
            }
            decoder = Some(open_decoder(params)?);
        }
        if let Some(dec) = decoder.as_mut() {
            run.decode_one(dec, &pkt.data, pkt.pts, pkt.key, pkt.at_unix, &mut frame)?;
        }
    }
    if let (false, Some(dec)) = (run.done, decoder.as_mut()) {
        let _ = dec.send_eof();
        run.receive(dec, &mut frame, time_base)?;
    }
    rx.close();
    run.finish(failure)
}

/// A video decoder for packets with these parameters (H.264: avcC
/// extradata, H.265: hvcC, so packets are length-prefixed NAL units).
fn open_decoder(params: &VideoParams) -> Result<ffmpeg::decoder::Video, PipelineError> {
    let id = super::codec_id(params.codec);
    let codec = ffmpeg::decoder::find(id)
        .ok_or_else(|| PipelineError::Decoder(format!("this FFmpeg has no {id:?} decoder")))?;
    let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec);
    // SAFETY: the context is ours and not opened yet.
    unsafe {
        let c = ctx.as_mut_ptr();
        (*c).width = i32::try_from(params.width).unwrap_or(0);
        (*c).height = i32::try_from(params.height).unwrap_or(0);
        super::set_extradata(
            &mut (*c).extradata,
            &mut (*c).extradata_size,
            &params.extradata,
        )
        .map_err(|e| PipelineError::Decoder(e.to_string()))?;
    }
    // Frame threads, as for files: a few pictures of latency buy
    // throughput on cameras that send one slice per picture.
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    ctx.decoder()
        .video()
        .map_err(|e| PipelineError::Decoder(e.to_string()))
}

impl<'a> Run<'a> {
    fn new(settings: &'a DecodeSettings, sink: &'a mut dyn Pictures, stop: &'a AtomicBool) -> Self {
        Run {
            sink,
            stop,
            gate: settings.limits.gate(),
            first_pts: None,
            elapsed_before: 0.0,
            last_t: None,
            session_frames: 0,
            frame_rate: 25.0,
            summary: DecodeSummary::default(),
            arrivals: BTreeMap::new(),
            stream_matrix: None,
            done: false,
        }
    }

    /// The next item from a receiver, or `None` at its end, on Ctrl-C, or
    /// when the run is done; a receiver's error goes to `failure`.
    fn next<T>(&mut self, rx: &mut Items<T>, failure: &mut Option<PipelineError>) -> Option<T> {
        if self.done {
            return None;
        }
        if self.stop.load(Ordering::Relaxed) {
            self.done = true;
            return None;
        }
        super::next_item(rx, self.stop, failure)
    }

    /// Decodes one coded picture at stream time `t` (seconds, microsecond
    /// clock) and hands on what comes out. A picture the decoder refuses
    /// costs that picture, not the run: `Ok(false)` says it was refused.
    fn decode_one(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        data: &[u8],
        t: f64,
        key: bool,
        at_unix: f64,
        frame: &mut Video,
    ) -> Result<bool, PipelineError> {
        let pts = (t * 1e6).round() as i64;
        self.arrivals.insert(pts, at_unix);
        if self.arrivals.len() > 256 {
            self.arrivals.pop_first();
        }
        let mut packet = ffmpeg::Packet::copy(data);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(pts));
        if key {
            packet.set_flags(ffmpeg::packet::Flags::KEY);
        }
        if decoder.send_packet(&packet).is_err() {
            self.arrivals.remove(&pts);
            return Ok(false);
        }
        self.receive(decoder, frame, Rational::new(1, 1_000_000))?;
        Ok(true)
    }

    /// The summary of a receiver-fed run, or the receiver's error.
    fn finish(mut self, failure: Option<PipelineError>) -> Result<DecodeSummary, PipelineError> {
        match failure {
            Some(e) => Err(e),
            None => {
                self.summary.stopped_early = self.done;
                Ok(self.summary)
            }
        }
    }

    fn session(
        &mut self,
        mut ictx: ffmpeg::format::context::Input,
        src: &InputSource,
        bytes_read: &Arc<AtomicU64>,
    ) -> Result<(), PipelineError> {
        let stream = ictx
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or(PipelineError::NoVideo)?;
        let index = stream.index();
        let time_base = stream.time_base();
        self.stream_matrix = DisplayMatrix::of_stream(&stream);
        let rate = |r: Rational| (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r));
        // A new session continues the clock one frame after the last one.
        if let Some(last) = self.last_t {
            self.elapsed_before = last + 1.0 / self.frame_rate;
        }
        self.first_pts = None;
        self.session_frames = 0;
        self.frame_rate = rate(stream.avg_frame_rate())
            .or_else(|| rate(stream.rate()))
            .unwrap_or(25.0);
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| PipelineError::Decoder(e.to_string()))?;
        ctx.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        ctx.set_time_base(time_base);
        let mut decoder = ctx
            .decoder()
            .video()
            .map_err(|e| PipelineError::Decoder(e.to_string()))?;
        let count_packets = matches!(src, InputSource::Path(_));

        let mut packet = ffmpeg::Packet::empty();
        let mut frame = Video::empty();
        let mut corrupt = 0u32;
        let mut failure = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                self.done = true;
                break;
            }
            match input::read_packet(&mut ictx, &mut packet) {
                Ok(()) => corrupt = 0,
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Exit) => {
                    // Interrupted by Ctrl-C.
                    self.done = true;
                    break;
                }
                // A demuxer resyncs past one corrupt packet; many in a row
                // means the input is not what it claims to be.
                Err(ffmpeg::Error::InvalidData) if corrupt < 100 => {
                    corrupt += 1;
                    continue;
                }
                Err(e) => {
                    // Decode what already arrived before reporting.
                    failure = Some(PipelineError::Read(e.to_string()));
                    break;
                }
            }
            if count_packets {
                bytes_read.fetch_add(packet.size() as u64, Ordering::Relaxed);
            }
            if packet.stream() != index {
                continue;
            }
            if let (InputSource::Chunks(feed), Some(pts)) = (src, packet.pts()) {
                let arrived = u64::try_from(packet.position())
                    .ok()
                    .and_then(|pos| feed.arrival(pos));
                if let Some(at) = arrived {
                    self.arrivals.insert(pts, at);
                    if self.arrivals.len() > 256 {
                        self.arrivals.pop_first();
                    }
                }
            }
            // A bad packet from the network costs a frame, not the run.
            if decoder.send_packet(&packet).is_err() {
                continue;
            }
            self.receive(&mut decoder, &mut frame, time_base)?;
            if self.done {
                break;
            }
        }
        if !self.done {
            let _ = decoder.send_eof();
            self.receive(&mut decoder, &mut frame, time_base)?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn receive(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        frame: &mut Video,
        time_base: Rational,
    ) -> Result<(), PipelineError> {
        // A picture that fails to decode (a packet cut short at the end of
        // a partial file, a damaged one from the network) is an error from
        // receive_frame for that picture alone: the pictures after it, most
        // of all those still held for reordering when the input ends, must
        // still come out. Only "nothing yet" and "all out" end the loop.
        let mut failed_in_a_row = 0;
        while !self.done {
            match decoder.receive_frame(frame) {
                Ok(()) => {
                    failed_in_a_row = 0;
                    self.handle(frame, time_base)?;
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    break
                }
                // Bounded: a decoder that only fails is not waited on.
                Err(_) if failed_in_a_row < MAX_FAILED_PICTURES => failed_in_a_row += 1,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn handle(&mut self, frame: &mut Video, time_base: Rational) -> Result<(), PipelineError> {
        // From the network: when its bytes arrived. From a file: now.
        let received_unix = frame
            .timestamp()
            .and_then(|t| self.arrivals.remove(&t))
            .unwrap_or_else(unix_now);
        let pts = frame.timestamp().map(|t| t as f64 * f64::from(time_base));
        let t = self.elapsed_before
            + match pts {
                Some(p) => p - *self.first_pts.get_or_insert(p),
                None => self.session_frames as f64 / self.frame_rate,
            };
        self.session_frames += 1;
        self.last_t = Some(t);
        match self.gate.admit(t) {
            Admit::Keep => {}
            Admit::Skip => {
                self.summary.dropped_by_fps += 1;
                return Ok(());
            }
            Admit::Stop => {
                self.done = true;
                return Ok(());
            }
        }
        if frame.width() == 0 || frame.height() == 0 || frame.format() == Pixel::None {
            return Ok(());
        }
        let info = PictureInfo {
            index: self.summary.frames,
            t,
            pts_seconds: pts,
            received_unix,
            display_matrix: DisplayMatrix::of_frame(frame).or(self.stream_matrix),
        };
        if !self.sink.picture(frame, &info)? {
            self.done = true;
            return Ok(());
        }
        self.summary.frames += 1;
        if self.gate.kept() {
            self.done = true;
        }
        Ok(())
    }
}

/// Decode errors in a row after which the decode loop stops asking
/// for pictures after one packet (or in the final drain).
const MAX_FAILED_PICTURES: u32 = 16;

/// Slack after the last row for swscale's vector stores.
const SWS_PADDING: usize = 64;

/// Converts straight into our buffer, rows `stride` bytes apart: one
/// pass, no intermediate frame.
fn scale_into(
    scaler: &mut scaling::Context,
    frame: &Video,
    buf: &mut [u8],
    stride: usize,
) -> Result<(), PipelineError> {
    let h = frame.height() as usize;
    if buf.len() < stride * h + SWS_PADDING {
        return Err(PipelineError::Decoder("frame buffer too small".into()));
    }
    let dst: [*mut u8; 4] = [
        buf.as_mut_ptr(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ];
    let dst_stride: [i32; 4] = [stride as i32, 0, 0, 0];
    // SAFETY: the scaler was built for this frame's format and size; `dst`
    // holds `stride * h` bytes (at least what BGR24 at this size needs) and
    // the padding swscale's vector stores may run into.
    let ret = unsafe {
        let f = frame.as_ptr();
        ffmpeg::ffi::sws_scale(
            scaler.as_mut_ptr(),
            (*f).data.as_ptr() as *const *const u8,
            (*f).linesize.as_ptr(),
            0,
            h as i32,
            dst.as_ptr(),
            dst_stride.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(PipelineError::Decoder(format!(
            "pixel conversion failed: {}",
            ffmpeg::Error::from(ret)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// swscale's vector stores run past the last row at some widths: the
    /// padding must absorb them, and nothing may land beyond it. Every
    /// column must be written, at every width: FFmpeg 5.1's x86 converter
    /// left the last 2–6 columns alone when the packed row was shorter than
    /// its groups of 8 pixels (widths 322, 854, ...).
    #[test]
    fn scaling_writes_every_column_and_stays_inside_the_padded_buffer() {
        ffmpeg::init().unwrap();
        let sizes = (2u32..=2000).step_by(2).map(|w| (w, 4u32)).chain([
            (330, 198),
            (1918, 8),
            (333, 17),
            (96, 2),
            (2, 2),
            (855, 3),
        ]);
        for (w, h) in sizes {
            let mut src = Video::new(Pixel::YUV420P, w, h);
            for plane in 0..3 {
                src.data_mut(plane).fill(0x80);
            }
            let key = ScalerKey::of(&src);
            let mut sc = key.scaler().unwrap();
            let (row, stride) = (w as usize * 3, conversion_stride(w));
            let len = stride * h as usize;
            let sentinel = 256;
            let mut buf = vec![0xA5u8; len + SWS_PADDING + sentinel];
            scale_into(&mut sc, &src, &mut buf[..len + SWS_PADDING], stride).unwrap();
            assert!(
                buf[len + SWS_PADDING..].iter().all(|b| *b == 0xA5),
                "{w}x{h}: wrote past the padding"
            );
            compact_rows(&mut buf, row, stride, h as usize);
            let packed = &buf[..row * h as usize];
            assert!(
                packed.iter().all(|b| *b != 0xA5),
                "{w}x{h}: not every column written"
            );
        }
    }
}
