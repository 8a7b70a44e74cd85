//! MJPEG over HTTP against real peers: ffmpeg serving multipart MJPEG
//! (`-f mpjpeg -listen 1`), the built-in camera (Basic auth, X-Timestamp,
//! faults), and Python's http.server for plain files libavformat reads.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::mpjpeg::{ffmpeg_listen, Killed};
use common::*;

#[test]
fn ffmpeg_serving_multipart_mjpeg() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/cam");
    let ffmpeg = ffmpeg_listen(port, "-re -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v mjpeg -q:v 3 -f mpjpeg -content_type multipart/x-mixed-replace;boundary=ffmpeg", &url);
    let dir = decode_ok(&url, &[]);
    // ffmpeg serves its one client, then closes the connection.
    assert_eq!(assert_frames_complete(dir.path()), 50);
    drop(ffmpeg);
}

fn http_camera(extra: &[&str]) -> Camera {
    let mut args = vec![
        "--protocol",
        "mjpeg-http",
        "--size",
        "320x240",
        "--fps",
        "50",
    ];
    args.extend_from_slice(extra);
    Camera::start(&args)
}

#[test]
fn camera_with_basic_auth_and_x_timestamps() {
    let cam = http_camera(&["--frames", "25", "--auth", "admin:p@ss", "--exif-thumbnail"]);
    let dir = tempdir();
    let d = path_str(dir.path());
    let out = camflow_run(&["decode", &cam.url, "--frames-dir", d]);
    assert_one_line_error(&out, &cam.url, "wants a user name and password");
    let wrong = cam.url.replace("http://", "http://admin:nope@");
    let out = camflow_run(&["decode", &wrong, "--frames-dir", d]);
    let line = assert_one_line_error(&out, "admin:***@", "refused the user name or password");
    assert!(!line.contains("nope"));
    // Right password, in the URL (percent-encoded) and as options.
    let right = cam.url.replace("http://", "http://admin:p%40ss@");
    let dir = decode_ok(&right, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 25);
    let dir = decode_ok(&cam.url, &["--user", "admin", "--password", "p@ss"]);
    // pts_seconds comes from the camera's X-Timestamp: exactly 1/50 s apart.
    let rows = csv_rows(dir.path());
    assert_eq!(rows.len(), 25);
    for (i, r) in rows.iter().enumerate() {
        // (The camera writes them to the microsecond.)
        let pts: f64 = r[2].parse().unwrap();
        assert!((pts - i as f64 / 50.0).abs() <= 2e-6, "row {i}: {pts}");
    }
}

#[test]
fn camera_dropping_the_connection_mid_jpeg_over_http() {
    let cam = http_camera(&["--fault", "drop-mid-fragment", "--fault-after", "6"]);
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(dir.path()),
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &cam.url, "in the middle of a JPEG");
    assert_eq!(assert_frames_complete(dir.path()), 6);
}

#[test]
fn save_jpeg_and_record_over_http() {
    let cam = http_camera(&["--frames", "30", "--exif-thumbnail"]);
    let dir = decode_ok(&cam.url, &["--save-jpeg"]);
    let rows = csv_rows(dir.path());
    assert_eq!(rows.len(), 30);
    for r in &rows {
        let jpeg = std::fs::read(dir.path().join(&r[1])).unwrap();
        assert!(
            jpeg.starts_with(&[0xFF, 0xD8, 0xFF, 0xE1]),
            "EXIF segment kept"
        );
        assert!(jpeg.ends_with(&[0xFF, 0xD9]));
    }
    let out = tempdir();
    let mp4 = out.path().join("http.mp4");
    assert_ok(&camflow_run(&["record", &cam.url, "-o", path_str(&mp4)]));
    assert_eq!(ffprobe_frames(&mp4), 30);
    ffmpeg_decodes_cleanly(&mp4);
}

#[test]
fn plain_http_files_go_to_libavformat() {
    let www = tempdir();
    make_h264_file(www.path(), "unused.mp4", "160x120", 1);
    ffmpeg_make(
        &www.path().join("clip.ts"),
        "-f lavfi -i testsrc2=size=160x120:rate=25 -t 1 -c:v libx264 -pix_fmt yuv420p",
    );
    let mut server = Killed(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(www.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server banner");
    // "Serving HTTP on 127.0.0.1 port 41697 (http://127.0.0.1:41697/) ..."
    let port: u16 = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let url = format!("http://127.0.0.1:{port}/clip.ts");
    let dir = decode_ok(&url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 25);
    let missing = format!("http://127.0.0.1:{port}/nope.ts");
    let out = camflow_run(&["decode", &missing, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &missing, "HTTP 404");
}

#[test]
fn camera_asking_for_digest_auth() {
    let cam = http_camera(&["--frames", "10", "--auth", "admin:s3cret", "--digest"]);
    let wrong = cam.url.replace("http://", "http://admin:nope@");
    let dir = tempdir();
    let out = camflow_run(&["decode", &wrong, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, "admin:***@", "refused the user name or password");
    let dir = decode_ok(&cam.url, &["--user", "admin", "--password", "s3cret"]);
    assert_eq!(assert_frames_complete(dir.path()), 10);
}

#[test]
fn a_single_client_http_server_is_asked_once() {
    // ffmpeg serving MPEG-TS over HTTP to exactly one client: camflow must
    // read the body of the answer it looked at, not ask a second time.
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/live.ts");
    let ffmpeg = ffmpeg_listen(port, "-re -f lavfi -i testsrc2=size=160x120:rate=25 -t 2 -c:v libx264 -pix_fmt yuv420p -f mpegts", &url);
    let dir = decode_ok(&url, &[]);
    assert_eq!(assert_frames_complete(dir.path()), 50);
    drop(ffmpeg);
}

/// A camera without Content-Length that closes after its last part instead
/// of writing a closing delimiter: `/crlf` ends the last JPEG with a line
/// end, `/bare` right after its EOI, `/cut` cuts the last JPEG in half. The
/// JPEGs come from the folder given; the port is printed first.
const CLOSING_CAMERA: &str = r#"
import glob, http.server, sys
jpegs = [open(p, 'rb').read() for p in sorted(glob.glob(sys.argv[1] + '/*.jpg'))]
class Camera(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Type', 'multipart/x-mixed-replace; boundary=frame')
        self.end_headers()
        for i, jpeg in enumerate(jpegs):
            if i > 0:
                self.wfile.write(b'\r\n')
            if i == len(jpegs) - 1 and self.path == '/cut':
                jpeg = jpeg[:len(jpeg) // 2]
            self.wfile.write(b'--frame\r\nContent-Type: image/jpeg\r\n\r\n' + jpeg)
        if self.path == '/crlf':
            self.wfile.write(b'\r\n')
        # HTTP/1.0: returning closes the connection, which ends the body.
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Camera)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn camera_closing_after_the_last_part_without_content_length() {
    let src = tempdir();
    ffmpeg_make(
        &src.path().join("img_%d.jpg"),
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 3 -q:v 4",
    );
    let mut server = Killed(
        Command::new(PYTHON)
            .args(["-u", "-c", CLOSING_CAMERA, path_str(src.path())])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 camera"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("camera port");
    let port: u16 = line.trim().parse().expect("a port");
    for ending in ["crlf", "bare"] {
        let url = format!("http://127.0.0.1:{port}/{ending}");
        // The close is a clean end of the stream: every JPEG, exit 0.
        let dir = decode_ok(&url, &["--reconnect", "never"]);
        assert_eq!(assert_frames_complete(dir.path()), 3, "{ending}");
        // The last JPEG exactly as sent, without the line end after it.
        let jpegs = decode_ok(&url, &["--reconnect", "never", "--save-jpeg"]);
        let rows = csv_rows(jpegs.path());
        assert_eq!(rows.len(), 3, "{ending}");
        for (i, r) in rows.iter().enumerate() {
            let sent = std::fs::read(src.path().join(format!("img_{}.jpg", i + 1))).unwrap();
            let saved = std::fs::read(jpegs.path().join(&r[1])).unwrap();
            assert!(
                sent == saved,
                "{ending}: frame {i} differs from what was sent"
            );
        }
    }
    // A last JPEG that is not whole is still a connection cut mid-frame.
    let url = format!("http://127.0.0.1:{port}/cut");
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &url, "in the middle of a JPEG");
    assert_eq!(assert_frames_complete(dir.path()), 2);
}
