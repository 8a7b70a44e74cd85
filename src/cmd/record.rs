//! `camflow record`: the stream as received, not re-encoded, as MP4.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::cli::RecordArgs;
use crate::cmd::decode::join;
use crate::cmd::open_or_stop;
use crate::cmd::progress::{count, Progress};
use crate::packet::Input;
use crate::pipeline::{self, remux, Fed};
use crate::shutdown::Shutdown;
use crate::sink::fmp4_file::{self, Fmp4FileWriter, RecordEnd, RecordError};
use crate::source;

pub async fn run(args: RecordArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let opts = args.source.options()?;
    let name = opts.spec.display_name();
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!(
                "{name}: cannot write {}: no such folder",
                args.output.display()
            );
        }
    }
    if let source::SourceSpec::File(input) = &opts.spec {
        if super::same_file(input, &args.output) {
            bail!(
                "{name}: the output {} is the input itself; writing it would destroy it",
                args.output.display()
            );
        }
    }
    let out = args.output.clone();
    let quiet = args.quiet;
    let duration = args.duration;

    let Some(opened) = open_or_stop(&opts, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    if let (Input::Fmp4(_), Some(stats)) = (&opened.input, &opened.stats) {
        let (Input::Fmp4(mut chunks), stats) = (opened.input, stats.clone()) else {
            bail!("{name}: internal error: the fMP4 input went away");
        };
        // fMP4 from the network: written exactly as received, on a thread of
        // its own because file writes block.
        // Whether this run put video at the output (an earlier recording
        // there is left alone until it does).
        let wrote = Arc::new(AtomicBool::new(false));
        let wrote_by_worker = wrote.clone();
        let worker = pipeline::spawn("camflow-record", move || {
            let mut w = Fmp4FileWriter::new(&out);
            let mut progress = Progress::new(quiet, "frames");
            let end = fmp4_file::record(&mut chunks, &mut w, duration, &mut |w| {
                wrote_by_worker.store(w.has_output(), Ordering::Relaxed);
                progress.update(w.frames, stats.bytes());
            });
            wrote_by_worker.store(w.has_output(), Ordering::Relaxed);
            progress.clear();
            let source_err = match end {
                Ok(RecordEnd::Done) => None,
                Ok(RecordEnd::Source(e)) => Some(e),
                // A failed write (a full disk) was cut back to the last
                // whole fragment: the count is of the frames in those,
                // which is what players read from the file.
                Err(e @ RecordError::Io { .. }) if w.has_output() => {
                    return Err(anyhow!(
                        "{e} ({} before it in {})",
                        count(w.frames, "frame"),
                        out.display()
                    ));
                }
                Err(e) => return Err(anyhow!("{e}")),
            };
            w.finish().map_err(|e| anyhow!("{e}"))?;
            if w.has_output() && source_err.is_none() {
                Progress::summary(
                    quiet,
                    &format!(
                        "recorded {} ({:.1} s) to {}",
                        count(w.frames, "video frame"),
                        w.seconds,
                        out.display()
                    ),
                );
            }
            match source_err {
                Some(e) if w.has_output() => Err(anyhow!(
                    "{e} ({} before it in {})",
                    count(w.frames, "frame"),
                    out.display()
                )),
                Some(e) => Err(anyhow!("{e}")),
                None if !w.has_output() => {
                    Err(anyhow!("the stream ended before any video arrived"))
                }
                None => Ok(()),
            }
        })
        .context("cannot start the record thread")?;
        return match join(worker).await? {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // Ctrl-C before any video: a stop, with nothing to keep.
            Err(_) if shutdown.is_triggered() && !wrote.load(Ordering::Relaxed) => {
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(anyhow!(
                "{name}: {}",
                source::redact_text(&format!("{e:#}"), &opts.spec)
            )),
        };
    }

    let stop = shutdown.flag();
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    let loss_stats = opened.stats.clone();
    let kept = Arc::new(AtomicU64::new(0));
    let kept_by_worker = kept.clone();
    // Whether this run's file has replaced the output (it does once it
    // holds video; before that an earlier file there is left alone).
    let placed = Arc::new(AtomicBool::new(false));
    let placed_by_worker = placed.clone();
    let partial = super::PartialCheck::new(&opts, quiet);
    let worker = pipeline::spawn("camflow-remux", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(loss_stats.clone());
        let received = loss_stats.clone();
        let mut on_frame = |s: &remux::RemuxSummary| {
            kept_by_worker.store(s.video_frames, Ordering::Relaxed);
            placed_by_worker.store(s.placed, Ordering::Relaxed);
            let b = match &received {
                Some(r) => r.bytes(),
                None => bytes.load(Ordering::Relaxed),
            };
            progress.update(s.video_frames, b);
        };
        // Cameras' JPEGs and H.264 pictures go into MP4 as they are;
        // anything libavformat reads is stream-copied.
        let r = match Fed::from(opened.input) {
            Fed::Jpegs(jpegs) => remux::record_jpegs(jpegs, &out, duration, stop, &mut on_frame),
            Fed::Packets(packets) => {
                remux::record_packets(packets, &out, duration, stop, &mut on_frame)
            }
            Fed::Input(input) => remux::run(&input, &out, duration, stop, counter, &mut on_frame),
        };
        progress.clear();
        if let Ok(s) = &r {
            // The copy holds the pictures before the cut, and the count is
            // of those; the one the cut runs through is left out.
            partial.warn();
            if s.audio_dropped {
                Progress::summary(
                    quiet,
                    "warning: MP4 refused the audio stream; the recording holds the video only",
                );
            }
            if s.untimed_reordered_video {
                Progress::summary(
                    quiet,
                    "warning: the video has no timestamps and uses B-frames; \
                     frames are timed in decode order",
                );
            }
            let loss = match loss_stats.as_ref().and_then(|l| l.loss_text()) {
                Some(l) => format!(" ({l})"),
                None => String::new(),
            };
            Progress::summary(
                quiet,
                &format!(
                    "recorded {} ({:.1} s) to {}{loss}",
                    count(s.video_frames, "video frame"),
                    s.seconds,
                    out.display()
                ),
            );
        }
        r
    })
    .context("cannot start the remux thread")?;
    match join(worker).await? {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // Ctrl-C before any video: a stop, and the output is as it was.
        Err(_) if shutdown.is_triggered() && !placed.load(Ordering::Relaxed) => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = source::redact_text(&e.to_string(), &opts.spec);
            let n = kept.load(Ordering::Relaxed);
            if n > 0 && placed.load(Ordering::Relaxed) {
                Err(anyhow!(
                    "{name}: {text} ({} before it in {})",
                    count(n, "frame"),
                    args.output.display()
                ))
            } else {
                Err(anyhow!("{name}: {text}"))
            }
        }
    }
}
