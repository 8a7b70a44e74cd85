//! camflow as a library: `examples/frames.rs` opens sources from code, with
//! no CLI, and its frames are the ones ffprobe sees.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The example, built by `cargo test` beside the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join("frames");
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn frame_lines(src: &str) -> Vec<String> {
    let out = run_limited(Command::new(example()).arg(src), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn example_prints_the_first_ten_frames_of_a_file() {
    let dir = tempdir();
    let clip = make_h264_file(dir.path(), "clip.mp4", "320x240", 2);
    let lines = frame_lines(path_str(&clip));
    assert_eq!(lines.len(), 10, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        let pts = format!("{:.3}", i as f64 / 25.0);
        assert_eq!(line, &format!("frame {i} pts {pts} shape (240, 320, 3)"));
    }
}

#[test]
fn example_reads_a_live_camera() {
    let cam = Camera::start(&["--protocol", "tcp-mjpeg", "--size", "160x120"]);
    let lines = frame_lines(&cam.url);
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert!(
        lines[0].starts_with("frame 0 pts 0.000 shape (120, 160, 3)"),
        "{lines:?}"
    );
    assert!(lines[9].starts_with("frame 9 pts "), "{lines:?}");
}

#[test]
fn example_names_the_source_it_cannot_open() {
    let src = format!("tcp://admin:hunter2@127.0.0.1:{}", closed_port());
    let out = run_limited(Command::new(example()).arg(&src), Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
