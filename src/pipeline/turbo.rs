//! MJPEG straight to packed BGR with libjpeg-turbo: one pass per JPEG (no
//! YUV frame, no swscale), JPEGs decoded in parallel on worker threads,
//! frames handed on in arrival order. Frames that `--fps`, `--duration` or
//! `--max-frames` would drop are never decoded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::decode::{DecodeSettings, DecodeSummary};
use super::PipelineError;
use crate::packet::{Admit, BgrFrame, Items, JpegClock, JpegFrame};

/// The largest picture decoded: 8192x8192. libavcodec refuses pictures
/// past about 16384x16384 itself, but a packed BGR buffer of 64 Mpix is
/// already 200 MB per decode thread; a few KB of JPEG whose header claims
/// more (60000x60000 would be 10.8 GB) must not get that memory. Checked
/// from the header, before the buffer is sized.
pub const MAX_PIXELS: usize = 8192 * 8192;

struct Job {
    jpeg: JpegFrame,
    t: f64,
    buf: Vec<u8>,
}

/// Why a JPEG was refused.
enum Refused {
    /// libjpeg-turbo could not read or decode it.
    Undecodable,
    /// Its header claims more than [`MAX_PIXELS`]; nothing was allocated.
    TooBig { width: usize, height: usize },
}

/// A decoded frame, or why the JPEG was refused.
type Done = Result<BgrFrame, Refused>;

/// True when a picture of `width` x `height` is over [`MAX_PIXELS`].
fn over_limit(width: usize, height: usize) -> bool {
    width.checked_mul(height).is_none_or(|n| n > MAX_PIXELS)
}

fn worker(jobs: Receiver<Job>, done: SyncSender<Done>) {
    let Ok(mut dec) = turbojpeg::Decompressor::new() else {
        return;
    };
    for Job { jpeg, t, mut buf } in jobs {
        let mut refused = Refused::Undecodable;
        let result = (|| {
            let h = dec.read_header(&jpeg.data).ok()?;
            if over_limit(h.width, h.height) {
                refused = Refused::TooBig {
                    width: h.width,
                    height: h.height,
                };
                return None;
            }
            let len = h.width.checked_mul(h.height)?.checked_mul(3)?;
            buf.resize(len, 0);
            let image = turbojpeg::Image {
                pixels: buf.as_mut_slice(),
                width: h.width,
                pitch: h.width * 3,
                height: h.height,
                format: turbojpeg::PixelFormat::BGR,
            };
            dec.decompress(&jpeg.data, image).ok()?;
            Some((u32::try_from(h.width).ok()?, u32::try_from(h.height).ok()?))
        })();
        let out = match result {
            Some((width, height)) => Ok(BgrFrame {
                index: 0,
                pts_seconds: Some(t),
                received_unix: jpeg.at_unix,
                width,
                height,
                keyframe: true,
                data: buf,
            }),
            None => Err(refused),
        };
        if done.send(out).is_err() {
            return;
        }
    }
}

/// Decodes whole JPEGs until the source ends, a limit is hit, `stop` is
/// set, or the sink hangs up. `workers` threads decode in parallel.
pub fn run(
    mut rx: Items<JpegFrame>,
    settings: &DecodeSettings,
    stop: Arc<AtomicBool>,
    out: SyncSender<BgrFrame>,
    pool: Receiver<Vec<u8>>,
    workers: usize,
) -> Result<DecodeSummary, PipelineError> {
    let workers = workers.max(1);
    let mut lanes = Vec::with_capacity(workers);
    for i in 0..workers {
        let (job_tx, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done_rx) = sync_channel::<Done>(1);
        std::thread::Builder::new()
            .name(format!("camflow-jpeg-{i}"))
            .spawn(move || worker(job_rx, done_tx))
            .map_err(|e| PipelineError::Decoder(format!("cannot start a decode thread: {e}")))?;
        lanes.push((job_tx, done_rx));
    }
    let mut summary = DecodeSummary::default();
    let mut gate = settings.limits.gate();
    let mut clock = JpegClock::default();
    // Lanes holding a job, oldest first: results are taken in this order.
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut next_lane = 0usize;
    let mut failure = None;
    let mut sink_gone = false;
    let mut too_big_said = false;

    // Takes the oldest result and hands it on; false once the sink is gone.
    let mut collect = |lane: usize, summary: &mut DecodeSummary| -> bool {
        let Some((_, done_rx)) = lanes.get(lane) else {
            return true;
        };
        match done_rx.recv() {
            Ok(Ok(mut frame)) => {
                frame.index = summary.frames;
                if out.send(frame).is_err() {
                    return false;
                }
                summary.frames += 1;
            }
            // A JPEG libjpeg-turbo refuses costs that frame, not the run.
            // One too big to decode is said once: unlike a corrupt one, it
            // is what a camera misconfigured or hostile sends every time.
            Ok(Err(Refused::TooBig { width, height })) => {
                summary.undecodable_jpegs += 1;
                if !too_big_said {
                    let name = &settings.name;
                    log::warn!(
                        "{name}: a JPEG of {width}x{height} pixels is dropped: over \
                         the {MAX_PIXELS}-pixel (8192x8192) limit"
                    );
                }
                too_big_said = true;
            }
            Ok(Err(Refused::Undecodable)) => summary.undecodable_jpegs += 1,
            Err(_) => {}
        }
        true
    };

    loop {
        if stop.load(Ordering::Relaxed) || gate.full() {
            summary.stopped_early = true;
            break;
        }
        let Some(jpeg) = super::next_item(&mut rx, &stop, &mut failure) else {
            break;
        };
        let t = clock.time(&jpeg);
        match gate.admit(t) {
            Admit::Keep => {}
            Admit::Skip => {
                summary.dropped_by_fps += 1;
                continue;
            }
            Admit::Stop => {
                summary.stopped_early = true;
                break;
            }
        }
        if in_flight.len() == workers {
            let Some(lane) = in_flight.pop_front() else {
                break;
            };
            if !collect(lane, &mut summary) {
                sink_gone = true;
                break;
            }
        }
        let buf = pool.try_recv().unwrap_or_default();
        let lane = next_lane;
        next_lane = (next_lane + 1) % workers;
        let Some((job_tx, _)) = lanes.get(lane) else {
            break;
        };
        if job_tx.send(Job { jpeg, t, buf }).is_err() {
            return Err(PipelineError::Decoder("a decode thread stopped".into()));
        }
        in_flight.push_back(lane);
        gate.kept();
    }
    rx.close();
    while let Some(lane) = in_flight.pop_front() {
        if sink_gone || !collect(lane, &mut summary) {
            sink_gone = true;
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_size_limit() {
        assert!(!over_limit(8192, 8192));
        assert!(!over_limit(65535, 1024));
        assert!(over_limit(8192, 8193));
        assert!(over_limit(60000, 60000));
        assert!(over_limit(usize::MAX, 2));
    }
}
