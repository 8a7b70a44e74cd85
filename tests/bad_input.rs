//! Every bad input ends with a non-zero exit and one line naming the source
//! (password removed) and the problem; never a panic or a hang; frames
//! written before a fault stay complete and indexed.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn decode_err(url: &str, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempdir();
    let mut args = vec!["decode", url, "--frames-dir", path_str(dir.path())];
    args.extend_from_slice(extra);
    let out = camflow_run(&args);
    (out, dir)
}

#[test]
fn unknown_scheme() {
    let (out, _d) = decode_err("gopher://127.0.0.1/cam", &[]);
    assert_one_line_error(&out, "gopher://127.0.0.1/cam", "unknown scheme");
}

#[test]
fn unreachable_host_connection_refused() {
    let port = closed_port();
    let url = format!("ws://127.0.0.1:{port}/live");
    let (out, _d) = decode_err(&url, &[]);
    assert_one_line_error(&out, &url, "cannot connect");
}

#[test]
fn silent_server_times_out() {
    // Accepts TCP (the kernel does) but never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/live", listener.local_addr().unwrap());
    let start = Instant::now();
    let (out, _d) = decode_err(&url, &["--timeout", "1"]);
    assert_one_line_error(&out, &url, "no answer within 1 s");
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn tls_failure_against_a_plain_server() {
    let cam = Camera::start(&["--size", "320x240"]);
    let url = cam.url.replace("ws://", "wss://");
    let (out, _d) = decode_err(&url, &[]);
    assert_one_line_error(&out, &url, "TLS");
}

#[test]
fn http_error_on_the_upgrade() {
    let cam = Camera::start(&["--size", "320x240"]);
    let url = cam.url.replace("/live", "/no-such-camera");
    let (out, _d) = decode_err(&url, &[]);
    assert_one_line_error(&out, &url, "HTTP 404");
}

#[test]
fn password_never_shown() {
    let port = closed_port();
    let url = format!("ws://admin:hunter2@127.0.0.1:{port}/live");
    let (out, _d) = decode_err(&url, &[]);
    let line = assert_one_line_error(&out, "admin:***@127.0.0.1", "cannot connect");
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn neither_evostream_nor_fmp4() {
    let cam = Camera::start(&["--fault", "garbage"]);
    let (out, dir) = decode_err(&cam.url, &[]);
    assert_one_line_error(&out, &cam.url, "neither EvoStream-framed nor fMP4");
    assert_eq!(assert_frames_complete(dir.path()), 0);
}

fn fault_keeps_earlier_frames(fault: &str, what: &str) {
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fps",
        "50",
        "--fault",
        fault,
        "--fault-after",
        "12",
    ]);
    // Not reconnecting: the camera would fault again on every connection.
    let (out, dir) = decode_err(&cam.url, &["--reconnect", "never"]);
    assert_one_line_error(&out, &cam.url, what);
    // Every fragment before the fault was whole: all 12 frames are there.
    assert_eq!(assert_frames_complete(dir.path()), 12);
}

#[test]
fn connection_dropped_mid_fragment() {
    fault_keeps_earlier_frames("drop-mid-fragment", "in the middle of a fragment");
}

#[test]
fn truncated_message() {
    fault_keeps_earlier_frames(
        "truncated",
        "websocket message ended inside message tag 252",
    );
}

#[test]
fn oversized_message() {
    fault_keeps_earlier_frames("oversized", "over the 8388608-byte limit");
}

#[test]
fn message_over_a_configured_limit() {
    let cam = Camera::start(&["--size", "320x240"]);
    let (out, _d) = decode_err(&cam.url, &["--max-message-bytes", "1024"]);
    assert_one_line_error(&out, &cam.url, "over the 1024-byte limit");
}

#[test]
fn record_keeps_whole_fragments_before_a_drop() {
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fps",
        "50",
        "--fault",
        "drop-mid-fragment",
        "--fault-after",
        "12",
    ]);
    let dir = tempdir();
    let mp4 = dir.path().join("partial.mp4");
    let out = camflow_run(&[
        "record",
        &cam.url,
        "-o",
        path_str(&mp4),
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &cam.url, "in the middle of a fragment");
    assert_eq!(ffprobe_frames(&mp4), 12);
    ffmpeg_decodes_cleanly(&mp4);
}

#[test]
fn unwritable_frames_dir() {
    let cam = Camera::start(&["--size", "320x240"]);
    // A regular file where the folder should be: fails even for root.
    let dir = tempdir();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let target = file.join("frames");
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", path_str(&target)]);
    let line = assert_one_line_error(&out, &cam.url, "is a file, not a folder");
    assert!(line.contains(path_str(&file)), "{line}");
    // The file itself as --frames-dir.
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", path_str(&file)]);
    let line = assert_one_line_error(&out, &cam.url, "is a file, not a folder");
    assert!(!line.contains("os error"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn missing_file() {
    let out = camflow_run(&[
        "decode",
        "/no/such/video.mp4",
        "--frames-dir",
        "/tmp/unused",
    ]);
    assert_one_line_error(&out, "/no/such/video.mp4", "no such file");
}

#[test]
fn full_disk_keeps_complete_frames_only() {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        eprintln!(
            "full_disk_keeps_complete_frames_only needs root to mount a small tmpfs; skipped"
        );
        return;
    }
    let dir = tempdir();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", path_str(&mnt)])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let cam = Camera::start(&["--size", "320x240", "--fps", "50"]);
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", path_str(&mnt)]);
    assert_one_line_error(&out, &cam.url, "no space left");
    // 230 KB frames in 1 MiB: a few fit, each complete and indexed.
    let n = assert_frames_complete(&mnt);
    assert!((1..=4).contains(&n), "{n} frames");
}

#[test]
fn stalled_camera_behind_keepalive_pings_times_out() {
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fps",
        "50",
        "--fault",
        "stall",
        "--fault-after",
        "8",
    ]);
    let (out, dir) = decode_err(&cam.url, &["--timeout", "1", "--reconnect", "never"]);
    assert_one_line_error(&out, &cam.url, "no video data for 1 s");
    assert_eq!(assert_frames_complete(dir.path()), 8);
}

#[test]
fn absurd_timeout_is_refused_in_one_line() {
    for t in ["1e20", "0", "-1"] {
        let out = camflow_run(&[
            "decode",
            "x.mp4",
            "--frames-dir",
            "/tmp/unused",
            "--timeout",
            t,
        ]);
        assert_one_line_error(&out, "--timeout", "more than 0 and at most 86400");
    }
}

#[test]
fn record_stops_cleanly_when_the_stream_restarts() {
    let cam = Camera::start(&[
        "--frames",
        "25",
        "--size",
        "320x240",
        "--fps",
        "50",
        "--fault",
        "restart",
        "--fault-after",
        "20",
    ]);
    let dir = tempdir();
    let mp4 = dir.path().join("before-restart.mp4");
    let out = camflow_run(&["record", &cam.url, "-o", path_str(&mp4)]);
    assert_one_line_error(&out, &cam.url, "the stream restarted");
    assert_eq!(ffprobe_frames(&mp4), 20);
    ffmpeg_decodes_cleanly(&mp4);
}

#[test]
fn a_failed_run_leaves_an_earlier_runs_frames_alone() {
    let cam = Camera::start(&["--frames", "10", "--size", "320x240", "--fps", "50"]);
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 10);
    let port = closed_port();
    let url = format!("ws://127.0.0.1:{port}/live");
    let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &url, "cannot connect");
    assert_eq!(assert_frames_complete(dir.path()), 10);
}

#[test]
fn full_index_disk_never_leaves_a_row_without_its_file() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to mount a small tmpfs; skipped");
        return;
    }
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "small.mp4", "160x120", 4);
    // Sizes around where the disk fills between a frame and its row (on
    // this kernel, 1066 pages fills it while writing the row).
    for pages in 1040u32..1080 {
        let mnt = dir.path().join(format!("m{pages}"));
        std::fs::create_dir(&mnt).unwrap();
        let size = format!("size={}", pages * 4096);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs", path_str(&mnt)])
            .status()
            .unwrap();
        assert!(ok.success());
        let out = camflow_run(&["decode", path_str(&src), "--frames-dir", path_str(&mnt)]);
        let n = assert_frames_complete(&mnt);
        let _ = Command::new("umount").arg(&mnt).status();
        if out.status.success() {
            assert_eq!(n, 100);
        } else {
            assert_one_line_error(&out, "small.mp4", "no space left");
        }
    }
}

#[test]
fn record_that_cannot_start_leaves_an_existing_output_alone() {
    let dir = tempdir();
    let avi = dir.path().join("raw.avi");
    ffmpeg_make(
        &avi,
        "-f lavfi -i testsrc2=size=64x48:rate=5 -t 1 -c:v rawvideo",
    );
    let keep = dir.path().join("keep.mp4");
    std::fs::write(&keep, b"precious").unwrap();
    let out = camflow_run(&["record", path_str(&avi), "-o", path_str(&keep)]);
    assert_one_line_error(&out, "raw.avi", "MP4 cannot hold rawvideo video");
    assert_eq!(std::fs::read(&keep).unwrap(), b"precious");
}

#[test]
fn record_refuses_to_write_over_its_own_input() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "clip.mp4", "64x48", 1);
    let before = std::fs::read(&src).unwrap();
    // The same file under another name, too.
    let alias = dir.path().join(".").join("clip.mp4");
    let out = camflow_run(&["record", path_str(&src), "-o", path_str(&alias)]);
    assert_one_line_error(&out, "clip.mp4", "the input itself");
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

/// The SOF0 width and height of a baseline JPEG set to `w` x `h` (markers
/// walked from the SOI, so no entropy-coded byte is mistaken for one).
fn with_sof0_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut at = 2;
    while let [0xFF, marker, hi, lo, ..] = out[at..] {
        if marker == 0xC0 {
            // FF C0, length (2), precision (1), height (2), width (2).
            out[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
            out[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
            return out;
        }
        at += 2 + usize::from(u16::from_be_bytes([hi, lo]));
    }
    panic!("no SOF0 in the test JPEG");
}

#[test]
fn jpeg_bomb_claiming_60000x60000_is_dropped_without_allocating() {
    // A 2 KB JPEG whose header says 60000x60000 (10.8 GB as BGR) between
    // good ones. Under a 4 GiB address-space limit the old code aborted
    // ("memory allocation of 10800000000 bytes failed").
    let dir = tempdir();
    let good = dir.path().join("good.mjpeg");
    ffmpeg_make(
        &good,
        "-f lavfi -i testsrc2=size=64x48:rate=25 -frames:v 3 -c:v mjpeg -f mjpeg",
    );
    let one = dir.path().join("one.mjpeg");
    ffmpeg_make(
        &one,
        "-f lavfi -i testsrc2=size=64x48:rate=25 -frames:v 1 -c:v mjpeg -f mjpeg",
    );
    let good = std::fs::read(&good).unwrap();
    let bomb = with_sof0_size(&std::fs::read(&one).unwrap(), 60000, 60000);
    let src = dir.path().join("bomb.mjpeg");
    std::fs::write(&src, [&good[..], &bomb, &good].concat()).unwrap();
    for decoder in ["turbojpeg", "libav"] {
        let frames = dir.path().join(format!("frames-{decoder}"));
        let out = run_limited(
            Command::new("sh")
                .args(["-c", "ulimit -v 4194304 && exec \"$0\" \"$@\""])
                .arg(camflow())
                .args(["decode", path_str(&src), "--frames-dir"])
                .arg(&frames)
                .args(["--jpeg-decoder", decoder]),
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{decoder}: {stderr}");
        assert!(!stderr.contains("panicked"), "{decoder}: {stderr}");
        // Dropped like any JPEG that cannot be decoded; the ones around it
        // are all there.
        assert_eq!(assert_frames_complete(&frames), 6, "{decoder}: {stderr}");
        if decoder == "turbojpeg" {
            assert_eq!(
                stderr
                    .matches(&format!(
                        "{}: a JPEG of 60000x60000 pixels is dropped",
                        path_str(&src)
                    ))
                    .count(),
                1,
                "{stderr}"
            );
        }
    }
}

/// A WebSocket server that sends `init`, then cycles through `junk` (one
/// message every 300 ms, none of it video) until the client hangs up or
/// 30 s have passed. Returns its `ws://` URL.
fn init_then_junk_server(init: Vec<u8>, junk: Vec<Vec<u8>>) -> String {
    use tokio_tungstenite::tungstenite::{accept, Message};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/live", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let Ok(mut ws) = accept(stream) else {
            return;
        };
        if ws.send(Message::binary(init)).is_err() {
            return;
        }
        for m in junk.iter().cycle().take(100) {
            std::thread::sleep(Duration::from_millis(300));
            if ws.send(Message::binary(m.clone())).is_err() {
                return;
            }
        }
    });
    url
}

/// The first binary message a `camflow camera` sends: its init segment
/// (EvoStream-framed or plain fMP4, as the protocol says).
fn camera_init_message(protocol: &str) -> Vec<u8> {
    use tokio_tungstenite::tungstenite::{connect, Message};
    let cam = Camera::start(&["--size", "320x240", "--protocol", protocol]);
    let (mut ws, _) = connect(cam.url.as_str()).expect("connect to the camera");
    loop {
        if let Message::Binary(b) = ws.read().expect("read from the camera") {
            return b.to_vec();
        }
    }
}

fn junk_after_init_times_out(url: &str) {
    let start = Instant::now();
    let dir = tempdir();
    let out = run_limited(
        Command::new(camflow()).args([
            "decode",
            url,
            "--frames-dir",
            path_str(dir.path()),
            "--timeout",
            "2",
            "--reconnect",
            "never",
        ]),
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, url, "no video data for 2 s");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(assert_frames_complete(dir.path()), 0);
}

#[test]
fn evostream_messages_without_video_do_not_hold_off_the_timeout() {
    use camflow::proto::evostream::write_message as message;
    let init = camera_init_message("evostream-ws");
    let junk = vec![
        // A tag this de-framer does not know (skipped).
        message(200, &[b"keepalive"]),
        // A fragment with no moof or mdat header (dropped whole).
        message(249, &[]),
        message(252, &[b"not a picture"]),
        message(255, &[]),
        // The same init segment again.
        init.clone(),
    ];
    let url = init_then_junk_server(init, junk);
    junk_after_init_times_out(&url);
}

#[test]
fn fmp4_boxes_without_video_do_not_hold_off_the_timeout() {
    let mkbox = |kind: &[u8; 4], body: &[u8]| {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    };
    let init = camera_init_message("fmp4-ws");
    let junk = vec![
        mkbox(b"free", b"keepalive"),
        // An mdat with no moof before it (dropped and counted).
        mkbox(b"mdat", b"not a picture"),
        init.clone(),
    ];
    let url = init_then_junk_server(init, junk);
    junk_after_init_times_out(&url);
}

/// Every file in `dir` with its bytes, in name order.
fn folder_contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn hls_refuses_an_input_inside_its_own_folder() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "clip.mp4", "64x48", 4);
    let hls = dir.path().join("hls");
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&src),
        "--out",
        path_str(&hls),
        "--vod",
        "-q",
    ]));
    let before = folder_contents(&hls);
    assert!(before.iter().any(|(n, _)| n.ends_with(".m4s")));
    // Its own playlist as the input (which would be removed, segments and
    // all, when the run starts writing), and the same through a symlink.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&hls, &link).unwrap();
    for input in [hls.join("index.m3u8"), link.join("index.m3u8")] {
        let out = camflow_run(&["hls", path_str(&input), "--out", path_str(&hls), "--vod"]);
        assert_one_line_error(&out, "index.m3u8", "inside the HLS folder");
        assert_eq!(folder_contents(&hls), before);
    }
    // Another file in the folder is never removed: it may be the input.
    let inside = hls.join("clip.mp4");
    std::fs::copy(&src, &inside).unwrap();
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&inside),
        "--out",
        path_str(&hls),
        "--vod",
        "-q",
    ]));
    assert!(inside.exists());
}

#[test]
fn decode_fps_above_1000_is_refused_in_one_line() {
    for fps in ["1e19", "1001", "0", "nan"] {
        let out = camflow_run(&[
            "decode",
            "x.mp4",
            "--frames-dir",
            "/tmp/unused",
            "--fps",
            fps,
        ]);
        assert_one_line_error(&out, "--fps", "more than 0 and at most 1000");
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn argument_errors_are_one_line() {
    let cases: [(&[&str], &str); 5] = [
        (&["--fps", "-1"], "'-1' for '--fps"),
        (
            &["--max-frames", "99999999999999999999999"],
            "'99999999999999999999999' for '--max-frames",
        ),
        (&["--no-such-flag"], "unexpected argument '--no-such-flag'"),
        (
            &["--jpeg-decoder", "x"],
            "possible values: turbojpeg, libav",
        ),
        (&["--duration"], "a value is required for '--duration"),
    ];
    for (extra, what) in cases {
        let mut args = vec!["decode", "x.mp4", "--frames-dir", "/tmp/unused"];
        args.extend_from_slice(extra);
        let out = camflow_run(&args);
        let line = assert_one_line_error(&out, "camflow: error: ", what);
        assert!(line.starts_with("camflow: error: "), "{line}");
        assert_eq!(out.status.code(), Some(2), "{line}");
    }
    // A missing argument is named too.
    let out = camflow_run(&["decode", "x.mp4"]);
    assert_one_line_error(&out, "camflow: error: ", "--frames-dir <DIR>");
    assert_eq!(out.status.code(), Some(2));
    // Help and version are not errors: clap prints them as it always did.
    let out = camflow_run(&["decode", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: camflow decode"));
    let out = camflow_run(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("camflow "));
    // No command: the help, on stderr, with clap's usage exit code.
    let out = camflow_run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Commands:"));
}
