//! A real DASH player for end-to-end tests: Debian's Chromium playing a
//! folder's manifest through MSE with Shaka Player, and through EME with
//! Chromium's built-in ClearKey CDM when it is encrypted, driven by
//! playwright-core from `tests/browser/play_dash.js` (see that script's
//! header for what it serves, when it calls playback good and how it fails).
//! scripts/setup installs Chromium, node and the script's npm packages,
//! Shaka Packager among them (the reference packager for encrypted DASH).
//!
//! A check takes about 3–5 s (Chromium's start included) plus the seconds
//! asked for; a stream that must not play (no key, wrong key) fails within
//! 1–3 s when Shaka or the decoder says so, or after 10 s without progress.
//!
//! ```ignore
//! let played = dash_player::play_dash(dir.path(), "stream.mpd", 2.0, &[], Duration::from_secs(60))?;
//! let played = dash_player::play_dash(dir.path(), "stream.mpd", 2.0, &[(&kid, &key)], timeout)?;
//! let refused = dash_player::play_dash_expect_fail(dir.path(), "stream.mpd", &[], timeout)?;
//! assert_eq!(refused.failure, "drm", "{}", refused.reason);
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::browser::NODE;
use super::run_limited;

/// How long after its own `--timeout` the script may take before it is
/// killed (closing Chromium and the server takes a moment).
const KILL_GRACE: Duration = Duration::from_secs(30);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn script() -> PathBuf {
    browser_dir().join("play_dash.js")
}

/// Lower-case hex, as `--key` and Shaka Packager's `--keys` take it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a successful playback reported.
#[derive(Clone, Debug, PartialEq)]
pub struct DashPlay {
    /// `video.currentTime` at the end (for a live manifest: where in its
    /// timeline, not how long it played).
    pub current_time: f64,
    /// How far `currentTime` advanced since playback started (more than
    /// the seconds asked for).
    pub played: f64,
    pub video_width: u32,
    pub video_height: u32,
    /// Audio tracks Shaka offers (0 for a video-only stream).
    pub audio_tracks: u32,
    /// The active variant's codecs, e.g. `avc1.64000d,mp4a.40.2`.
    pub codecs: Option<String>,
    /// `org.w3.clearkey` when the stream was decrypted, else `None`.
    pub key_system: Option<String>,
    /// Whether Chromium saw encrypted media (an `encrypted` event or a key
    /// system in use).
    pub encrypted: bool,
    /// Frames the video decoder produced, per Shaka's stats.
    pub decoded_frames: Option<u64>,
    /// Wall-clock seconds of the whole check, Chromium's start included.
    pub elapsed: f64,
    /// Non-critical Shaka errors seen on the way (JSON, one per event);
    /// empty for a clean stream.
    pub errors: Vec<String>,
}

/// How a stream that was expected not to play failed.
#[derive(Clone, Debug, PartialEq)]
pub struct DashFailure {
    /// The script's kind of failure: `drm` (a Shaka DRM error such as 6012
    /// NO_LICENSE_SERVER_GIVEN, a 4012 for missing keys, or the CDM waiting
    /// for a key), `media` (3016 VIDEO_ERROR: the decoder refused the
    /// samples, as with a wrong key), `stall`, `ended`, `stream` or
    /// `timeout`; never `setup`.
    pub failure: String,
    /// The script's reason, e.g. `Shaka error 6012 NO_LICENSE_SERVER_GIVEN
    /// (DRM): ["org.w3.clearkey"] during load`.
    pub reason: String,
    /// Shaka error codes seen (critical or not), in order.
    pub codes: Vec<u64>,
    /// Wall-clock seconds until the script gave up, Chromium's start
    /// included.
    pub elapsed: f64,
    /// The whole JSON report.
    pub report: String,
}

/// Runs the script; the report (parsed and as printed) and the exit status,
/// or `Err` when it printed none.
fn run(
    dir: &Path,
    manifest: &str,
    seconds: f64,
    keys: &[(&[u8; 16], &[u8; 16])],
    timeout: Duration,
    expect_fail: bool,
) -> Result<(serde_json::Value, String, ExitStatus, String), String> {
    let mut cmd = Command::new(NODE);
    cmd.arg(script())
        .arg(dir)
        .args(["--manifest", manifest])
        .args(["--seconds", &seconds.to_string()])
        .args(["--timeout", &timeout.as_secs_f64().to_string()]);
    for (kid, key) in keys {
        cmd.arg("--key")
            .arg(format!("{}:{}", hex(&kid[..]), hex(&key[..])));
    }
    if expect_fail {
        cmd.arg("--expect-fail");
    }
    let out = run_limited(&mut cmd, timeout + KILL_GRACE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    match line.map(|l| (l, serde_json::from_str::<serde_json::Value>(l))) {
        Some((l, Ok(v))) => Ok((v, l.to_string(), out.status, stderr)),
        _ => Err(format!(
            "play_dash.js printed no report ({}); stdout: {stdout}; stderr: {stderr}",
            out.status
        )),
    }
}

/// Plays `dir/manifest` (a path relative to `dir`; it may appear later,
/// while the script waits) in Chromium with Shaka Player until it has
/// played more than `seconds`, with no video error, critical Shaka error or
/// page exception, all within `timeout` (Chromium's start included). `keys`
/// are (KID, key) pairs given to Shaka as ClearKey keys; none for a clear
/// stream. `Err(why)` with the script's whole report (Shaka errors with
/// codes and names, paths not found) and its stderr when it did not play.
/// Works for VOD and live manifests. Panics if the script does not end by
/// itself within `timeout` + 30 s.
pub fn play_dash(
    dir: &Path,
    manifest: &str,
    seconds: f64,
    keys: &[(&[u8; 16], &[u8; 16])],
    timeout: Duration,
) -> Result<DashPlay, String> {
    let (report, line, status, stderr) = run(dir, manifest, seconds, keys, timeout, false)?;
    if !(status.success() && report["ok"] == true) {
        let reason = report["reason"].as_str().unwrap_or("no reason given");
        return Err(format!("{reason}\nreport: {line}\nstderr: {stderr}"));
    }
    let num = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
    let text = |k: &str| report[k].as_str().map(str::to_string);
    Ok(DashPlay {
        current_time: num("currentTime"),
        played: num("played"),
        video_width: report["videoWidth"].as_u64().unwrap_or(0) as u32,
        video_height: report["videoHeight"].as_u64().unwrap_or(0) as u32,
        audio_tracks: report["audioTracks"].as_u64().unwrap_or(0) as u32,
        codecs: text("codecs"),
        key_system: text("keySystem"),
        encrypted: report["encrypted"] == true,
        decoded_frames: report["decodedFrames"].as_u64(),
        elapsed: num("elapsed"),
        errors: report["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default(),
    })
}

/// The opposite check: `dir/manifest` must NOT play 2 s with these `keys`
/// (none, or wrong ones) for a reason of the stream (see
/// [`DashFailure::failure`]). `Ok` with how it failed, for the test to check
/// the kind and how fast; `Err` when it played, or when the fixture itself
/// failed (no manifest, Chromium did not start: a failure that proves
/// nothing), with the whole report.
pub fn play_dash_expect_fail(
    dir: &Path,
    manifest: &str,
    keys: &[(&[u8; 16], &[u8; 16])],
    timeout: Duration,
) -> Result<DashFailure, String> {
    let (report, line, status, stderr) = run(dir, manifest, 2.0, keys, timeout, true)?;
    let failure = report["failure"].as_str().unwrap_or("");
    let reason = report["reason"].as_str().unwrap_or("no reason given");
    if report["ok"] == true {
        return Err(format!("it played\nreport: {line}\nstderr: {stderr}"));
    }
    if !status.success() || failure.is_empty() || failure == "setup" {
        return Err(format!(
            "the check itself failed ({failure}): {reason}\nreport: {line}\nstderr: {stderr}"
        ));
    }
    Ok(DashFailure {
        failure: failure.to_string(),
        reason: reason.to_string(),
        codes: report["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["code"].as_u64()).collect())
            .unwrap_or_default(),
        elapsed: report["elapsed"].as_f64().unwrap_or(f64::NAN),
        report: line,
    })
}

/// Shaka Packager's static binary from the `shaka-packager` npm package in
/// tests/browser (scripts/setup installs it). Run it directly: the
/// package's `index.js` wrapper exits 0 even when packaging failed.
pub fn shaka_packager() -> PathBuf {
    let name = match std::env::consts::ARCH {
        "aarch64" => "packager-linux-arm64",
        _ => "packager-linux-x64",
    };
    browser_dir()
        .join("node_modules/shaka-packager/bin")
        .join(name)
}

/// Packages the `streams` (`"video"`, `"audio"`) of `input` (an MP4) as
/// encrypted DASH with Shaka Packager: `out/stream.mpd` (static, with
/// ContentProtection for `scheme`'s default KID and a W3C common PSSH),
/// `out/<stream>/init.mp4` and `out/<stream>/<n>.m4s`, 2 s segments, every
/// sample encrypted (`--clear_lead 0`) with `key` under `kid`. `scheme` is
/// `cenc`, `cbcs`, `cens` or `cbc1`. Panics when the packager fails.
pub fn package_encrypted(
    input: &Path,
    out: &Path,
    streams: &[&str],
    scheme: &str,
    kid: &[u8; 16],
    key: &[u8; 16],
) -> PathBuf {
    let src = input.to_str().expect("utf-8 path");
    let dst = out.to_str().expect("utf-8 path");
    let mut cmd = Command::new(shaka_packager());
    for s in streams {
        cmd.arg(format!(
            "in={src},stream={s},init_segment={dst}/{s}/init.mp4,segment_template={dst}/{s}/$Number$.m4s"
        ));
    }
    let manifest = out.join("stream.mpd");
    cmd.args(["--protection_scheme", scheme, "--enable_raw_key_encryption"])
        .arg("--keys")
        .arg(format!("label=:key_id={}:key={}", hex(kid), hex(key)))
        .args(["--clear_lead", "0", "--segment_duration", "2"])
        // Without it a segment template makes a live (dynamic) manifest
        // whose availabilityStartTime is the packaging time.
        .arg("--generate_static_live_mpd")
        .arg("--mpd_output")
        .arg(&manifest);
    let made = run_limited(&mut cmd, Duration::from_secs(60));
    assert!(
        made.status.success() && manifest.exists(),
        "shaka packager ({}): {}",
        made.status,
        String::from_utf8_lossy(&made.stderr)
    );
    manifest
}
