//! Memory stays flat while `decode` reads a live stream through
//! libavformat: 60 s of fMP4 at 2 Mbit/s on stdin (ffmpeg `-re` as the
//! writer) and from the WebSocket camera (EvoStream framing). Each packet
//! read used to stay allocated, so RSS grew by the input's byte rate (about
//! 12 MB over these 50 s).
//!
//! The two tests take about a minute each; cargo runs them side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// How far RSS may move between 10 s and the end (the bound).
const SLACK_KIB: i64 = 3 * 1024;

/// 65 s of 640x360 H.264 at 2 Mbit/s, a keyframe a second, made once for
/// both tests (the camera sends H.264 as it is; ffmpeg copies it).
fn clip() -> &'static Path {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = CLIP.get_or_init(|| {
        let dir = tempdir();
        let path = dir.path().join("2mbit.mp4");
        ffmpeg_make(
            &path,
            "-f lavfi -i testsrc2=size=640x360:rate=25 -t 65 -c:v libx264 -preset ultrafast \
             -b:v 2M -maxrate 2M -bufsize 1M -g 25 -pix_fmt yuv420p",
        );
        (dir, path)
    });
    path
}

fn rss_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// RSS of `child` at 10 s and at 60 s of running; the child must still be
/// running at both.
fn rss_at_10_and_60(child: &mut Child) -> (i64, i64) {
    let start = Instant::now();
    let mut at = |secs: u64| {
        while start.elapsed() < Duration::from_secs(secs) {
            if let Some(s) = child.try_wait().expect("try_wait") {
                panic!("camflow ended after {:?} ({s})", start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        rss_kib(child.id()).expect("VmRSS")
    };
    let early = at(10);
    let late = at(60);
    (early, late)
}

/// Waits for a clean exit (within 30 s of the stream's end).
fn finish(mut child: Child, what: &str) {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            assert!(s.success(), "{what}: {s}: {err}");
            return;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{what}: camflow did not end with its stream");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(what: &str, early: i64, late: i64) {
    eprintln!("{what}: VmRSS {early} kB at 10 s, {late} kB at 60 s");
    assert!(
        (late - early).abs() <= SLACK_KIB,
        "{what}: VmRSS went from {early} kB at 10 s to {late} kB at 60 s"
    );
}

#[test]
fn decode_from_stdin_fmp4_at_2_mbit_keeps_memory_flat() {
    let frames = tempdir();
    // ffmpeg writes fragmented MP4 at the clip's own rate, as a live
    // encoder would.
    let mut writer = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-i", path_str(clip())])
        .args(["-c", "copy", "-movflags", "frag_keyframe+empty_moov"])
        .args(["-f", "mp4", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let pipe = writer.stdout.take().expect("ffmpeg stdout");
    let mut child = Command::new(camflow())
        .args(["decode", "-", "--frames-dir", path_str(frames.path())])
        .args(["--fps", "0.1", "-q"])
        .stdin(pipe)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow");
    let (early, late) = rss_at_10_and_60(&mut child);
    finish(child, "stdin");
    let _ = writer.wait();
    check("stdin", early, late);
    assert!(assert_frames_complete(frames.path()) >= 6);
}

#[test]
fn decode_from_the_websocket_camera_at_2_mbit_keeps_memory_flat() {
    let frames = tempdir();
    let cam = Camera::start(&["--protocol", "evostream-ws", "--input", path_str(clip())]);
    let mut child = Command::new(camflow())
        .args(["decode", &cam.url, "--frames-dir", path_str(frames.path())])
        .args(["--fps", "0.1", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow");
    let (early, late) = rss_at_10_and_60(&mut child);
    finish(child, "websocket");
    check("websocket", early, late);
    assert!(assert_frames_complete(frames.path()) >= 6);
}
