//! `--rtsp-transport` against two RTSP servers: VLC's (tests/common/vlc.rs),
//! which has no RTP over TCP, and gst-rtsp-server (tests/rtsp_server.py),
//! which has both. `auto`, the default, must find the one that works and
//! say so once when it is not TCP; a forced one that the camera refuses is
//! one line naming the other.
//!
//! Only `probe` runs against VLC here. It reads the SDP and the first
//! pictures, so its clip has every NAL unit in one RTP packet (x264
//! `slice-max-size`): a session that joins VLC mid-picture then never
//! begins in the middle of a fragmented NAL unit, which retina's H.264
//! depacketizer refuses ("FU-A has start bit unset").

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::rtsp::{RtspOpts, RtspServer};
use common::vlc::{VlcClip, VlcServer};
use common::*;

/// Every NAL unit of the clip fits one RTP packet (VLC's MTU is 1400).
const SLICE_BYTES: u32 = 1200;

fn stderr_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The one stderr line of a probe that fell back to UDP.
fn assert_said_udp(out: &std::process::Output, url: &str) {
    let lines = stderr_lines(out);
    assert_eq!(lines.len(), 1, "want one line on stderr: {lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "camflow: {url}: the camera refused RTP over TCP (461 Unsupported Transport); \
             using UDP"
        )
    );
}

#[test]
fn probe_of_vlc_with_no_flag_falls_back_to_udp_and_says_why() {
    let vlc = VlcServer::start(&VlcClip::default().slice_max_size(SLICE_BYTES));
    let url = vlc.url();

    let out = camflow_run(&["probe", &url]);
    assert_ok(&out);
    assert_said_udp(&out, &url);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("transport:  RTP over udp"), "{text}");
    assert!(text.contains("(RTSP session over udp)"), "{text}");
    assert!(text.contains("video h264, 320x240"), "{text}");

    let out = camflow_run(&["probe", "--json", &url]);
    assert_ok(&out);
    assert_said_udp(&out, &url);
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    let check = python(
        r#"
import sys, json
r = json.loads(sys.argv[1])
assert r['rtsp']['transport'] == 'udp', r
assert r['container_long'] == 'RTSP session over udp', r
v = r['streams'][0]
assert (v['codec'], v['width'], v['height']) == ('h264', 320, 240), v
print('ok')
"#,
        &[&json],
    );
    assert_eq!(check.trim(), "ok");
}

#[test]
fn forced_tcp_against_vlc_is_one_line_that_names_udp() {
    let vlc = VlcServer::start(&VlcClip::default());
    let with_password = vlc.url().replace("rtsp://", "rtsp://admin:s3cret@");
    for url in [vlc.url(), with_password] {
        let out = camflow_run(&["probe", &url, "--rtsp-transport", "tcp"]);
        let shown = vlc.url().replace("rtsp://", "");
        let line = assert_one_line_error(&out, &shown, "461");
        assert!(!line.contains("s3cret"), "password shown: {line}");
        assert!(
            line.contains("--rtsp-transport, udp, or auto"),
            "no hint: {line}"
        );
    }
}

#[test]
fn auto_against_gst_rtsp_server_uses_tcp_quietly() {
    let server = RtspServer::start(&RtspOpts::default().h264().size(320, 240));
    let url = server.url();
    for json in [false, true] {
        let mut args = vec!["probe", url.as_str()];
        if json {
            args.push("--json");
        }
        let out = camflow_run(&args);
        assert_ok(&out);
        let lines = stderr_lines(&out);
        assert!(lines.is_empty(), "said something: {lines:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if json {
            let check = python(
                "import sys, json; print(json.loads(sys.argv[1])['rtsp']['transport'])",
                &[&stdout],
            );
            assert_eq!(check.trim(), "tcp", "{stdout}");
        } else {
            assert!(stdout.contains("transport:  RTP over tcp"), "{stdout}");
        }
    }
}

/// A TCP relay in front of an RTSP server that closes both connections
/// when the client asks for RTP interleaved in the RTSP connection, as
/// some cameras do instead of answering 461. Other requests pass (over
/// UDP, RTP goes from the server to the client directly).
struct ClosesOnTcpSetup {
    port: u16,
}

impl ClosesOnTcpSetup {
    fn start(upstream: u16) -> ClosesOnTcpSetup {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                relay(client, server);
            }
        });
        ClosesOnTcpSetup { port }
    }
}

fn relay(client: TcpStream, server: TcpStream) {
    let (Ok(mut from_client), Ok(mut to_client)) = (client.try_clone(), client.try_clone()) else {
        return;
    };
    let (Ok(mut to_server), Ok(mut from_server)) = (server.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from_client.read(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            // Requests are small and come in one write on loopback.
            if n == 0 || (text.starts_with("SETUP ") && text.contains("interleaved")) {
                break;
            }
            if to_server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
    });
}

/// ffmpeg reading a URL over TCP (copying, not decoding), killed on drop.
struct Keeper(Child);

impl Keeper {
    fn start(url: &str) -> Keeper {
        let child = Command::new("ffmpeg")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-i", url])
            .args(["-map", "0:v", "-c", "copy", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ffmpeg");
        // Until its session plays.
        std::thread::sleep(Duration::from_secs(1));
        Keeper(child)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn auto_falls_back_to_udp_when_the_camera_closes_on_tcp_setup() {
    let server = RtspServer::start(&RtspOpts::default().h264().size(320, 240));
    // The server's media is shared and torn down when its last client
    // leaves; the relay's close would leave camflow's next DESCRIBE facing
    // that teardown (503). A client beside it keeps the media up.
    let _keeper = Keeper::start(&server.url());
    let relay = ClosesOnTcpSetup::start(server.port());
    let url = format!("rtsp://127.0.0.1:{}/stream", relay.port);
    let out = camflow_run(&["probe", &url]);
    assert_ok(&out);
    let lines = stderr_lines(&out);
    assert_eq!(
        lines,
        [format!(
            "camflow: {url}: the camera closed the connection when asked for RTP over TCP; \
             using UDP"
        )]
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("transport:  RTP over udp"), "{text}");
}

/// VLC's server is UDP only and starts a session wherever its stream is,
/// often in the middle of a fragmented NAL unit: `decode` with no
/// transport flag works every time (camflow's own depacketizer drops the
/// fragments before the first start and begins at the next IDR).
#[test]
fn decode_from_vlc_with_no_flag_works_ten_times_in_ten() {
    let vlc = VlcServer::start(&VlcClip::default());
    for run in 0..10 {
        let dir = tempdir();
        let out = camflow_run(&[
            "decode",
            &vlc.url(),
            "--frames-dir",
            path_str(dir.path()),
            "--max-frames",
            "40",
            "-q",
        ]);
        assert_ok(&out);
        assert_eq!(assert_frames_complete(dir.path()), 40, "run {run}");
        let rows = csv_rows(dir.path());
        assert_eq!(
            (rows[0][4].as_str(), rows[0][5].as_str()),
            ("320", "240"),
            "run {run}"
        );
        assert_eq!(rows[0][6], "1", "run {run}: the first frame is an IDR");
    }
}

/// `record` from VLC plays in ffprobe, and `probe` says UDP.
#[test]
fn record_from_vlc_plays_and_probe_says_udp() {
    let vlc = VlcServer::start(&VlcClip::default());
    let dir = tempdir();
    let mp4 = dir.path().join("vlc.mp4");
    let out = camflow_run(&[
        "record",
        &vlc.url(),
        "-o",
        path_str(&mp4),
        "--duration",
        "3",
    ]);
    assert_ok(&out);
    ffmpeg_decodes_cleanly(&mp4);
    assert!(ffprobe_frames(&mp4) >= 50, "{}", ffprobe_frames(&mp4));
    let probe = camflow_run(&["probe", &vlc.url(), "--json"]);
    assert_ok(&probe);
    let json = String::from_utf8_lossy(&probe.stdout).to_string();
    let check = python(
        "import sys, json\nr = json.loads(sys.argv[1])\nprint(r['rtsp']['transport'])",
        &[&json],
    );
    assert_eq!(check.trim(), "udp", "{json}");
}
