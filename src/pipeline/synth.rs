//! The simulated camera's video: the test pattern encoded with libx264, or a
//! file (H.264 copied as is, anything else encoded), muxed by libavformat
//! into fragmented MP4 in memory, one fragment per frame, cut into
//! [`Chunk`]s. Runs on its own OS thread per client; the bounded channel to
//! the client's sender paces it.

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ffmpeg::format::context::{Output, StreamIo};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video;
use ffmpeg::{codec, encoder, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use tokio::sync::mpsc::Sender;

use super::pattern;
use super::PipelineError;
use crate::packet::Chunk;
use crate::proto::fmp4;

/// What the simulated camera streams to one client.
#[derive(Debug, Clone)]
pub struct SynthSettings {
    /// A video file to stream ([`run`]) or a folder of `.jpg` files
    /// ([`jpeg_run`]); `None` for the test pattern.
    pub input: Option<PathBuf>,
    /// The pattern's width in pixels (a file keeps its own size).
    pub width: u32,
    /// The pattern's height in pixels.
    pub height: u32,
    /// Frames per second of the pattern and of a folder's JPEGs.
    pub fps: f64,
    /// Stop after this many frames; `None` streams until the client leaves
    /// (or the file ends).
    pub frames: Option<u64>,
}

/// A chunk and when to send it, in seconds from the stream's start.
pub struct Timed {
    /// An init segment or one fragment of fMP4.
    pub chunk: Chunk,
    /// When the client should get it, seconds from the stream's start.
    pub at: f64,
}

fn err(what: &str) -> impl FnOnce(ffmpeg::Error) -> PipelineError + '_ {
    move |e| PipelineError::Output(format!("{what}: {e}"))
}

/// `Write` that gathers the muxer's output for the fMP4 assembler.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<u8>>>);

impl Write for Collector {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut v = self
            .0
            .lock()
            .map_err(|_| io::Error::other("collector poisoned"))?;
        v.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An fMP4 muxer writing to memory, flushed to a fragment per packet.
struct Fmp4Mux {
    octx: Output,
    collected: Collector,
    asm: fmp4::Assembler,
    /// Send times of packets whose fragments have not come out yet.
    times: std::collections::VecDeque<f64>,
}

impl Fmp4Mux {
    fn new() -> Result<Self, PipelineError> {
        let collected = Collector::default();
        let io = StreamIo::from_write(collected.clone()).map_err(err("muxer I/O"))?;
        let octx = ffmpeg::format::output_to_stream(io, None, Some("mp4")).map_err(err("muxer"))?;
        Ok(Fmp4Mux {
            octx,
            collected,
            asm: fmp4::Assembler::new(64 << 20),
            times: Default::default(),
        })
    }

    fn header(&mut self, out: &Sender<Timed>) -> Result<bool, PipelineError> {
        let mut opts = Dictionary::new();
        // frag_custom: a fragment is cut when we flush (a NULL packet), so
        // each frame leaves at once, as a live camera's would.
        opts.set("movflags", "empty_moov+default_base_moof+frag_custom");
        self.octx
            .write_header_with(opts)
            .map_err(err("muxer header"))?;
        self.drain(out)
    }

    fn write(&mut self, pkt: &Packet, at: f64, out: &Sender<Timed>) -> Result<bool, PipelineError> {
        pkt.write(&mut self.octx).map_err(err("muxing"))?;
        self.times.push_back(at);
        // SAFETY: the context is open and its header written; a NULL packet
        // asks the mov muxer (AVFMT_ALLOW_FLUSH) to close the fragment, and
        // avio_flush pushes the AVIO buffer into the collector.
        unsafe {
            let ctx = self.octx.as_mut_ptr();
            ffmpeg::ffi::av_write_frame(ctx, std::ptr::null_mut());
            ffmpeg::ffi::avio_flush((*ctx).pb);
        }
        self.drain(out)
    }

    fn finish(&mut self, out: &Sender<Timed>) -> Result<bool, PipelineError> {
        self.octx.write_trailer().map_err(err("muxer trailer"))?;
        self.drain(out)
    }

    /// Hands every complete chunk to the client; false if it hung up.
    fn drain(&mut self, out: &Sender<Timed>) -> Result<bool, PipelineError> {
        let bytes = match self.collected.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return Err(PipelineError::Output("collector poisoned".into())),
        };
        self.asm.feed(&bytes);
        while let Some(chunk) = self
            .asm
            .next_chunk()
            .map_err(|e| PipelineError::Output(e.to_string()))?
        {
            let at = match chunk {
                Chunk::Init(_) => 0.0,
                Chunk::Fragment(_) | Chunk::Data(_) => self.times.pop_front().unwrap_or(0.0),
            };
            if out.blocking_send(Timed { chunk, at }).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn x264(
    width: u32,
    height: u32,
    time_base: Rational,
    frame_rate: Rational,
) -> Result<(encoder::Video, ffmpeg::Codec), PipelineError> {
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| PipelineError::Output("this FFmpeg has no libx264 encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(err("encoder"))?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(frame_rate));
    // A keyframe every second: a client joining or recovering waits at most that.
    let gop = (f64::from(frame_rate).round() as u32).max(1);
    enc.set_gop(gop);
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    let mut opts = Dictionary::new();
    opts.set("preset", "ultrafast");
    opts.set("tune", "zerolatency");
    // High quality, so the pattern's colours survive for clients to check.
    opts.set("crf", "12");
    let enc = enc.open_with(opts).map_err(err("opening libx264"))?;
    Ok((enc, codec))
}

fn add_stream(
    octx: &mut Output,
    codec: impl codec::traits::Encoder,
    params: codec::Parameters,
    time_base: Rational,
) -> Result<(), PipelineError> {
    let mut ost = octx.add_stream(codec).map_err(err("muxer stream"))?;
    ost.set_parameters(params);
    ost.set_time_base(time_base);
    // SAFETY: plain field write on the stream's own parameters; the mp4
    // muxer picks the right tag itself when it is 0.
    unsafe {
        (*ost.parameters().as_mut_ptr()).codec_tag = 0;
    }
    Ok(())
}

/// Produces the stream until it ends, `stop` is set, or the client hangs up.
pub fn run(
    s: &SynthSettings,
    out: Sender<Timed>,
    stop: Arc<AtomicBool>,
) -> Result<(), PipelineError> {
    match &s.input {
        None => pattern_stream(s, &out, &stop),
        Some(path) => file_stream(path, s.frames, &out, &stop),
    }
}

fn pattern_stream(
    s: &SynthSettings,
    out: &Sender<Timed>,
    stop: &AtomicBool,
) -> Result<(), PipelineError> {
    let rate = Rational::from(s.fps);
    let tb = rate.invert();
    let (mut enc, codec) = x264(s.width, s.height, tb, rate)?;
    let mut mux = Fmp4Mux::new()?;
    add_stream(&mut mux.octx, codec, codec::Parameters::from(&enc), tb)?;
    if !mux.header(out)? {
        return Ok(());
    }
    let ost_tb = mux.octx.stream(0).map(|st| st.time_base()).unwrap_or(tb);
    let mut bgr = Video::new(Pixel::BGR24, s.width, s.height);
    let mut yuv = Video::new(Pixel::YUV420P, s.width, s.height);
    let mut sws = scaling::Context::get(
        Pixel::BGR24,
        s.width,
        s.height,
        Pixel::YUV420P,
        s.width,
        s.height,
        scaling::Flags::BILINEAR,
    )
    .map_err(err("converter"))?;
    let mut pkt = Packet::empty();
    let mut index = 0u64;
    let mut open = true;
    while open && !stop.load(Ordering::Relaxed) && s.frames.is_none_or(|n| index < n) {
        let stride = bgr.stride(0);
        pattern::draw(bgr.data_mut(0), stride, s.width, s.height, index);
        sws.run(&bgr, &mut yuv).map_err(err("converting"))?;
        yuv.set_pts(Some(index as i64));
        enc.send_frame(&yuv).map_err(err("encoding"))?;
        index += 1;
        while open && enc.receive_packet(&mut pkt).is_ok() {
            let at = pkt.pts().unwrap_or(0) as f64 * f64::from(tb);
            // One frame long: a fragment of one sample gets its duration
            // from the packet, and without it the next fragment would start
            // at the same time.
            pkt.set_duration(1);
            pkt.rescale_ts(tb, ost_tb);
            pkt.set_stream(0);
            open = mux.write(&pkt, at, out)?;
        }
    }
    if open {
        enc.send_eof().map_err(err("encoding"))?;
        while open && enc.receive_packet(&mut pkt).is_ok() {
            let at = pkt.pts().unwrap_or(0) as f64 * f64::from(tb);
            // One frame long: a fragment of one sample gets its duration
            // from the packet, and without it the next fragment would start
            // at the same time.
            pkt.set_duration(1);
            pkt.rescale_ts(tb, ost_tb);
            pkt.set_stream(0);
            open = mux.write(&pkt, at, out)?;
        }
    }
    if open {
        mux.finish(out)?;
    }
    Ok(())
}

fn file_stream(
    path: &std::path::Path,
    frames: Option<u64>,
    out: &Sender<Timed>,
    stop: &AtomicBool,
) -> Result<(), PipelineError> {
    let mut ictx = ffmpeg::format::input(path).map_err(|e| PipelineError::Open(e.to_string()))?;
    let ist = ictx
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or(PipelineError::NoVideo)?;
    let ist_index = ist.index();
    let ist_tb = ist.time_base();
    let params = ist.parameters();
    let copy = params.id() == codec::Id::H264;
    let mut rate = ist.avg_frame_rate();
    if rate.numerator() <= 0 || rate.denominator() <= 0 {
        rate = Rational::new(25, 1);
    }
    let mut mux = Fmp4Mux::new()?;
    // Both ways keep the file's own time base and timestamps.
    let mut transcode = None;
    if copy {
        add_stream(
            &mut mux.octx,
            // No encoder: the stream is copied.
            encoder::find(codec::Id::None),
            params,
            ist_tb,
        )?;
    } else {
        let mut dctx = codec::context::Context::from_parameters(params)
            .map_err(|e| PipelineError::Decoder(e.to_string()))?;
        dctx.set_time_base(ist_tb);
        let dec = dctx
            .decoder()
            .video()
            .map_err(|e| PipelineError::Decoder(e.to_string()))?;
        let (enc, codec) = x264(dec.width(), dec.height(), ist_tb, rate)?;
        add_stream(&mut mux.octx, codec, codec::Parameters::from(&enc), ist_tb)?;
        transcode = Some((dec, enc));
    }
    if !mux.header(out)? {
        return Ok(());
    }
    let ost_tb = mux
        .octx
        .stream(0)
        .map(|st| st.time_base())
        .unwrap_or(ist_tb);
    let mut first: Option<i64> = None;
    let mut sent = 0u64;
    // One frame in the input's ticks, for packets that come without a duration.
    let frame_ticks = (f64::from(rate.invert()) / f64::from(ist_tb))
        .round()
        .max(1.0) as i64;
    let mut open = true;
    let mut pkt = Packet::empty();
    let mut frame = Video::empty();
    let mut yuv = Video::empty();
    let mut sws: Option<scaling::Context> = None;

    // Sends one packet whose timestamps are in `ist_tb`.
    let mut emit =
        |p: &mut Packet, mux: &mut Fmp4Mux, sent: &mut u64| -> Result<bool, PipelineError> {
            let ts = p.dts().or(p.pts()).unwrap_or(0);
            let base = *first.get_or_insert(ts);
            let at = (ts - base) as f64 * f64::from(ist_tb);
            if p.duration() <= 0 {
                p.set_duration(frame_ticks);
            }
            p.rescale_ts(ist_tb, ost_tb);
            p.set_stream(0);
            p.set_position(-1);
            *sent += 1;
            mux.write(p, at, out)
        };

    loop {
        if !open || stop.load(Ordering::Relaxed) || frames.is_some_and(|n| sent >= n) {
            break;
        }
        match super::input::read_packet(&mut ictx, &mut pkt) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(PipelineError::Read(e.to_string())),
        }
        if pkt.stream() != ist_index {
            continue;
        }
        match transcode.as_mut() {
            None => open = emit(&mut pkt, &mut mux, &mut sent)?,
            Some((dec, enc)) => {
                if dec.send_packet(&pkt).is_err() {
                    continue;
                }
                while open && dec.receive_frame(&mut frame).is_ok() {
                    open = encode_one(&frame, &mut sws, &mut yuv, enc, &mut |ep| {
                        emit(ep, &mut mux, &mut sent)
                    })?;
                }
            }
        }
    }
    if open {
        if let Some((dec, enc)) = transcode.as_mut() {
            let _ = dec.send_eof();
            while open && dec.receive_frame(&mut frame).is_ok() {
                open = encode_one(&frame, &mut sws, &mut yuv, enc, &mut |ep| {
                    emit(ep, &mut mux, &mut sent)
                })?;
            }
            enc.send_eof().map_err(err("encoding"))?;
            let mut ep = Packet::empty();
            while open && enc.receive_packet(&mut ep).is_ok() {
                open = emit(&mut ep, &mut mux, &mut sent)?;
            }
        }
    }
    if open {
        mux.finish(out)?;
    }
    Ok(())
}

/// Converts one decoded frame to YUV 4:2:0, encodes it and passes each
/// packet on; false once the client hung up.
fn encode_one(
    frame: &Video,
    sws: &mut Option<scaling::Context>,
    yuv: &mut Video,
    enc: &mut encoder::Video,
    emit: &mut dyn FnMut(&mut Packet) -> Result<bool, PipelineError>,
) -> Result<bool, PipelineError> {
    if sws.is_none() {
        *sws = Some(
            scaling::Context::get(
                frame.format(),
                frame.width(),
                frame.height(),
                Pixel::YUV420P,
                enc.width(),
                enc.height(),
                scaling::Flags::BILINEAR,
            )
            .map_err(err("converter"))?,
        );
    }
    if let Some(conv) = sws.as_mut() {
        conv.run(frame, yuv).map_err(err("converting"))?;
    }
    yuv.set_pts(frame.timestamp());
    enc.send_frame(yuv).map_err(err("encoding"))?;
    let mut ep = Packet::empty();
    while enc.receive_packet(&mut ep).is_ok() {
        if !emit(&mut ep)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One JPEG and when to send it, in seconds from the stream's start.
pub struct TimedJpeg {
    /// One whole JPEG.
    pub jpeg: Bytes,
    /// When the client should get it, seconds from the stream's start.
    pub at: f64,
}

/// JPEG quality scale for the pattern (as `-q:v` 3): high enough that the
/// colour bars come through for clients to check.
const JPEG_QSCALE: i32 = 3;
/// libavcodec's lambda per quantiser step (FF_QP2LAMBDA).
const QP2LAMBDA: i32 = 118;

/// An MJPEG camera's frames: the test pattern encoded by libavcodec's mjpeg
/// encoder, or the `.jpg` files of a folder as they are, at `s.fps`, with an
/// EXIF-style thumbnail (a whole small JPEG inside APP1) when `thumbnail`.
pub fn jpeg_run(
    s: &SynthSettings,
    thumbnail: bool,
    out: Sender<TimedJpeg>,
    stop: Arc<AtomicBool>,
) -> Result<(), PipelineError> {
    let thumb = if thumbnail {
        let mut small = jpeg_pattern_encoder(32, 24, s.fps)?;
        Some(small.encode(0)?)
    } else {
        None
    };
    let files = match &s.input {
        Some(dir) => Some(jpeg_files(dir)?),
        None => None,
    };
    let mut enc = match files {
        Some(_) => None,
        None => Some(jpeg_pattern_encoder(s.width, s.height, s.fps)?),
    };
    let mut index = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) || s.frames.is_some_and(|n| index >= n) {
            return Ok(());
        }
        let jpeg = match (&files, enc.as_mut()) {
            (Some(files), _) => {
                let Some(path) = files.get(index as usize) else {
                    return Ok(());
                };
                Bytes::from(
                    std::fs::read(path)
                        .map_err(|e| PipelineError::Open(format!("{}: {e}", path.display())))?,
                )
            }
            (None, Some(enc)) => enc.encode(index)?,
            (None, None) => return Ok(()),
        };
        let jpeg = match &thumb {
            Some(t) => with_thumbnail(&jpeg, t),
            None => jpeg,
        };
        let at = index as f64 / s.fps;
        if out.blocking_send(TimedJpeg { jpeg, at }).is_err() {
            return Ok(());
        }
        index += 1;
    }
}

/// The `.jpg`/`.jpeg` files of a folder, in name order.
fn jpeg_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, PipelineError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| PipelineError::Open(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PipelineError::Open(format!(
            "{}: no .jpg files",
            dir.display()
        )));
    }
    Ok(files)
}

/// Inserts an APP1 "Exif" segment right after the SOI, as cameras do: a
/// TIFF structure whose IFD1 points at `thumb`, a whole JPEG (SOI to EOI).
/// A splitter that searched for FF D9 would cut the frame at its end.
fn with_thumbnail(jpeg: &[u8], thumb: &[u8]) -> Bytes {
    // TIFF, big-endian: header, an empty IFD0 linking to IFD1, IFD1 with
    // JPEGInterchangeFormat (0x0201) and its length (0x0202), then the
    // thumbnail at offset 44.
    let Ok(thumb_len) = u32::try_from(thumb.len()) else {
        return Bytes::copy_from_slice(jpeg);
    };
    let mut tiff: Vec<u8> = Vec::with_capacity(44 + thumb.len());
    tiff.extend_from_slice(b"MM\0\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&0u16.to_be_bytes());
    tiff.extend_from_slice(&14u32.to_be_bytes());
    tiff.extend_from_slice(&2u16.to_be_bytes());
    for (tag, value) in [(0x0201u16, 44u32), (0x0202, thumb_len)] {
        tiff.extend_from_slice(&tag.to_be_bytes());
        tiff.extend_from_slice(&4u16.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&value.to_be_bytes());
    }
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(thumb);
    let Ok(seg_len) = u16::try_from(2 + 6 + tiff.len()) else {
        return Bytes::copy_from_slice(jpeg);
    };
    let mut v = Vec::with_capacity(jpeg.len() + tiff.len() + 10);
    v.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE1]);
    v.extend_from_slice(&seg_len.to_be_bytes());
    v.extend_from_slice(b"Exif\0\0");
    v.extend_from_slice(&tiff);
    v.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    Bytes::from(v)
}

/// The test pattern through libavcodec's mjpeg encoder.
struct JpegPattern {
    enc: encoder::Video,
    sws: scaling::Context,
    bgr: Video,
    yuv: Video,
    pkt: Packet,
}

fn jpeg_pattern_encoder(width: u32, height: u32, fps: f64) -> Result<JpegPattern, PipelineError> {
    let codec = encoder::find(codec::Id::MJPEG)
        .ok_or_else(|| PipelineError::Output("this FFmpeg has no mjpeg encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(err("encoder"))?;
    enc.set_width(width);
    enc.set_height(height);
    // Full-range 4:2:0, what cameras send.
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::from(fps).invert());
    enc.set_flags(codec::Flags::QSCALE);
    enc.set_global_quality(JPEG_QSCALE * QP2LAMBDA);
    let enc = enc.open().map_err(err("opening the mjpeg encoder"))?;
    let sws = scaling::Context::get(
        Pixel::BGR24,
        width,
        height,
        Pixel::YUVJ420P,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
    .map_err(err("converter"))?;
    Ok(JpegPattern {
        enc,
        sws,
        bgr: Video::new(Pixel::BGR24, width, height),
        yuv: Video::new(Pixel::YUVJ420P, width, height),
        pkt: Packet::empty(),
    })
}

impl JpegPattern {
    fn encode(&mut self, index: u64) -> Result<Bytes, PipelineError> {
        let (w, h) = (self.bgr.width(), self.bgr.height());
        let stride = self.bgr.stride(0);
        pattern::draw(self.bgr.data_mut(0), stride, w, h, index);
        self.sws
            .run(&self.bgr, &mut self.yuv)
            .map_err(err("converting"))?;
        self.yuv.set_pts(Some(index as i64));
        // SAFETY: a plain field write on our own frame; with QSCALE the
        // encoder takes each frame's quality from here.
        unsafe {
            (*self.yuv.as_mut_ptr()).quality = JPEG_QSCALE * QP2LAMBDA;
        }
        self.enc.send_frame(&self.yuv).map_err(err("encoding"))?;
        self.enc
            .receive_packet(&mut self.pkt)
            .map_err(err("encoding"))?;
        Ok(Bytes::copy_from_slice(self.pkt.data().unwrap_or_default()))
    }
}
