//! What libavformat finds in a source: container, streams, codecs, sizes,
//! frame rates.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use ffmpeg::media;
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use super::input::{self, InputSource};
use super::rotation::DisplayMatrix;
use super::PipelineError;

/// One stream of a probed source, as `camflow probe` prints it (JSON);
/// fields libav does not know are left out.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// The stream's index in the container.
    pub index: usize,
    /// libav's media type, lower case: `video`, `audio`, `data`, ….
    pub kind: String,
    /// libavcodec's codec name (`h264`, `mjpeg`, `aac`).
    pub codec: String,
    /// Video: width in pixels, as the stream's parameters give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Video: height in pixels, as the stream's parameters give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Video: the average frame rate, else the stream's base rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Video: libav's pixel format, lower case (`yuv420p`, `yuvj422p`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_format: Option<String>,
    /// Audio: samples per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// The display matrix: degrees a player turns the picture clockwise
    /// (ffprobe's `rotation` is the same angle counter-clockwise), and
    /// whether it mirrors it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<f64>,
    /// Whether the display matrix mirrors the picture (left out when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mirrored: bool,
}

/// What `camflow probe` reports of a source: the container and each stream.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    /// libavformat's short name of the demuxer (`mov,mp4,m4a,3gp,3g2,mj2`, `flv`).
    pub container: String,
    /// The demuxer's long, readable name.
    pub container_long: String,
    /// The container's duration, when it says (live sources do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Every stream, in container order.
    pub streams: Vec<StreamReport>,
}

/// The little a caller needs of a local file before working on it (packaging:
/// whether the video must be re-encoded, and the length its progress runs to).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileOutline {
    /// libavcodec's name for the main video stream's codec (`h264`, `hevc`);
    /// `None` when the file has no video.
    pub video_codec: Option<String>,
    /// The container's duration; `None` when it does not say.
    pub duration_seconds: Option<f64>,
}

/// Opens a local file only to read its [`FileOutline`]; `None` when
/// libavformat cannot open it (the step that reads it reports why).
pub fn outline(path: &Path) -> Option<FileOutline> {
    let ictx = ffmpeg::format::input(path).ok()?;
    let video_codec = ictx
        .streams()
        .best(media::Type::Video)
        .map(|s| s.parameters().id().name().to_string());
    Some(FileOutline {
        video_codec,
        duration_seconds: seconds(ictx.duration()),
    })
}

/// A container duration in AV_TIME_BASE units as seconds, if it is known.
pub(super) fn seconds(duration: i64) -> Option<f64> {
    (duration > 0).then(|| duration as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
}

fn rate(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

/// Opens `src` with libavformat and reports what it finds; `bytes` counts
/// what is read, `stop` gives up at Ctrl-C.
pub fn run(
    src: &InputSource,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
) -> Result<ContainerReport, PipelineError> {
    let ictx = input::open(src, stop, bytes).map_err(|e| PipelineError::Open(e.to_string()))?;
    let fmt = ictx.format();
    let mut streams = Vec::new();
    for st in ictx.streams() {
        let par = st.parameters();
        let kind = par.medium();
        let id = par.id();
        let mut r = StreamReport {
            index: st.index(),
            kind: format!("{kind:?}").to_lowercase(),
            codec: id.name().to_string(),
            width: None,
            height: None,
            fps: None,
            pixel_format: None,
            sample_rate: None,
            rotation: None,
            mirrored: false,
        };
        if let Some(m) = DisplayMatrix::of_stream(&st) {
            r.rotation = m.rotation();
            r.mirrored = m.mirrored();
        }
        if let Ok(ctx) = ffmpeg::codec::context::Context::from_parameters(par) {
            match kind {
                media::Type::Video => {
                    if let Ok(v) = ctx.decoder().video() {
                        r.width = Some(v.width()).filter(|w| *w > 0);
                        r.height = Some(v.height()).filter(|h| *h > 0);
                        let pf = v.format();
                        if pf != ffmpeg::format::Pixel::None {
                            r.pixel_format = Some(format!("{pf:?}").to_lowercase());
                        }
                    }
                    r.fps = rate(st.avg_frame_rate()).or_else(|| rate(st.rate()));
                }
                media::Type::Audio => {
                    if let Ok(a) = ctx.decoder().audio() {
                        r.sample_rate = Some(a.rate()).filter(|r| *r > 0);
                    }
                }
                _ => {}
            }
        }
        streams.push(r);
    }
    Ok(ContainerReport {
        container: fmt.name().to_string(),
        container_long: fmt.description().to_string(),
        duration_seconds: seconds(ictx.duration()),
        streams,
    })
}
