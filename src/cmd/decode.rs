//! `camflow decode`: a source → BGR frames as .npy files plus frames.csv.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::cli::{DecodeArgs, JpegDecoder};
use crate::cmd::{open_or_stop, Fed, Opened};
use crate::pipeline::decode::{self, BgrFrame, DecodeSettings};
use crate::pipeline::{self, PipelineError};
use crate::progress::{count, Progress};
use crate::proto::jpeg;
use crate::shutdown::Shutdown;
use crate::sink::npy::{NpyDirWriter, Row};
use crate::source;

/// Frames between the decoder and the writer: two or three let file writes
/// overlap with decoding; more would only hold memory (6 MB each at 1080p).
const FRAME_QUEUE: usize = 3;

pub async fn run(args: DecodeArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let mut opts = args.source.options()?;
    // A snapshot camera is asked for pictures at the rate that is kept.
    opts.poll_fps = args.fps;
    let name = opts.spec.display_name();
    if args.max_frames == Some(0) {
        bail!("--max-frames must be at least 1");
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let mut writer = NpyDirWriter::create(&args.frames_dir)
        .map_err(|e| anyhow!("{name}: cannot write frames: {e}"))?;

    let started = std::time::Instant::now();
    let settings = DecodeSettings {
        max_frames: args.max_frames,
        duration: args.duration,
        fps: args.fps,
        warn_as: (!args.quiet).then(|| name.clone()),
    };
    let Some(opened) = open_or_stop(&opts, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    if args.save_jpeg {
        return match opened {
            Opened::Jpegs(jpegs) => {
                let stopped = shutdown.flag();
                save_jpegs(jpegs, writer, settings, &args, &name, started, stopped).await
            }
            _ => bail!(
                "{name}: --save-jpeg needs an MJPEG source (tcp://, vbc://, multipart MJPEG over HTTP, RTSP MJPEG)"
            ),
        };
    }
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (frame_tx, frame_rx) = mpsc::sync_channel::<BgrFrame>(FRAME_QUEUE);
    let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
    let stop = shutdown.flag();
    let counter = bytes_read.clone();
    let net_stats = opened.stats();
    let loss_stats = net_stats.clone();
    let autorotate = !args.no_autorotate;
    let warn_as = settings.warn_as.clone();
    let bgr_out = move |tx: mpsc::SyncSender<BgrFrame>, pool: mpsc::Receiver<Vec<u8>>| {
        decode::BgrOut::new(tx, pool).with_orientation(autorotate, warn_as)
    };
    let decoder = match opened.into_input() {
        Fed::Jpegs(jpegs) if args.jpeg_decoder == JpegDecoder::Libav => {
            pipeline::spawn("camflow-decode", move || {
                let mut sink = bgr_out(frame_tx, pool_rx);
                decode::run_jpegs(jpegs.rx, &settings, stop, &mut sink)
            })
        }
        Fed::Jpegs(jpegs) => pipeline::spawn("camflow-decode", move || {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            pipeline::turbo::run(jpegs.rx, &settings, stop, frame_tx, pool_rx, workers)
        }),
        Fed::Packets(packets) => pipeline::spawn("camflow-decode", move || {
            let mut sink = bgr_out(frame_tx, pool_rx);
            decode::run_packets(packets.rx, None, &settings, stop, &mut sink)
        }),
        Fed::Input(input) => pipeline::spawn("camflow-decode", move || {
            let mut sink = bgr_out(frame_tx, pool_rx);
            decode::run(input, None, &settings, stop, counter, &mut sink)
        }),
    }
    .context("cannot start the decode thread")?;

    let quiet = args.quiet;
    let writer_thread = pipeline::spawn("camflow-npy", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(net_stats.clone());
        let received = || match &net_stats {
            Some(s) => s.bytes(),
            None => bytes_read.load(Ordering::Relaxed),
        };
        let mut written = 0u64;
        for frame in frame_rx {
            if let Err(e) = writer.write(&frame) {
                progress.clear();
                return (written, Err(e), writer);
            }
            written += 1;
            progress.update(written, received());
            let _ = pool_tx.send(frame.data);
        }
        progress.clear();
        (written, Ok(()), writer)
    })
    .context("cannot start the writer thread")?;

    let decoded = join(decoder).await?;
    let (written, write_result, mut writer) = join(writer_thread).await?;
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
        Err(PipelineError::Source(e)) => Err(anyhow!(
            "{name}: {}{before}",
            source::redact_text(&e.to_string(), &opts.spec)
        )),
        Err(e) => Err(anyhow!(
            "{name}: {}{before}",
            source::redact_text(&e.to_string(), &opts.spec)
        )),
    }
}

/// `--save-jpeg`: each JPEG written exactly as received, with its row, on
/// a thread of its own (file writes block). The same limits as decoding
/// apply, on arrival time (the camera sends no timestamps).
async fn save_jpegs(
    mut jpegs: source::JpegStream,
    mut writer: NpyDirWriter,
    settings: DecodeSettings,
    args: &DecodeArgs,
    name: &str,
    started: std::time::Instant,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let stats = jpegs.stats.clone();
    let loss_stats = stats.clone();
    let worker = pipeline::spawn("camflow-jpeg", move || {
        let mut progress = Progress::new(quiet, "frames").with_source(Some(stats.clone()));
        let mut limiter = settings.fps.map(decode::RateLimiter::new);
        let mut clock = source::JpegClock::default();
        let mut written = 0u64;
        let result = loop {
            if settings.max_frames.is_some_and(|m| written >= m) {
                break Ok(());
            }
            let jpeg = match jpegs.rx.blocking_recv() {
                None => break Ok(()),
                Some(Err(e)) => break Err(anyhow!("{e}")),
                Some(Ok(j)) => j,
            };
            let t = clock.time(&jpeg);
            if settings.duration.is_some_and(|d| t >= d) {
                break Ok(());
            }
            if limiter.as_mut().is_some_and(|l| !l.keep(t)) {
                continue;
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
            progress.update(written, stats.bytes());
        };
        jpegs.rx.close();
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
