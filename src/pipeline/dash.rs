//! Clear MPEG-DASH (CMAF fMP4 segments and an MPD) from a file by stream
//! copy, with libavformat's dash muxer: the first half of `package`, whose
//! segments camflow then encrypts (`proto::cenc_mp4`). The muxer already
//! cuts at keyframes, writes the SegmentTemplate/SegmentTimeline MPD and,
//! on request, HLS playlists over the same segments.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ffmpeg::{codec, media, Rational};
use ffmpeg_next as ffmpeg;

use super::PipelineError;

/// File names inside the output folder.
pub const MPD: &str = "stream.mpd";
pub const INIT: &str = "init-$RepresentationID$.m4s";
pub const MEDIA: &str = "chunk-$RepresentationID$-$Number%05d$.m4s";

/// What the clear package holds.
#[derive(Debug, Clone)]
pub struct ClearDash {
    /// Representation ID of the video (its files: `init-V.m4s`,
    /// `chunk-V-NNNNN.m4s`), and of the audio if any.
    pub video_rep: usize,
    pub audio_rep: Option<usize>,
    /// Seconds of input.
    pub duration: f64,
    /// Audio streams left out (not AAC).
    pub skipped_audio: Vec<String>,
}

/// Writes clear DASH of `input` into `dir` (which must exist).
/// `on_progress(seconds done, seconds total)`.
pub fn write_clear(
    input: &Path,
    dir: &Path,
    segment_seconds: f64,
    hls: bool,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(f64, f64),
) -> Result<ClearDash, PipelineError> {
    let mut ictx = ffmpeg::format::input(input).map_err(|e| PipelineError::Open(e.to_string()))?;
    let total = if ictx.duration() > 0 {
        ictx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let video = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or(PipelineError::NoVideo)?;
    let vid = video.parameters().id();
    if vid != codec::Id::H264 {
        return Err(PipelineError::Output(format!(
            "the video is {}; package takes H.264 video",
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
    let mut octx = super::mux::open_output("dash", &mpd_s, &opts, None)
        .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    let mut map = vec![None; ictx.nb_streams() as usize];
    let mut in_tb = vec![Rational::new(0, 1); ictx.nb_streams() as usize];
    for (n, i) in std::iter::once(video_index).chain(audio_index).enumerate() {
        let Some(ist) = ictx.stream(i) else { continue };
        in_tb[i] = ist.time_base();
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
        map[i] = Some(n);
    }
    let mut dict = ffmpeg::Dictionary::new();
    for (k, v) in &opts {
        dict.set(k, v);
    }
    octx.write_header_with(dict)
        .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    let out_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();
    let mut pkt = ffmpeg::Packet::empty();
    let mut done = 0.0f64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(PipelineError::Output("stopped".into()));
        }
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => return Err(PipelineError::Read(e.to_string())),
        }
        let i = pkt.stream();
        let Some(Some(o)) = map.get(i).copied() else {
            continue;
        };
        if i == video_index {
            if let Some(t) = pkt.pts().or(pkt.dts()) {
                done = done.max(t as f64 * f64::from(in_tb[i]));
                on_progress(done, total);
            }
        }
        pkt.rescale_ts(in_tb[i], out_tb[o]);
        pkt.set_stream(o);
        pkt.set_position(-1);
        pkt.write_interleaved(&mut octx)
            .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    }
    octx.write_trailer()
        .map_err(|e| PipelineError::Output(format!("{mpd_s}: {e}")))?;
    Ok(ClearDash {
        video_rep: 0,
        audio_rep: audio_index.map(|_| 1),
        duration: if total > 0.0 { total } else { done },
        skipped_audio,
    })
}
