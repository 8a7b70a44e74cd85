//! One video stream into a libavformat muxer: FLV to a file or an RTMP
//! server, or HLS (fMP4 segments) into a folder. Packets come in with their
//! own time base and are rescaled to the muxer's.
//!
//! HLS uses libavformat's hls muxer rather than segments written here: it
//! already splits at keyframes only, writes `EXT-X-MAP`, sets
//! `EXT-X-TARGETDURATION` to the longest segment rounded to the nearest
//! second (pauses in the source are cut out first: `GapCloser`), replaces the
//! playlist by write-then-rename, deletes segments that left a live window
//! after a grace of one segment, and writes `EXT-X-ENDLIST` in its trailer
//! (all checked by the tests against ffprobe and a browser).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ffmpeg::{codec, Rational};
use ffmpeg_next as ffmpeg;

use super::rotation::{DisplayMatrix, InitPatch};
use super::PipelineError;
use crate::packet::VideoParams;
use crate::sink::fmp4_file::{self, PendingFile};

/// A container `transcode --to` writes. A new one is a variant here, an
/// entry in [`Container::ALL`] and a line in [`Container::name`] and
/// `Container::muxer`. No default: a caller says which it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Flash Video: files, and what RTMP servers take.
    Flv,
    /// MP4 with H.264 video, fragmented at keyframes (as `record` writes
    /// it), so that a run cut short leaves a file that plays.
    Mp4,
}

impl Container {
    /// Every container, in the order a list of them is shown.
    pub const ALL: [Container; 2] = [Container::Flv, Container::Mp4];

    /// The name callers spell it with (`--to flv`, a config value); the
    /// [`Display`](fmt::Display) and [`FromStr`] form.
    pub fn name(self) -> &'static str {
        match self {
            Container::Flv => "flv",
            Container::Mp4 => "mp4",
        }
    }

    /// libavformat's name for the muxer, and its options.
    fn muxer(self) -> (&'static str, Vec<(&'static str, String)>) {
        match self {
            Container::Flv => ("flv", vec![]),
            // An index at the end would be lost with a full disk or a
            // crash, and the file would not play at all: fragments are
            // each complete, and what is left is cut back to the last
            // whole one (`sink::fmp4_file::cut_to_whole_fragments`).
            // `default_base_moof` as browsers' MSE want it; `flush_packets`
            // puts each fragment on disk as the muxer completes it.
            Container::Mp4 => (
                "mp4",
                vec![
                    (
                        "movflags",
                        "frag_keyframe+empty_moov+default_base_moof".to_string(),
                    ),
                    ("flush_packets", "1".to_string()),
                ],
            ),
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Container {
    type Err = String;
    /// Exact names only, as `--to` has always taken them.
    fn from_str(s: &str) -> Result<Self, String> {
        Container::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names = Container::ALL.map(Container::name);
                format!("unknown container {s:?} (expected {})", names.join(" or "))
            })
    }
}

/// Where the muxed stream goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A file path or a URL libavformat writes to (`rtmp://…`).
    Stream {
        /// The container written.
        container: Container,
        /// The file path or URL, as the user gave it (errors show it with
        /// [`Target::name`]'s redaction).
        to: String,
        /// Seconds a network write may block before the push fails.
        timeout: f64,
    },
    /// HLS with fMP4 segments in `dir`: `index.m3u8`, `init.mp4`,
    /// `segNNNNN.m4s`.
    Hls(HlsSpec),
}

/// Settings of an HLS output.
#[derive(Debug, Clone)]
pub struct HlsSpec {
    /// The folder the playlist and segments go in.
    pub dir: PathBuf,
    /// The shortest segment wanted; segments are cut at the first keyframe
    /// after it.
    pub segment_seconds: f64,
    /// `Some(n)`: live, a sliding window of n segments; `None`: VOD, every
    /// segment kept.
    pub window: Option<u32>,
}

impl HlsSpec {
    /// The media playlist a player opens (`index.m3u8` in the folder).
    pub fn playlist(&self) -> PathBuf {
        self.dir.join("index.m3u8")
    }
}

impl Target {
    /// Whether the output can keep a display matrix. FLV has no place for
    /// one: a rotated picture plays as stored there.
    pub fn keeps_display_matrix(&self) -> bool {
        !matches!(
            self,
            Target::Stream {
                container: Container::Flv,
                ..
            }
        )
    }

    /// Whether this goes over the network (an RTMP push).
    pub fn is_url(&self) -> bool {
        matches!(self, Target::Stream { to, .. } if to.contains("://"))
    }

    /// What messages call the output. A push URL loses its password and
    /// its stream key: everything after the application name, which
    /// services such as YouTube and Twitch give out as a password.
    pub fn name(&self) -> String {
        match self {
            Target::Stream { to, .. } if self.is_url() => match url::Url::parse(to) {
                Ok(u) => crate::redact::redact(&without_stream_key(u)),
                Err(_) => match to.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://***"),
                    None => "***".into(),
                },
            },
            Target::Stream { to, .. } => to.clone(),
            Target::Hls(h) => h.playlist().display().to_string(),
        }
    }

    /// A file output, which is written under a temporary name until it
    /// holds video ([`Staged`]).
    fn staged_file(&self) -> Option<(Container, &str)> {
        match self {
            Target::Stream { container, to, .. } if !self.is_url() => Some((*container, to)),
            _ => None,
        }
    }

    /// The local file this creates, if it is one (for clean-up when the
    /// output cannot even start).
    fn local_file(&self) -> Option<PathBuf> {
        match self {
            Target::Stream { to, .. } if !to.contains("://") => Some(PathBuf::from(to)),
            Target::Stream { .. } => None,
            Target::Hls(h) => Some(h.playlist()),
        }
    }

    fn open_spec(&self) -> (&'static str, String, Vec<(&'static str, String)>) {
        match self {
            Target::Stream {
                container,
                to,
                timeout,
            } => {
                let (fmt, mut opts) = container.muxer();
                if self.is_url() {
                    // Microseconds, for every protocol layer under it.
                    opts.push(("rw_timeout", format!("{}", (timeout * 1e6) as i64)));
                }
                (fmt, to.clone(), opts)
            }
            Target::Hls(h) => {
                let mut opts = vec![
                    ("hls_segment_type", "fmp4".to_string()),
                    ("hls_time", format!("{}", h.segment_seconds)),
                    ("hls_fmp4_init_filename", "init.mp4".to_string()),
                    (
                        "hls_segment_filename",
                        h.dir.join("seg%05d.m4s").display().to_string(),
                    ),
                ];
                match h.window {
                    Some(n) => {
                        opts.push(("hls_list_size", n.to_string()));
                        opts.push((
                            "hls_flags",
                            "delete_segments+temp_file+independent_segments".into(),
                        ));
                    }
                    None => {
                        opts.push(("hls_list_size", "0".into()));
                        opts.push(("hls_playlist_type", "vod".into()));
                        opts.push(("hls_flags", "temp_file+independent_segments".into()));
                    }
                }
                ("hls", h.playlist().display().to_string(), opts)
            }
        }
    }
}

/// `rtmp://host/app/key?token=…` → `rtmp://host/app/***`: the first path
/// segment (the application) is kept, anything after it and any query is
/// masked.
fn without_stream_key(mut u: url::Url) -> url::Url {
    let path = u.path().trim_start_matches('/').to_string();
    let (app, rest) = path.split_once('/').unwrap_or((&path, ""));
    if !rest.is_empty() || u.query().is_some() {
        u.set_path(&format!("/{app}/***"));
        u.set_query(None);
    }
    u.set_fragment(None);
    u
}

/// Running totals of what a muxer wrote: the progress line's figures while
/// it runs, the closing line's at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct MuxSummary {
    /// Video packets written.
    pub frames: u64,
    /// Presentation time of the last frame written, from the first.
    pub seconds: f64,
    /// Seconds of pauses taken out of an HLS timeline (`GapCloser`).
    pub pauses_removed: f64,
}

/// Takes a live source's pauses out of an HLS timeline. hlsenc gives a
/// pause (a camera that stalls, a reconnect) to the segment before it,
/// which then runs past the playlist's target duration, and the muxer
/// raises `EXT-X-TARGETDURATION` mid-stream; RFC 8216 forbids both, and
/// players may stop. HLS has no way to say "nothing here" short of a
/// discontinuity, which the muxer cannot start mid-stream. So a pause, more
/// than three usual intervals and more than 0.4 s (segments may run 0.5 s
/// over their length before the rounded target changes), is cut out: the
/// picture after it comes one usual interval after the one before. Viewers
/// see the picture jump ahead when the source comes back.
#[derive(Default)]
pub(crate) struct GapCloser {
    intervals: super::encode::Intervals,
    last: Option<f64>,
    removed: f64,
}

impl GapCloser {
    /// `t`: seconds, rising; the same time less the pauses before it.
    pub(crate) fn time(&mut self, t: f64) -> f64 {
        if let Some(last) = self.last {
            let d = t - last;
            match self.intervals.median() {
                Some(m) if d > (3.0 * m).max(0.4) => self.removed += d - m,
                _ => self.intervals.push(d),
            }
        }
        self.last = Some(t);
        t - self.removed
    }

    /// Seconds taken out so far.
    pub(crate) fn removed(&self) -> f64 {
        self.removed
    }
}

/// A file output written as `record` writes its MP4 ([`PendingFile`]):
/// under a temporary name beside it, renamed over the output once it holds
/// a whole tag (FLV) or fragment (MP4) of video. A run that fails or is
/// stopped before then leaves an earlier file at the path as it was, and no
/// new file; from then on the file is at its name, cut back on a full disk
/// as before.
struct Staged {
    file: PendingFile,
    container: Container,
    /// The length last read; the file is read again only once it changes.
    seen: u64,
}

impl Staged {
    /// Renames the file over the output if it holds a whole video frame.
    /// More than the header on disk is not enough: a write cut short on a
    /// full disk leaves part of a tag or fragment, which plays nothing, and
    /// would replace the earlier file for nothing.
    fn place_if_whole(&mut self) -> std::io::Result<()> {
        if self.file.is_placed() {
            return Ok(());
        }
        let path = self.file.path();
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len == self.seen {
            return Ok(());
        }
        self.seen = len;
        let frames = match self.container {
            Container::Flv => count_flv_whole_tags(path)?.frames,
            Container::Mp4 => fmp4_file::count_whole_fragments(path)?.video_samples,
        };
        if frames > 0 {
            self.file.place()?;
        }
        Ok(())
    }
}

/// An open muxer with one video stream.
pub struct VideoMuxer {
    // Dropped before `interrupt`, which libav's callback reads until then.
    octx: ffmpeg::format::context::Output,
    /// A file output not yet at its name. After `octx`: the file is closed
    /// before an unplaced one is removed.
    staged: Option<Staged>,
    interrupt: Box<Interrupt>,
    /// HLS of a rotated video: puts the matrix into `init.mp4`; libav's
    /// file hooks read it until `octx` is gone.
    _init_patch: Option<Box<InitPatch>>,
    out_tb: Rational,
    name: String,
    first_pts: Option<i64>,
    last_dts: Option<i64>,
    /// HLS only: pauses are cut out of the timeline.
    gaps: Option<GapCloser>,
    /// What has been written so far.
    pub summary: MuxSummary,
    finished: bool,
}

/// What libav's interrupt callback looks at: a network push gives up at
/// Ctrl-C (a stalled server would hold it for `--timeout` per write), and
/// any output once a write failed (the trailer and the close would each
/// wait on a dead connection again). Files are never interrupted: Ctrl-C
/// still finishes them (HLS: the final playlist with `EXT-X-ENDLIST`).
pub(crate) struct Interrupt {
    stop: Arc<AtomicBool>,
    network: bool,
    failed: AtomicBool,
    /// The first error a file the muxer opened itself showed when it was
    /// closed ([`close_checked`]); 0 while there is none.
    io_error: std::sync::atomic::AtomicI32,
}

impl Interrupt {
    fn now(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || (self.network && self.stop.load(Ordering::Relaxed))
    }
}

/// libavformat's `io_close2`, checking what was written: the hls muxer
/// writes its segments and playlists through files it opens itself and
/// ignores their write errors, so on a full disk it went on, reported
/// success, and renamed an empty playlist into place. The first error is
/// noted in the muxer's [`Interrupt`] (the context's `opaque`, which the
/// hls muxer hands on to the mp4 muxer inside it), for
/// [`VideoMuxer::write`] to report.
unsafe extern "C" fn close_checked(
    s: *mut ffmpeg::ffi::AVFormatContext,
    pb: *mut ffmpeg::ffi::AVIOContext,
) -> std::ffi::c_int {
    use ffmpeg::ffi;
    if pb.is_null() {
        return 0;
    }
    // SAFETY: `pb` is an open write context of this muxer; `opaque` is the
    // muxer's boxed `Interrupt` (set in `open_output`), which outlives it.
    unsafe {
        ffi::avio_flush(pb);
        let mut err = (*pb).error;
        let closed = ffi::avio_close(pb);
        if err >= 0 {
            err = closed;
        }
        let i = (*s).opaque as *const Interrupt;
        if err < 0 && !i.is_null() {
            let _ = (*i)
                .io_error
                .compare_exchange(0, err, Ordering::Relaxed, Ordering::Relaxed);
        }
        err.min(0)
    }
}

unsafe extern "C" fn interrupt_cb(opaque: *mut std::ffi::c_void) -> std::ffi::c_int {
    // SAFETY: `opaque` is the muxer's boxed `Interrupt`, which outlives the
    // format context (see the field order of `VideoMuxer`).
    let i = unsafe { &*(opaque as *const Interrupt) };
    std::ffi::c_int::from(i.now())
}

impl VideoMuxer {
    /// Opens the output and writes its header. `par`: the video stream's
    /// codec parameters; `time_base`: that of the packets to come.
    pub fn open(
        target: &Target,
        par: &codec::Parameters,
        time_base: Rational,
        frame_rate: Option<Rational>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Self, PipelineError> {
        Self::open_rotated(target, par, time_base, frame_rate, None, stop)
    }

    /// [`VideoMuxer::open`] for a stream with a display matrix, which the
    /// output keeps (HLS: in `init.mp4`; FLV has no place for one).
    pub fn open_rotated(
        target: &Target,
        par: &codec::Parameters,
        time_base: Rational,
        frame_rate: Option<Rational>,
        matrix: Option<DisplayMatrix>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Self, PipelineError> {
        let name = target.name();
        let network = target.is_url();
        let fail = |e: ffmpeg::Error| {
            let hint = if closed_by_server(e, network) {
                " (the server closed the connection before taking the stream: is the application name in the URL right?)"
            } else {
                ""
            };
            PipelineError::Output(format!("{name}: {}{hint}", explain(e)))
        };
        if let Target::Hls(h) = target {
            remove_earlier_hls(&h.dir).map_err(PipelineError::Output)?;
        }
        let staged = target.staged_file().map(|(container, to)| Staged {
            file: PendingFile::new(Path::new(to)),
            container,
            seen: 0,
        });
        // A staged file's temporary goes with it when the open fails.
        let created = match staged {
            Some(_) => None,
            None => target.local_file().filter(|p| !p.exists()),
        };
        let discard = |e: PipelineError| {
            if let Some(p) = &created {
                let _ = std::fs::remove_file(p);
            }
            e
        };
        let (fmt, mut to, opts) = target.open_spec();
        if let Some(s) = &staged {
            to = s.file.path().to_string_lossy().into_owned();
        }
        // Declared before the context, so that it is dropped after it.
        let mut init_patch = None;
        let interrupt = Box::new(Interrupt {
            stop: stop.clone(),
            network: target.is_url(),
            failed: AtomicBool::new(false),
            io_error: std::sync::atomic::AtomicI32::new(0),
        });
        let mut octx =
            open_output(fmt, &to, &opts, Some(&interrupt)).map_err(|e| discard(fail(e)))?;
        if let (Some(m), Target::Hls(h)) = (matrix, target) {
            // SAFETY: the context is new, its header not written, and the
            // patch outlives it (dropped after it, here and in `Self`).
            let init = h.dir.join("init.mp4");
            init_patch = Some(unsafe { InitPatch::install(octx.as_mut_ptr(), &init, m) });
        }
        {
            let mut ost = octx
                .add_stream(ffmpeg::encoder::find(codec::Id::None))
                .map_err(|e| discard(fail(e)))?;
            ost.set_parameters(par.clone());
            ost.set_time_base(time_base);
            if let Some(r) = frame_rate {
                ost.set_avg_frame_rate(r);
                ost.set_rate(r);
            }
            // SAFETY: plain field writes on the output stream's parameters.
            // FLV takes H.264 only, which gets 0 (the muxer's choice).
            unsafe {
                super::set_mp4_tag(ost.parameters().as_mut_ptr());
            }
            if let Some(m) = matrix {
                // SAFETY: the output's own stream, before its header.
                unsafe { m.add_to(ost.as_mut_ptr()) }.map_err(|e| discard(fail(e)))?;
            }
        }
        let mut dict = ffmpeg::Dictionary::new();
        for (k, v) in &opts {
            dict.set(k, v);
        }
        octx.write_header_with(dict).map_err(|e| discard(fail(e)))?;
        let out_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        Ok(VideoMuxer {
            octx,
            staged,
            interrupt,
            _init_patch: init_patch,
            out_tb,
            name,
            first_pts: None,
            last_dts: None,
            gaps: matches!(target, Target::Hls(_)).then(GapCloser::default),
            summary: MuxSummary::default(),
            finished: false,
        })
    }

    /// Writes one packet whose timestamps are in `tb`.
    pub fn write(&mut self, pkt: &mut ffmpeg::Packet, tb: Rational) -> Result<(), PipelineError> {
        pkt.rescale_ts(tb, self.out_tb);
        pkt.set_stream(0);
        pkt.set_position(-1);
        if let (Some(g), Some(dts)) = (self.gaps.as_mut(), pkt.dts().or(pkt.pts())) {
            let tb = f64::from(self.out_tb);
            let secs = dts as f64 * tb;
            let shift = ((secs - g.time(secs)) / tb).round() as i64;
            if shift > 0 {
                pkt.set_dts(pkt.dts().map(|d| d - shift));
                pkt.set_pts(pkt.pts().map(|p| p - shift));
            }
            self.summary.pauses_removed = g.removed();
        }
        // Decode times must rise: a repeated one (a camera's clock) moves on
        // by a tick, and never past the presentation time it belongs to.
        if let (Some(last), Some(dts)) = (self.last_dts, pkt.dts()) {
            if dts <= last {
                pkt.set_dts(Some(last + 1));
                if pkt.pts().is_some_and(|p| p < last + 1) {
                    pkt.set_pts(Some(last + 1));
                }
            }
        }
        self.last_dts = pkt.dts().or(self.last_dts);
        if let Some(p) = pkt.pts() {
            let first = *self.first_pts.get_or_insert(p);
            self.summary.seconds = self
                .summary
                .seconds
                .max((p - first) as f64 * f64::from(self.out_tb));
        }
        if let Err(e) = pkt
            .write_interleaved(&mut self.octx)
            .and_then(|()| self.io_result())
        {
            if self.stopped(e) {
                // Ctrl-C cut a push's write short (a paced push is always
                // waiting on one): a clean stop, as for every other output.
                // The caller sees the stop and ends; this picture is not
                // counted.
                return Ok(());
            }
            self.interrupt.failed.store(true, Ordering::Relaxed);
            return Err(self.write_error(e));
        }
        self.summary.frames += 1;
        self.place()
    }

    /// A staged file takes its name once it holds a whole video frame.
    fn place(&mut self) -> Result<(), PipelineError> {
        match self.staged.as_mut().map(Staged::place_if_whole) {
            Some(Err(e)) => Err(PipelineError::Output(format!("{}: {e}", self.name))),
            _ => Ok(()),
        }
    }

    /// Whether `e` is libav giving up on a push at Ctrl-C.
    fn stopped(&self, e: ffmpeg::Error) -> bool {
        e == ffmpeg::Error::Exit
            && self.interrupt.network
            && self.interrupt.stop.load(Ordering::Relaxed)
    }

    /// The error of a file the muxer opened and closed itself, if any.
    fn io_result(&self) -> Result<(), ffmpeg::Error> {
        match self.interrupt.io_error.load(Ordering::Relaxed) {
            0 => Ok(()),
            e => Err(ffmpeg::Error::from(e)),
        }
    }

    /// Writes the trailer (HLS: the last segment and `EXT-X-ENDLIST`). A
    /// push stopped by Ctrl-C ends without one, and that is no error.
    pub fn finish(mut self) -> Result<MuxSummary, PipelineError> {
        self.finished = true;
        match self.octx.write_trailer().and_then(|()| self.io_result()) {
            // The trailer writes out what the muxer held (an MP4's last
            // fragment), which may be the first whole video.
            Ok(()) => self.place().map(|()| self.summary),
            Err(_) if self.interrupt.network && self.interrupt.stop.load(Ordering::Relaxed) => {
                Ok(self.summary)
            }
            Err(e) => {
                self.interrupt.failed.store(true, Ordering::Relaxed);
                // Whole video written before the failure is kept (and cut
                // back to by the caller).
                let _ = self.place();
                Err(self.write_error(e))
            }
        }
    }

    fn write_error(&self, e: ffmpeg::Error) -> PipelineError {
        // RTMP servers refuse a stream key, or publishing, by hanging up:
        // the protocol brings no reason.
        let hint = if closed_by_server(e, self.interrupt.network) {
            " (the server closed the connection: does it accept this stream key, and publishing from here?)"
        } else {
            ""
        };
        PipelineError::Output(format!("{}: {}{hint}", self.name, explain(e)))
    }
}

/// Whether a push failed because the server hung up.
fn closed_by_server(e: ffmpeg::Error, network: bool) -> bool {
    network
        && matches!(e, ffmpeg::Error::Other { errno }
            if errno == libc::EIO || errno == libc::EPIPE || errno == libc::ECONNRESET)
}

impl Drop for VideoMuxer {
    fn drop(&mut self) {
        // An error path: still close the file properly (a playable FLV up
        // to here, a final playlist), ignoring what fails now.
        if !self.finished {
            let _ = self.octx.write_trailer();
            // What it wrote out may hold the first whole video; if not, the
            // temporary file goes and an earlier output stays.
            let _ = self.place();
        }
    }
}

/// libav's error text, with what it means for an output.
fn explain(e: ffmpeg::Error) -> String {
    match e {
        ffmpeg::Error::Other { errno } if errno == libc::ECONNREFUSED => {
            "connection refused (is the server running?)".into()
        }
        ffmpeg::Error::Other { errno } if errno == libc::ETIMEDOUT => "timed out".into(),
        ffmpeg::Error::Exit => "stopped".into(),
        // The system's own words, which users search for.
        ffmpeg::Error::Other { errno } if errno == libc::ENOSPC => "No space left on device".into(),
        other => other.to_string(),
    }
}

/// `avformat_alloc_output_context2`, then `avio_open2` unless the muxer
/// opens its files itself (hls does: `AVFMT_NOFILE`). ffmpeg-next's
/// `output_as_with` always opens the path, which for hls would create a
/// stray handle on the playlist.
pub(crate) fn open_output(
    fmt: &str,
    to: &str,
    opts: &[(&str, String)],
    interrupt: Option<&Interrupt>,
) -> Result<ffmpeg::format::context::Output, ffmpeg::Error> {
    use ffmpeg::ffi;
    let fmt_c = std::ffi::CString::new(fmt).map_err(|_| ffmpeg::Error::InvalidData)?;
    let to_c = std::ffi::CString::new(to).map_err(|_| ffmpeg::Error::InvalidData)?;
    let mut ps = std::ptr::null_mut();
    // SAFETY: standard libavformat calls; the context is wrapped (and so
    // freed) as soon as it exists, before anything can fail.
    unsafe {
        let r = ffi::avformat_alloc_output_context2(
            &mut ps,
            std::ptr::null_mut(),
            fmt_c.as_ptr(),
            to_c.as_ptr(),
        );
        if r < 0 || ps.is_null() {
            return Err(ffmpeg::Error::from(r.min(-1)));
        }
        let octx = ffmpeg::format::context::Output::wrap(ps);
        if let Some(i) = interrupt {
            (*ps).interrupt_callback = ffi::AVIOInterruptCB {
                callback: Some(interrupt_cb),
                opaque: i as *const Interrupt as *mut std::ffi::c_void,
            };
            (*ps).opaque = i as *const Interrupt as *mut std::ffi::c_void;
            (*ps).io_close2 = Some(close_checked);
        }
        let nofile = ((*(*ps).oformat).flags & ffi::AVFMT_NOFILE) != 0;
        if !nofile {
            let mut dict = ffmpeg::Dictionary::new();
            for (k, v) in opts {
                dict.set(k, v);
            }
            let mut raw = dict.disown();
            let r = ffi::avio_open2(
                &mut (*ps).pb,
                to_c.as_ptr(),
                ffi::AVIO_FLAG_WRITE,
                &(*ps).interrupt_callback,
                &mut raw,
            );
            ffmpeg::Dictionary::own(raw);
            if r < 0 {
                return Err(ffmpeg::Error::from(r));
            }
        }
        Ok(octx)
    }
}

/// Codec parameters for coded packets from a receiver (RTSP H.264).
pub fn params_of(v: &VideoParams) -> Result<codec::Parameters, PipelineError> {
    let mut par = codec::Parameters::new();
    let id = super::codec_id(v.codec);
    // SAFETY: plain field writes on parameters we own; the extradata is a
    // padded copy libav owns and frees with them.
    unsafe {
        let p = par.as_mut_ptr();
        (*p).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
        (*p).codec_id = id.into();
        (*p).width = i32::try_from(v.width).unwrap_or(0);
        (*p).height = i32::try_from(v.height).unwrap_or(0);
        super::set_extradata(&mut (*p).extradata, &mut (*p).extradata_size, &v.extradata)
            .map_err(|e| PipelineError::Output(e.to_string()))?;
    }
    Ok(par)
}

/// Whether `dir` can take HLS output: created if missing (with parents).
pub fn prepare_hls_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Removes what an earlier run left in an HLS folder, once this run has
/// something to write (a run that cannot start leaves the old output
/// alone): its playlist would be served until the new one replaces it, and
/// its segments would stay on disk for good. Only the muxer's own names
/// go: `index.m3u8`, `init.mp4`, `seg<digits>.m4s`, and their `.tmp`
/// files.
fn remove_earlier_hls(dir: &Path) -> Result<(), String> {
    crate::sink::remove_own(dir, is_hls_output_name)
        .map_err(|(p, e)| format!("cannot remove {}: {e}", p.display()))
}

/// A name the HLS muxer writes in its folder (and so removes there at the
/// start of a run): `index.m3u8`, `init.mp4`, `seg<digits>.m4s`, and
/// their `.tmp` files.
pub fn is_hls_output_name(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    matches!(name, "index.m3u8" | "init.mp4")
        || name
            .strip_prefix("seg")
            .and_then(|n| n.strip_suffix(".m4s"))
            .is_some_and(crate::sink::is_number)
}

/// What an output holds after a failed run, up to its last whole
/// segment or tag.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WholeOutput {
    /// HLS: segments listed in the playlist.
    pub segments: u64,
    /// Video frames a player reads (what `ffprobe -count_frames` counts).
    pub frames: u64,
}

/// One whole fMP4 segment on disk: its number, length in seconds and
/// video frames.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    number: u64,
    seconds: f64,
    frames: u64,
}

/// Reads `segNNNNN.m4s` as a whole segment: every box complete and at least
/// one `moof` with its `mdat`. `None` for a segment cut short (a failed
/// write) or one that is not fMP4.
fn whole_segment(path: &Path, number: u64, init: &crate::proto::bmff::InitInfo) -> Option<Segment> {
    use crate::proto::bmff;
    let data = std::fs::read(path).ok()?;
    let (mut seconds, mut frames, mut moof, mut fragments) = (0.0, 0u64, None, 0u32);
    for b in bmff::boxes(&data) {
        let b = b.ok()?;
        match &b.header.kind {
            b"moof" => {
                let start = usize::try_from(b.offset).ok()?;
                let bytes = data.get(start..start + b.header.header_len + b.body.len())?;
                moof = Some(bmff::parse_fragment_with_init(bytes, init).ok()?);
            }
            b"mdat" => {
                let f = moof.take()?;
                for t in &f.trafs {
                    let track = init.track(t.track_id)?;
                    if track.is_video() && track.timescale > 0 {
                        frames += t.sample_count;
                        seconds += t.duration? as f64 / f64::from(track.timescale);
                    }
                }
                fragments += 1;
            }
            _ => {}
        }
    }
    (fragments > 0 && moof.is_none()).then_some(Segment {
        number,
        seconds,
        frames,
    })
}

/// The playlist libavformat's hls muxer would write for these segments,
/// ended (`EXT-X-ENDLIST`): the run is over, nothing more will come.
fn playlist_text(segments: &[Segment], vod: bool) -> String {
    let target = segments
        .iter()
        .map(|s| s.seconds.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let first = segments.first().map_or(0, |s| s.number);
    let mut t = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    if vod {
        t.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    t.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n");
    for s in segments {
        t.push_str(&format!(
            "#EXTINF:{:.6},\nseg{:05}.m4s\n",
            s.seconds, s.number
        ));
    }
    t.push_str("#EXT-X-ENDLIST\n");
    t
}

/// After a run that failed while writing HLS (a full disk): the folder is
/// made to hold a playlist that lists only whole segments, ends with
/// `EXT-X-ENDLIST` (live and VOD alike: the run is over), and is replaced
/// by write-then-rename; segments cut short, and any written after one,
/// are removed. A playlist that is already whole is left as it is. Returns
/// what the playlist lists.
pub fn repair_hls(spec: &HlsSpec) -> Result<WholeOutput, String> {
    use crate::proto::bmff;
    let dir = &spec.dir;
    let playlist = spec.playlist();
    let init = std::fs::read(dir.join("init.mp4"))
        .ok()
        .and_then(|b| bmff::parse_init(&b).ok())
        .unwrap_or_default();
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix("seg")?.strip_suffix(".m4s")?;
            crate::sink::is_number(n).then(|| n.parse().ok())?
        })
        .collect();
    numbers.sort_unstable();
    let seg_path = |n: u64| dir.join(format!("seg{n:05}.m4s"));
    let mut whole = Vec::new();
    let mut cut = false;
    for n in numbers {
        match (cut, whole_segment(&seg_path(n), n, &init)) {
            (false, Some(s)) => whole.push(s),
            _ => {
                // Cut short, or after one that was: never listed, so gone.
                cut = true;
                let _ = std::fs::remove_file(seg_path(n));
            }
        }
    }
    if let Some(w) = spec.window {
        let skip = whole.len().saturating_sub(w as usize);
        whole.drain(..skip);
    }
    let left = WholeOutput {
        segments: whole.len() as u64,
        frames: whole.iter().map(|s| s.frames).sum(),
    };
    // Already whole: every segment it lists is, and it is ended.
    let current = std::fs::read_to_string(&playlist).unwrap_or_default();
    let listed: Vec<&str> = current
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let names: Vec<String> = whole
        .iter()
        .map(|s| format!("seg{:05}.m4s", s.number))
        .collect();
    if current.contains("#EXT-X-ENDLIST") && listed == names {
        return Ok(left);
    }
    if whole.is_empty() {
        // Nothing playable: none of this run's files stay.
        let _ = std::fs::remove_file(&playlist);
        let _ = std::fs::remove_file(dir.join("init.mp4"));
        return Ok(left);
    }
    let tmp = dir.join("index.m3u8.tmp");
    std::fs::write(&tmp, playlist_text(&whole, spec.window.is_none()))
        .and_then(|()| std::fs::rename(&tmp, &playlist))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot rewrite {}: {e}", playlist.display())
        })?;
    Ok(left)
}

/// After a failed write to an FLV file (a full disk): the file is cut back
/// to its last whole tag (header, body and the tag size after it), and
/// the video frames in it are counted (the AVC sequence header and
/// end-of-sequence tags carry none). Reads only the 11-byte tag headers
/// and one byte of each video tag.
pub fn cut_flv_to_whole_tags(path: &Path) -> std::io::Result<WholeOutput> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let (good, left) = whole_flv_tags(&file, len)?;
    if good < len {
        file.set_len(good)?;
    }
    Ok(left)
}

/// What [`cut_flv_to_whole_tags`] would leave, without cutting: for a file
/// still being written, whether it holds a whole video frame yet.
fn count_flv_whole_tags(path: &Path) -> std::io::Result<WholeOutput> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    Ok(whole_flv_tags(&file, len)?.1)
}

/// The length of the whole tags among an FLV file's first `len` bytes, and
/// the video frames in them.
fn whole_flv_tags(mut file: &std::fs::File, len: u64) -> std::io::Result<(u64, WholeOutput)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut head = [0u8; 13];
    let mut left = WholeOutput::default();
    // The file header (9 bytes, its length at 5..9) and the first,
    // zero, previous-tag size.
    let mut good = 0u64;
    if len >= 13 && file.read_exact(&mut head).is_ok() && head[..3] == *b"FLV" {
        good = u64::from(u32::from_be_bytes([head[5], head[6], head[7], head[8]])) + 4;
        let mut tag = [0u8; 12];
        loop {
            if good + 11 > len {
                break;
            }
            file.seek(SeekFrom::Start(good))?;
            let n = usize::try_from((len - good).min(12)).unwrap_or(11);
            file.read_exact(&mut tag[..n])?;
            let size = u64::from(u32::from_be_bytes([0, tag[1], tag[2], tag[3]]));
            let end = good + 11 + size + 4;
            if end > len {
                break;
            }
            // Video (9) with H.264 (codec id 7): AVCPacketType 1 is a
            // picture; other codecs have a picture in every video tag.
            let is_frame = tag[0] & 0x1f == 9
                && size >= 1
                && (tag[11] & 0x0f != 7
                    || (size >= 2 && {
                        let mut t = [0u8; 1];
                        file.seek(SeekFrom::Start(good + 12))?;
                        file.read_exact(&mut t)?;
                        t[0] == 1
                    }));
            if is_frame {
                left.frames += 1;
            }
            good = end;
        }
    }
    Ok((good.min(len), left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_read_back_from_their_names_and_nothing_else() {
        for c in Container::ALL {
            assert_eq!(c.to_string().parse::<Container>(), Ok(c));
        }
        assert_eq!(
            "FLV".parse::<Container>(),
            Err("unknown container \"FLV\" (expected flv or mp4)".to_string())
        );
        assert!("".parse::<Container>().is_err());
    }

    fn shown(to: &str) -> String {
        Target::Stream {
            container: Container::Flv,
            to: to.into(),
            timeout: 10.0,
        }
        .name()
    }

    #[test]
    fn a_pause_is_cut_to_one_usual_interval() {
        let mut g = GapCloser::default();
        let mut times: Vec<f64> = (0..50).map(|i| f64::from(i) * 0.04).collect();
        times.extend((0..50).map(|i| 12.0 + f64::from(i) * 0.04));
        let out: Vec<f64> = times.iter().map(|t| g.time(*t)).collect();
        assert_eq!(out[..50], times[..50]);
        assert!((out[50] - (out[49] + 0.04)).abs() < 1e-9, "{out:?}");
        for w in out.windows(2) {
            assert!((w[1] - w[0] - 0.04).abs() < 1e-9, "{out:?}");
        }
        assert!((g.removed() - (12.0 - 1.96 - 0.04)).abs() < 1e-9);
    }

    #[test]
    fn slow_and_jittery_streams_are_left_alone() {
        // One picture every 5 s (a snapshot camera, or --fps 0.2).
        let mut g = GapCloser::default();
        for i in 0..20 {
            let t = f64::from(i) * 5.0;
            assert_eq!(g.time(t), t);
        }
        // 25 fps with arrival jitter and a 300 ms hiccup.
        let mut g = GapCloser::default();
        let mut t = 0.0;
        for i in 0..200 {
            t += if i == 100 {
                0.3
            } else {
                0.04 + 0.01 * f64::from(i % 3)
            };
            assert_eq!(g.time(t), t);
        }
    }

    #[test]
    fn push_urls_are_shown_without_password_or_stream_key() {
        assert_eq!(
            shown("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl"),
            "rtmp://a.rtmp.youtube.com/live2/***"
        );
        assert_eq!(
            shown("rtmp://u:hunter2@127.0.0.1:1935/live/cam?token=t0p"),
            "rtmp://u:***@127.0.0.1:1935/live/***"
        );
        // Wowza's application/instance/stream: all but the application.
        assert_eq!(shown("rtmps://h/live/_definst_/s"), "rtmps://h/live/***");
        // Nothing after the application: nothing to hide.
        assert_eq!(shown("rtmp://127.0.0.1/open"), "rtmp://127.0.0.1/open");
        assert_eq!(shown("rtmp://[bad/key"), "rtmp://***");
        // Files are shown as given.
        assert_eq!(shown("out/cam.flv"), "out/cam.flv");
    }
}
