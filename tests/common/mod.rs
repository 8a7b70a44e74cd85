//! Helpers for end-to-end tests: run the real camflow binary against real
//! peers on loopback (the built-in camera, ffmpeg, ffprobe, numpy).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod dash_player;
pub mod mpjpeg;
pub mod nginx;
pub mod peer;
pub mod rtsp;
pub mod vlc;

pub fn camflow() -> &'static str {
    env!("CARGO_BIN_EXE_camflow")
}

/// Debian's python3, which has numpy (the `python3` on PATH may be another).
pub const PYTHON: &str = "/usr/bin/python3";

/// A running `camflow camera`, killed when dropped.
pub struct Camera {
    child: Child,
    pub url: String,
}

impl Camera {
    pub fn start(args: &[&str]) -> Camera {
        let mut child = Command::new(camflow())
            .arg("camera")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start camflow camera");
        let stdout = child.stdout.take().expect("camera stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read camera URL");
        let url = line.trim().to_string();
        assert!(url.contains("://127.0.0.1:"), "camera printed {url:?}");
        Camera { child, url }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion, killing it after `limit` (a hang is a
/// failure, reported as such).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

pub fn camflow_run(args: &[&str]) -> Output {
    run_limited(Command::new(camflow()).args(args), Duration::from_secs(120))
}

/// Asserts success, showing camflow's stderr otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "camflow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `camflow decode SRC --frames-dir <new temp dir> EXTRA...`, which must
/// succeed; returns the folder.
pub fn decode_ok(src: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempdir();
    let mut args = vec!["decode", src, "--frames-dir", path_str(dir.path())];
    args.extend_from_slice(extra);
    assert_ok(&camflow_run(&args));
    dir
}

/// Asserts a clean failure: non-zero exit, exactly one line on stderr that
/// names `source` and contains `what`, and no panic.
pub fn assert_one_line_error(out: &Output, source: &str, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(
        lines[0].contains(source),
        "{:?} does not name {source}",
        lines[0]
    );
    assert!(
        lines[0].to_lowercase().contains(&what.to_lowercase()),
        "{:?} does not say {what:?}",
        lines[0]
    );
    lines[0].to_string()
}

pub fn python(script: &str, args: &[&str]) -> String {
    let out = run_limited(
        Command::new(PYTHON).arg("-c").arg(script).args(args),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Rows of frames.csv (header checked), as field vectors.
pub fn csv_rows(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("frames.csv")).expect("frames.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("frame,file,pts_seconds,received_unix_seconds,width,height,keyframe")
    );
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Every row names a complete, loadable frame file; no temporary file is
/// left; rows are numbered 0.. in order. Returns the row count. A folder
/// without an index (a run that failed before its first frame) must hold
/// no frames either.
pub fn assert_frames_complete(dir: &Path) -> usize {
    if !dir.join("frames.csv").exists() {
        let names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(names.is_empty(), "files without an index: {names:?}");
        return 0;
    }
    let rows = csv_rows(dir);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 7, "row {r:?}");
        assert_eq!(r[0], i.to_string());
        assert_eq!(r[1], format!("frame_{i:06}.npy"));
    }
    for e in std::fs::read_dir(dir).expect("read dir") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
    }
    if !rows.is_empty() {
        let out = python(
            "import sys, csv, numpy as np\n\
             d = sys.argv[1]\n\
             for r in csv.DictReader(open(d + '/frames.csv')):\n\
             \x20   a = np.load(d + '/' + r['file'])\n\
             \x20   assert a.shape == (int(r['height']), int(r['width']), 3), a.shape\n\
             \x20   assert a.dtype == np.uint8 and a.flags['C_CONTIGUOUS']\n\
             print('ok')",
            &[dir.to_str().expect("utf-8 path")],
        );
        assert_eq!(out.trim(), "ok");
    }
    rows.len()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Makes `out` with the ffmpeg CLI (the reference, never called by camflow
/// itself): `ffmpeg -v error -y ARGS... OUT`, ARGS split on spaces.
pub fn ffmpeg_make(out: &Path, args: &str) {
    let made = run_limited(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace())
            .arg(out),
        Duration::from_secs(120),
    );
    assert!(
        made.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// A small H.264 test file made by the ffmpeg CLI (the reference, never
/// called by camflow itself).
pub fn make_h264_file(dir: &Path, name: &str, size: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    ffmpeg_make(
        &path,
        &format!(
            "-f lavfi -i testsrc2=size={size}:rate=25 -t {seconds} \
             -c:v libx264 -preset veryfast -pix_fmt yuv420p"
        ),
    );
    path
}

/// ffprobe's count of decodable video frames, and whether decoding it
/// printed any error.
pub fn ffprobe_frames(path: &Path) -> u64 {
    let out = run_limited(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            path_str(path),
        ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffprobe failed");
    assert!(
        out.stderr.is_empty(),
        "ffprobe reported errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A playlist also prints its program's (empty) line: the count is the
    // last one.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {text:?}"))
}

pub fn ffmpeg_decodes_cleanly(path: &Path) {
    ffmpeg_decodes_cleanly_with(path, &[]);
}

/// The same for a recording timed by arrival (variable frame rate): the
/// CLI would otherwise move every picture onto the grid of a frame rate it
/// guesses, and complain when two land on one tick ("non monotonically
/// increasing dts"), which says nothing about the file. `-enc_time_base -1`
/// keeps the file's own times.
pub fn ffmpeg_decodes_vfr_cleanly(path: &Path) {
    ffmpeg_decodes_cleanly_with(path, &["-enc_time_base", "-1"]);
}

fn ffmpeg_decodes_cleanly_with(path: &Path, output_args: &[&str]) {
    let out = run_limited(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i", path_str(path)])
            .args(output_args)
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffmpeg reported decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Worst per-frame mean absolute difference between camflow's frames in
/// `dir` and `ffmpeg -i SRC -f rawvideo -pix_fmt bgr24` (the reference);
/// the frame counts must agree.
/// ffmpeg's frames are its decoder's, one for one (`-fps_mode passthrough`:
/// no picture repeated to fill a gap in the timestamps, as a constant rate
/// output would).
pub fn worst_mad_against_ffmpeg(src: &Path, dir: &Path, width: u32, height: u32) -> f64 {
    const SCRIPT: &str = r#"
import sys, csv, subprocess, numpy as np
src, d, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
raw = subprocess.run(['ffmpeg', '-v', 'error', '-i', src, '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'bgr24', '-'],
                     check=True, capture_output=True).stdout
ref = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
rows = list(csv.DictReader(open(d + '/frames.csv')))
assert len(rows) == len(ref), (len(rows), len(ref))
print(max(np.abs(np.load(d + '/' + r['file']).astype(int) - f.astype(int)).mean()
          for r, f in zip(rows, ref)))
"#;
    python(
        SCRIPT,
        &[
            path_str(src),
            path_str(dir),
            &width.to_string(),
            &height.to_string(),
        ],
    )
    .trim()
    .parse()
    .expect("a number")
}

/// Runs `ffmpeg -v error ARGS` with `bytes` on its stdin (fed from a thread,
/// so a large input cannot deadlock against ffmpeg's output); killed after
/// 60 s. Decrypting checks need the pipe: FFmpeg 5.1 fails on a
/// multi-fragment file opened by name but decrypts the same bytes from it.
pub fn ffmpeg_stdin(bytes: &[u8], args: &[&str]) -> Output {
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&data);
    });
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !watch.load(std::sync::atomic::Ordering::Relaxed) {
            if start.elapsed() > Duration::from_secs(60) {
                // SAFETY: a signal to our own child, still not reaped.
                unsafe {
                    libc::kill(id as i32, libc::SIGKILL);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = child.wait_with_output().expect("ffmpeg");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    let _ = feeder.join();
    out
}

/// The packet data hashes (the sixth column; a packet with side data has
/// the side data's own hash after it) of a framemd5 listing.
pub fn framemd5_hashes(framemd5: &str) -> Vec<String> {
    framemd5
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(5).map(|h| h.trim().to_string()))
        .collect()
}

/// The data hashes of the packets of `path`'s first video stream, copied
/// (so that two files can be compared packet for packet).
pub fn video_packet_hashes(path: &Path) -> Vec<String> {
    let out = run_limited(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "framemd5 of {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    framemd5_hashes(&String::from_utf8_lossy(&out.stdout))
}

/// Ctrl-C for a child: SIGINT, as a terminal sends it.
pub fn send_ctrl_c(child: &std::process::Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signals our own child, which has not been waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

/// Ctrl-C, then the child's exit status, which must come within 10 s.
pub fn ctrl_c_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    send_ctrl_c(child);
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ffprobe's `KEY=VALUE` lines for the first video stream of `path`.
pub fn ffprobe_stream(path: &Path, entries: &str) -> String {
    let out = run_limited(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            &format!("stream={entries}"),
            "-of",
            "default=nw=1",
            path_str(path),
        ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
