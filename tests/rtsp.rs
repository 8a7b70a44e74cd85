//! RTSP cameras end to end, against a real RTSP server: GStreamer's
//! gst-rtsp-server (tests/rtsp_server.py) serving SMPTE colour bars as
//! MJPEG (RFC 2435) or H.264 (RFC 6184), each with a PCMU audio track
//! beside the video, over TCP and UDP.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::rtsp::{RtspOpts, RtspServer};
use common::*;

/// Every frame is 320x240 and shows the seven SMPTE bars in BGR order
/// (white, yellow, cyan, green, magenta, red, blue) along its top row;
/// pts_seconds go up. Prints the frame count.
const BARS_CHECK: &str = r#"
import sys, csv, numpy as np
d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(d + '/frames.csv')))
bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0),
        (255, 0, 255), (0, 0, 255), (255, 0, 0)]
last = None
steps = []
for i, r in enumerate(rows):
    a = np.load(d + '/' + r['file'])
    assert a.shape == (h, w, 3), a.shape
    for k, want in enumerate(bars):
        got = a[h // 8, (2 * k + 1) * w // 14].astype(int)
        assert np.abs(got - np.array(want)).max() <= 24, (i, k, got, want)
    # RTP time: 3600 ticks of 90 kHz per frame at 25 fps; a reconnect
    # (at most one here) moves on by the outage.
    t = float(r['pts_seconds'])
    assert last is None or t > last, ('pts', i, last, t)
    if last is not None:
        steps.append((t - last) * 25)
    last = t
off_grid = [round(d, 3) for d in steps if abs(d - round(d)) > 0.01]
print(len(rows), max(steps) / 25 if steps else 0, ','.join(map(str, off_grid)) or '-')
"#;

/// The frame count, for a run without reconnects: every step is on the
/// 25 fps grid.
fn check_bars(dir: &std::path::Path, w: u32, h: u32) -> usize {
    let bars = check_bars_and_gaps(dir, w, h);
    assert!(
        bars.off_grid.is_empty(),
        "pts off the grid: {:?}",
        bars.off_grid
    );
    bars.frames
}

struct Bars {
    frames: usize,
    /// The longest step between two frames' pts, seconds.
    longest_step: f64,
    /// Steps between frames that are not whole frames at 25 fps: one per
    /// new session, where the outage is measured on the wall clock.
    off_grid: Vec<String>,
}

fn check_bars_and_gaps(dir: &std::path::Path, w: u32, h: u32) -> Bars {
    let out = python(BARS_CHECK, &[path_str(dir), &w.to_string(), &h.to_string()]);
    let mut it = out.split_whitespace();
    let frames = it.next().and_then(|n| n.parse().ok()).expect("frame count");
    let longest_step = it
        .next()
        .and_then(|g| g.parse().ok())
        .expect("longest step");
    let off_grid = match it.next().expect("off-grid steps") {
        "-" => Vec::new(),
        list => list.split(',').map(str::to_string).collect(),
    };
    Bars {
        frames,
        longest_step,
        off_grid,
    }
}

fn decode_with(server: &RtspServer, transport: &str, frames: u32) -> tempfile::TempDir {
    decode_ok(
        &server.url(),
        &[
            "--rtsp-transport",
            transport,
            "--max-frames",
            &frames.to_string(),
        ],
    )
}

#[test]
fn mjpeg_over_tcp_and_udp_decodes_to_bgr_bars() {
    let server = RtspServer::start(&RtspOpts::default().mjpeg().size(320, 240));
    for transport in ["tcp", "udp"] {
        let dir = decode_with(&server, transport, 30);
        assert_eq!(assert_frames_complete(dir.path()), 30, "{transport}");
        assert_eq!(check_bars(dir.path(), 320, 240), 30, "{transport}");
    }
}

#[test]
fn h264_over_tcp_and_udp_decodes_to_bgr_bars() {
    let server = RtspServer::start(&RtspOpts::default().h264().size(320, 240));
    for transport in ["tcp", "udp"] {
        let dir = decode_with(&server, transport, 30);
        assert_eq!(assert_frames_complete(dir.path()), 30, "{transport}");
        assert_eq!(check_bars(dir.path(), 320, 240), 30, "{transport}");
        let rows = csv_rows(dir.path());
        assert_eq!(rows[0][6], "1", "{transport}: the first frame is an IDR");
    }
}

#[test]
fn odd_sizes_come_through_at_their_size() {
    // RTP/JPEG counts in 8-pixel blocks; H.264 crops to any size.
    let server = RtspServer::start(&RtspOpts::default().h264().size(330, 250));
    let dir = decode_with(&server, "tcp", 5);
    assert_eq!(check_bars(dir.path(), 330, 250), 5);
    let server = RtspServer::start(&RtspOpts::default().mjpeg().size(640, 360));
    let dir = decode_with(&server, "tcp", 5);
    assert_eq!(check_bars(dir.path(), 640, 360), 5);
}

fn record_plays(codec_h264: bool, transport: &str) {
    let opts = if codec_h264 {
        RtspOpts::default().h264()
    } else {
        RtspOpts::default().mjpeg()
    };
    let server = RtspServer::start(&opts);
    let dir = tempdir();
    let out = dir.path().join("cam.mp4");
    let run = camflow_run(&[
        "record",
        &server.url(),
        "--rtsp-transport",
        transport,
        "--duration",
        "2",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("RTP packets lost"), "{stderr}");
    let frames = ffprobe_frames(&out);
    // Two seconds at 25 fps; an H.264 recording starts at an IDR. Over UDP
    // on a loaded machine the socket can overflow: the pictures a loss
    // took (up to the next IDR for H.264) are then counted as dropped, and
    // recorded + dropped still cover the two seconds.
    let dropped = frames_dropped(&stderr);
    assert!(
        frames >= 1 && (40..=55).contains(&(frames + dropped)),
        "{transport}: {frames} frames, {dropped} dropped; camflow said:\n{stderr}"
    );
    if transport == "tcp" {
        assert_eq!(dropped, 0, "{stderr}");
    }
    ffmpeg_decodes_cleanly(&out);
    let codec = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .expect("ffprobe");
    let want = if codec_h264 { "h264" } else { "mjpeg" };
    assert_eq!(
        String::from_utf8_lossy(&codec.stdout).trim(),
        format!("{want},320,240")
    );
}

/// The `M` of the summary's `(N RTP packets lost, M frames dropped)`.
fn frames_dropped(stderr: &str) -> u64 {
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.contains("frames dropped"))
        .unwrap_or_else(|| panic!("no loss summary: {stderr}"));
    let before = summary
        .split(" frames dropped")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or_default();
    before
        .parse()
        .unwrap_or_else(|_| panic!("no dropped count in {summary:?}"))
}

#[test]
fn h264_record_is_a_clean_mp4_over_tcp_and_udp() {
    record_plays(true, "tcp");
    record_plays(true, "udp");
}

#[test]
fn mjpeg_record_is_a_clean_mp4_over_tcp_and_udp() {
    record_plays(false, "tcp");
    record_plays(false, "udp");
}

/// Waits until frames.csv has at least `n` rows (the decode is running).
fn wait_for_rows(dir: &std::path::Path, n: usize) {
    let start = Instant::now();
    loop {
        let rows = std::fs::read_to_string(dir.join("frames.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if rows >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {rows} frames after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server goes away mid-stream and comes back on the same port:
/// camflow reconnects (one log line), and numbering and time go on.
fn server_restart_is_reconnected(opts: RtspOpts, transport: &str) {
    let mut server = RtspServer::start(&opts);
    let dir = tempdir();
    let mut child = Command::new(camflow())
        .args([
            "decode",
            &server.url(),
            "--frames-dir",
            path_str(dir.path()),
        ])
        .args(["--rtsp-transport", transport, "--max-frames", "60"])
        .args(["--timeout", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start camflow");
    wait_for_rows(dir.path(), 20);
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{transport}: camflow did not finish after the restart");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(status.success(), "{transport}: {stderr}");
    let attempts = stderr
        .lines()
        .filter(|l| l.contains("reconnecting"))
        .count();
    assert!(attempts >= 1, "{transport}: no reconnect logged: {stderr}");
    assert_eq!(assert_frames_complete(dir.path()), 60, "{transport}");
    let bars = check_bars_and_gaps(dir.path(), 320, 240);
    assert_eq!(bars.frames, 60, "{transport}");
    // The server was away for at least 0.3 s: pts_seconds shows it.
    assert!(
        bars.longest_step >= 0.3,
        "{transport}: longest pts step {} s",
        bars.longest_step
    );
    // Only a new session's first step leaves the RTP grid (or lands on it
    // by chance).
    assert!(
        bars.off_grid.len() <= attempts,
        "{transport}: pts steps off the grid {:?} after {attempts} reconnects: {stderr}",
        bars.off_grid
    );
}

#[test]
fn mjpeg_server_restart_is_reconnected_and_numbering_goes_on() {
    server_restart_is_reconnected(RtspOpts::default().mjpeg(), "tcp");
    server_restart_is_reconnected(RtspOpts::default().mjpeg(), "udp");
}

#[test]
fn h264_server_restart_is_reconnected_and_numbering_goes_on() {
    server_restart_is_reconnected(RtspOpts::default().h264(), "tcp");
    server_restart_is_reconnected(RtspOpts::default().h264(), "udp");
}

#[test]
fn basic_and_digest_auth_from_the_url_or_the_flags() {
    for digest in [false, true] {
        let opts = if digest {
            RtspOpts::default().h264().digest("admin", "s3cr@t pw")
        } else {
            RtspOpts::default().mjpeg().basic("admin", "s3cr@t pw")
        };
        let server = RtspServer::start(&opts);
        let with_flags = decode_ok(
            &server.url(),
            &[
                "--user",
                "admin",
                "--password",
                "s3cr@t pw",
                "--max-frames",
                "3",
            ],
        );
        assert_eq!(assert_frames_complete(with_flags.path()), 3);
        let in_url = server
            .url()
            .replace("rtsp://", "rtsp://admin:s3cr%40t%20pw@");
        let dir = decode_ok(&in_url, &["--max-frames", "3"]);
        assert_eq!(assert_frames_complete(dir.path()), 3);

        // A wrong password: one line, naming the source without it.
        let bad = server.url().replace("rtsp://", "rtsp://admin:wrong-pw@");
        let dir = tempdir();
        let out = camflow_run(&["decode", &bad, "--frames-dir", path_str(dir.path())]);
        let redacted = server.url().replace("rtsp://", "rtsp://admin:***@");
        let line = assert_one_line_error(&out, &redacted, "401");
        assert!(!line.contains("wrong-pw"), "{line}");
        // No password at all.
        let out = camflow_run(&[
            "decode",
            &server.url(),
            "--frames-dir",
            path_str(dir.path()),
        ]);
        assert_one_line_error(&out, &server.url(), "401");
    }
}

#[test]
fn probe_lists_the_sdp_media_and_the_transport() {
    let server = RtspServer::start(&RtspOpts::default().h264().size(320, 240));
    let out = camflow_run(&["probe", "--json", &server.url(), "--rtsp-transport", "udp"]);
    assert_ok(&out);
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    let check = python(
        r#"
import sys, json
r = json.loads(sys.argv[1])
assert r['protocol'] == 'rtsp', r
assert r['rtsp']['transport'] == 'udp', r
media = [(m['media'], m['encoding'], m['used']) for m in r['rtsp']['media']]
assert media == [('video', 'h264', True), ('audio', 'pcmu', False)], media
v = r['streams'][0]
assert (v['codec'], v['width'], v['height']) == ('h264', 320, 240), v
assert abs(v['fps'] - 25) < 1, v
a = r['streams'][1]
assert (a['kind'], a['codec'], a['sample_rate']) == ('audio', 'pcmu', 8000), a
print('ok')
"#,
        &[&json],
    );
    assert_eq!(check.trim(), "ok");

    let server = RtspServer::start(&RtspOpts::default().mjpeg().size(320, 240));
    let out = camflow_run(&["probe", &server.url()]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("video mjpeg, 320x240"), "{text}");
    assert!(text.contains("transport:  RTP over tcp"), "{text}");
    assert!(text.contains("audio pcmu/8000"), "{text}");
}

#[test]
fn the_session_is_torn_down_when_camflow_stops() {
    let server = RtspServer::start(&RtspOpts::default().mjpeg());
    let _dir = decode_with(&server, "tcp", 5);
    let start = Instant::now();
    while !server.stderr().contains("TEARDOWN") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no TEARDOWN: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nothing_listening_is_one_clear_line() {
    let port = closed_port();
    let url = format!("rtsp://127.0.0.1:{port}/stream");
    let dir = tempdir();
    let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &url, "refused");
}

#[test]
fn a_wrong_path_is_one_clear_line() {
    let server = RtspServer::start(&RtspOpts::default().mjpeg());
    let url = server.url().replace("/stream", "/nothing-here");
    let dir = tempdir();
    let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &url, "404");
}

#[test]
fn a_server_that_is_not_rtsp_is_one_clear_line() {
    // An HTTP camera answers the DESCRIBE with HTTP.
    let cam = Camera::start(&["--protocol", "mjpeg-http"]);
    let url = cam.url.replace("http://", "rtsp://");
    let dir = tempdir();
    let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &url, "not RTSP");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("rtsp://127.0.0.1:{port}/stream");
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--timeout",
        "1",
    ]);
    assert_one_line_error(&out, &url, "no answer to DESCRIBE within 1 s");
    drop(listener);
}

#[test]
fn h264_with_b_frames_records_and_decodes() {
    // RTP carries presentation times only; record makes up decode times.
    let server = RtspServer::start(&RtspOpts::default().h264().bframes(2));
    let dir = tempdir();
    let out = dir.path().join("b.mp4");
    let run = camflow_run(&[
        "record",
        &server.url(),
        "--duration",
        "3",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    let frames = ffprobe_frames(&out);
    assert!((70..=75).contains(&frames), "{frames} frames");
    ffmpeg_decodes_cleanly(&out);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=has_b_frames:packet=pts,dts", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&probe.stdout);
    let mut last_dts = None;
    let mut reordered = false;
    let mut last_pts = None;
    for line in text.lines() {
        let f: Vec<i64> = line.split(',').filter_map(|v| v.parse().ok()).collect();
        let [pts, dts] = f[..] else { continue };
        assert!(dts <= pts, "dts {dts} past pts {pts}");
        assert!(last_dts.is_none_or(|l| dts > l), "dts not rising at {dts}");
        reordered |= last_pts.is_some_and(|l| pts < l);
        last_dts = Some(dts);
        last_pts = Some(pts);
    }
    assert!(reordered, "the stream had no B-frames: {text}");

    let dir = decode_ok(&server.url(), &["--max-frames", "30"]);
    assert_eq!(check_bars(dir.path(), 320, 240), 30);
}

#[test]
fn h264_pictures_over_max_frame_bytes_are_dropped_with_a_warning() {
    let server = RtspServer::start(&RtspOpts::default().h264().size(320, 240));
    let dir = tempdir();
    // Every IDR of these bars is over 1 KiB, so nothing can be decoded:
    // the pictures are dropped, said once, and --timeout ends the run.
    let out = camflow_run(&[
        "decode",
        &server.url(),
        "--frames-dir",
        path_str(dir.path()),
        "--max-frame-bytes",
        "1024",
        "--timeout",
        "3",
        "--reconnect",
        "never",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("over --max-frame-bytes (1024), is dropped")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("waiting for an IDR"), "{stderr}");
    let npy = std::fs::read_dir(dir.path())
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "npy"))
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(npy, 0, "{stderr}");
}

/// H.265 (RFC 7798) from gst-rtsp-server (x265enc ! rtph265pay): every
/// output camflow makes of it, each refereed by ffprobe or ffmpeg.
#[test]
fn h265_decodes_records_serves_hls_and_becomes_h264_flv() {
    let server = RtspServer::start(&RtspOpts::default().h265().size(320, 240).no_audio());
    for transport in ["tcp", "udp"] {
        let dir = decode_with(&server, transport, 30);
        assert_eq!(assert_frames_complete(dir.path()), 30, "{transport}");
        assert_eq!(check_bars(dir.path(), 320, 240), 30, "{transport}");
        let rows = csv_rows(dir.path());
        assert_eq!(
            rows[0][6], "1",
            "{transport}: the first frame is an IRAP picture"
        );
    }

    let dir = tempdir();
    let mp4 = dir.path().join("cam.mp4");
    let run = camflow_run(&[
        "record",
        &server.url(),
        "-o",
        path_str(&mp4),
        "--duration",
        "2",
    ]);
    assert_ok(&run);
    assert_eq!(
        ffprobe_stream(&mp4, "codec_name,codec_tag_string,width,height"),
        "codec_name=hevc\ncodec_tag_string=hvc1\nwidth=320\nheight=240\n"
    );
    ffmpeg_decodes_cleanly(&mp4);
    assert!(ffprobe_frames(&mp4) >= 40, "{}", ffprobe_frames(&mp4));

    let hls = dir.path().join("hls");
    let run = camflow_run(&[
        "hls",
        &server.url(),
        "--out",
        path_str(&hls),
        "--duration",
        "3",
    ]);
    assert_ok(&run);
    let playlist = hls.join("index.m3u8");
    // A line for the stream and one for its program: both H.265.
    let codecs = ffprobe_stream(&playlist, "codec_name");
    assert!(codecs.lines().all(|l| l == "codec_name=hevc"), "{codecs}");

    let flv = dir.path().join("cam.flv");
    let run = camflow_run(&[
        "transcode",
        &server.url(),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
        "--duration",
        "2",
    ]);
    assert_ok(&run);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("FLV cannot carry H.265"), "{said}");
    assert_eq!(ffprobe_stream(&flv, "codec_name"), "codec_name=h264\n");
    ffmpeg_decodes_cleanly(&flv);
}
