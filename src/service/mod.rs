//! The packaging service (`camflow packager serve`): files come in by
//! upload, are probed (H.264 video required), packaged on request as
//! MPEG-DASH (plus HLS playlists) with the video encrypted, and the results
//! go out over HTTP with CORS, so a player on any origin can fetch them.
//!
//! Layout: [`db`] keeps the records in SQLite; [`jobs`] runs
//! [`crate::package::package`] on a fixed number of OS threads; [`api`] is
//! the axum router (JSON API, packaged files, the page); [`page`] renders
//! the page. State lives under one folder:
//!
//! ```text
//! DIR/camflow.db            the records (input_content, packaged_content)
//! DIR/uploads/<random hex>  uploaded files, never under the client's name
//!                           (`.<random hex>.part` while arriving; a start
//!                           removes those a forced stop left)
//! DIR/content/<id>/         one packaged item: stream.mpd, segments, playlists
//! ```
//!
//! Keys: a packaged item's content key is stored in the database (the page
//! needs it to play the item with ClearKey), is never logged, never appears
//! in an error, and is never returned by the JSON API; only the HTML page at
//! `/` carries the keys of Ready items. The service is meant for a trusted
//! network (it listens on loopback by default); whoever can load `/` can
//! play everything.
//!
//! A restart keeps every record. Jobs that had not finished when the
//! process stopped (queued, Fragmented or Encrypted) run again from the
//! start; their status only moves forward.

pub mod api;
pub mod db;
mod idle;
pub mod jobs;
pub mod page;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::shutdown::Shutdown;

/// What `camflow packager serve` was asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub max_upload: u64,
    pub workers: usize,
    /// Shaka Player's compiled script for the page, if there is one.
    pub shaka_js: Option<PathBuf>,
    /// How long an upload may go without sending data before it is
    /// dropped, and how long any other request has to send its whole body
    /// ([`UPLOAD_IDLE`] unless a test asks for less).
    pub upload_idle: Duration,
}

/// How long an upload may go without data (a client that stalls mid-body)
/// before it is answered 408, its connection dropped and its partial file
/// removed.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// Where a local Shaka Player is looked for when `--shaka-js` is not given
/// (the browser tests' copy), relative to the current folder.
pub const DEFAULT_SHAKA_JS: &str =
    "tests/browser/node_modules/shaka-player/dist/shaka-player.compiled.js";

/// Segment length of packaged items (segments start on keyframes).
pub const SEGMENT_SECONDS: f64 = 4.0;

/// What the handlers and the workers share.
pub struct Service {
    pub settings: Settings,
    pub db: db::Db,
    pub jobs: jobs::Queue,
}

impl Service {
    pub fn uploads(&self) -> PathBuf {
        self.settings.data.join("uploads")
    }

    pub fn content(&self) -> PathBuf {
        self.settings.data.join("content")
    }
}

/// Runs the service until `shutdown`: opens (or creates) the state, queues
/// the unfinished jobs again, starts the workers, listens, prints the URL.
pub async fn serve(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    // The port first: a service that cannot listen leaves no folder or
    // database behind.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let data = settings.data.clone();
    for d in [data.clone(), data.join("uploads"), data.join("content")] {
        std::fs::create_dir_all(&d).map_err(|e| anyhow!("cannot create {}: {e}", d.display()))?;
    }
    let db = db::Db::open(&data.join("camflow.db"))?;
    let recorded = db.inputs()?.into_iter().map(|i| i.stored).collect();
    api::clean_uploads(&data.join("uploads"), &recorded);
    let unfinished = db.unfinished_jobs()?;
    let (queue, receiver) = jobs::Queue::new();
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let workers = settings.workers;
    let service = Arc::new(Service {
        settings,
        db,
        jobs: queue,
    });
    let pool = jobs::start(service.clone(), receiver, workers, shutdown.flag())?;
    if !unfinished.is_empty() {
        log::info!("running {} unfinished job(s) again", unfinished.len());
    }
    for id in unfinished {
        service.jobs.push(id);
    }
    // The one line on stdout: tests and scripts read the port from it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "http://{local}/");
    let _ = out.flush();
    log::info!(
        "serving {} on http://{local}/ ({} worker(s))",
        data.display(),
        workers
    );
    let app = api::router(service.clone());
    let mut stop = shutdown.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let mut stop2 = shutdown.subscribe();
    // Twice the upload idle time: a stalled upload gets its 408 first.
    let listener = idle::IdleListener::new(listener, 2 * service.settings.upload_idle);
    let server = axum::serve(listener, app).with_graceful_shutdown(stopped);
    // Graceful shutdown waits for open connections (a browser keeps one
    // alive); give them a moment, then go anyway.
    tokio::select! {
        r = server => r.context("the HTTP server failed")?,
        _ = async {
            let _ = stop2.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        } => {}
    }
    // Workers see the stop flag; a job cut short keeps its status and runs
    // again at the next start.
    service.jobs.close();
    let joined = tokio::task::spawn_blocking(move || pool.join());
    if tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .is_err()
    {
        log::warn!("a job did not stop in time; it runs again at the next start");
    }
    log::info!("stopped");
    Ok(())
}

/// Parses a size: bytes, or a number with `k`, `M`, `G` or `T` (powers of
/// 1024; `KiB`, `MB` and the like are read the same way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{t}' is not a size (like 2G, 500M, 1k or 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("'{t}': unknown unit (use k, M, G or T)")),
    };
    let v = n * mult as f64;
    if !(v.is_finite() && v >= 1.0 && v < u64::MAX as f64) {
        return Err(format!("'{t}' is out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2X").is_err());
    }
}
