//! Stream copy of a file or stdin into MP4 with libavformat (no
//! re-encoding): video and audio streams, timestamps rescaled, codec tags
//! left to the muxer. Network sources that already deliver fMP4 are
//! recorded as received instead (`sink::fmp4_file`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ffmpeg::{codec, encoder, media, Rational};
use ffmpeg_next as ffmpeg;

use super::input::{self, InputSource};
use super::PipelineError;

#[derive(Debug, Default, Clone, Copy)]
pub struct RemuxSummary {
    pub packets: u64,
    pub video_frames: u64,
    pub seconds: f64,
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

    let mut octx = ffmpeg::format::output_as(out_path, "mp4")
        .map_err(|e| PipelineError::Output(format!("{}: {e}", out_path.display())))?;
    // Input stream index → output stream index, for the streams kept.
    let mut map: Vec<Option<usize>> = vec![None; ictx.nb_streams() as usize];
    let mut in_tb: Vec<Rational> = vec![Rational::new(0, 1); ictx.nb_streams() as usize];
    let mut n = 0usize;
    for ist in ictx.streams() {
        let kind = ist.parameters().medium();
        in_tb[ist.index()] = ist.time_base();
        if kind != media::Type::Video && kind != media::Type::Audio {
            continue;
        }
        let mut ost = octx
            .add_stream(encoder::find(codec::Id::None))
            .map_err(|e| PipelineError::Output(e.to_string()))?;
        ost.set_parameters(ist.parameters());
        // SAFETY: a plain field write; tags from another container can be
        // invalid in MP4, and 0 lets the muxer choose.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        map[ist.index()] = Some(n);
        n += 1;
    }
    octx.write_header()
        .map_err(|e| PipelineError::Output(format!("{}: {e}", out_path.display())))?;
    // Time bases are only final after the header is written.
    let out_tb: Vec<Rational> = octx.streams().map(|s| s.time_base()).collect();

    let mut summary = RemuxSummary::default();
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
            failure = Some(PipelineError::Output(format!(
                "{}: {e}",
                out_path.display()
            )));
            break;
        }
        summary.packets += 1;
    }
    // Always finish the file: what was copied before a fault stays playable.
    let trailer = octx.write_trailer();
    if let Some(f) = failure {
        return Err(f);
    }
    trailer.map_err(|e| PipelineError::Output(format!("{}: {e}", out_path.display())))?;
    Ok(summary)
}
