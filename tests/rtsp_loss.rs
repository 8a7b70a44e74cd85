//! RTP packet loss, for real: GStreamer's RTSP server (tests/rtsp_server.py)
//! behind a proxy that drops some of the video's interleaved RTP packets
//! (tests/rtsp_lossy_proxy.py). camflow must count the lost packets and the
//! frames it threw away, show both in its summary line, and never write a
//! frame that was built from an incomplete one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::peer::ScriptPeer;
use common::rtsp::{RtspOpts, RtspServer};
use common::*;

/// A running `tests/rtsp_lossy_proxy.py` in front of an RTSP server.
/// Killed (SIGKILL) when dropped; `stop()` ends it with SIGTERM.
struct LossyProxy {
    peer: ScriptPeer,
}

impl LossyProxy {
    /// Forwards to `upstream_port` on loopback; `args` say what to drop
    /// (`--skip K --drop-every N`, `--drop-idr-heads M`).
    fn start(upstream_port: u16, args: &[&str]) -> LossyProxy {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_lossy_proxy.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .args(["--upstream", &format!("127.0.0.1:{upstream_port}")])
            .args(args);
        LossyProxy {
            peer: ScriptPeer::start(cmd),
        }
    }

    /// `rtsp://127.0.0.1:PROXYPORT/stream`.
    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.peer.port)
    }

    fn stderr(&self) -> String {
        self.peer.stderr()
    }

    /// SIGTERM; the proxy must exit with status 0 within 5 s. Returns its
    /// whole stderr.
    fn stop(&mut self) -> String {
        let status = self.peer.stop();
        let log = self.peer.stderr();
        match status {
            Some(s) => assert!(s.success(), "proxy exited with {s} on SIGTERM:\n{log}"),
            None => panic!("proxy still running 5 s after SIGTERM:\n{log}"),
        }
        log
    }
}

/// Every frame is 320x240 and shows the seven SMPTE bars in BGR order
/// along its top row (tests/rtsp.rs's check, at the middle of each bar),
/// and more: every pixel of the bar area (the top two thirds), 4 pixels
/// away from the bars' edges, is within 24 of its bar's colour (measured:
/// at most 9 off for MJPEG, 2 for H.264). A frame decoded from an
/// incomplete JPEG, or from an H.264 picture with a slice or a reference
/// missing, shows grey, smeared or shifted blocks there. pts_seconds go up
/// on the 25 fps grid. Prints the frame count, the number of frame slots
/// skipped between the first and the last frame, and the widest gap in
/// seconds.
const BARS_AND_GAPS: &str = r#"
import sys, csv, numpy as np
d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(d + '/frames.csv')))
bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0),
        (255, 0, 255), (0, 0, 255), (255, 0, 0)]
last = None
off_grid = []
skipped = 0
widest = 0.0
for i, r in enumerate(rows):
    a = np.load(d + '/' + r['file'])
    assert a.shape == (h, w, 3), a.shape
    for k, want in enumerate(bars):
        got = a[h // 8, (2 * k + 1) * w // 14].astype(int)
        assert np.abs(got - np.array(want)).max() <= 24, (i, r['pts_seconds'], k, got, want)
        x0, x1 = -(-k * w // 7) + 4, (k + 1) * w // 7 - 4
        band = np.abs(a[4:2 * h // 3 - 4, x0:x1].astype(int) - np.array(want)).max(axis=2)
        if band.max() > 24:
            y, x = np.unravel_index(band.argmax(), band.shape)
            bad = int((band > 24).sum())
            raise AssertionError(('bar area', 'frame', i, 'pts', r['pts_seconds'],
                                  'keyframe', r['keyframe'], 'bar', k, 'pixels off', bad,
                                  'worst at', (int(y) + 4, int(x) + x0),
                                  a[y + 4, x + x0].tolist(), 'want', want))
    # RTP time: 3600 ticks of 90 kHz per frame at 25 fps.
    t = float(r['pts_seconds'])
    assert last is None or t > last, ('pts', i, last, t)
    # RTP time on the 25 fps grid; under heavy load GStreamer's live source
    # was seen (twice in CI) stamping the second picture 21 ms late, so one
    # step off the grid is let through, as in tests/rtsp.rs.
    if last is not None and abs((t - last) * 25 - round((t - last) * 25)) > 0.01:
        off_grid.append((i, last, t))
        assert len(off_grid) <= 1, ('pts off the 25 fps grid', off_grid)
    if last is not None:
        skipped += round((t - last) * 25) - 1
        widest = max(widest, t - last)
    last = t
print(len(rows), skipped, widest)
"#;

/// Frames written, frame slots skipped, widest pts gap (s).
fn check_bars_and_gaps(dir: &Path) -> (usize, i64, f64) {
    let out = python(BARS_AND_GAPS, &[path_str(dir), "320", "240"]);
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v.len(), 3, "{out}");
    (
        v[0].parse().expect("count"),
        v[1].parse().expect("skipped"),
        v[2].parse().expect("gap"),
    )
}

/// `(N RTP packets lost, M frames dropped)` from camflow's summary line.
fn loss_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("camflow: wrote ") && l.contains(" RTP packets lost, "))
        .unwrap_or_else(|| panic!("no summary line with losses: {stderr}"));
    let inside = line
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(l, _)| l)
        .unwrap_or_else(|| panic!("no (...) in {line:?}"));
    let (lost, dropped) = inside
        .split_once(" RTP packets lost, ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let dropped = dropped
        .strip_suffix(" frames dropped")
        .unwrap_or_else(|| panic!("{line:?}"));
    (
        lost.trim().parse().unwrap_or_else(|_| panic!("{line:?}")),
        dropped
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{line:?}")),
    )
}

/// The proxy's `connection C closed: ..., F RTP packets forwarded, D
/// dropped` lines: (forwarded, dropped) per connection.
fn proxy_counts(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split_once(" closed: video channel ")?.1;
            let (_, rest) = rest.split_once(", ")?;
            let (fwd, rest) = rest.split_once(" RTP packets forwarded, ")?;
            let dropped = rest.strip_suffix(" dropped")?;
            Some((fwd.parse().ok()?, dropped.parse().ok()?))
        })
        .collect()
}

const FRAMES: usize = 50;

/// What one run through the lossy proxy came to.
#[derive(Debug)]
struct Run {
    /// camflow's summary: RTP packets lost, frames dropped.
    lost: u64,
    dropped: u64,
    /// Frame slots missing between the first and the last frame written.
    skipped: i64,
    /// The widest step between consecutive pts_seconds.
    widest: f64,
    took: Duration,
}

/// Runs `camflow decode --max-frames 50` (TCP, the default) through a
/// lossy proxy with `proxy_args` in front of a fresh server, and checks
/// what holds whatever the loss: success, 50 complete frames, all of them
/// clean colour bars (no broken frame written), pts on the grid, a loss
/// counted, and no more losses counted than the proxy made.
fn decode_through_loss(opts: RtspOpts, proxy_args: &[&str]) -> Run {
    let what = format!("{:?} {}", opts.codec, proxy_args.join(" "));
    let server = RtspServer::start(&opts);
    let mut proxy = LossyProxy::start(server.port(), proxy_args);
    let dir = tempdir();
    let start = Instant::now();
    let out = run_limited(
        Command::new(camflow()).args([
            "decode",
            &proxy.url(),
            "--frames-dir",
            path_str(dir.path()),
            "--max-frames",
            &FRAMES.to_string(),
        ]),
        Duration::from_secs(60),
    );
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // Let the proxy see the TEARDOWN and the connection end.
    let t = Instant::now();
    while proxy_counts(&proxy.stderr()).is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let proxy_log = proxy.stop();
    assert!(
        out.status.success(),
        "{what}: camflow failed: {stderr}\nproxy:\n{proxy_log}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");

    // The proxy was really in the path, and found the video's channel.
    assert!(
        proxy_log.contains("SETUP rtsp://127.0.0.1:") && proxy_log.contains("(video)"),
        "{what}: the proxy did not see the video's SETUP:\n{proxy_log}"
    );
    let counts = proxy_counts(&proxy_log);
    assert_eq!(counts.len(), 1, "{what}: one connection:\n{proxy_log}");
    let (forwarded, proxy_dropped) = counts[0];
    assert!(
        proxy_dropped > 0,
        "{what}: the proxy dropped nothing:\n{proxy_log}"
    );

    // Shown with any failure below.
    eprintln!("{what}: camflow's stderr:\n{stderr}");
    assert_eq!(assert_frames_complete(dir.path()), FRAMES, "{what}");
    let (n, skipped, widest) = check_bars_and_gaps(dir.path());
    assert_eq!(n, FRAMES, "{what}");

    let (lost, dropped) = loss_counts(&stderr);
    eprintln!(
        "{what}: camflow: {lost} RTP packets lost, {dropped} frames dropped; \
         proxy: {forwarded} forwarded, {proxy_dropped} dropped; \
         {skipped} frame slots skipped (widest gap {widest:.2} s); {took:.1?}"
    );
    assert!(
        lost > 0,
        "{what}: no loss counted: {stderr}\nproxy:\n{proxy_log}"
    );
    // camflow cannot count more losses than the proxy made (it may count
    // fewer: a drop after the last packet it read is never seen as a gap).
    assert!(
        lost <= proxy_dropped,
        "{what}: camflow counted {lost} lost, the proxy dropped {proxy_dropped}"
    );
    Run {
        lost,
        dropped,
        skipped,
        widest,
        took,
    }
}

fn h264() -> RtspOpts {
    RtspOpts::default().h264().size(320, 240).fps(25)
}

#[test]
fn mjpeg_loss_is_counted_and_no_broken_frame_is_written() {
    // About 7 RTP packets per 320x240 JPEG: one packet in 25 lost costs
    // every third or fourth frame; 50 frames come in about 2.7 s.
    let run = decode_through_loss(
        RtspOpts::default().mjpeg().size(320, 240).fps(25),
        &["--skip", "20", "--drop-every", "25"],
    );
    assert!(run.lost >= 5, "{run:?}");
    // RFC 2435: a frame with a hole is dropped. The losses here are single
    // packets, far apart, in frames of several packets: one frame each.
    assert_eq!(run.dropped, run.lost, "{run:?}");
    // Time skips forward over the frames that were dropped.
    assert!(run.skipped > 0 && run.widest > 1.5 / 25.0, "{run:?}");
    assert!(run.took < Duration::from_secs(15), "{run:?}");
}

#[test]
fn h264_loss_is_counted_and_frames_wait_for_the_next_idr() {
    // About 8.5 RTP packets per frame (215 a second), an IDR every 25
    // frames (1 s). Packet 250 is lost about 5 frames into the second GOP,
    // 400 near its end, 550 in the third: each costs the frames up to the
    // next IDR, and 50 frames still come within 3-5 s.
    let run = decode_through_loss(h264(), &["--skip", "100", "--drop-every", "150"]);
    assert!(run.dropped > 0, "{run:?}");
    // Time skips forward over the dropped frames, by most of a GOP.
    assert!(run.skipped > 0 && run.widest > 0.4, "{run:?}");
    assert!(run.took < Duration::from_secs(10), "{run:?}");
}

/// Regression, found with this proxy (src/source/rtsp.rs, `h264()`): a frame that arrives with
/// `loss() > 0` but is a random access point is decoded and written. retina
/// reports loss on the first access unit after the gap and, when that unit
/// begins at a new timestamp, hands it on ("a prefix of the new one may have
/// been lost; try parsing"); it still holds IDR slices, so it counts as a
/// key frame, but its first slice may be gone. It was written. Here the session's first IDR
/// access unit loses its head: AUD, SPS, PPS, SEI, SPS, PPS and the first
/// of its two slices (7 packets; x264's sliced threads cut the picture in
/// a top and a bottom half). camflow writes what is left as frame 0,
/// keyframe=1, with the top half garbled (846 pixels of the white bar alone
/// off by up to 102), and the 24 P-frames up to the next IDR inherit it;
/// its summary says `7 RTP packets lost, 0 frames dropped`. (Mid-stream,
/// the decoder's concealment from the previous picture hides it with these
/// static bars; at the start of a session there is nothing to conceal
/// from.) camflow now treats a frame with `loss() > 0` as broken even when it is a
/// random access point (drop it and wait for the next IDR).
#[test]
fn h264_idr_that_lost_its_head_is_not_written() {
    let run = decode_through_loss(h264(), &["--drop-idr-heads", "1"]);
    assert!(run.dropped > 0, "{run:?}");
}

/// Regression, found with this proxy (src/source/rtsp.rs, `h264()`): H.264 `frames dropped`
/// leaves out the frame that a lost packet belonged to. retina discards an
/// access unit with a hole inside its depacketizer and only flags the next
/// one; camflow counts from there. One packet lost mid-GOP (packet 350,
/// about frame 42): frames 42..49 are missing from frames.csv (8 slots),
/// the summary says `1 RTP packets lost, 7 frames dropped`. The MJPEG path
/// counts the frame with the hole.
#[test]
fn h264_dropped_count_includes_the_frame_with_the_hole() {
    let run = decode_through_loss(h264(), &["--skip", "100", "--drop-every", "250"]);
    assert!(
        run.dropped >= run.skipped as u64,
        "{} frame slots missing, {} frames counted as dropped: {run:?}",
        run.skipped,
        run.dropped
    );
}

/// A camera that refuses to PLAY until every track is set up (459
/// Aggregate Operation Not Allowed, from the proxy): camflow sets up the
/// audio too on a second try, and reads only the video.
#[test]
fn a_camera_that_wants_every_track_set_up_gets_them() {
    for opts in [RtspOpts::default().mjpeg(), h264()] {
        let server = RtspServer::start(&opts);
        let mut proxy = LossyProxy::start(server.port(), &["--refuse-partial-play"]);
        let dir = decode_ok(&proxy.url(), &["--max-frames", "10"]);
        let log = proxy.stop();
        assert!(log.contains("refusing PLAY after 1 SETUP"), "{log}");
        assert_eq!(assert_frames_complete(dir.path()), 10, "{log}");
        let (n, _, _) = check_bars_and_gaps(dir.path());
        assert_eq!(n, 10);
    }
}

/// RTCP BYE from the camera is a clean end of stream: camflow stops with
/// what it has, no "no video" error, no reconnect. GStreamer's server does
/// not always send its BYE (seen under load in CI); a run where the proxy
/// saw none on the video's RTCP channel proves nothing and is tried again
/// (three times; after that the test has nothing to check).
#[test]
fn rtcp_bye_is_a_clean_end_of_stream() {
    for attempt in 1..=3 {
        let server = RtspServer::start(&RtspOpts::default().h264().frames(30));
        let mut proxy = LossyProxy::start(server.port(), &[]);
        let dir = tempdir();
        let out = camflow_run(&[
            "decode",
            &proxy.url(),
            "--frames-dir",
            path_str(dir.path()),
            "--timeout",
            "10",
            "--reconnect",
            "never",
        ]);
        let log = proxy.stop();
        if !log.contains("RTCP BYE") {
            eprintln!("attempt {attempt}: the server sent no BYE:\n{log}");
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "BYE not taken as the end: {stderr}\n{log}"
        );
        assert!(
            stderr.contains("the camera ended the stream (RTCP BYE)"),
            "{stderr}"
        );
        let n = assert_frames_complete(dir.path());
        assert!((25..=30).contains(&n), "{n} frames: {stderr}");
        return;
    }
    // GStreamer's server under heavy load sent no BYE three times running:
    // nothing was shown either way, and that is the server's doing.
    eprintln!("the server never sent an RTCP BYE in 3 tries; nothing checked");
}
