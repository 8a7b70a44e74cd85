//! Packaging jobs on a fixed number of named OS threads (libav and the
//! encryption are blocking, CPU-heavy work that must stay off the tokio
//! workers). The queue holds job ids only; the record in the database is
//! the job, so a restart loses nothing but the place in line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};

use super::db::{Packaged, Status};
use super::{Service, SEGMENT_SECONDS};
use crate::package::{self, PackageSpec, Stage};
use crate::proto::cenc::{self, Scheme};

/// Where handlers put job ids. Unbounded: an id is a few bytes, and the
/// workers, not the queue, bound the work done at once.
pub struct Queue {
    tx: Mutex<Option<mpsc::Sender<i64>>>,
}

pub struct Receiver(Arc<Mutex<mpsc::Receiver<i64>>>);

impl Queue {
    pub fn new() -> (Queue, Receiver) {
        let (tx, rx) = mpsc::channel();
        (
            Queue {
                tx: Mutex::new(Some(tx)),
            },
            Receiver(Arc::new(Mutex::new(rx))),
        )
    }

    /// Queues a job; after [`Queue::close`] it stays in its status and runs
    /// at the next start.
    pub fn push(&self, id: i64) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(id);
        }
    }

    /// No more jobs: workers end once the queue is empty or the stop flag
    /// is up.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

pub struct Pool {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts `n` workers.
pub fn start(
    service: Arc<Service>,
    rx: Receiver,
    n: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Pool> {
    let mut threads = Vec::new();
    for i in 0..n {
        let service = service.clone();
        let rx = rx.0.clone();
        let stop = stop.clone();
        let t = crate::pipeline::spawn(&format!("camflow-job-{i}"), move || loop {
            // The lock is held only while waiting; the job runs without it.
            let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
            let Ok(id) = next else { return };
            if stop.load(Ordering::Relaxed) {
                return;
            }
            run_job(&service, id, &stop);
        })
        .context("cannot start a packaging thread")?;
        threads.push(t);
    }
    Ok(Pool { threads })
}

/// Runs one job and records how it went. Stopped by a shutdown, it keeps
/// its status (so it runs again at the next start) rather than failing.
fn run_job(service: &Service, id: i64, stop: &Arc<AtomicBool>) {
    let job = match service.db.packaged(id) {
        Ok(Some(j)) if j.status.unfinished() => j,
        Ok(_) => return,
        Err(e) => {
            log::error!("job {id}: {e}");
            return;
        }
    };
    log::info!("job {id}: packaging input {}", job.input_id);
    let out = service.content().join(id.to_string());
    // A panic in the work (a bug) fails this job instead of taking the
    // worker thread with it: otherwise the job would stay unfinished, run
    // again at every start, and each time take one more worker.
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        package_one(service, &job, out.clone(), stop)
    }))
    .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: the job panicked")));
    match done {
        Ok(seconds) => {
            record(service, id, Status::Ready, None);
            log::info!("job {id}: Ready ({seconds:.1} s)");
        }
        Err(_) if stop.load(Ordering::Relaxed) => {
            log::info!("job {id}: stopped; it runs again at the next start");
        }
        Err(e) => {
            // `package` keeps the key out of its errors; the key is
            // removed here as well, in case a future message quotes it.
            let text = format!("{e:#}")
                .replace('\n', " ")
                .replace(&job.key_hex, "***");
            log::error!("job {id}: Failed: {text}");
            record(service, id, Status::Failed, Some(&text));
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}

fn record(service: &Service, id: i64, status: Status, error: Option<&str>) {
    if let Err(e) = service.db.set_status(id, status, error) {
        log::error!("job {id}: cannot record {status}: {e}");
    }
}

fn package_one(
    service: &Service,
    job: &Packaged,
    out: PathBuf,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<f64> {
    let input = service
        .db
        .input(job.input_id)?
        .ok_or_else(|| anyhow!("input {} is gone", job.input_id))?;
    let path = service.uploads().join(&input.stored);
    if !path.is_file() {
        return Err(anyhow!("the uploaded file of input {} is gone", input.id));
    }
    // A run cut short (a restart) may have left part of a package.
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| anyhow!("cannot clear {}: {e}", out.display()))?;
    }
    let spec = PackageSpec {
        input: path,
        out,
        segment_seconds: SEGMENT_SECONDS,
        hls: true,
        scheme: match job.scheme.as_str() {
            "cenc" => Scheme::Cenc,
            _ => Scheme::Cbcs,
        },
        // Checked when the job was accepted; a bad row is a failed job, and
        // the messages name neither value.
        key: cenc::parse_key16(&job.key_hex).map_err(|_| anyhow!("the stored key is invalid"))?,
        kid: cenc::parse_key16(&job.kid_hex)
            .map_err(|_| anyhow!("the stored key ID is invalid"))?,
        // Uploads are checked for H.264 video when they come in.
        transcode: false,
    };
    let id = job.id;
    let summary = package::package(&spec, stop, &mut |_, _| {}, &mut |stage| {
        let status = match stage {
            Stage::Fragmented => Status::Fragmented,
            Stage::Encrypted => Status::Encrypted,
        };
        record(service, id, status, None);
    })?;
    Ok(summary.duration)
}
