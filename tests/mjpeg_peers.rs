//! MJPEG over HTTP as real servers send it, rather than as the built-in
//! camera does: ffmpeg's and VLC's `mpjpeg` outputs (multipart bodies sent
//! as `application/octet-stream`), cameras whose boundary is wrong or
//! missing, snapshot cameras (one JPEG per request, here nginx serving a
//! file), HTTPS cameras with their own certificates (ffmpeg serving TLS,
//! nginx in front of a WebSocket camera), and broken or oversized parts.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::mpjpeg::{ffmpeg_listen, wait_listening, Killed};
use common::*;

/// The first column of frames.csv rows as numbers: `pts_seconds` and
/// `received_unix_seconds`.
fn times(dir: &Path) -> Vec<(f64, f64)> {
    csv_rows(dir)
        .iter()
        .map(|r| (r[2].parse().expect("pts"), r[3].parse().expect("received")))
        .collect()
}

/// Every frame's time is its arrival, counted from the first frame's.
fn assert_stamped_on_arrival(dir: &Path) {
    let t = times(dir);
    let first = t.first().expect("frames").1;
    for (i, (pts, received)) in t.iter().enumerate() {
        assert!(
            (pts - (received - first)).abs() < 0.002,
            "frame {i}: pts {pts} is not its arrival {}",
            received - first
        );
    }
}

/// The median gap between frames' times.
fn median_step(dir: &Path) -> f64 {
    let t = times(dir);
    let mut steps: Vec<f64> = t.windows(2).map(|w| w[1].0 - w[0].0).collect();
    steps.sort_by(f64::total_cmp);
    steps[steps.len() / 2]
}

/// ffmpeg's `mpjpeg` over HTTP without `-content_type`: it says
/// `application/octet-stream` for a multipart body. 10 fps, `secs` long.
fn ffmpeg_mpjpeg_octet_stream(secs: u32) -> (Killed, String) {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/cam.mjpg");
    let args = format!(
        "-re -f lavfi -i testsrc2=size=320x240:rate=10 -t {secs} -c:v mjpeg -q:v 3 -f mpjpeg"
    );
    (ffmpeg_listen(port, &args, &url), url)
}

#[test]
fn ffmpeg_mpjpeg_sent_as_octet_stream_gives_frames_at_their_arrival_times() {
    let (_ffmpeg, url) = ffmpeg_mpjpeg_octet_stream(8);
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--duration",
        "2",
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"application/octet-stream\" but sends multipart JPEGs"),
        "{stderr}"
    );
    let n = assert_frames_complete(dir.path());
    // Two real seconds of a 10 fps camera: about 20 frames (libavformat's
    // assumed 25 fps made it 50 frames, and 5 s).
    assert!((10..=24).contains(&n), "{n} frames");
    assert_stamped_on_arrival(dir.path());
    let step = median_step(dir.path());
    assert!(
        step > 0.06,
        "frames {step} s apart: not a 10 fps camera's times"
    );
    let last = times(dir.path()).last().expect("frames").0;
    assert!(last < 2.0, "{last}");
}

#[test]
fn probe_names_the_multipart_framing_and_its_boundary() {
    let (_ffmpeg, url) = ffmpeg_mpjpeg_octet_stream(4);
    let out = camflow_run(&["probe", &url]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let framing = text
        .lines()
        .find(|l| l.starts_with("framing:"))
        .unwrap_or_else(|| panic!("no framing line in {text}"));
    assert!(
        framing.contains("multipart") && framing.contains("boundary \"ffmpeg\""),
        "{framing}"
    );
    assert!(!framing.contains("raw JPEG"), "{framing}");
    assert!(text.contains("video mjpeg, 320x240"), "{text}");
}

/// VLC 3.0's HTTP output with its `mpjpeg` mux: `application/octet-stream`,
/// a CRLF before the first delimiter, its own boundary. VLC refuses to run
/// as root: it runs as `nobody`, from a folder nobody can read, on a clip
/// nobody can.
#[test]
fn vlc_mpjpeg_http_output_decodes() {
    let root = unsafe { libc::geteuid() } == 0;
    let share = tempdir();
    let clip = share.path().join("clip.mkv");
    ffmpeg_make(
        &clip,
        "-f lavfi -i testsrc2=size=320x240:rate=10 -t 4 -c:v mjpeg -q:v 3",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(share.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cwd = tempdir();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/cam.mjpg");
    let sout = format!("#standard{{access=http,mux=mpjpeg,dst=127.0.0.1:{port}/cam.mjpg}}");
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "cvlc"]);
        c
    } else {
        Command::new("cvlc")
    };
    let _vlc = common::vlc::GroupKilled(
        cmd.args(["-q", path_str(&clip), "--loop", "--sout", &sout])
            .current_dir(cwd.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cvlc (scripts/setup installs vlc-bin)"),
    );
    wait_listening(port);
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--duration",
        "2",
        "--timeout",
        "20",
    ]);
    assert_ok(&out);
    let n = assert_frames_complete(dir.path());
    assert!(n >= 3, "{n} frames");
    assert_stamped_on_arrival(dir.path());
    let rows = csv_rows(dir.path());
    assert_eq!((rows[0][4].as_str(), rows[0][5].as_str()), ("320", "240"));
    // killed with its process group: runuser does not pass SIGKILL on.
}

/// A Python camera for the quirks no real server here has. Each path is a
/// camera: the JPEGs of the folder given, as multipart parts, then the
/// connection closes (HTTP/1.0). The port is printed first.
/// - `/mismatch`: declares `boundary=declared`, sends `--actual`;
/// - `/noboundary`: `multipart/x-mixed-replace` with no boundary at all;
/// - `/broken`: parts 2 and 4 hold a JPEG cut in half (Content-Length
///   matching), and one text part comes along;
/// - `/oversized`: part 3 is padded to 300 kB, with its Content-Length;
/// - `/oversized-nolength`: the same without any Content-Length.
const QUIRKY_CAMERA: &str = r#"
import glob, http.server, sys
jpegs = [open(p, 'rb').read() for p in sorted(glob.glob(sys.argv[1] + '/*.jpg'))]
class Camera(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path
        declared = {'/mismatch': 'multipart/x-mixed-replace; boundary=declared',
                    '/noboundary': 'multipart/x-mixed-replace'}.get(path,
                    'multipart/x-mixed-replace; boundary=frame')
        delim = b'--actual' if path == '/mismatch' else b'--frame'
        self.send_response(200)
        self.send_header('Content-Type', declared)
        self.end_headers()
        for i, jpeg in enumerate(jpegs):
            if path == '/broken' and i in (1, 3):
                jpeg = jpeg[:len(jpeg) // 2]
            if path == '/broken' and i == 2:
                text = b'camera status: ok'
                self.wfile.write(delim + b'\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n' % len(text) + text + b'\r\n')
            if path.startswith('/oversized') and i == 2:
                jpeg = jpeg + b'\0' * 300000
            length = b'' if path == '/oversized-nolength' else b'Content-Length: %d\r\n' % len(jpeg)
            self.wfile.write(delim + b'\r\nContent-Type: image/jpeg\r\n' + length + b'\r\n' + jpeg + b'\r\n')
        self.wfile.write(delim + b'--\r\n')
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Camera)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Starts [`QUIRKY_CAMERA`] on six 320x240 JPEGs; returns it, its base URL
/// and the folder of the JPEGs.
fn quirky_camera() -> (Killed, String, tempfile::TempDir) {
    let src = tempdir();
    ffmpeg_make(
        &src.path().join("img_%d.jpg"),
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 6 -q:v 4",
    );
    let mut server = Killed(
        Command::new(PYTHON)
            .args(["-u", "-c", QUIRKY_CAMERA, path_str(src.path())])
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
    (server, format!("http://127.0.0.1:{port}"), src)
}

#[test]
fn cameras_with_a_wrong_boundary_or_none_decode() {
    let (_cam, base, src) = quirky_camera();
    for (path, said) in [
        (
            "mismatch",
            "declares the multipart boundary \"declared\" but its body uses \"actual\"",
        ),
        (
            "noboundary",
            "names no boundary; splitting on its body's first delimiter, \"frame\"",
        ),
    ] {
        let url = format!("{base}/{path}");
        let dir = tempdir();
        let out = camflow_run(&[
            "decode",
            &url,
            "--frames-dir",
            path_str(dir.path()),
            "--reconnect",
            "never",
        ]);
        assert_ok(&out);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(said),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(assert_frames_complete(dir.path()), 6, "{path}");
        // The JPEGs exactly as sent.
        let jpegs = decode_ok(&url, &["--reconnect", "never", "--save-jpeg"]);
        for (i, r) in csv_rows(jpegs.path()).iter().enumerate() {
            let sent = std::fs::read(src.path().join(format!("img_{}.jpg", i + 1))).unwrap();
            let saved = std::fs::read(jpegs.path().join(&r[1])).unwrap();
            assert!(
                sent == saved,
                "{path}: frame {i} differs from what was sent"
            );
        }
    }
}

#[test]
fn broken_jpeg_parts_are_counted_in_the_summary() {
    let (_cam, base, _src) = quirky_camera();
    let url = format!("{base}/broken");
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--reconnect",
        "never",
    ]);
    assert_ok(&out);
    assert_eq!(assert_frames_complete(dir.path()), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The two cut JPEGs, not the text part.
    assert!(stderr.contains("2 broken JPEGs dropped"), "{stderr}");
    // The same for JPEGs saved as sent.
    let jpegs = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(jpegs.path()),
        "--reconnect",
        "never",
        "--save-jpeg",
    ]);
    assert_ok(&out);
    assert_eq!(csv_rows(jpegs.path()).len(), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("saved 4 JPEGs") && stderr.contains("2 broken JPEGs dropped"),
        "{stderr}"
    );
}

#[test]
fn oversized_parts_are_skipped_on_the_same_connection() {
    let (_cam, base, _src) = quirky_camera();
    // With a Content-Length, and without one (up to its delimiter).
    for path in ["oversized", "oversized-nolength"] {
        let url = format!("{base}/{path}");
        let dir = tempdir();
        // With --reconnect never, a dropped connection would be an error:
        // the five other frames and exit 0 mean the part was skipped in place.
        let out = camflow_run(&[
            "decode",
            &url,
            "--frames-dir",
            path_str(dir.path()),
            "--reconnect",
            "never",
            "--max-frame-bytes",
            "100000",
        ]);
        assert_ok(&out);
        assert_eq!(assert_frames_complete(dir.path()), 5, "{path}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("0 broken JPEGs dropped, 1 over --max-frame-bytes skipped"),
            "{path}: {stderr}"
        );
        assert!(
            stderr.contains("is skipped; the stream goes on"),
            "{path}: {stderr}"
        );
    }
}

/// nginx serving the files of `root` over HTTP on a free port, its access
/// log in its own folder. Killed when dropped.
struct NginxFiles {
    _dir: tempfile::TempDir,
    _nginx: Killed,
    port: u16,
    access_log: std::path::PathBuf,
}

impl NginxFiles {
    /// `server` is the inside of the `server {}` block but its `listen`.
    fn start(server: &str) -> NginxFiles {
        let dir = tempdir();
        let d = dir.path();
        let p = |name: &str| d.join(name).to_str().expect("utf-8").to_string();
        let port = closed_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid \"{pid}\";\n\
             error_log \"{err}\" info;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log \"{acc}\";\n client_body_temp_path \"{t}/body\";\n\
             proxy_temp_path \"{t}/proxy\";\n fastcgi_temp_path \"{t}/fcgi\";\n\
             uwsgi_temp_path \"{t}/uwsgi\";\n scgi_temp_path \"{t}/scgi\";\n\
             types {{ image/jpeg jpg; }}\n\
             server {{\n  listen 127.0.0.1:{port}{ssl};\n  {server}\n }}\n}}\n",
            pid = p("nginx.pid"),
            err = p("error.log"),
            acc = p("access.log"),
            t = p(""),
            ssl = if server.contains("ssl_certificate") {
                " ssl"
            } else {
                ""
            },
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let nginx = Killed(
            Command::new(nginx::NGINX)
                .args(["-c", &p("nginx.conf"), "-p", &p(""), "-e", &p("error.log")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx (scripts/setup installs it)"),
        );
        wait_listening(port);
        NginxFiles {
            access_log: d.join("access.log"),
            _dir: dir,
            _nginx: nginx,
            port,
        }
    }

    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

#[test]
fn snapshot_camera_is_polled_at_fps_and_at_most_once_a_second_without() {
    let www = tempdir();
    ffmpeg_make(
        &www.path().join("snap.jpg"),
        "-f lavfi -i testsrc2=size=320x240 -frames:v 1 -q:v 4",
    );
    let server = NginxFiles::start(&format!("root \"{}\";", path_str(www.path())));
    let url = format!("http://127.0.0.1:{}/snap.jpg", server.port);

    // --fps 5: six pictures, at least 1/5 s apart (stamped on arrival, and
    // never closer than the rate asked for, so --fps keeps every one).
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--fps",
        "5",
        "--max-frames",
        "6",
        "--reconnect",
        "always",
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("answers with a single JPEG").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("asking for a picture 5 times a second (--fps)"),
        "{stderr}"
    );
    assert_eq!(assert_frames_complete(dir.path()), 6);
    let t = times(dir.path());
    for w in t.windows(2) {
        assert!(w[1].0 - w[0].0 >= 0.2, "{t:?}");
        assert!(w[1].1 > w[0].1, "arrival times {t:?}");
    }
    // One request per picture (the last may have been on its way).
    let asked = server.requests();
    assert!((6..=7).contains(&asked), "{asked} requests");
    let before = asked;

    // No --fps: as fast as the camera answers, but never more than once a
    // second.
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &url,
        "--frames-dir",
        path_str(dir.path()),
        "--max-frames",
        "3",
    ]);
    assert_ok(&out);
    assert_eq!(assert_frames_complete(dir.path()), 3);
    let t = times(dir.path());
    for w in t.windows(2) {
        assert!(w[1].0 - w[0].0 >= 1.0, "{t:?}");
    }
    let asked = server.requests() - before;
    assert!((3..=4).contains(&asked), "{asked} requests");
}

/// Certificates made with the openssl CLI in `dir`: a CA and a server
/// certificate for 127.0.0.1 signed by it (`ca.pem`, `leaf.pem` +
/// `leaf.key`), and a self-signed one for 127.0.0.1 (`self.pem` +
/// `self.key`; OpenSSL marks it CA:TRUE, as cameras' own often are).
fn make_certificates(dir: &Path) {
    // ARGS split on spaces (no argument here has one).
    let run = |args: &str| {
        let out = run_limited(
            Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir),
            std::time::Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 2 \
         -subj /CN=camera -addext subjectAltName=IP:127.0.0.1",
    );
    run(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
         -subj /CN=CameraMakerCA",
    );
    run("req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=camera");
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
         -extfile leaf.ext -days 2",
    );
}

/// ffmpeg serving multipart MJPEG over HTTPS with `cert`/`key` to one
/// client.
fn ffmpeg_https(dir: &Path, cert: &str, key: &str) -> (Killed, String) {
    let port = closed_port();
    let url = format!("https://127.0.0.1:{port}/cam.mjpg");
    let args = format!(
        "-re -f lavfi -i testsrc2=size=320x240:rate=10 -t 2 -c:v mjpeg -q:v 3 -f mpjpeg \
         -cert_file {} -key_file {}",
        path_str(&dir.join(cert)),
        path_str(&dir.join(key)),
    );
    (ffmpeg_listen(port, &args, &url), url)
}

#[test]
fn https_camera_with_its_own_certificate() {
    let certs = tempdir();
    make_certificates(certs.path());
    let ca_file = |name: &str| path_str(&certs.path().join(name)).to_string();

    // Refused in one line that says why and what to do, without flags.
    for (cert, key, why) in [
        ("self.pem", "self.key", "is self-signed"),
        (
            "leaf.pem",
            "leaf.key",
            "is not signed by an authority camflow trusts",
        ),
    ] {
        let (_ffmpeg, url) = ffmpeg_https(certs.path(), cert, key);
        let dir = tempdir();
        let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
        let line = assert_one_line_error(&out, &url, why);
        assert!(
            line.contains("--ca-cert") && line.contains("--insecure"),
            "{line}"
        );
        assert!(
            !line.contains("Other(") && !line.contains("UnknownIssuer"),
            "{line}"
        );
        assert_eq!(assert_frames_complete(dir.path()), 0);
    }
    // Accepted: the self-signed one with --insecure or named by --ca-cert,
    // the CA-signed one with its CA.
    for (cert, key, flags) in [
        ("self.pem", "self.key", vec!["--insecure".to_string()]),
        (
            "self.pem",
            "self.key",
            vec!["--ca-cert".into(), ca_file("self.pem")],
        ),
        (
            "leaf.pem",
            "leaf.key",
            vec!["--ca-cert".into(), ca_file("ca.pem")],
        ),
    ] {
        let (_ffmpeg, url) = ffmpeg_https(certs.path(), cert, key);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let dir = decode_ok(&url, &flags);
        assert_eq!(assert_frames_complete(dir.path()), 20, "{cert} {flags:?}");
    }
    // A CA file that is none: one line, before connecting.
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        "https://127.0.0.1:1/cam",
        "--frames-dir",
        path_str(dir.path()),
        "--ca-cert",
        &ca_file("leaf.key"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--ca-cert") && stderr.contains("leaf.key"),
        "{stderr}"
    );
}

#[test]
fn wss_camera_behind_nginx_with_a_self_signed_certificate() {
    let certs = tempdir();
    make_certificates(certs.path());
    let cam = Camera::start(&["--size", "320x240", "--frames", "20"]);
    let ws_port = cam
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .expect("port");
    let path = cam.url.splitn(4, '/').nth(3).unwrap_or("");
    let server = NginxFiles::start(&format!(
        "ssl_certificate \"{}\";\n  ssl_certificate_key \"{}\";\n  location / {{\n   \
         proxy_pass http://127.0.0.1:{ws_port};\n   proxy_http_version 1.1;\n   \
         proxy_set_header Upgrade $http_upgrade;\n   proxy_set_header Connection \"upgrade\";\n  }}",
        path_str(&certs.path().join("self.pem")),
        path_str(&certs.path().join("self.key")),
    ));
    let url = format!("wss://127.0.0.1:{}/{path}", server.port);
    let dir = tempdir();
    let out = camflow_run(&["decode", &url, "--frames-dir", path_str(dir.path())]);
    assert_one_line_error(&out, &url, "is self-signed");
    let dir = decode_ok(&url, &["--insecure"]);
    assert_eq!(assert_frames_complete(dir.path()), 20);
    let ca = certs.path().join("self.pem");
    let dir = decode_ok(&url, &["--ca-cert", path_str(&ca)]);
    assert_eq!(assert_frames_complete(dir.path()), 20);
}
