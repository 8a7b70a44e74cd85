//! `camflow decode`: a source → BGR frames as .npy files plus frames.csv.
//!
//! In: the command's flags, turned into the source's options, the frame
//! [`Limits`] and the [`DecodeSettings`]. The frames come from
//! [`decode::frames`], which decodes on a thread of its own; this file only
//! hands each one to the npy sink on a writer thread (file writes block),
//! gives its buffer back to the decoder, and ends with the one summary
//! line, or an error naming the source. With `--save-jpeg` nothing is
//! decoded: an MJPEG source's JPEGs are written as received, under the
//! same limits.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::cli::DecodeArgs;
use crate::cmd::open_or_stop;
use crate::cmd::progress::{count, Progress};
use crate::packet::{Admit, Input, Items, JpegClock, JpegFrame, Limits};
use crate::pipeline::decode::{self, DecodeSettings};
use crate::pipeline::{self, PipelineError};
use crate::proto::jpeg;
use crate::shutdown::Shutdown;
use crate::sink::npy::{NpyDirWriter, Row};
use crate::source::{self, SourceStats};

pub async fn run(args: DecodeArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let mut opts = args.source.options()?;
    // A snapshot camera is asked for pictures at the rate that is kept.
    opts.poll_fps = args.fps;
    let name = opts.spec.display_name();
    let limits = Limits {
        max_frames: args.max_frames,
        duration: args.duration,
        fps: args.fps,
    };
    limits.check().map_err(|e| anyhow!(e))?;
    let mut writer = NpyDirWriter::create(&args.frames_dir)
        .map_err(|e| anyhow!("{name}: cannot write frames: {e}"))?;

    let started = std::time::Instant::now();
    let settings = DecodeSettings {
        limits,
        name: name.clone(),
        jpeg_decoder: args.jpeg_decoder,
        autorotate: !args.no_autorotate,
    };
    let Some(opened) = open_or_stop(&opts, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let net_stats = opened.stats;
    if args.save_jpeg {
        return match (opened.input, net_stats) {
            (Input::Jpegs(jpegs), Some(stats)) => {
                let stopped = shutdown.flag();
                save_jpegs(jpegs, stats, writer, limits, &args, &name, started, stopped).await
            }
            _ => bail!(
                "{name}: --save-jpeg needs an MJPEG source (tcp://, vbc://, multipart MJPEG over HTTP, RTSP MJPEG)"
            ),
        };
    }
    let loss_stats = net_stats.clone();
    let mut frames = decode::frames(opened.input, settings, shutdown.flag())
        .map_err(|e| anyhow!("{name}: {e}"))?;

    let quiet = args.quiet;
    let writer_thread = pipeline::spawn("camflow-npy", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(net_stats.clone());
        let mut written = 0u64;
        let mut write_result = Ok(());
        while let Some(frame) = frames.next() {
            if let Err(e) = writer.write(&frame) {
                write_result = Err(e);
                break;
            }
            written += 1;
            let received = match &net_stats {
                Some(s) => s.bytes(),
                None => frames.bytes_read(),
            };
            progress.update(written, received);
            frames.recycle(frame.data);
        }
        progress.clear();
        (frames.finish(), written, write_result, writer)
    })
    .context("cannot start the writer thread")?;

    let (decoded, written, write_result, mut writer) = join(writer_thread).await?;
    let before = if written > 0 {
        format!(" ({} written before it)", count(written, "frame"))
    } else {
        String::new()
    };
    if let Err(e) = write_result {
        bail!("{name}: cannot write frames: {e}{before}");
    }
    // Ctrl-C before the stream got going (the open was cut short) is a
    // stop like any other, not an error.
    let decoded = match decoded {
        Err(PipelineError::Open(_) | PipelineError::Read(_) | PipelineError::Source(_))
            if shutdown.is_triggered() =>
        {
            Ok(Default::default())
        }
        other => other,
    };
    match decoded {
        Ok(s) => {
            super::PartialCheck::new(&opts, args.quiet).warn();
            let indexed = writer
                .finish(shutdown.is_triggered())
                .map_err(|e| anyhow!("{name}: cannot write frames: {e}"))?;
            if !indexed {
                Progress::summary(
                    args.quiet,
                    &format!(
                        "stopped before the first frame; {} was left as it was",
                        args.frames_dir.display()
                    ),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut dropped = if s.dropped_by_fps > 0 {
                format!(", {} dropped by --fps", s.dropped_by_fps)
            } else {
                String::new()
            };
            if s.undecodable_jpegs > 0 {
                dropped.push_str(&format!(
                    ", {} that would not decode dropped",
                    count(s.undecodable_jpegs, "JPEG")
                ));
            }
            if let Some(loss) = loss_stats.as_ref().and_then(|l| l.loss_text()) {
                dropped.push_str(&format!(" ({loss})"));
            }
            Progress::summary(
                args.quiet,
                &format!(
                    "wrote {} to {}{dropped} in {:.1} s",
                    count(written, "frame"),
                    args.frames_dir.display(),
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow!(
            "{name}: {}{before}",
            source::redact_text(&e.to_string(), &opts.spec)
        )),
    }
}

/// `--save-jpeg`: each JPEG written exactly as received, with its row, on
/// a thread of its own (file writes block). The same limits as decoding
/// apply, on arrival time (the camera sends no timestamps).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn save_jpegs(
    mut jpegs: Items<JpegFrame>,
    stats: Arc<SourceStats>,
    mut writer: NpyDirWriter,
    limits: Limits,
    args: &DecodeArgs,
    name: &str,
    started: std::time::Instant,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let loss_stats = stats.clone();
    let worker = pipeline::spawn("camflow-jpeg", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(Some(stats.clone()));
        let mut gate = limits.gate();
        let mut clock = JpegClock::default();
        let mut written = 0u64;
        let result = loop {
            if gate.full() {
                break Ok(());
            }
            let jpeg = match jpegs.blocking_recv() {
                None => break Ok(()),
                Some(Err(e)) => break Err(anyhow!("{e}")),
                Some(Ok(j)) => j,
            };
            let t = clock.time(&jpeg);
            match gate.admit(t) {
                Admit::Keep => {}
                Admit::Skip => continue,
                Admit::Stop => break Ok(()),
            }
            let (width, height) = jpeg::dimensions(&jpeg.data).unwrap_or((0, 0));
            let row = Row {
                index: written,
                pts_seconds: Some(t),
                received_unix: jpeg.at_unix,
                width: u32::from(width),
                height: u32::from(height),
                keyframe: true,
            };
            if let Err(e) = writer.write_jpeg(&row, &jpeg.data) {
                break Err(anyhow!("cannot write frames: {e}"));
            }
            written += 1;
            gate.kept();
            progress.update(written, stats.bytes());
        };
        jpegs.close();
        progress.clear();
        let result = result.and_then(|()| {
            writer
                .finish(stopped.load(Ordering::Relaxed))
                .map(|_| ())
                .map_err(|e| anyhow!("cannot write frames: {e}"))
        });
        (written, result)
    })
    .context("cannot start the writer thread")?;
    let (written, result) = join(worker).await?;
    match result {
        Ok(()) => {
            Progress::summary(
                args.quiet,
                &format!(
                    "saved {} to {}{} in {:.1} s",
                    count(written, "JPEG"),
                    args.frames_dir.display(),
                    loss_stats
                        .loss_text()
                        .map(|l| format!(" ({l})"))
                        .unwrap_or_default(),
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if written > 0 => Err(anyhow!(
            "{name}: {e:#} ({} written before it)",
            count(written, "frame")
        )),
        Err(e) => Err(anyhow!("{name}: {e:#}")),
    }
}

/// Waits for an OS thread without blocking a tokio worker.
pub async fn join<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || h.join())
        .await
        .context("join")?
        .map_err(|_| anyhow!("internal error: a worker thread panicked"))
}
