//! A real HLS player for end-to-end tests: Debian's Chromium playing a
//! folder's playlist through MSE with hls.js, driven by playwright-core from
//! `tests/browser/play_hls.js` (see that script's header for what it serves
//! and when it calls playback good). scripts/setup installs Chromium, node
//! and the script's npm packages.
//!
//! A check takes about 3–6 s (Chromium's start included) plus the seconds
//! asked for.
//!
//! ```ignore
//! let played = browser::play_hls(dir.path(), 2.0).expect("Chromium plays it");
//! let report = browser::play_hls_with(dir.path(), "live.m3u8", 3.0, Duration::from_secs(60))?;
//! assert_eq!((report.video_width, report.video_height), (320, 240));
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run_limited;

/// The node that runs the script (scripts/setup makes sure there is one).
pub const NODE: &str = "node";

/// How long after its own `--timeout` the script may take before it is
/// killed (closing Chromium and the server takes a moment).
const KILL_GRACE: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play_hls.js")
}

/// What a successful playback reported.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsPlay {
    /// `video.currentTime` at the end (for a live playlist: where in the
    /// playlist's timeline, not how long it played).
    pub current_time: f64,
    /// How far `currentTime` advanced since playback started (more than
    /// the seconds asked for).
    pub played: f64,
    pub video_width: u32,
    pub video_height: u32,
    /// The codecs hls.js put into MSE, e.g. `avc1.64000d` or
    /// `mp4a.40.2,avc1.64000d`.
    pub codecs: Option<String>,
    /// Wall-clock seconds of the whole check, Chromium's start included.
    pub elapsed: f64,
    /// Non-fatal hls.js errors seen on the way (JSON, one per event);
    /// empty for a clean stream.
    pub errors: Vec<String>,
}

/// Plays `dir/index.m3u8` in Chromium until it has played more than
/// `seconds`, within 60 s. `Ok(currentTime)`, or `Err(why)` with the
/// script's whole report (hls.js errors, paths not found).
pub fn play_hls(dir: &Path, seconds: f64) -> Result<f64, String> {
    play_hls_with(dir, "index.m3u8", seconds, Duration::from_secs(60)).map(|p| p.current_time)
}

/// Plays `dir/playlist` (a path relative to `dir`; it may appear later,
/// while the script waits) until it has played more than `seconds`, with no
/// video error, fatal hls.js error or page exception, all within `timeout`
/// (Chromium's start included). Works for VOD and live playlists. Panics if
/// the script does not end by itself within `timeout` + 30 s.
pub fn play_hls_with(
    dir: &Path,
    playlist: &str,
    seconds: f64,
    timeout: Duration,
) -> Result<HlsPlay, String> {
    let out = run_limited(
        Command::new(NODE)
            .arg(script())
            .arg(dir)
            .args(["--playlist", playlist])
            .args(["--seconds", &seconds.to_string()])
            .args(["--timeout", &timeout.as_secs_f64().to_string()]),
        timeout + KILL_GRACE,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let report: serde_json::Value = match line.map(serde_json::from_str) {
        Some(Ok(v)) => v,
        _ => {
            return Err(format!(
                "play_hls.js printed no report ({}); stdout: {stdout}; stderr: {stderr}",
                out.status
            ))
        }
    };
    if !(out.status.success() && report["ok"] == true) {
        let reason = report["reason"].as_str().unwrap_or("no reason given");
        return Err(format!(
            "{reason}\nreport: {}\nstderr: {stderr}",
            line.unwrap_or_default()
        ));
    }
    let num = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
    Ok(HlsPlay {
        current_time: num("currentTime"),
        played: num("played"),
        video_width: report["videoWidth"].as_u64().unwrap_or(0) as u32,
        video_height: report["videoHeight"].as_u64().unwrap_or(0) as u32,
        codecs: report["codecs"].as_str().map(str::to_string),
        elapsed: num("elapsed"),
        errors: report["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default(),
    })
}
