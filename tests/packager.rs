//! `camflow packager serve`: the real binary on loopback, driven over
//! HTTP/1.1 by a few lines of std::net (the requests are simple, and a
//! hand-written client shows exactly what goes over the wire: the
//! multipart body, the headers checked).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The seed's example key and KID.
const KEY: &str = "hyN9IKGfWKdAwFaE5pm0qg";
const KID: &str = "oW5AK5BW43HzbTSKpiu3SQ";
const KID_UUID: &str = "a16e402b-9056-e371-f36d-348aa62bb749";
/// KEY in hex, as the page carries it.
const KEY_HEX: &str = "87237d20a19f58a740c05684e699b4aa";

/// A running service, stopped (SIGTERM, then killed) when dropped.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the service on a free port, in `cwd` (so the default Shaka
    /// path is not found unless a test wants it).
    fn start(data: &Path, cwd: &Path, extra: &[&str]) -> Server {
        Server::start_env(data, cwd, extra, &[])
    }

    /// [`Server::start`] with environment variables (test seams).
    fn start_env(data: &Path, cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(camflow())
            .current_dir(cwd)
            .args(["packager", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start camflow packager serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the service's URL");
        let url = line.trim();
        let addr = url
            .strip_prefix("http://")
            .and_then(|s| s.strip_suffix('/'))
            .unwrap_or_else(|| panic!("the service printed {url:?}"))
            .to_string();
        Server {
            child,
            addr,
            stderr,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM; the service must exit 0 within 15 s.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(s.success(), "the service exited with {s}: {}", self.log());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the service did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(&self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"")
    }

    fn post_json(&self, path: &str, v: &Value) -> Resp {
        self.req(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            v.to_string().as_bytes(),
        )
    }

    fn upload(&self, name: &str, data: &[u8]) -> Resp {
        let boundary = "camflowtestboundary7MA4YWxk";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.req("POST", "/input_content", &[("Content-Type", &ct)], &body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`, so the
/// answer ends with the connection; chunked answers are undone).
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send the request");
    // The service may answer before reading all of a refused body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 4 + size..];
    }
}

fn av_file(dir: &Path) -> PathBuf {
    let src = dir.join("av.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 6 \
         -c:v libx264 -g 50 -c:a aac -shortest",
    );
    src
}

/// Uploads `file`; asserts 201 and returns the input id.
fn upload_ok(srv: &Server, file: &Path) -> i64 {
    let r = srv.upload("clip <1>.mp4", &std::fs::read(file).unwrap());
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "Ingested");
    assert_eq!(v["original_name"], "clip <1>.mp4");
    v["input_content_id"].as_i64().expect("input_content_id")
}

fn package_ok(srv: &Server, input: i64) -> i64 {
    let r = srv.post_json(
        "/packaged_content",
        &json!({"input_content_id": input, "key": KEY, "kid": KID}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["packaged_content_id"]
        .as_i64()
        .expect("packaged_content_id")
}

const ORDER: [&str; 4] = ["Ingested", "Fragmented", "Encrypted", "Ready"];

/// Polls a job until Ready (60 s at most); every status seen must be at or
/// after the one before. Returns the final record.
fn wait_ready(srv: &Server, id: i64) -> Value {
    let start = Instant::now();
    let mut last = 0;
    loop {
        let r = srv.get(&format!("/packaged_content/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let status = v["status"].as_str().expect("status").to_string();
        assert_ne!(status, "Failed", "the job failed: {v}");
        let pos = ORDER
            .iter()
            .position(|s| *s == status)
            .unwrap_or_else(|| panic!("unknown status {status}"));
        assert!(pos >= last, "status went back to {status}");
        last = pos;
        if status == "Ready" {
            return v;
        }
        assert!(v["url"].is_null(), "a url before Ready: {v}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not Ready after 60 s: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn statuses(v: &Value, id_field: &str) -> Vec<(i64, String)> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| {
            (
                x[id_field].as_i64().unwrap(),
                x["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The whole way: upload → 201 with the video track; package → 202; the
/// job moves forward to Ready; the MPD and segments come through the
/// service with their MIME types and CORS; the page lists the item; a
/// SIGTERM stops the service cleanly and a restart keeps every record.
#[test]
fn upload_package_serve_and_restart() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let src = av_file(dir.path());
    let srv = Server::start(&data, dir.path(), &[]);

    let r = srv.upload("clip.mp4", &std::fs::read(&src).unwrap());
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let input = v["input_content_id"].as_i64().expect("input_content_id");
    assert_eq!(v["status"], "Ingested");
    assert_eq!(v["video_track"]["codec"], "h264");
    assert_eq!(v["video_track"]["width"], 320);
    assert_eq!(v["video_track"]["height"], 240);
    assert!(v["video_track"]["index"].is_u64(), "{v}");
    assert_eq!(v["audio_tracks"][0]["codec"], "aac", "{v}");
    // Stored under a generated name, never the client's.
    let stored = files_in(&data.join("uploads"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(!stored[0].contains("clip"), "{stored:?}");

    let id = package_ok(&srv, input);
    let done = wait_ready(&srv, id);
    assert_eq!(done["input_content_id"], input);
    assert!(done["error"].is_null(), "{done}");
    let url = done["url"].as_str().expect("url when Ready").to_string();
    assert_eq!(url, format!("/content/{id}/stream.mpd"));
    assert!(!done.to_string().contains(KEY), "the API returned the key");

    let mpd = srv.get(&url);
    assert_eq!(mpd.status, 200);
    assert_eq!(mpd.header("content-type"), Some("application/dash+xml"));
    assert_eq!(mpd.header("access-control-allow-origin"), Some("*"));
    let text = mpd.text();
    assert!(text.contains("cenc:default_KID"), "{text}");
    assert!(text.contains(KID_UUID), "{text}");

    // Every segment the package has, through the service, byte for byte.
    let out = data.join("content").join(id.to_string());
    let mut segments: Vec<String> = files_in(&out)
        .into_iter()
        .filter(|n| n.ends_with(".m4s"))
        .collect();
    segments.sort();
    assert!(
        segments.iter().any(|n| n.starts_with("chunk-")),
        "{segments:?}"
    );
    for n in &segments {
        let seg = srv.get(&format!("/content/{id}/{n}"));
        assert_eq!(seg.status, 200, "{n}");
        assert_eq!(seg.header("content-type"), Some("video/iso.segment"));
        assert_eq!(seg.header("access-control-allow-origin"), Some("*"));
        assert_eq!(seg.body, std::fs::read(out.join(n)).unwrap(), "{n}");
    }
    let m3u8 = srv.get(&format!("/content/{id}/master.m3u8"));
    assert_eq!(m3u8.status, 200);
    assert_eq!(
        m3u8.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );

    // A player on another origin: the preflight is answered.
    let pre = srv.req(
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://player.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        b"",
    );
    assert!(pre.status == 204 || pre.status == 200, "{pre:?}");
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));

    // The page lists both records, with Shaka from the service.
    let page = srv.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let html = page.text();
    assert!(html.contains(&format!("id=\"input-{input}\"")), "{html}");
    assert!(html.contains(&format!("id=\"packaged-{id}\"")), "{html}");
    assert!(html.contains("Ready") && html.contains(&url), "{html}");
    assert!(html.contains("/static/shaka-player.compiled.js"));
    assert!(!html.contains("://cdn"), "the page loads from a CDN");
    // The page carries the key, so a script on another origin must not be
    // allowed to read it.
    assert!(html.contains(KEY_HEX), "no key in the page: {html}");
    let cross = srv.req("GET", "/", &[("Origin", "http://evil.example")], b"");
    assert_eq!(cross.status, 200);
    assert_eq!(
        cross.header("access-control-allow-origin"),
        None,
        "{cross:?}"
    );

    let lists = |srv: &Server| {
        (
            statuses(&srv.get("/input_content").json(), "input_content_id"),
            statuses(&srv.get("/packaged_content").json(), "packaged_content_id"),
        )
    };
    let before = lists(&srv);
    assert_eq!(before.0, vec![(input, "Ingested".to_string())]);
    assert_eq!(before.1, vec![(id, "Ready".to_string())]);
    let log = srv.stop();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(KEY), "the key was logged: {log}");

    let srv = Server::start(&data, dir.path(), &[]);
    assert_eq!(lists(&srv), before);
    assert_eq!(
        srv.get(&format!("/packaged_content/{id}")).json()["url"],
        url.as_str()
    );
    assert_eq!(srv.get(&url).status, 200);
    srv.stop();
}

/// Bad requests get a JSON error with the right status, never a panic,
/// and the service goes on answering. Key errors never quote the key.
#[test]
fn bad_requests_get_clear_json_errors() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let srv = Server::start(&data, dir.path(), &[]);
    let error_of = |r: &Resp, status: u16| -> String {
        assert_eq!(r.status, status, "{}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{r:?}"
        );
        r.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {}", r.text()))
            .to_string()
    };

    // Not a video: 415, and nothing is kept.
    let e = error_of(&srv.upload("notes.txt", b"just some text\n"), 415);
    assert!(!e.is_empty());
    assert!(files_in(&data.join("uploads")).is_empty());
    assert_eq!(srv.get("/input_content").json(), json!([]));
    // A playlist would make libavformat read other files: refused unread.
    let e = error_of(
        &srv.upload(
            "list.m3u8",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        ),
        415,
    );
    assert!(e.contains("container"), "{e}");
    // So is a manifest that starts like an MP4 box: its first line is an
    // XML comment to libxml2, so libavformat's DASH demuxer would take it.
    // A static one would package a file from the server's disk, a live one
    // whose segments never come would keep a thread busy for ever.
    let secret = make_h264_file(dir.path(), "secret.mp4", "160x120", 1);
    for (kind, body) in [
        (
            "static",
            format!("<BaseURL>file://{}</BaseURL>", secret.display()),
        ),
        (
            "dynamic",
            "<BaseURL>file:///nonexistent/</BaseURL>".to_string(),
        ),
    ] {
        let mpd = format!(
            "<!--styp-->\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             type=\"{kind}\" mediaPresentationDuration=\"PT1S\" minBufferTime=\"PT1S\" \
             profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\"><Period><AdaptationSet>\
             <Representation id=\"1\" mimeType=\"video/mp4\" codecs=\"avc1.64000c\" bandwidth=\"1000\">\
             {body}</Representation></AdaptationSet></Period></MPD>\n"
        );
        let start = Instant::now();
        let e = error_of(&srv.upload("stream.mp4", mpd.as_bytes()), 415);
        assert!(start.elapsed() < Duration::from_secs(20), "{kind}: {e}");
        assert!(files_in(&data.join("uploads")).is_empty(), "{kind}");
    }
    assert_eq!(srv.get("/input_content").json(), json!([]));
    // A method a path does not take: 405, JSON like every error.
    for (method, path) in [
        ("DELETE", "/input_content"),
        ("PUT", "/packaged_content/1"),
        ("POST", "/content/1/stream.mpd"),
    ] {
        let e = error_of(&srv.req(method, path, &[], b""), 405);
        assert!(e.contains(method), "{method} {path}: {e}");
    }
    // Not multipart, no `file` field.
    error_of(
        &srv.req(
            "POST",
            "/input_content",
            &[("Content-Type", "text/plain")],
            b"x",
        ),
        400,
    );
    let boundary = "b0undary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let e = error_of(
        &srv.req(
            "POST",
            "/input_content",
            &[("Content-Type", &ct)],
            body.as_bytes(),
        ),
        400,
    );
    assert!(e.contains("file"), "{e}");

    // A bad key: 400, and the key text appears nowhere.
    let secret = "s3cr3t-k3y-that-is-bad";
    let r = srv.post_json(
        "/packaged_content",
        &json!({"input_content_id": 1, "key": secret, "kid": KID}),
    );
    let e = error_of(&r, 400);
    assert!(e.contains("key"), "{e}");
    assert!(!r.text().contains(secret), "{}", r.text());
    let e = error_of(
        &srv.post_json(
            "/packaged_content",
            &json!({"input_content_id": 1, "key": KEY, "kid": "abc"}),
        ),
        400,
    );
    assert!(e.contains("kid"), "{e}");
    let e = error_of(
        &srv.post_json(
            "/packaged_content",
            &json!({"input_content_id": 1, "key": KEY, "kid": KID, "scheme": "aes"}),
        ),
        400,
    );
    assert!(e.contains("scheme"), "{e}");
    error_of(
        &srv.req("POST", "/packaged_content", &[], b"{not json"),
        400,
    );
    error_of(
        &srv.post_json("/packaged_content", &json!({"key": KEY, "kid": KID})),
        400,
    );
    // Unknown input, unknown job.
    let e = error_of(
        &srv.post_json(
            "/packaged_content",
            &json!({"input_content_id": 999, "key": KEY, "kid": KID, "scheme": "cenc"}),
        ),
        404,
    );
    assert!(e.contains("999"), "{e}");
    error_of(&srv.get("/packaged_content/999"), 404);
    error_of(&srv.get("/packaged_content/abc"), 404);
    error_of(&srv.get("/input_content/-1"), 404);
    error_of(&srv.get("/no/such/thing"), 404);

    // No way out of content/<id>/: the database sits next to it.
    for p in [
        "/content/../camflow.db",
        "/content/%2e%2e/camflow.db",
        "/content/1/..%2F..%2Fcamflow.db",
        "/content/1/%2e%2e",
        "/content/1/.camflow-clear-1",
        "/content/..%2F..%2Fetc/passwd",
    ] {
        let r = srv.get(p);
        assert!(r.status == 404 || r.status == 400, "{p}: {r:?}");
        assert!(!r.body.starts_with(b"SQLite"), "{p} served the database");
    }

    // Shaka: none in this folder and no --shaka-js, so a clear 404.
    let e = error_of(&srv.get("/static/shaka-player.compiled.js"), 404);
    assert!(e.contains("--shaka-js"), "{e}");

    assert_eq!(srv.get("/packaged_content").json(), json!([]));
    let log = srv.stop();
    assert!(!log.contains(secret), "the key was logged: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// CORS only where players need it: the packaged files (and their
/// preflight). The page carries every Ready item's key and the API lists
/// everything, so neither may be readable by a script on another origin
/// (any page the operator visits could otherwise fetch them).
#[test]
fn cors_only_on_packaged_files() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // A packaged file, put in place by hand: /content/ serves what is there.
    let item = data.join("content").join("7");
    std::fs::create_dir_all(&item).unwrap();
    std::fs::write(item.join("stream.mpd"), "<MPD/>").unwrap();
    let srv = Server::start(&data, dir.path(), &[]);
    let evil = ("Origin", "http://evil.example");
    let acao = |r: &Resp| r.header("access-control-allow-origin").map(str::to_string);

    for path in [
        "/",
        "/input_content",
        "/packaged_content",
        "/packaged_content/1",
        "/static/shaka-player.compiled.js",
        "/no/such/thing",
    ] {
        let r = srv.req("GET", path, &[evil], b"");
        assert_eq!(acao(&r), None, "GET {path}: {r:?}");
        let pre = srv.req(
            "OPTIONS",
            path,
            &[
                evil,
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        );
        assert_eq!(acao(&pre), None, "OPTIONS {path}: {pre:?}");
        assert_eq!(pre.header("access-control-allow-methods"), None, "{pre:?}");
    }
    let r = srv.post_json("/packaged_content", &json!({"key": KEY, "kid": KID}));
    assert_eq!(r.status, 400);
    assert_eq!(acao(&r), None, "{r:?}");

    let mpd = srv.req("GET", "/content/7/stream.mpd", &[evil], b"");
    assert_eq!(mpd.status, 200, "{mpd:?}");
    assert_eq!(mpd.text(), "<MPD/>");
    assert_eq!(acao(&mpd).as_deref(), Some("*"));
    let pre = srv.req(
        "OPTIONS",
        "/content/7/stream.mpd",
        &[
            evil,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
        b"",
    );
    assert!(pre.status == 204 || pre.status == 200, "{pre:?}");
    assert_eq!(acao(&pre).as_deref(), Some("*"));
    // A missing file still answers with CORS, so a player sees the 404.
    let gone = srv.req("GET", "/content/7/none.m4s", &[evil], b"");
    assert_eq!(gone.status, 404);
    assert_eq!(acao(&gone).as_deref(), Some("*"));
    srv.stop();
}

/// A forced stop (kill -9, power loss) can leave an upload's temporary
/// `.<name>.part`, or a stored upload no input records (it died while
/// probing): the next start removes both, and nothing else.
#[test]
fn only_loopback_names_are_answered_on_loopback() {
    // DNS rebinding: a web site points its own name at 127.0.0.1 and reads
    // the page (and its keys) as its own origin. The Host header gives it
    // away.
    let dir = tempdir();
    let srv = Server::start(&dir.path().join("data"), dir.path(), &[]);
    let port = srv.addr.rsplit(':').next().unwrap().to_string();
    for host in [format!("evil.example:{port}"), "evil.example".into()] {
        let r = srv.req("GET", "/", &[("Host", &host)], b"");
        assert_eq!(r.status, 421, "{host}: {r:?}");
        assert!(!r.text().contains("data-key"), "{r:?}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        format!("[::1]:{port}"),
    ] {
        let r = srv.req("GET", "/input_content", &[("Host", &host)], b"");
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
}

#[test]
fn posts_from_other_web_sites_are_refused() {
    // Any page can make the operator's browser send a form POST to the
    // service (no preflight for multipart or text/plain); Origin tells.
    let dir = tempdir();
    let srv = Server::start(&dir.path().join("data"), dir.path(), &[]);
    let body = json!({"input_content_id": 1, "key": KEY, "kid": KID}).to_string();
    for origin in ["http://evil.example", "null"] {
        let r = srv.req(
            "POST",
            "/packaged_content",
            &[("Origin", origin), ("Content-Type", "text/plain")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 403, "{origin}: {r:?}");
    }
    // The service's own page, or a tool that sends no Origin, gets through
    // to the API (which finds no such input).
    let own = format!("http://{}", srv.addr);
    for headers in [vec![("Origin", own.as_str())], vec![]] {
        let mut headers = headers;
        headers.push(("Content-Type", "application/json"));
        let r = srv.req("POST", "/packaged_content", &headers, body.as_bytes());
        assert_eq!(r.status, 404, "{headers:?}: {r:?}");
    }
}

#[test]
fn leftover_uploads_are_removed_at_start() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let src = av_file(dir.path());
    let srv = Server::start(&data, dir.path(), &[]);
    let input = upload_ok(&srv, &src);
    srv.stop();
    let uploads = data.join("uploads");
    let kept = files_in(&uploads);
    assert_eq!(kept.len(), 1, "{kept:?}");

    let part = ".0123456789abcdef01234567.part";
    let orphan = "89abcdef0123456789abcdef";
    for (name, body) in [
        (part, "half an upl"),
        (orphan, "never probed"),
        ("notes.txt", "mine"),
    ] {
        std::fs::write(uploads.join(name), body).unwrap();
    }
    let srv = Server::start(&data, dir.path(), &[]);
    let mut left = files_in(&uploads);
    left.sort();
    let mut want = vec![kept[0].clone(), "notes.txt".to_string()];
    want.sort();
    assert_eq!(left, want, "{}", srv.log());
    // The recorded upload is still there and still its input's.
    assert_eq!(
        statuses(&srv.get("/input_content").json(), "input_content_id"),
        vec![(input, "Ingested".to_string())]
    );
    let log = srv.stop();
    assert!(log.contains("removed 2 unfinished upload(s)"), "{log}");
}

/// A client that stops sending in the middle of an upload is dropped after
/// the idle time (shortened here by the test seam `CAMFLOW_UPLOAD_IDLE_SECS`;
/// 60 s otherwise), with a 408, and its partial file is removed.
#[test]
fn stalled_upload_is_dropped_and_removed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let srv = Server::start_env(&data, dir.path(), &[], &[("CAMFLOW_UPLOAD_IDLE_SECS", "1")]);
    let uploads = data.join("uploads");
    let boundary = "camflowtestboundary7MA4YWxk";
    let mut s = TcpStream::connect(&srv.addr).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Announces 10 MB, sends the part's head and 256 KiB of it, then stops.
    let head = format!(
        "POST /input_content HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.mp4\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        srv.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![0x47u8; 256 << 10]).unwrap();
    // The upload is under way: its temporary file is there.
    let start = Instant::now();
    while !files_in(&uploads).iter().any(|n| n.ends_with(".part")) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no .part file: {:?}",
            files_in(&uploads)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_answered_408(&mut s);
    assert_eq!(files_in(&uploads), Vec::<String>::new());
    // The service goes on.
    assert_eq!(srv.get("/input_content").json(), json!([]));
    let log = srv.stop();
    assert!(log.contains("stalled"), "{log}");
}

/// A whole `file` part followed by a part that stalls: the 408 takes the
/// stored file with it (it was left in `uploads/`, unrecorded, until the
/// next start).
#[test]
fn a_stall_after_the_file_part_leaves_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let srv = Server::start_env(&data, dir.path(), &[], &[("CAMFLOW_UPLOAD_IDLE_SECS", "1")]);
    let uploads = data.join("uploads");
    let video = std::fs::read(make_h264_file(dir.path(), "in.mp4", "160x120", 1)).unwrap();
    let boundary = "camflowtestboundary7MA4YWxk";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.mp4\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&video);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nsome")
            .as_bytes(),
    );
    let mut s = TcpStream::connect(&srv.addr).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /input_content HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        srv.addr,
        body.len() + 1000
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    assert_answered_408(&mut s);
    assert_eq!(files_in(&uploads), Vec::<String>::new());
    assert_eq!(srv.get("/input_content").json(), json!([]));
}

/// A client that sends half a request head and stops is disconnected
/// after twice the idle time (before, it held the connection for ever).
#[test]
fn a_stalled_request_head_is_disconnected() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let srv = Server::start_env(&data, dir.path(), &[], &[("CAMFLOW_UPLOAD_IDLE_SECS", "1")]);
    let mut s = TcpStream::connect(&srv.addr).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n", srv.addr).as_bytes())
        .unwrap();
    let start = Instant::now();
    read_until_closed(&mut s);
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(10), "closed after {waited:?}");
    // The service goes on.
    assert_eq!(srv.get("/input_content").json(), json!([]));
}

/// Everything the service sends until it closes the connection (within
/// the socket's read timeout).
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // The service may reset a connection whose request it did not finish.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the service did not close the connection: {e}"),
    }
    raw
}

/// The service answers a request that stopped sending (now) with 408, in
/// well under 10 s (the tests shorten its wait to 1 s).
fn assert_answered_408(s: &mut TcpStream) {
    let stalled = Instant::now();
    let raw = read_until_closed(s);
    let waited = stalled.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let answer = String::from_utf8_lossy(&raw).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("stalled"), "{answer}");
}

/// Any other request that announces a body and stops sending it is
/// answered 408 after the same idle time (before, it held its connection
/// for ever); a body over 2 MiB gets 413; the service goes on.
#[test]
fn stalled_or_oversized_request_bodies_are_answered() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let srv = Server::start_env(&data, dir.path(), &[], &[("CAMFLOW_UPLOAD_IDLE_SECS", "1")]);
    let mut s = TcpStream::connect(&srv.addr).expect("connect to the service");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /packaged_content HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"input_content_id\": ",
        srv.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    assert_answered_408(&mut s);

    let big = vec![b' '; 3 << 20];
    let r = srv.req(
        "POST",
        "/packaged_content",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().is_some(), "{}", r.text());

    // The service goes on, bodies and all.
    assert_eq!(srv.get("/packaged_content").json(), json!([]));
    let r = srv.post_json(
        "/packaged_content",
        &json!({"input_content_id": "nope", "key": "k", "kid": "k"}),
    );
    assert!(
        r.status == 400 || r.status == 404,
        "{} {}",
        r.status,
        r.text()
    );
    let log = srv.stop();
    assert!(log.contains("stalled"), "{log}");
}

/// `--max-upload 1k`: a larger upload is refused with 413 and leaves no
/// file behind, partial or whole; the service goes on.
#[test]
fn too_large_upload_is_refused_and_removed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let src = av_file(dir.path());
    let srv = Server::start(&data, dir.path(), &["--max-upload", "1k"]);
    let big: Vec<u8> = std::fs::read(&src).unwrap();
    assert!(big.len() > 100_000);
    let r = srv.upload("big.mp4", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("1024")));
    assert_eq!(files_in(&data.join("uploads")), Vec::<String>::new());
    assert_eq!(srv.get("/input_content").json(), json!([]));
    // Small enough: taken (and refused only for not being video).
    assert_eq!(srv.upload("small.txt", b"tiny").status, 415);
    srv.stop();
}

/// A job that fails is Failed with its reason (which names neither the key
/// nor its hex); a job that was running when the process died runs again
/// at the next start and gets to Ready. Also `--shaka-js` is what the page
/// gets.
#[test]
fn failed_and_interrupted_jobs() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let src = av_file(dir.path());
    let shaka = dir.path().join("shaka.js");
    std::fs::write(&shaka, "window.shaka = {};\n").unwrap();
    let srv = Server::start(
        &data,
        dir.path(),
        &["--workers", "1", "--shaka-js", path_str(&shaka)],
    );
    let js = srv.get("/static/shaka-player.compiled.js");
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), "window.shaka = {};\n");

    // The upload disappears before its job runs: Failed, with a reason.
    let gone = upload_ok(&srv, &src);
    for f in files_in(&data.join("uploads")) {
        std::fs::remove_file(data.join("uploads").join(f)).unwrap();
    }
    let failed = package_ok(&srv, gone);
    let start = Instant::now();
    let v = loop {
        let v = srv.get(&format!("/packaged_content/{failed}")).json();
        if v["status"] == "Failed" {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let reason = v["error"].as_str().expect("error text");
    assert!(reason.contains("gone"), "{reason}");
    assert!(v["url"].is_null());
    assert!(!reason.contains(KEY) && !reason.contains(KEY_HEX));

    // A job that finished, then made to look interrupted (as if the
    // process had died between Fragmented and Encrypted): it runs again.
    let input = upload_ok(&srv, &src);
    let id = package_ok(&srv, input);
    wait_ready(&srv, id);
    let log = srv.stop();
    assert!(!log.contains(KEY), "{log}");
    let out = data.join("content").join(id.to_string());
    std::fs::remove_file(out.join("stream.mpd")).unwrap();
    let db = rusqlite::Connection::open(data.join("camflow.db")).unwrap();
    db.execute(
        "UPDATE packaged_content SET status = 'Fragmented' WHERE id = ?1",
        [id],
    )
    .unwrap();
    drop(db);

    let srv = Server::start(&data, dir.path(), &[]);
    let v = wait_ready(&srv, id);
    assert_eq!(v["url"], format!("/content/{id}/stream.mpd"));
    assert!(out.join("stream.mpd").is_file());
    // The failed job stays failed, with its reason.
    let again = srv.get(&format!("/packaged_content/{failed}")).json();
    assert_eq!(again["status"], "Failed");
    assert_eq!(again["error"], reason);
    let log = srv.stop();
    assert!(log.contains("unfinished"), "{log}");
}

/// Drives the service's page in Debian's Chromium (playwright-core from
/// tests/browser's node_modules, which scripts/setup installs): clicks Play
/// on the Ready item and waits until the video has played 2 s. Prints one
/// JSON line: `{"t": currentTime, "w": videoWidth, "err": page error}`.
const PAGE_PLAYER: &str = r#"
const { chromium } = require(process.argv[1]);
(async () => {
  const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'] });
  let r = { t: 0, w: 0, err: 'did not start' };
  try {
    const p = await b.newPage();
    p.on('pageerror', e => { r.err = 'page: ' + e.message; });
    await p.goto(process.argv[2]);
    await p.click('button.play');
    const t0 = Date.now();
    while (Date.now() - t0 < 30000) {
      r = await p.evaluate(() => ({ t: document.getElementById('video').currentTime,
        w: document.getElementById('video').videoWidth,
        err: document.getElementById('player-error').textContent }));
      if (r.t > 2 || r.err) break;
      await new Promise(res => setTimeout(res, 200));
    }
  } finally {
    console.log(JSON.stringify(r));
    await b.close();
  }
})();
"#;

/// The page plays a Ready item: Shaka from the service (the browser tests'
/// copy, by `--shaka-js`), the ClearKey from the page, the MPD and
/// segments from /content/.
#[test]
fn page_plays_a_ready_item_in_chromium() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let src = av_file(dir.path());
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules");
    let shaka = modules.join("shaka-player/dist/shaka-player.compiled.js");
    let srv = Server::start(&data, dir.path(), &["--shaka-js", path_str(&shaka)]);
    let input = upload_ok(&srv, &src);
    wait_ready(&srv, package_ok(&srv, input));
    let out = run_limited(
        Command::new("node")
            .arg("-e")
            .arg(PAGE_PLAYER)
            .arg(modules.join("playwright-core"))
            .arg(format!("http://{}/", srv.addr)),
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["err"], "", "{v}");
    assert!(v["t"].as_f64().unwrap_or(0.0) > 2.0, "{v}");
    assert_eq!(v["w"], 320, "{v}");
    srv.stop();
}

#[test]
fn a_port_in_use_leaves_no_data_folder() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempdir();
    let data = dir.path().join("data");
    let out = camflow_run(&[
        "packager",
        "serve",
        "--listen",
        &addr,
        "--data",
        path_str(&data),
    ]);
    assert_one_line_error(&out, &addr, "cannot listen");
    assert!(
        !data.exists(),
        "the failed start created {}",
        data.display()
    );
}
