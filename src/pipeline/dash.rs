//! MPEG-DASH (CMAF fMP4 segments and an MPD) from a file by stream copy,
//! with libavformat's dash muxer: the muxer cuts at keyframes, writes the
//! SegmentTemplate/SegmentTimeline MPD and, on request, HLS playlists over
//! the same segments. The video representation's files go through a
//! `filter` (`package` encrypts them there) before they reach the disk:
//! the muxer writes them into memory (its `io_open`/`io_close2` hooks), so
//! each file is written once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ffmpeg::{codec, media, Rational};
use ffmpeg_next as ffmpeg;

use super::PipelineError;

/// The manifest's file name inside the output folder; written last, so a
/// player that finds it finds every segment too.
pub const MPD: &str = "stream.mpd";
/// The dash muxer's template for each representation's init segment name.
pub const INIT: &str = "init-$RepresentationID$.m4s";
/// The dash muxer's template for media segment names: numbered from 1, five
/// digits, so a folder listing sorts them in play order.
pub const MEDIA: &str = "chunk-$RepresentationID$-$Number%05d$.m4s";

/// What the clear package holds.
#[derive(Debug, Clone)]
pub struct ClearDash {
    /// Representation ID of the video (its files: `init-V.m4s`,
    /// `chunk-V-NNNNN.m4s`), and of the audio if any.
    pub video_rep: usize,
    /// Representation ID of the (AAC) audio; `None`: the package is video only.
    pub audio_rep: Option<usize>,
    /// Seconds of input.
    pub duration: f64,
    /// Audio streams left out (not AAC).
    pub skipped_audio: Vec<String>,
}

/// What [`write_clear`] reads and writes.
pub struct DashFiles<'a> {
    /// The file to package: its video, and its AAC audio if it has any.
    pub input: &'a Path,
    /// The video from this file instead (the input's, re-encoded).
    pub video_from: Option<&'a Path>,
    /// The output folder (it must exist).
    pub dir: &'a Path,
    /// The shortest segment wanted; segments start at keyframes, so they
    /// run to the next keyframe after this.
    pub segment_seconds: f64,
    /// HLS playlists too.
    pub hls: bool,
}

/// Rewrites a file of the video representation: (file name, bytes) →
/// bytes to write.
pub type Filter<'a> = dyn FnMut(&str, &[u8]) -> Result<Vec<u8>, String> + 'a;

/// Writes DASH of `input` into `dir` (which must exist), the video's init
/// and media segments through `filter`. `video_from`: take the video from
/// this file instead (`input`'s re-encoded to H.264), the audio still from
/// `input`. `on_progress(seconds done, seconds
/// total)`.
pub fn write_clear(
    what: &DashFiles<'_>,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(f64, f64),
    filter: &mut Filter<'_>,
) -> Result<ClearDash, PipelineError> {
    let DashFiles {
        input,
        video_from,
        dir,
        segment_seconds,
        hls,
    } = *what;
    let mut ictx = ffmpeg::format::input(input).map_err(|e| PipelineError::Open(e.to_string()))?;
    let mut vctx = match video_from {
        Some(v) => Some(ffmpeg::format::input(v).map_err(|e| PipelineError::Open(e.to_string()))?),
        None => None,
    };
    let total = super::probe::seconds(ictx.duration()).unwrap_or(0.0);
    let video = vctx
        .as_ref()
        .unwrap_or(&ictx)
        .streams()
        .best(media::Type::Video)
        .ok_or(PipelineError::NoVideo)?;
    let vid = video.parameters().id();
    if vid != codec::Id::H264 {
        return Err(PipelineError::Output(format!(
            "the video is {}; package takes H.264 video (--transcode re-encodes it)",
            vid.name()
        )));
    }
    let video_index = video.index();
    let mut skipped_audio = Vec::new();
    let mut audio_index = None;
    for s in ictx.streams() {
        if s.parameters().medium() != media::Type::Audio {
            continue;
        }
        if s.parameters().id() == codec::Id::AAC && audio_index.is_none() {
            audio_index = Some(s.index());
        } else {
            skipped_audio.push(s.parameters().id().name().to_string());
        }
    }
    let mpd = dir.join(MPD);
    let mut opts: Vec<(&str, String)> = vec![
        ("seg_duration", format!("{segment_seconds}")),
        ("use_template", "1".into()),
        ("use_timeline", "1".into()),
        ("init_seg_name", INIT.into()),
        ("media_seg_name", MEDIA.into()),
    ];
    if hls {
        opts.push(("hls_playlist", "1".into()));
    }
    let mpd_s = mpd.display().to_string();
    // Declared before the muxer: its callbacks use it until the muxer is
    // dropped.
    let mut hook = Hook {
        orig_open: None,
        orig_close2: None,
        open: std::collections::HashMap::new(),
        filter,
        error: None,
    };
    let mut octx = super::mux::open_output("dash", &mpd_s, &opts, None)
        .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    // SAFETY: the context is ours and open; the hook outlives it (declared
    // first, dropped last) and is only touched from this thread, inside
    // libav calls made below.
    unsafe {
        let c = octx.as_mut_ptr();
        hook.orig_open = (*c).io_open;
        hook.orig_close2 = (*c).io_close2;
        (*c).opaque = (&mut hook as *mut Hook).cast();
        (*c).io_open = Some(hook_open);
        (*c).io_close2 = Some(hook_close2);
    }
    let hook_failed = |hook: &Hook, e: ffmpeg::Error| match &hook.error {
        Some(h) => PipelineError::Output(h.clone()),
        None => PipelineError::Output(format!("{mpd_s}: {e}")),
    };
    // Inputs: 0 is `input`, 1 the separate video file if any. Per input,
    // its stream → output stream map and time bases.
    let n_in = 1 + usize::from(vctx.is_some());
    let mut map: Vec<Vec<Option<usize>>> = Vec::new();
    let mut in_tb: Vec<Vec<Rational>> = Vec::new();
    for k in 0..n_in {
        let c = if k == 0 {
            &ictx
        } else {
            vctx.as_ref().unwrap_or(&ictx)
        };
        map.push(vec![None; c.nb_streams() as usize]);
        in_tb.push(vec![Rational::new(0, 1); c.nb_streams() as usize]);
    }
    let video_input = n_in - 1;
    let streams = [(video_input, video_index)]
        .into_iter()
        .chain(audio_index.map(|a| (0, a)));
    for (n, (k, i)) in streams.enumerate() {
        let c = if k == 0 {
            &ictx
        } else {
            vctx.as_ref().unwrap_or(&ictx)
        };
        let Some(ist) = c.stream(i) else { continue };
        in_tb[k][i] = ist.time_base();
        let mut ost = octx
            .add_stream(ffmpeg::encoder::find(codec::Id::None))
            .map_err(|e| PipelineError::Output(e.to_string()))?;
        ost.set_parameters(ist.parameters());
        ost.set_time_base(ist.time_base());
        ost.set_avg_frame_rate(ist.avg_frame_rate());
        // SAFETY: a plain field write; 0 lets the muxer choose the tag.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        map[k][i] = Some(n);
    }
    let mut dict = ffmpeg::Dictionary::new();
    for (k, v) in &opts {
        dict.set(k, v);
    }
    octx.write_header_with(dict)
        .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    let out_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();
    let mut done = 0.0f64;
    // The next packet of each input that goes out, with its decode time in
    // seconds: the earlier one is written first, so two inputs interleave.
    let mut next: Vec<Option<(ffmpeg::Packet, f64)>> = (0..n_in).map(|_| None).collect();
    let mut ended = vec![false; n_in];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(PipelineError::Output("stopped".into()));
        }
        for k in 0..n_in {
            while next[k].is_none() && !ended[k] {
                let c = if k == 0 {
                    &mut ictx
                } else {
                    vctx.as_mut().unwrap_or(&mut ictx)
                };
                let mut pkt = ffmpeg::Packet::empty();
                match pkt.read(c) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Eof) => ended[k] = true,
                    Err(ffmpeg::Error::InvalidData) => {}
                    Err(e) => return Err(PipelineError::Read(e.to_string())),
                }
                if ended[k] {
                    break;
                }
                let i = pkt.stream();
                if let Some(Some(_)) = map[k].get(i) {
                    let ts = pkt.dts().or(pkt.pts()).unwrap_or(0);
                    next[k] = Some((pkt, ts as f64 * f64::from(in_tb[k][i])));
                }
            }
        }
        let pick = (0..n_in).filter(|k| next[*k].is_some()).min_by(|a, b| {
            let t = |k: usize| next[k].as_ref().map_or(f64::MAX, |(_, t)| *t);
            t(*a).total_cmp(&t(*b))
        });
        let Some(k) = pick else { break };
        let Some((mut pkt, _)) = next[k].take() else {
            break;
        };
        let i = pkt.stream();
        let Some(Some(o)) = map[k].get(i).copied() else {
            continue;
        };
        if k == video_input && i == video_index {
            if let Some(t) = pkt.pts().or(pkt.dts()) {
                done = done.max(t as f64 * f64::from(in_tb[k][i]));
                on_progress(done, total);
            }
        }
        pkt.rescale_ts(in_tb[k][i], out_tb[o]);
        pkt.set_stream(o);
        pkt.set_position(-1);
        if let Err(e) = pkt.write_interleaved(&mut octx) {
            return Err(hook_failed(&hook, e));
        }
        if let Some(e) = hook.error.take() {
            return Err(PipelineError::Output(e));
        }
    }
    if let Err(e) = octx.write_trailer() {
        return Err(hook_failed(&hook, e));
    }
    if let Some(e) = hook.error.take() {
        return Err(PipelineError::Output(e));
    }
    Ok(ClearDash {
        video_rep: 0,
        audio_rep: audio_index.map(|_| 1),
        duration: if total > 0.0 { total } else { done },
        skipped_audio,
    })
}

type OpenFn = unsafe extern "C" fn(
    *mut ffmpeg::ffi::AVFormatContext,
    *mut *mut ffmpeg::ffi::AVIOContext,
    *const std::ffi::c_char,
    std::ffi::c_int,
    *mut *mut ffmpeg::ffi::AVDictionary,
) -> std::ffi::c_int;
type Close2Fn = unsafe extern "C" fn(
    *mut ffmpeg::ffi::AVFormatContext,
    *mut ffmpeg::ffi::AVIOContext,
) -> std::ffi::c_int;

/// The dash muxer's file opener, wrapped: the video representation's
/// files are opened as memory buffers and go through `filter` on close.
struct Hook<'a, 'f> {
    orig_open: Option<OpenFn>,
    orig_close2: Option<Close2Fn>,
    /// Memory buffers handed out, by address, with the path asked for.
    open: std::collections::HashMap<usize, String>,
    filter: &'a mut Filter<'f>,
    error: Option<String>,
}

/// Files of the video representation (the muxer may add `.tmp` while
/// writing and rename after).
fn is_video_file(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    name == "init-0.m4s" || (name.starts_with("chunk-0-") && name.ends_with(".m4s"))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

unsafe extern "C" fn hook_open(
    s: *mut ffmpeg::ffi::AVFormatContext,
    pb: *mut *mut ffmpeg::ffi::AVIOContext,
    url: *const std::ffi::c_char,
    flags: std::ffi::c_int,
    options: *mut *mut ffmpeg::ffi::AVDictionary,
) -> std::ffi::c_int {
    // SAFETY: libav passes its own valid arguments; `opaque` is the Hook
    // set up in write_clear (nested contexts share it).
    unsafe {
        let hook = &mut *((*s).opaque as *mut Hook);
        let path = std::ffi::CStr::from_ptr(url).to_string_lossy().to_string();
        if flags & ffmpeg::ffi::AVIO_FLAG_WRITE != 0 && is_video_file(file_name(&path)) {
            let r = ffmpeg::ffi::avio_open_dyn_buf(pb);
            if r >= 0 {
                hook.open.insert(*pb as usize, path);
            }
            return r;
        }
        match hook.orig_open {
            Some(f) => f(s, pb, url, flags, options),
            None => ffmpeg::ffi::AVERROR(libc::ENOSYS),
        }
    }
}

unsafe extern "C" fn hook_close2(
    s: *mut ffmpeg::ffi::AVFormatContext,
    pb: *mut ffmpeg::ffi::AVIOContext,
) -> std::ffi::c_int {
    // SAFETY: as in hook_open; `pb` is one of ours when it is in `open`,
    // and then a dynamic buffer whose memory libav hands over.
    unsafe {
        let hook = &mut *((*s).opaque as *mut Hook);
        let Some(path) = hook.open.remove(&(pb as usize)) else {
            return match hook.orig_close2 {
                Some(f) => f(s, pb),
                None => 0,
            };
        };
        let mut buf: *mut u8 = std::ptr::null_mut();
        let len = ffmpeg::ffi::avio_close_dyn_buf(pb, &mut buf);
        let bytes: &[u8] = if buf.is_null() || len <= 0 {
            &[]
        } else {
            std::slice::from_raw_parts(buf, len as usize)
        };
        let name = file_name(&path);
        let name = name.strip_suffix(".tmp").unwrap_or(name).to_string();
        let written = (hook.filter)(&name, bytes)
            .and_then(|out| std::fs::write(&path, out).map_err(|e| format!("{path}: {e}")));
        ffmpeg::ffi::av_free(buf.cast());
        match written {
            Ok(()) => 0,
            Err(e) => {
                hook.error.get_or_insert(e);
                ffmpeg::ffi::AVERROR(libc::EIO)
            }
        }
    }
}
