//! Reconnecting live sources: a camera that drops the connection once is
//! reconnected to with backoff, one log line per attempt, and frame
//! numbering and frames.csv go on. (The backoff itself is tested on paused
//! time in `source::reconnect`.)

mod common;

use common::*;

/// The camera drops its first client after 10 frames (in the middle of a
/// fragment or JPEG) and streams 20 good frames to the next one.
fn dropped_once_then_reconnected(protocol: &str) {
    let cam = Camera::start(&[
        "--protocol",
        protocol,
        "--size",
        "320x240",
        "--fps",
        "50",
        "--frames",
        "20",
        "--fault",
        "drop-mid-fragment",
        "--fault-after",
        "10",
        "--fault-once",
    ]);
    let dir = tempdir();
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", path_str(dir.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{protocol}: {stderr}");
    let attempts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("reconnecting in"))
        .collect();
    assert_eq!(attempts.len(), 1, "{protocol}: {stderr}");
    assert!(
        attempts[0].contains(&cam.url),
        "{protocol}: the line names the source"
    );
    assert!(attempts[0].contains("(attempt 1)"), "{}", attempts[0]);
    // 10 frames, then 20 more after the reconnect, numbered on.
    assert_eq!(assert_frames_complete(dir.path()), 30, "{protocol}");
}

#[test]
fn websocket_camera_dropped_once() {
    dropped_once_then_reconnected("evostream-ws");
}

#[test]
fn tcp_mjpeg_camera_dropped_once() {
    dropped_once_then_reconnected("tcp-mjpeg");
}

#[test]
fn http_mjpeg_camera_dropped_once() {
    dropped_once_then_reconnected("mjpeg-http");
}

#[test]
fn always_comes_back_after_a_clean_end() {
    // A camera that ends its stream after 10 frames, every time.
    let cam = Camera::start(&[
        "--protocol",
        "vbc",
        "--size",
        "320x240",
        "--fps",
        "50",
        "--frames",
        "10",
    ]);
    let dir = decode_ok(&cam.url, &["--reconnect", "always", "--max-frames", "25"]);
    assert_eq!(assert_frames_complete(dir.path()), 25);
    // on-error (the default) ends with the stream.
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 10);
}

#[test]
fn a_source_that_never_worked_is_not_retried() {
    let url = format!("tcp://127.0.0.1:{}", closed_port());
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--reconnect",
        "always",
    ]);
    assert_one_line_error(&out, &url, "cannot connect");
}

#[test]
fn vbc_camera_dropped_once() {
    dropped_once_then_reconnected("vbc");
}
