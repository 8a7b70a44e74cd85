//! End to end over loopback: the built-in camera (EvoStream WebSocket and
//! raw fMP4 WebSocket), files and stdin, checked by numpy, ffprobe and the
//! ffmpeg CLI.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Checks the test pattern in every frame: BGR bar colours and the frame
/// counter equal to the frame's index (nothing lost, repeated or reordered).
const PATTERN_CHECK: &str = r#"
import sys, csv, numpy as np
d, first = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(d + '/frames.csv')))
bars = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)]  # red green blue white, BGR
for i, r in enumerate(rows):
    a = np.load(d + '/' + r['file'])
    h, w, _ = a.shape
    assert a.dtype == np.uint8 and a.flags['C_CONTIGUOUS']
    for k, want in enumerate(bars):
        got = a[h // 4, w * k // 4 + w // 8].astype(int)
        assert np.abs(got - np.array(want)).max() <= 12, (i, k, got, want)
    y = (h - h // 8 + h) // 2
    n = 0
    for c in range(16):
        n = (n << 1) | int(a[y, (2 * c + 1) * w // 32, 1] > 128)
    assert n == first + i, ('frame', i, 'shows counter', n)
print(len(rows))
"#;

#[test]
fn evostream_camera_to_decode_gives_bgr_frames_numpy_loads() {
    let cam = Camera::start(&["--frames", "60", "--size", "320x240"]);
    let dir = decode_ok(&cam.url, &["--max-frames", "40"]);
    assert_eq!(assert_frames_complete(dir.path()), 40);
    let n = python(PATTERN_CHECK, &[path_str(dir.path()), "0"]);
    assert_eq!(n.trim(), "40");
    let rows = csv_rows(dir.path());
    assert_eq!(rows[0][4], "320");
    assert_eq!(rows[0][5], "240");
    assert_eq!(rows[0][6], "1", "the first frame is a keyframe");
    assert_eq!(rows[1][2], "0.040000", "pts of frame 1 at 25 fps");
}

#[test]
fn evostream_clean_close_ends_decode_with_exit_0_and_every_frame() {
    let cam = Camera::start(&["--frames", "30", "--size", "320x240", "--fps", "50"]);
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 30);
    let n = python(PATTERN_CHECK, &[path_str(dir.path()), "0"]);
    assert_eq!(n.trim(), "30");
    // received_unix_seconds is when each frame's bytes arrived, not when
    // libav got round to it: the first frames (read ahead while probing)
    // are spread out like the camera sent them, not bunched together.
    let rows = csv_rows(dir.path());
    let recv: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(recv.windows(2).all(|w| w[1] >= w[0]), "{recv:?}");
    let pts_span = rows[20][2].parse::<f64>().unwrap() - rows[1][2].parse::<f64>().unwrap();
    assert!(recv[20] - recv[1] > pts_span / 4.0, "{recv:?}");
}

#[test]
fn evostream_camera_to_record_ffprobe_counts_every_frame() {
    let cam = Camera::start(&["--frames", "50", "--size", "320x240", "--fps", "50"]);
    let dir = tempdir();
    let mp4 = dir.path().join("out.mp4");
    let out = camflow_run(&["record", &cam.url, "-o", path_str(&mp4)]);
    assert_ok(&out);
    assert_eq!(ffprobe_frames(&mp4), 50);
    ffmpeg_decodes_cleanly(&mp4);
    // The recording decodes back to the same pattern, frame for frame.
    let frames = tempdir();
    let out = camflow_run(&[
        "decode",
        path_str(&mp4),
        "--frames-dir",
        path_str(frames.path()),
    ]);
    assert!(out.status.success());
    assert_eq!(
        python(PATTERN_CHECK, &[path_str(frames.path()), "0"]).trim(),
        "50"
    );
}

#[test]
fn record_duration_stops_at_stream_time() {
    let cam = Camera::start(&["--size", "320x240", "--fps", "50"]);
    let dir = tempdir();
    let mp4 = dir.path().join("two-seconds.mp4");
    let out = camflow_run(&["record", &cam.url, "-o", path_str(&mp4), "--duration", "1"]);
    assert_ok(&out);
    assert_eq!(ffprobe_frames(&mp4), 50);
}

#[test]
fn raw_fmp4_websocket_is_recognised_without_framing() {
    let cam = Camera::start(&[
        "--protocol",
        "fmp4-ws",
        "--frames",
        "20",
        "--size",
        "320x240",
    ]);
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(
        python(PATTERN_CHECK, &[path_str(dir.path()), "0"]).trim(),
        "20"
    );
    // Forcing EvoStream framing on plain fMP4 is refused clearly.
    let cam = Camera::start(&[
        "--protocol",
        "fmp4-ws",
        "--frames",
        "20",
        "--size",
        "320x240",
    ]);
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(dir.path()),
        "--ws-framing",
        "evostream",
    ]);
    assert_one_line_error(&out, &cam.url, "evostream");
}

#[test]
fn fps_limit_keeps_at_most_f_frames_per_stream_second() {
    let cam = Camera::start(&["--frames", "50", "--size", "320x240", "--fps", "50"]);
    let dir = decode_ok(&cam.url, &["--fps", "5"]);
    let rows = csv_rows(dir.path());
    assert_eq!(rows.len(), 5, "1 s of stream at --fps 5");
    let pts: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    for w in pts.windows(2) {
        assert!(w[1] - w[0] >= 0.19, "frames kept too close: {pts:?}");
    }
}

#[test]
fn duration_limit_counts_stream_time() {
    let cam = Camera::start(&["--size", "320x240", "--fps", "50"]);
    let dir = decode_ok(&cam.url, &["--duration", "0.5"]);
    assert_eq!(assert_frames_complete(dir.path()), 25);
}

#[test]
fn out_of_order_fragment_is_dropped_and_the_stream_goes_on() {
    let cam = Camera::start(&[
        "--frames",
        "40",
        "--size",
        "320x240",
        "--fps",
        "50",
        "--fault",
        "out-of-order",
        "--fault-after",
        "10",
    ]);
    let dir = decode_ok(&cam.url, &[]);
    // One fragment (one frame) could not be rebuilt; the rest arrive.
    assert_eq!(assert_frames_complete(dir.path()), 39);
}

#[test]
fn probe_names_protocol_codec_size_rate_and_evostream_tags() {
    let cam = Camera::start(&["--size", "320x240"]);
    let out = camflow_run(&["probe", &cam.url, "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["protocol"], "ws");
    assert_eq!(v["framing"], "evostream");
    let s = &v["streams"][0];
    assert_eq!(s["codec"], "h264");
    assert_eq!(s["width"], 320);
    assert_eq!(s["height"], 240);
    assert_eq!(s["fps"], 25.0);
    let tags = v["evostream_tags"].as_object().expect("tags");
    assert_eq!(tags["250 moov"], 1);
    let begins = tags["249 begin"].as_u64().unwrap();
    assert!(begins >= 1);
    // Three moof pieces per fragment; probing may stop inside one.
    let (moofs, ends) = (
        tags["251 moof"].as_u64().unwrap(),
        tags["255 end"].as_u64().unwrap(),
    );
    assert!(
        moofs >= 3 * ends && moofs <= 3 * (ends + 1),
        "{moofs} {ends}"
    );

    let text = camflow_run(&["probe", &cam.url]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("video h264, 320x240, 25.000 fps"), "{text}");
}

#[test]
fn file_decode_equals_ffmpeg_cli_frame_for_frame() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "src.mp4", "352x288", 2);
    let frames = dir.path().join("frames");
    let out = camflow_run(&["decode", path_str(&src), "--frames-dir", path_str(&frames)]);
    assert_ok(&out);
    assert_eq!(assert_frames_complete(&frames), 50);
    let mad = worst_mad_against_ffmpeg(&src, &frames, 352, 288);
    assert!(mad <= 1.0, "mean abs difference {mad}");
}

#[test]
fn stdin_is_a_source() {
    let dir = tempdir();
    // MPEG-TS, because MP4 read from a pipe needs its moov first.
    let src = dir.path().join("src.ts");
    ffmpeg_make(&src, "-f lavfi -i testsrc2=size=160x120:rate=25 -t 1 -c:v libx264 -preset veryfast -pix_fmt yuv420p");
    let frames = dir.path().join("frames");
    let out = run_limited(
        Command::new(camflow())
            .args(["decode", "-", "--frames-dir", path_str(&frames)])
            .stdin(Stdio::from(std::fs::File::open(&src).unwrap())),
        Duration::from_secs(60),
    );
    assert_ok(&out);
    assert_eq!(assert_frames_complete(&frames), 25);
}

#[test]
fn record_of_a_file_is_a_stream_copy() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "src.mp4", "320x240", 2);
    let dst = dir.path().join("copy.mp4");
    let out = camflow_run(&["record", path_str(&src), "-o", path_str(&dst)]);
    assert_ok(&out);
    assert_eq!(ffprobe_frames(&dst), 50);
    ffmpeg_decodes_cleanly(&dst);
}

#[test]
fn ctrl_c_finishes_cleanly_with_every_written_frame_indexed() {
    let cam = Camera::start(&["--size", "320x240"]);
    let dir = tempdir();
    let mut child = Command::new(camflow())
        .args(["decode", &cam.url, "--frames-dir", path_str(dir.path())])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    let status = ctrl_c_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
    let n = assert_frames_complete(dir.path());
    assert!(n >= 10, "only {n} frames in 1.5 s");
}

#[test]
fn site_that_checks_origin_and_waits_for_ping() {
    let cam = Camera::start(&[
        "--frames",
        "10",
        "--size",
        "320x240",
        "--require-header",
        "Origin: https://example.org",
        "--expect-text",
        "ping",
    ]);
    let dir = tempdir();
    let d = path_str(dir.path());
    // No Origin: the upgrade is refused.
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", d]);
    assert_one_line_error(&out, &cam.url, "HTTP 403");
    // Origin but no "ping": the server sends nothing, the read times out.
    let origin = ["-H", "Origin: https://example.org"];
    let mut args = vec!["decode", &cam.url, "--frames-dir", d, "--timeout", "1"];
    args.extend(origin);
    assert_one_line_error(&camflow_run(&args), &cam.url, "no video data for 1 s");
    // Both: the stream flows.
    args.extend(["--ws-send", "ping"]);
    let out = camflow_run(&args);
    assert_ok(&out);
    assert_eq!(assert_frames_complete(dir.path()), 10);
}

#[test]
fn camera_serves_a_file_copying_h264_and_encoding_anything_else() {
    let dir = tempdir();
    let h264 = make_h264_file(dir.path(), "h264.mp4", "320x240", 1);
    let mpeg4 = dir.path().join("mpeg4.avi");
    ffmpeg_make(
        &mpeg4,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v mpeg4",
    );
    for (src, copied) in [(h264, true), (mpeg4, false)] {
        let cam = Camera::start(&["--input", path_str(&src)]);
        let mp4 = dir.path().join("rec.mp4");
        let out = camflow_run(&["record", &cam.url, "-o", path_str(&mp4)]);
        assert_ok(&out);
        assert_eq!(ffprobe_frames(&mp4), 25, "{}", src.display());
        ffmpeg_decodes_cleanly(&mp4);
        let probe = camflow_run(&["probe", path_str(&mp4), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("json");
        assert_eq!(v["streams"][0]["codec"], "h264");
        if copied {
            // Stream copy: the very same H.264 bytes as the source.
            let a = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&src)
                .args(["-c", "copy", "-f", "h264", "-"])
                .output()
                .unwrap();
            let b = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&mp4)
                .args(["-c", "copy", "-f", "h264", "-"])
                .output()
                .unwrap();
            assert!(a.stdout == b.stdout, "H.264 was not copied byte for byte");
        }
    }
}

#[test]
fn odd_frame_widths_decode_cleanly() {
    // 330 pixels: swscale's vector stores run past a tightly sized buffer
    // at widths like this one.
    let cam = Camera::start(&["--frames", "20", "--size", "330x198", "--fps", "50"]);
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(
        python(PATTERN_CHECK, &[path_str(dir.path()), "0"]).trim(),
        "20"
    );
}

#[test]
fn server_restarting_its_stream_keeps_numbering_and_stream_time() {
    // 20 frames, a new init segment with timestamps from zero, 25 more.
    let args = [
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
    ];
    let cam = Camera::start(&args);
    let dir = decode_ok(&cam.url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 45);
    // --fps runs on stream time across the restart: 0.9 s at 10 fps.
    let cam = Camera::start(&args);
    let dir = decode_ok(&cam.url, &["--fps", "10"]);
    assert_eq!(assert_frames_complete(dir.path()), 9);
}

#[test]
fn basic_auth_from_a_percent_encoded_url_password() {
    // "admin:p@ss:w0rd" in base64, as the server expects it.
    let cam = Camera::start(&[
        "--frames",
        "5",
        "--size",
        "320x240",
        "--require-header",
        "Authorization: Basic YWRtaW46cEBzczp3MHJk",
    ]);
    let url = cam.url.replace("ws://", "ws://admin:p%40ss%3Aw0rd@");
    let dir = decode_ok(&url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 5);
}

#[test]
fn a_new_run_replaces_the_frames_of_an_earlier_one() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "src.mp4", "160x120", 1);
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::write(frames.join("notes.txt"), b"mine").unwrap();
    for n in ["20", "5"] {
        let out = camflow_run(&[
            "decode",
            path_str(&src),
            "--frames-dir",
            path_str(&frames),
            "--max-frames",
            n,
        ]);
        assert_ok(&out);
    }
    assert_eq!(assert_frames_complete(&frames), 5);
    let npy = std::fs::read_dir(&frames)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("npy".as_ref()))
        .count();
    assert_eq!(npy, 5, "frames of the first run are gone");
    assert!(
        frames.join("notes.txt").exists(),
        "other files are left alone"
    );
}

/// Ctrl-C before the first frame (a camera that accepts and sends
/// nothing) is a clean stop that leaves an earlier run's frames and index
/// as they were; it used to write a fresh, empty index over them.
#[test]
fn a_stop_before_the_first_frame_keeps_an_earlier_run() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "src.mp4", "160x120", 1);
    let frames = dir.path().join("frames");
    assert_ok(&camflow_run(&[
        "decode",
        path_str(&src),
        "--frames-dir",
        path_str(&frames),
        "--max-frames",
        "3",
    ]));
    let csv = std::fs::read(frames.join("frames.csv")).unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", silent.local_addr().unwrap());
    let mut child = Command::new(camflow())
        .args(["decode", &url, "--frames-dir", path_str(&frames)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start camflow");
    // Connected, and waiting for a JPEG that never comes.
    let _held = silent.accept().expect("camflow connects");
    std::thread::sleep(Duration::from_millis(300));
    let status = ctrl_c_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
    assert_eq!(assert_frames_complete(&frames), 3);
    assert_eq!(std::fs::read(frames.join("frames.csv")).unwrap(), csv);
}

/// A first run that fails before any frame leaves no folder behind, nor
/// the parents it made; an existing folder stays.
#[test]
fn a_failed_first_run_leaves_no_folder() {
    let dir = tempdir();
    let missing = dir.path().join("missing.mp4");
    let frames = dir.path().join("a").join("b").join("frames");
    let out = camflow_run(&[
        "decode",
        path_str(&missing),
        "--frames-dir",
        path_str(&frames),
    ]);
    assert!(!out.status.success());
    assert!(
        !dir.path().join("a").exists(),
        "the folders it made are left"
    );
    let existing = dir.path().join("mine");
    std::fs::create_dir(&existing).unwrap();
    let out = camflow_run(&[
        "decode",
        path_str(&missing),
        "--frames-dir",
        path_str(&existing),
    ]);
    assert!(!out.status.success());
    assert!(existing.is_dir(), "an existing folder is removed");
}

#[test]
fn raw_h264_without_timestamps_records_and_decodes_with_limits() {
    let dir = tempdir();
    let raw = dir.path().join("dump.h264");
    // No B-frames, as camera encoders send it: in a stream without
    // timestamps their order cannot be known without parsing the slices.
    ffmpeg_make(
        &raw,
        "-f lavfi -i testsrc2=size=160x120:rate=25 -t 2 -c:v libx264 -preset veryfast -bf 0 -f h264",
    );
    let mp4 = dir.path().join("dump.mp4");
    assert_ok(&camflow_run(&[
        "record",
        path_str(&raw),
        "-o",
        path_str(&mp4),
    ]));
    assert_eq!(ffprobe_frames(&mp4), 50);
    ffmpeg_decodes_cleanly(&mp4);
    // On stdin there are no timestamps at all: --fps and --duration count
    // frames at the stream's nominal rate.
    let frames = dir.path().join("frames");
    let out = run_limited(
        Command::new(camflow())
            .args(["decode", "-", "--frames-dir", path_str(&frames)])
            .args(["--fps", "5", "--duration", "1"])
            .stdin(Stdio::from(std::fs::File::open(&raw).unwrap())),
        Duration::from_secs(60),
    );
    assert_ok(&out);
    assert_eq!(assert_frames_complete(&frames), 5);
}

#[test]
fn record_keeps_the_video_when_mp4_cannot_hold_the_audio() {
    let dir = tempdir();
    let mkv = dir.path().join("alaw.mkv");
    ffmpeg_make(&mkv, "-f lavfi -i testsrc2=size=160x120:rate=25 -f lavfi -i sine -t 2 -c:v libx264 -c:a pcm_alaw");
    let mp4 = dir.path().join("alaw.mp4");
    assert_ok(&camflow_run(&[
        "record",
        path_str(&mkv),
        "-o",
        path_str(&mp4),
    ]));
    assert_eq!(ffprobe_frames(&mp4), 50);
    ffmpeg_decodes_cleanly(&mp4);
}

#[test]
fn record_keeps_the_video_when_the_muxer_refuses_the_audio_header() {
    // MP3 at 8 kHz passes the codec check but the mp4 muxer refuses it
    // when writing the header.
    let dir = tempdir();
    let mkv = dir.path().join("mp3-8k.mkv");
    ffmpeg_make(&mkv, "-f lavfi -i testsrc2=size=160x120:rate=25 -f lavfi -i sine=sample_rate=8000 -t 2 -c:v libx264 -c:a libmp3lame");
    let mp4 = dir.path().join("video-only.mp4");
    assert_ok(&camflow_run(&[
        "record",
        path_str(&mkv),
        "-o",
        path_str(&mp4),
    ]));
    assert_eq!(ffprobe_frames(&mp4), 50);
}

/// Bytes no recording could produce, standing for an earlier recording at
/// the output path.
fn earlier_recording(path: &std::path::Path) -> Vec<u8> {
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &bytes).expect("write the earlier file");
    bytes
}

/// Names in `dir` other than `keep`: temporary files left behind, or a
/// new file that should not be there.
fn other_files(dir: &std::path::Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// A WebSocket stream of audio-only fMP4: `record` refuses it in one line,
/// as `decode` does, and the earlier recording stays (it used to be
/// replaced by a file of audio).
#[test]
fn record_of_a_stream_without_video_refuses_and_keeps_an_earlier_file() {
    use tokio_tungstenite::tungstenite::{accept, Message};
    let dir = tempdir();
    let audio = dir.path().join("audio.mp4");
    ffmpeg_make(
        &audio,
        "-f lavfi -i sine=duration=2 -c:a aac -movflags frag_keyframe+empty_moov+default_base_moof",
    );
    let fmp4 = std::fs::read(&audio).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/live", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let Ok(mut ws) = accept(stream) else {
            return;
        };
        let _ = ws.send(Message::binary(fmp4));
        let _ = ws.close(None);
        let _ = ws.flush();
    });
    let out_path = dir.path().join("keep.mp4");
    let before = earlier_recording(&out_path);
    let out = camflow_run(&[
        "record",
        &url,
        "-o",
        path_str(&out_path),
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, "ws://", "no video");
    assert_eq!(std::fs::read(&out_path).unwrap(), before);
    assert_eq!(
        other_files(dir.path(), &["keep.mp4", "audio.mp4"]),
        Vec::<String>::new()
    );
}

#[test]
fn record_dropped_after_the_init_segment_leaves_an_earlier_file_untouched() {
    // The review's case: the camera sends its init segment, then drops in
    // the first fragment; the earlier 100 KB recording became a 756-byte
    // init-only file.
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fault",
        "drop-mid-fragment",
        "--fault-after",
        "0",
    ]);
    let dir = tempdir();
    let mp4 = dir.path().join("old.mp4");
    let before = earlier_recording(&mp4);
    let out = camflow_run(&[
        "record",
        &cam.url,
        "-o",
        path_str(&mp4),
        "--reconnect",
        "never",
    ]);
    let line = assert_one_line_error(&out, &cam.url, "dropped");
    assert!(!line.contains("fragments before it"), "{line}");
    assert!(
        std::fs::read(&mp4).expect("old.mp4") == before,
        "old.mp4 changed"
    );
    assert_eq!(other_files(dir.path(), &["old.mp4"]), Vec::<String>::new());

    // Without an earlier file, no init-only file is left either.
    let fresh = dir.path().join("new.mp4");
    let out = camflow_run(&[
        "record",
        &cam.url,
        "-o",
        path_str(&fresh),
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &cam.url, "dropped");
    assert_eq!(other_files(dir.path(), &["old.mp4"]), Vec::<String>::new());
}

#[test]
fn record_stopped_before_any_video_exits_0_and_leaves_an_earlier_file_untouched() {
    // The camera waits for a text message camflow never sends: no video.
    let cam = Camera::start(&["--size", "320x240", "--expect-text", "never-sent"]);
    let dir = tempdir();
    let mp4 = dir.path().join("old.mp4");
    let before = earlier_recording(&mp4);
    let mut child = Command::new(camflow())
        .args(["record", &cam.url, "-o", path_str(&mp4)])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1000));
    let status = ctrl_c_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(
        std::fs::read(&mp4).expect("old.mp4") == before,
        "old.mp4 changed"
    );
    assert_eq!(other_files(dir.path(), &["old.mp4"]), Vec::<String>::new());
}

#[test]
fn record_of_an_input_without_video_packets_leaves_an_earlier_file_untouched() {
    // Matroska's header carries the codec parameters, so libavformat opens
    // the input and the MP4 header is written; the input then ends inside
    // its first cluster, before any packet. This used to exit 0 with a
    // header-only file in place of the earlier one.
    let dir = tempdir();
    let mkv = dir.path().join("src.mkv");
    ffmpeg_make(
        &mkv,
        "-f lavfi -i testsrc2=size=160x120:rate=25 -t 1 -c:v libx264 -preset veryfast",
    );
    let data = std::fs::read(&mkv).expect("src.mkv");
    let cluster = data
        .windows(4)
        .position(|w| w == [0x1f, 0x43, 0xb6, 0x75])
        .expect("a Matroska cluster");
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &data[..cluster + 8]).expect("cut.mkv");
    let mp4 = dir.path().join("old.mp4");
    let before = earlier_recording(&mp4);
    let out = run_limited(
        Command::new(camflow())
            .args(["record", "-", "-o", path_str(&mp4)])
            .stdin(Stdio::from(std::fs::File::open(&cut).expect("cut.mkv"))),
        Duration::from_secs(60),
    );
    assert_one_line_error(&out, "stdin", "before any video");
    assert!(
        std::fs::read(&mp4).expect("old.mp4") == before,
        "old.mp4 changed"
    );
    assert_eq!(
        other_files(dir.path(), &["old.mp4", "src.mkv", "cut.mkv"]),
        Vec::<String>::new()
    );
}

#[test]
fn record_replaces_an_earlier_file_keeping_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    // WebSocket fMP4, written as received.
    let cam = Camera::start(&["--frames", "50", "--size", "320x240", "--fps", "50"]);
    let ws = dir.path().join("ws.mp4");
    earlier_recording(&ws);
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_ok(&camflow_run(&["record", &cam.url, "-o", path_str(&ws)]));
    assert_eq!(ffprobe_frames(&ws), 50);
    ffmpeg_decodes_cleanly(&ws);
    let mode = std::fs::metadata(&ws).expect("ws.mp4").permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // A file, stream-copied by libavformat.
    let src = make_h264_file(dir.path(), "src.mp4", "320x240", 2);
    let copy = dir.path().join("copy.mp4");
    earlier_recording(&copy);
    assert_ok(&camflow_run(&[
        "record",
        path_str(&src),
        "-o",
        path_str(&copy),
    ]));
    assert_eq!(ffprobe_frames(&copy), 50);
    ffmpeg_decodes_cleanly(&copy);
    assert_eq!(
        other_files(dir.path(), &["ws.mp4", "src.mp4", "copy.mp4"]),
        Vec::<String>::new()
    );
}

#[test]
fn one_frame_is_counted_in_the_singular() {
    let dir = tempdir();
    let clip = make_h264_file(dir.path(), "one.mp4", "160x120", 1);
    let frames = dir.path().join("f");
    let out = camflow_run(&[
        "decode",
        path_str(&clip),
        "--frames-dir",
        path_str(&frames),
        "--max-frames",
        "1",
    ]);
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrote 1 frame to"), "{err}");
    assert!(!err.contains("1 frames"), "{err}");
}
