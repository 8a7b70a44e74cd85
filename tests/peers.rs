//! Self-check of the real peers the end-to-end tests use, independent of
//! camflow: nginx-rtmp relaying an ffmpeg publisher to a bounded ffprobe
//! reader (tests/common/nginx.rs), and Chromium playing ffmpeg-made HLS with
//! hls.js (tests/common/browser.rs, tests/browser/play_hls.js). When these
//! fail, scripts/setup or the machine is broken, not camflow.

mod common;

use std::time::{Duration, Instant};

use common::browser::{play_hls, play_hls_with};
use common::nginx::{self, ffprobe_live, NginxRtmp, RtmpPublisher};
use common::{ffmpeg_make, tempdir};

#[test]
fn nginx_rtmp_relays_a_live_ffmpeg_stream() {
    let server = NginxRtmp::start();
    let url = server.url("cam");
    assert_eq!(url, format!("rtmp://127.0.0.1:{}/live/cam", server.port()));
    let mut publisher = RtmpPublisher::start(&url, nginx::H264_AAC);

    let start = Instant::now();
    let probe = ffprobe_live(&url, 2.0);
    let took = start.elapsed();
    assert!(
        probe.success,
        "ffprobe failed: {}\npublisher: {}\nnginx: {}",
        probe.stderr,
        publisher.stderr(),
        server.error_log()
    );
    assert_eq!(probe.format_name, "flv", "{probe:?}");
    let video = probe.video().expect("a video stream");
    assert_eq!(video.codec_name, "h264", "{probe:?}");
    assert_eq!((video.width, video.height), (Some(320), Some(240)));
    // 2 s at 25 fps, less what came before the first key frame (GOP 1 s).
    assert!((20..=60).contains(&video.frames), "{probe:?}");
    let audio = probe.audio().expect("an audio stream");
    assert_eq!(audio.codec_name, "aac", "{probe:?}");
    assert!(audio.frames > 0, "{probe:?}");
    assert!(took < Duration::from_secs(10), "probe took {took:?}");

    assert!(publisher.is_running(), "{}", publisher.stderr());
    publisher.stop();
    let log = server.error_log();
    assert!(log.contains("publish: name='cam'"), "{log}");
    assert!(log.contains("play: name='cam'"), "{log}");
}

#[test]
fn nginx_rtmp_reader_is_bounded_when_the_publisher_stops() {
    let server = NginxRtmp::start_with("wait_key off;");
    let url = server.url("short");
    let mut publisher = RtmpPublisher::start(&url, &format!("{} -t 4", nginx::H264));

    // Asks for 30 s of a 4 s stream: nginx-rtmp sends no end of stream
    // when the publisher ends; -rw_timeout (5 s of silence) ends the read,
    // about 10 s after the stream.
    let start = Instant::now();
    let probe = ffprobe_live(&url, 30.0);
    let took = start.elapsed();
    assert!(probe.success, "{probe:?}");
    let video = probe.video().expect("a video stream");
    assert_eq!(video.codec_name, "h264", "{probe:?}");
    assert!((25..=100).contains(&video.frames), "{probe:?}");
    assert!(took < Duration::from_secs(20), "probe took {took:?}");
    assert!(publisher
        .wait(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
}

#[test]
fn nginx_rtmp_restarts_on_the_same_port() {
    let mut server = NginxRtmp::start();
    let port = server.port();
    assert!(server.is_running());
    server.stop();
    assert!(!server.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// VOD HLS with fMP4 segments made by ffmpeg (the reference).
fn make_vod_hls(dir: &std::path::Path) {
    ffmpeg_make(
        &dir.join("index.m3u8"),
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 6 -c:v libx264 -preset veryfast \
         -pix_fmt yuv420p -g 50 -f hls -hls_segment_type fmp4 -hls_time 2 \
         -hls_playlist_type vod",
    );
}

#[test]
fn chromium_plays_ffmpeg_hls() {
    let dir = tempdir();
    make_vod_hls(dir.path());
    let start = Instant::now();
    let t = play_hls(dir.path(), 2.0).unwrap_or_else(|e| panic!("Chromium: {e}"));
    assert!(t > 2.0, "currentTime {t}");
    eprintln!("browser check took {:?}", start.elapsed());

    let report = play_hls_with(dir.path(), "index.m3u8", 1.0, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("Chromium: {e}"));
    assert_eq!((report.video_width, report.video_height), (320, 240));
    assert!(report.played > 1.0, "{report:?}");
    assert!(
        report
            .codecs
            .as_deref()
            .is_some_and(|c| c.starts_with("avc1.")),
        "{report:?}"
    );
    assert!(report.errors.is_empty(), "{report:?}");
}

#[test]
fn chromium_check_fails_on_a_broken_segment() {
    let dir = tempdir();
    make_vod_hls(dir.path());
    // Not a media segment at all: hls.js must give up (fatal error), and
    // the check must say so rather than time out or pass.
    std::fs::write(dir.path().join("index0.m4s"), vec![0x5a; 3000]).expect("write");
    let err = play_hls_with(dir.path(), "index.m3u8", 2.0, Duration::from_secs(30))
        .expect_err("a broken stream must not play");
    assert!(err.contains("fatal"), "{err}");
}
