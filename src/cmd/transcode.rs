//! `camflow transcode` (FLV to a file or an RTMP server) and `camflow hls`
//! (fMP4 HLS in a folder): both run the output engine in
//! `pipeline::transcode` on a libav thread.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::cli::{EncodeArgs, HlsArgs, TranscodeArgs};
use crate::cmd::decode::join;
use crate::cmd::open_or_stop;
use crate::cmd::progress::{count, Progress};
use crate::packet::Input;
use crate::pipeline::encode::EncodeSettings;
use crate::pipeline::mux::{self, Container, HlsSpec, Target};
use crate::pipeline::transcode::{self, OutputJob};
use crate::pipeline::{self, PipelineError};
use crate::shutdown::Shutdown;
use crate::sink::fmp4_file;
use crate::source::{self, SourceOptions};

pub async fn run(args: TranscodeArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let mut opts = args.source.options()?;
    // A snapshot camera is asked for pictures at the rate that is kept.
    opts.poll_fps = args.encode.fps;
    let name = opts.spec.display_name();
    check_encode_args(&args.encode)?;
    if !(args.gop_seconds.is_finite() && args.gop_seconds > 0.0 && args.gop_seconds <= 3600.0) {
        bail!("--gop-seconds must be more than 0 and at most 3600");
    }
    let to = args.output.clone();
    let target = Target::Stream {
        container: args.to,
        to: to.clone(),
        timeout: args.source.timeout,
    };
    let shown = target.name();
    if to.contains("://") {
        let scheme = to
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !matches!(scheme.as_str(), "rtmp" | "rtmps") {
            bail!("{shown}: only rtmp:// and rtmps:// URLs can be pushed to; anything else is a file path");
        }
        if args.to != Container::Flv {
            bail!("{shown}: RTMP carries FLV; use --to flv to push");
        }
    } else {
        let out = std::path::Path::new(&to);
        check_parent(&name, out)?;
        if let source::SourceSpec::File(input) = &opts.spec {
            if super::same_file(input, out) {
                bail!("{name}: the output {to} is the input itself; writing it would destroy it");
            }
        }
    }
    let job = OutputJob {
        target,
        encode: settings(&args.encode, args.gop_seconds),
        force_encode: forces_encode(&args.encode),
        fps: args.encode.fps,
        duration: args.encode.duration,
        realtime: args.encode.realtime,
    };
    run_job(opts, job, args.quiet, shown, shutdown).await
}

pub async fn run_hls(args: HlsArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let mut opts = args.source.options()?;
    // A snapshot camera is asked for pictures at the rate that is kept.
    opts.poll_fps = args.encode.fps;
    check_encode_args(&args.encode)?;
    let seg = args.segment_seconds;
    if !(seg.is_finite() && (0.1..=600.0).contains(&seg)) {
        bail!("--segment-seconds must be between 0.1 and 600");
    }
    if !args.vod && args.window == 0 {
        bail!("--window must be at least 1 (or --vod to keep every segment)");
    }
    // libavformat's hls muxer reads `%` in its paths as a number pattern
    // (escaping it does not reach every path it builds).
    if args.out.to_string_lossy().contains('%') {
        bail!(
            "{}: the HLS folder name must not contain '%': {}",
            opts.spec.display_name(),
            args.out.display()
        );
    }
    // An earlier run's playlist and segments in the folder are removed when
    // this run starts writing, and a playlist read from there (with the
    // segments it names) or one of those files would go with them: such an
    // input is refused before anything is touched. Other files in the
    // folder (`hls clip.mp4 --out .`) are never removed.
    if let source::SourceSpec::File(input) = &opts.spec {
        if is_inside(input, &args.out) && is_hls_file(input) {
            bail!(
                "{}: the input is inside the HLS folder {}, where an earlier run's playlist and segments are removed; choose another --out",
                opts.spec.display_name(),
                args.out.display()
            );
        }
    }
    let created_dir = !args.out.exists();
    mux::prepare_hls_dir(&args.out).map_err(|e| anyhow!("{}: {e}", opts.spec.display_name()))?;
    let spec = HlsSpec {
        dir: args.out.clone(),
        segment_seconds: seg,
        window: (!args.vod).then_some(args.window),
    };
    let shown = spec.playlist().display().to_string();
    let created = created_dir;
    let job = OutputJob {
        target: Target::Hls(spec),
        // When encoding, a keyframe per segment: segments come out at the
        // length asked for.
        encode: settings(&args.encode, seg),
        force_encode: forces_encode(&args.encode),
        fps: args.encode.fps,
        duration: args.encode.duration,
        realtime: args.encode.realtime,
    };
    let r = run_job(opts, job, args.quiet, shown, shutdown).await;
    if r.is_err() && created {
        // Nothing to keep: the folder this run made goes, if still empty.
        let _ = std::fs::remove_dir(&args.out);
    }
    r
}

/// `--fps` is bounded where it is parsed (`cli::parse_fps`, shared with
/// `decode`); what is left is checked here.
fn check_encode_args(e: &EncodeArgs) -> anyhow::Result<()> {
    if let Some(d) = e.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    Ok(())
}

fn forces_encode(e: &EncodeArgs) -> bool {
    e.fps.is_some() || e.size.is_some() || e.bitrate.is_some()
}

fn settings(e: &EncodeArgs, gop_seconds: f64) -> EncodeSettings {
    EncodeSettings {
        size: e.size,
        bitrate: e.bitrate,
        gop_seconds,
        preset: e.preset.name().to_string(),
        // Decided once the source is open (live or a file).
        zerolatency: false,
        frame_rate: e.fps,
    }
}

/// A file the HLS muxer removes from its folder, or any other playlist
/// (its segments may be among those removed).
fn is_hls_file(file: &std::path::Path) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    mux::is_hls_output_name(name)
        || ext.eq_ignore_ascii_case("m3u8")
        || ext.eq_ignore_ascii_case("m3u")
}

/// Whether `file` is in `dir` or in a folder below it, through symlinks
/// (the file's path is resolved) and other names for `dir` (each folder
/// above the file is compared with it as the same file).
fn is_inside(file: &std::path::Path, dir: &std::path::Path) -> bool {
    let Ok(file) = file.canonicalize() else {
        return false;
    };
    file.ancestors().skip(1).any(|a| super::same_file(a, dir))
}

fn check_parent(name: &str, out: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("{name}: cannot write {}: no such folder", out.display());
        }
    }
    Ok(())
}

async fn run_job(
    opts: SourceOptions,
    mut job: OutputJob,
    quiet: bool,
    shown: String,
    shutdown: Shutdown,
) -> anyhow::Result<ExitCode> {
    let name = opts.spec.display_name();
    let Some(opened) = open_or_stop(&opts, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    // Cameras are live: no B-frames, no lookahead; files get x264's best.
    job.encode.zerolatency = !matches!(opened.input, Input::Path(_));
    let stop = shutdown.flag();
    let stopped = stop.clone();
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    let net = opened.stats.clone();
    let written = Arc::new(AtomicU64::new(0));
    let written_by_worker = written.clone();
    let target = job.target.clone();
    // A file output takes its name only once it holds video
    // (`mux::VideoMuxer`); which file is at the path afterwards says
    // whether this run's did, whatever way the run ended.
    let file_out = match &target {
        // A device or FIFO there is written in place: nothing to keep.
        Target::Stream { to, .. } if !target.is_url() => Some(Path::new(to).to_path_buf())
            .filter(|p| std::fs::metadata(p).map_or(true, |m| m.is_file())),
        _ => None,
    };
    let before = file_out.as_deref().and_then(super::file_id);
    let out_shown = shown.clone();
    let partial = super::PartialCheck::new(&opts, quiet);
    let worker = pipeline::spawn("camflow-transcode", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(net.clone());
        let mut on_frame = |s: &mux::MuxSummary| {
            written_by_worker.store(s.frames, Ordering::Relaxed);
            let b = match &net {
                Some(r) => r.bytes(),
                None => bytes.load(Ordering::Relaxed),
            };
            progress.update(s.frames, b);
        };
        let r = transcode::run(opened.input.into(), &job, stop, counter, &mut on_frame);
        progress.clear();
        // No video written: stopped (Ctrl-C), a clean end with nothing to
        // sum up; else the input ended before any, which is no success. A
        // file output is as it was either way.
        let r = match r {
            Ok(s) if s.mux.frames == 0 && !stopped.load(Ordering::Relaxed) => Err(
                PipelineError::Output("the input ended before any video arrived".into()),
            ),
            r => r,
        };
        if let Some(s) = r.as_ref().ok().filter(|s| s.mux.frames > 0) {
            // What came before the cut was written, and is what is counted.
            partial.warn();
            let how = match (s.copied, s.encoded_because) {
                (true, _) if s.h265 => "H.265 copied".to_string(),
                (true, _) => "H.264 copied".to_string(),
                (false, Some(why)) => format!("encoded to H.264: {why}"),
                (false, None) => "encoded to H.264".to_string(),
            };
            let mut loss = match net.as_ref().and_then(|l| l.loss_text()) {
                Some(l) => format!(", {l}"),
                None => String::new(),
            };
            if s.audio_left_out {
                loss.push_str(", audio left out");
            }
            if s.mux.pauses_removed > 0.0 {
                loss.push_str(&format!(
                    ", {:.1} s of pauses cut out of the timeline",
                    s.mux.pauses_removed
                ));
            }
            let what = match &job.target {
                Target::Hls(h) => match h.window {
                    Some(n) => format!("as live HLS (window of {n}) to {out_shown}"),
                    None => format!("as VOD HLS to {out_shown}"),
                },
                Target::Stream { .. } => format!("to {out_shown}"),
            };
            Progress::summary(
                quiet,
                &format!(
                    "wrote {} ({:.1} s) {what} ({how}{loss})",
                    count(s.mux.frames, "video frame"),
                    s.mux.seconds
                ),
            );
        }
        r
    })
    .context("cannot start the transcode thread")?;
    let r = join(worker).await?;
    // Whether the output file is this run's (`None`: not a file output).
    let replaced = file_out.map(|p| {
        let after = super::file_id(&p);
        after.is_some() && after != before
    });
    match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // Ctrl-C before any video: a stop, and a file output is as it was.
        Err(_)
            if shutdown.is_triggered()
                && (written.load(Ordering::Relaxed) == 0 || replaced == Some(false)) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = source::redact_text(&e.to_string(), &opts.spec);
            let n = written.load(Ordering::Relaxed);
            if n == 0 {
                return Err(anyhow!("{name}: {text}"));
            }
            // Frames went into the muxer, but no whole one reached the file
            // (a full disk): its temporary went, and an earlier file stays.
            if replaced == Some(false) {
                let unit = match &target {
                    Target::Stream {
                        container: Container::Mp4,
                        ..
                    } => "fragment",
                    _ => "frame",
                };
                let left = match before {
                    Some(_) => format!("the earlier {shown} was left as it was"),
                    None => format!("{shown} was not created"),
                };
                return Err(anyhow!(
                    "{name}: {text} (no {unit} was written whole; {left})"
                ));
            }
            // The output is closed by now. What a failed write (a full
            // disk) left part-way is cut back to the last whole segment or
            // tag, and the count is of what a player reads there.
            match &target {
                Target::Hls(spec) => match mux::repair_hls(spec) {
                    Ok(left) if left.segments > 0 => Err(anyhow!(
                        "{name}: {text} ({} in {} in {shown})",
                        count(left.frames, "frame"),
                        count(left.segments, "whole segment")
                    )),
                    Ok(_) => Err(anyhow!(
                        "{name}: {text} (no segment was written whole; {} was removed)",
                        shown
                    )),
                    Err(r) => Err(anyhow!("{name}: {text} ({r})")),
                },
                Target::Stream {
                    container: Container::Flv,
                    to,
                    ..
                } if Path::new(to).is_file() => match mux::cut_flv_to_whole_tags(Path::new(to)) {
                    Ok(left) if left.frames > 0 => Err(anyhow!(
                        "{name}: {text} ({} before it in {shown})",
                        count(left.frames, "frame")
                    )),
                    // A header at most, which plays nothing: the file goes.
                    Ok(_) => {
                        let _ = std::fs::remove_file(to);
                        Err(anyhow!(
                            "{name}: {text} (no frame was written whole; {shown} was removed)"
                        ))
                    }
                    Err(r) => Err(anyhow!("{name}: {text} (cannot cut {shown} back: {r})")),
                },
                Target::Stream {
                    container: Container::Mp4,
                    to,
                    ..
                } if Path::new(to).is_file() => {
                    match fmp4_file::cut_to_whole_fragments(Path::new(to)) {
                        Ok(left) if left.video_samples > 0 => Err(anyhow!(
                            "{name}: {text} ({} before it in {shown})",
                            count(left.video_samples, "frame")
                        )),
                        // Only the header is left, which plays nothing: the
                        // file goes, as a recording that never held video.
                        Ok(_) => {
                            let _ = std::fs::remove_file(to);
                            Err(anyhow!(
                            "{name}: {text} (no fragment was written whole; {shown} was removed)"
                        ))
                        }
                        Err(r) => Err(anyhow!("{name}: {text} (cannot cut {shown} back: {r})")),
                    }
                }
                _ => Err(anyhow!(
                    "{name}: {text} ({} before it went to {shown})",
                    count(n, "frame")
                )),
            }
        }
    }
}
