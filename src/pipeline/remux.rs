//! `record` without re-encoding: a source's video copied into MP4 with
//! libavformat.
//!
//! In, one of three: a container libavformat reads ([`run`]: a file, stdin
//! or an HTTP body; the video and every audio stream MP4 can hold,
//! timestamps rescaled, and made up as the ffmpeg CLI does for raw streams
//! that carry none, codec tags left to the muxer), whole JPEGs
//! ([`record_jpegs`], as codec mjpeg) or coded H.264 or H.265 pictures
//! ([`record_packets`]). H.265 gets the `hvc1` sample entry, whose `hvcC`
//! record holds the parameter sets (Apple's players and browsers take no
//! other). Network sources that already deliver fMP4 are
//! recorded as received instead (`sink::fmp4_file::record`).
//!
//! Out: an MP4 at the output path, fragmented at keyframes so that a
//! recording cut short by a fault or a full disk still plays up to its
//! last whole fragment, and a [`RemuxSummary`] after every picture. The MP4
//! is written under a temporary name and takes the output's name once a
//! fragment with video is on disk: a run that fails or is stopped before
//! that leaves an earlier file at the output path as it was, and no
//! header-only file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ffmpeg::{codec, encoder, media, Rational};
use ffmpeg_next as ffmpeg;

use super::input::{self, InputSource};
use super::rotation::DisplayMatrix;
use super::PipelineError;
use crate::packet::{Admit, Items, JpegClock, JpegFrame, Limits, VideoPacket, VideoParams};
use crate::proto::jpeg;
use crate::sink::fmp4_file::PendingFile;

/// What a recording holds so far: passed to the progress callback after
/// each picture and returned at the end, for the closing line.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemuxSummary {
    /// Packets written, audio included.
    pub packets: u64,
    /// Video pictures written.
    pub video_frames: u64,
    /// The video's length, up to the end of its last picture.
    pub seconds: f64,
    /// The video had no timestamps and uses frame reordering (B-frames):
    /// the copy is timed in decode order, as the ffmpeg CLI would do it.
    pub untimed_reordered_video: bool,
    /// The muxer refused the audio when writing the header; the copy holds
    /// the video only.
    pub audio_dropped: bool,
    /// The output holds this run's video: the file has replaced whatever
    /// was at the path before.
    pub placed: bool,
}

/// An MP4 being written under a temporary name ([`PendingFile`]), and how
/// long its header is. The mp4 muxer keeps a fragment in memory until it is
/// complete, and with `flush_packets` libavformat then writes it out at
/// once, so more than the header on disk means a whole fragment is there:
/// the file then plays, and replaces the output.
struct Staged {
    file: PendingFile,
    header_len: u64,
}

impl Staged {
    fn new(out_path: &Path) -> Self {
        Staged {
            file: PendingFile::new(out_path),
            header_len: 0,
        }
    }

    /// Where libavformat writes.
    fn path(&self) -> &Path {
        self.file.path()
    }

    /// Notes the header's length, once `write_header` has succeeded.
    fn header_written(&mut self, octx: &mut ffmpeg::format::context::Output) {
        // SAFETY: the output context is open (its header is written), so
        // `pb` is its own AVIO context.
        unsafe {
            let pb = (*octx.as_mut_ptr()).pb;
            if !pb.is_null() {
                ffmpeg::ffi::avio_flush(pb);
            }
        }
        self.header_len = self.on_disk();
    }

    fn on_disk(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.len())
    }

    /// After a write that may have completed a fragment (`video`: video has
    /// gone into the muxer): whether the file has replaced the output.
    fn check(&mut self, video: bool, out_path: &Path) -> Result<bool, PipelineError> {
        if !self.file.is_placed() && video && self.on_disk() > self.header_len {
            self.file
                .place()
                .map_err(|e| PipelineError::Output(format!("{}: {e}", out_path.display())))?;
        }
        Ok(self.file.is_placed())
    }
}

/// Copies `src`'s video and the audio MP4 can hold into an MP4 at
/// `out_path` until the input ends, `duration` seconds of video are in, or
/// `stop` is set; `on_frame` sees the summary after each video packet.
pub fn run(
    src: &InputSource,
    out_path: &Path,
    duration: Option<f64>,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
    on_frame: &mut dyn FnMut(&RemuxSummary),
) -> Result<RemuxSummary, PipelineError> {
    let mut ictx = input::open(src, stop.clone(), bytes_read.clone())
        .map_err(|e| PipelineError::Open(e.to_string()))?;
    let video = ictx
        .streams()
        .best(media::Type::Video)
        .map(|s| s.index())
        .ok_or(PipelineError::NoVideo)?;

    let out_err = |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", out_path.display()));
    // Dropped before it holds video (any early return), the temporary file
    // goes, and what was at the output path stays.
    let mut staged = Staged::new(out_path);

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
    let (mut octx, map) = match open_output(&ictx, staged.path(), &keep) {
        Ok(o) => o,
        // The muxer refuses some audio only when writing the header (MP3 at
        // 8 kHz, say): the video matters more, so go on without the audio.
        Err(_) if keep.len() > 1 => {
            summary.audio_dropped = true;
            open_output(&ictx, staged.path(), &[video]).map_err(out_err)?
        }
        Err(e) => return Err(out_err(e)),
    };
    staged.header_written(&mut octx);
    // Time bases are only final after the header is written.
    let out_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();

    let mut first: Option<f64> = None;
    let mut gate = duration_gate(duration);
    let mut pkt = ffmpeg::Packet::empty();
    let mut failure = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match input::read_packet(&mut ictx, &mut pkt) {
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
        if input::cut_off(src, &pkt) {
            continue;
        }
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
                if gate.admit(t - f) == Admit::Stop {
                    break;
                }
                // Up to the end of the picture, as players and ffprobe
                // count a file's length: at 1 fps, 3 pictures are 3 s.
                let shown = pkt.duration() as f64 * f64::from(in_tb[i]);
                summary.seconds = summary.seconds.max(t - f + shown);
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
        if !summary.placed {
            match staged.check(summary.video_frames > 0, out_path) {
                Ok(p) => summary.placed = p,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if i == video {
            on_frame(&summary);
        }
    }
    // Always finish the file: what was copied before a fault stays playable.
    let trailer = octx.write_trailer();
    if trailer.is_ok() {
        match staged.check(summary.video_frames > 0, out_path) {
            Ok(p) => summary.placed = p,
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if failure.is_some() || trailer.is_err() {
        // Closed first: a flush at the close must not land after the cut.
        drop(octx);
        cut_back(staged.path(), &mut summary);
    }
    on_frame(&summary);
    if let Some(f) = failure {
        return Err(f);
    }
    trailer.map_err(out_err)?;
    if !summary.placed {
        return Err(PipelineError::Output(
            "the input ended before any video arrived".into(),
        ));
    }
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
        // SAFETY: plain field writes on the output stream's parameters.
        unsafe {
            super::set_mp4_tag(ost.parameters().as_mut_ptr());
        }
        // A rotated video (a phone's) stays rotated, as with `ffmpeg -c copy`.
        if let Some(m) = DisplayMatrix::of_stream(&ist) {
            // SAFETY: the stream is the output's own, before its header.
            unsafe { m.add_to(ost.as_mut_ptr())? };
        }
        if let Some(slot) = map.get_mut(i) {
            *slot = Some(n);
        }
    }
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
    // Each fragment goes to disk as soon as the muxer completes it (the
    // AVIO buffer would otherwise hold up to 256 KiB of it): a run killed
    // mid-way leaves whole fragments, and [`Staged`] sees the first one.
    opts.set("flush_packets", "1");
    octx.write_header_with(opts)?;
    Ok((octx, map))
}

/// `--duration` for a recording (nothing is skipped, and every picture
/// is kept until the stop).
fn duration_gate(duration: Option<f64>) -> crate::packet::Gate {
    Limits {
        duration,
        ..Limits::default()
    }
    .gate()
}

/// Records whole JPEGs from an MJPEG receiver into MP4 as they are (codec
/// mjpeg), timed by arrival (or the camera's timestamps), fragmented at
/// every frame so a recording cut short still plays.
pub fn record_jpegs(
    mut rx: Items<JpegFrame>,
    out_path: &Path,
    duration: Option<f64>,
    stop: Arc<AtomicBool>,
    on_frame: &mut dyn FnMut(&RemuxSummary),
) -> Result<RemuxSummary, PipelineError> {
    let out_err = |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", out_path.display()));
    let mut clock = JpegClock::default();
    let mut gate = duration_gate(duration);
    // Arrival times come in bursts when a read was held up; evened out, as
    // for encoding, so that players and the ffmpeg CLI (which round to a
    // guessed frame rate) do not see two pictures at one instant. A
    // camera's own timestamps are kept as they are.
    let mut even = super::encode::Smoother::default();
    let mut mp4: Option<TimedMp4> = None;
    let mut failure = None;
    while let Some(jpeg) = super::next_item(&mut rx, &stop, &mut failure) {
        let t = clock.time(&jpeg);
        let t = if jpeg.pts.is_none() { even.time(t) } else { t };
        if gate.admit(t) == Admit::Stop {
            break;
        }
        if mp4.is_none() {
            // The first picture's frame header gives the stream its size.
            let Some((w, h)) = jpeg::dimensions(&jpeg.data) else {
                continue;
            };
            let m = TimedMp4::open(out_path, codec::Id::MJPEG, w.into(), h.into(), &[])
                .map_err(out_err)?;
            mp4 = Some(m);
        }
        let Some(m) = mp4.as_mut() else { continue };
        if let Err(e) = m.write(&jpeg.data, t, true) {
            failure = Some(out_err(e));
            break;
        }
        if let Err(e) = m.check_placed() {
            failure = Some(e);
            break;
        }
        on_frame(&m.summary);
    }
    rx.close();
    finish(mp4, failure, on_frame)
}

/// Records coded packets (RTSP H.264 or H.265) into MP4 without
/// re-encoding: the stream's parameters become the sample entry (`avcC`,
/// or `hvcC` under `hvc1`), the packets its samples, from the first IDR
/// on, fragmented at each IDR.
pub fn record_packets(
    mut rx: Items<VideoPacket>,
    out_path: &Path,
    duration: Option<f64>,
    stop: Arc<AtomicBool>,
    on_frame: &mut dyn FnMut(&RemuxSummary),
) -> Result<RemuxSummary, PipelineError> {
    let out_err = |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", out_path.display()));
    let mut mp4: Option<(TimedMp4, Arc<VideoParams>)> = None;
    let mut params: Option<Arc<VideoParams>> = None;
    let mut first_pts = None;
    let mut gate = duration_gate(duration);
    let mut dts = DtsMaker::default();
    let mut failure = None;
    while let Some(pkt) = super::next_item(&mut rx, &stop, &mut failure) {
        if let Some(p) = &pkt.params {
            params = Some(p.clone());
        }
        let Some(current) = params.clone() else {
            continue;
        };
        if mp4.is_none() {
            if !pkt.key {
                continue;
            }
            let m = TimedMp4::open(
                out_path,
                super::codec_id(current.codec),
                current.width,
                current.height,
                &current.extradata,
            )
            .map_err(out_err)?;
            mp4 = Some((m, current.clone()));
        }
        let Some((m, opened_with)) = mp4.as_mut() else {
            continue;
        };
        if (opened_with.width, opened_with.height) != (current.width, current.height) {
            // One MP4 track has one picture size: the recording ends there.
            // (New parameter sets for the same size arrive in band and
            // decoders take them from there.)
            failure = Some(PipelineError::Output(format!(
                "the camera changed its picture size from {}x{} to {}x{}; the recording ends there",
                opened_with.width, opened_with.height, current.width, current.height
            )));
            break;
        }
        let t = pkt.pts - *first_pts.get_or_insert(pkt.pts);
        if gate.admit(t) == Admit::Stop {
            break;
        }
        let pts = m.ticks(t);
        if let Some((p, pts, dts)) = dts.push(pkt, pts) {
            if let Err(e) = write_reordered(m, &p, pts, dts, out_path) {
                failure = Some(e);
                break;
            }
            on_frame(&m.summary);
        }
    }
    rx.close();
    // The pictures still held back for their decode times (unless the file
    // itself failed).
    if let (Some((m, _)), false) = (
        mp4.as_mut(),
        matches!(failure, Some(PipelineError::Output(_))),
    ) {
        while let Some((p, pts, dts)) = dts.pop() {
            if let Err(e) = write_reordered(m, &p, pts, dts, out_path) {
                failure = Some(e);
                break;
            }
            on_frame(&m.summary);
        }
    }
    finish(mp4.map(|(m, _)| m), failure, on_frame)
}

fn write_reordered(
    m: &mut TimedMp4,
    p: &VideoPacket,
    pts: i64,
    dts: i64,
    out_path: &Path,
) -> Result<(), PipelineError> {
    m.write_at(&p.data, pts, dts, p.key)
        .map_err(|e| PipelineError::Output(format!("{}: {e}", out_path.display())))?;
    m.check_placed()
}

/// Pictures held back to give each its decode time.
const REORDER_WINDOW: usize = 4;

/// Decode times for pictures that arrive in decode order with presentation
/// times only (RTP carries no DTS). Without B-frames DTS = PTS. With them,
/// PTS go back and forth while DTS must rise and never pass the PTS: the
/// i-th DTS is the i-th smallest PTS less a shift, the largest lead of a
/// sorted PTS over the picture's own among the first pictures (one frame
/// for I P B B). Pictures are held back [`REORDER_WINDOW`] deep, so the
/// smallest PTS still to come is known.
#[derive(Debug)]
pub(crate) struct DtsMaker<T> {
    queue: std::collections::VecDeque<(T, i64)>,
    pending: std::collections::BinaryHeap<std::cmp::Reverse<i64>>,
    shift: Option<i64>,
    last: Option<i64>,
}

impl<T> Default for DtsMaker<T> {
    fn default() -> Self {
        DtsMaker {
            queue: Default::default(),
            pending: Default::default(),
            shift: None,
            last: None,
        }
    }
}

impl<T> DtsMaker<T> {
    /// Takes the next picture in decode order; hands back the oldest held
    /// one with its (pts, dts) once the window is full.
    pub(crate) fn push(&mut self, item: T, pts: i64) -> Option<(T, i64, i64)> {
        self.queue.push_back((item, pts));
        self.pending.push(std::cmp::Reverse(pts));
        if self.queue.len() > REORDER_WINDOW {
            self.pop()
        } else {
            None
        }
    }

    /// The oldest held picture (call until `None` at the end).
    pub(crate) fn pop(&mut self) -> Option<(T, i64, i64)> {
        if self.shift.is_none() {
            let mut sorted: Vec<i64> = self.queue.iter().map(|(_, p)| *p).collect();
            sorted.sort_unstable();
            let lead = self
                .queue
                .iter()
                .zip(&sorted)
                .map(|((_, pts), s)| s - pts)
                .max()
                .unwrap_or(0);
            self.shift = Some(lead.max(0));
        }
        let (item, pts) = self.queue.pop_front()?;
        let std::cmp::Reverse(smallest) = self.pending.pop()?;
        // Never past the PTS: pictures lost before this one (dropped up to
        // an IDR after a loss, or cut off by a reconnect) leave holes in
        // the sorted times.
        let mut dts = (smallest - self.shift.unwrap_or(0)).min(pts);
        if let Some(last) = self.last {
            dts = dts.max(last + 1);
        }
        self.last = Some(dts);
        // A repeated timestamp, or a reorder deeper than the first
        // pictures showed, is the one case left: the picture is shown a
        // tick or two late rather than refused.
        Some((item, pts.max(dts), dts))
    }
}

/// Ends a [`TimedMp4`] recording: the index is written even after a
/// failure, so everything before it plays.
fn finish(
    mp4: Option<TimedMp4>,
    failure: Option<PipelineError>,
    on_frame: &mut dyn FnMut(&RemuxSummary),
) -> Result<RemuxSummary, PipelineError> {
    let Some(m) = mp4 else {
        return Err(failure.unwrap_or_else(|| {
            PipelineError::Output("the stream ended before any picture arrived".into())
        }));
    };
    let path = m.staged.path().to_path_buf();
    let (mut summary, trailer) = m.finish();
    if failure.is_some() || trailer.is_err() {
        cut_back(&path, &mut summary);
    }
    on_frame(&summary);
    if let Some(f) = failure {
        return Err(f);
    }
    trailer?;
    Ok(summary)
}

/// After a failed write (a full disk): a recording that has replaced the
/// output is cut back to its last whole fragment, and the summary counts
/// the frames in what is left, which is what players read from it.
fn cut_back(path: &Path, summary: &mut RemuxSummary) {
    if !summary.placed {
        return;
    }
    if let Ok(whole) = crate::sink::fmp4_file::cut_to_whole_fragments(path) {
        summary.video_frames = whole.video_samples;
    }
}

/// One video stream written into fragmented MP4 on camflow's own clock
/// (seconds from the first picture). Each packet is written when the next
/// one arrives, so that it carries its real duration.
struct TimedMp4 {
    octx: ffmpeg::format::context::Output,
    /// Declared after `octx`, so the file is closed before an unplaced one
    /// is removed.
    staged: Staged,
    out_path: std::path::PathBuf,
    out_tb: Rational,
    pending: Option<(ffmpeg::Packet, i64)>,
    summary: RemuxSummary,
    /// The last picture's decode time, ticks.
    last_dts: Option<i64>,
}

impl TimedMp4 {
    fn open(
        out_path: &Path,
        id: codec::Id,
        width: u32,
        height: u32,
        extradata: &[u8],
    ) -> Result<Self, ffmpeg::Error> {
        let mut staged = Staged::new(out_path);
        let mut octx = ffmpeg::format::output_as(staged.path(), "mp4")?;
        {
            let mut ost = octx.add_stream(encoder::find(codec::Id::None))?;
            ost.set_time_base(Rational::new(1, 90_000));
            // SAFETY: plain field writes on the new stream's own parameters;
            // the extradata is a padded copy libavformat owns and frees.
            unsafe {
                let par = ost.parameters().as_mut_ptr();
                (*par).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
                (*par).codec_id = id.into();
                super::set_mp4_tag(par);
                (*par).width = i32::try_from(width).unwrap_or(0);
                (*par).height = i32::try_from(height).unwrap_or(0);
                super::set_extradata(&mut (*par).extradata, &mut (*par).extradata_size, extradata)?;
            }
        }
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
        // Each fragment to disk when complete, as in `open_output`.
        opts.set("flush_packets", "1");
        octx.write_header_with(opts)?;
        staged.header_written(&mut octx);
        let out_tb = octx
            .stream(0)
            .map(|s| s.time_base())
            .unwrap_or(Rational::new(1, 90_000));
        Ok(TimedMp4 {
            octx,
            staged,
            out_path: out_path.to_path_buf(),
            out_tb,
            pending: None,
            summary: RemuxSummary::default(),
            last_dts: None,
        })
    }

    /// Seconds from the first picture in the track's own ticks (so that
    /// "one more" is one the muxer sees).
    fn ticks(&self, t: f64) -> i64 {
        (t / f64::from(self.out_tb)).round() as i64
    }

    /// A picture whose decode order is its presentation order, at `t`
    /// seconds from the first.
    fn write(&mut self, data: &[u8], t: f64, key: bool) -> Result<(), ffmpeg::Error> {
        let mut ts = self.ticks(t);
        // Timestamps must go up; a repeated one moves on by a tick.
        if let Some(last) = self.last_dts {
            ts = ts.max(last + 1);
        }
        self.write_at(data, ts, ts, key)
    }

    /// A picture with its presentation and decode times, in ticks.
    fn write_at(
        &mut self,
        data: &[u8],
        pts: i64,
        dts: i64,
        key: bool,
    ) -> Result<(), ffmpeg::Error> {
        if let Some((mut prev, prev_dts)) = self.pending.take() {
            prev.set_duration((dts - prev_dts).max(1));
            prev.write_interleaved(&mut self.octx)?;
        }
        self.last_dts = Some(dts);
        let mut pkt = ffmpeg::Packet::copy(data);
        pkt.set_pts(Some(pts));
        pkt.set_dts(Some(dts));
        pkt.set_stream(0);
        if key {
            pkt.set_flags(ffmpeg::packet::Flags::KEY);
        }
        self.pending = Some((pkt, dts));
        self.summary.video_frames += 1;
        self.summary.packets += 1;
        self.summary.seconds = self
            .summary
            .seconds
            .max(pts as f64 * f64::from(self.out_tb));
        Ok(())
    }

    /// Moves the file over the output once a fragment is on disk.
    fn check_placed(&mut self) -> Result<(), PipelineError> {
        if !self.summary.placed {
            self.summary.placed = self.staged.check(true, &self.out_path)?;
        }
        Ok(())
    }

    /// The last picture lasts as long as the ones before it did, on
    /// average; then the index. The file replaces the output if it holds
    /// video by then; if not, it is removed.
    fn finish(mut self) -> (RemuxSummary, Result<(), PipelineError>) {
        let out_err =
            |e: ffmpeg::Error| PipelineError::Output(format!("{}: {e}", self.out_path.display()));
        let mut r = Ok(());
        if let Some((mut last, _)) = self.pending.take() {
            let n = self.summary.video_frames.max(2) - 1;
            let avg = ((self.summary.seconds / f64::from(self.out_tb)) / n as f64).round() as i64;
            last.set_duration(avg.max(1));
            // The recording lasts to the end of its last picture.
            if let Some(p) = last.pts() {
                let end = (p + avg.max(1)) as f64 * f64::from(self.out_tb);
                self.summary.seconds = self.summary.seconds.max(end);
            }
            r = last.write_interleaved(&mut self.octx).map_err(out_err);
        }
        if r.is_ok() {
            r = self.octx.write_trailer().map_err(out_err);
        }
        if r.is_ok() {
            r = self.check_placed();
        }
        (self.summary, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pts: &[i64]) -> Vec<(i64, i64)> {
        let mut d = DtsMaker::default();
        let mut out: Vec<(i64, i64)> = pts
            .iter()
            .filter_map(|p| d.push((), *p))
            .map(|(_, p, t)| (p, t))
            .collect();
        while let Some((_, p, t)) = d.pop() {
            out.push((p, t));
        }
        out
    }

    fn rules_hold(out: &[(i64, i64)]) {
        for w in out.windows(2) {
            assert!(w[1].1 > w[0].1, "dts must rise: {out:?}");
        }
        for (pts, dts) in out {
            assert!(dts <= pts, "dts past pts: {out:?}");
        }
    }

    #[test]
    fn without_b_frames_dts_is_pts() {
        let pts: Vec<i64> = (0..20).map(|i| i * 3600).collect();
        let out = run(&pts);
        assert_eq!(out.len(), 20);
        assert!(out.iter().all(|(p, d)| p == d), "{out:?}");
    }

    #[test]
    fn b_frames_get_rising_decode_times_one_frame_early() {
        // I0 P3 B1 B2 P6 B4 B5 ... in decode order, 3600 ticks a frame.
        let mut pts = vec![0];
        for g in 0..6 {
            let base = g * 3;
            pts.extend([base + 3, base + 1, base + 2]);
        }
        let pts: Vec<i64> = pts.iter().map(|p| p * 3600).collect();
        let out = run(&pts);
        assert_eq!(out.len(), pts.len());
        rules_hold(&out);
        // Presentation times are kept as they came.
        let kept: Vec<i64> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(kept, pts);
        assert_eq!(out[0].1, -3600);
    }

    #[test]
    fn a_deeper_reorder_later_keeps_the_rules() {
        // Starts without B-frames, then B-frames arrive.
        let pts: Vec<i64> = [0, 1, 2, 3, 4, 8, 6, 5, 7, 12, 10, 9, 11]
            .iter()
            .map(|p| p * 100)
            .collect();
        rules_hold(&run(&pts));
    }

    #[test]
    fn lost_b_frames_and_repeated_times_keep_the_rules() {
        // I0 P3 B1 B2 P6 B4 [B5 lost: dropped up to the IDR] I9 P12 B10 B11,
        // and a repeated timestamp.
        let pts: Vec<i64> = [0, 3, 1, 2, 6, 4, 9, 12, 10, 11, 15, 13, 14, 14, 18]
            .iter()
            .map(|p| p * 100)
            .collect();
        let out = run(&pts);
        rules_hold(&out);
        assert_eq!(out.len(), pts.len());
    }
}
