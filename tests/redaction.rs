//! Passwords in error messages: whatever the password is (one letter, a
//! word that messages use, URL-special characters), it never appears in a
//! message and never changes one. Each receiver's error paths are run with
//! a neutral password and with each of the others; the messages must be the
//! same, byte for byte, and show the URL's password as `***`.

mod common;

use std::net::TcpListener;
use std::process::Output;

use common::rtsp::{RtspOpts, RtspServer};
use common::*;

/// The neutral password the others are compared with.
const NEUTRAL: &str = "Zq7Xw";

/// Passwords that a message could contain by chance, or that URLs quote.
const PASSWORDS: &[&str] = &[
    "e",
    "on",
    "the",
    "refused",
    "digest",
    "admin",
    "127",
    "http",
    "p@ss:w/rd?#%&=+ ;",
];

/// Every byte but ASCII letters and digits percent-encoded, as a user
/// would write a password with special characters into a URL.
fn encode(password: &str) -> String {
    password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `scheme://admin:PASSWORD@rest` from `scheme://rest`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    format!("{scheme}://admin:{}@{rest}", encode(password))
}

/// How a case passes the password: in the URL or with `--password`.
#[derive(Clone, Copy)]
enum Given {
    InUrl,
    Flag,
}

/// Runs `camflow decode` on `url` with `password` given as `how`; returns
/// the failed run's output.
fn run(url: &str, password: &str, how: Given, extra: &[&str]) -> Output {
    let dir = tempdir();
    let src = match how {
        Given::InUrl => with_password(url, password),
        Given::Flag => url.to_string(),
    };
    let mut args = vec![
        "decode",
        &src,
        "--frames-dir",
        path_str(dir.path()),
        "--timeout",
        "1",
        "--reconnect",
        "never",
    ];
    if let Given::Flag = how {
        args.extend(["--user", "admin", "--password", password]);
    }
    args.extend_from_slice(extra);
    camflow_run(&args)
}

/// The neutral run must fail in one line saying `what`; every other
/// password must give the same stderr, which never shows the password.
fn same_message_for_every_password(case: &str, url: &str, how: Given, what: &str, extra: &[&str]) {
    let neutral = run(url, NEUTRAL, how, extra);
    let shown = match how {
        Given::InUrl => with_password(url, NEUTRAL).replace(NEUTRAL, "***"),
        Given::Flag => url.to_string(),
    };
    let line = assert_one_line_error(&neutral, &shown, what);
    assert!(!line.contains(NEUTRAL), "{case}: {line}");
    let want = String::from_utf8_lossy(&neutral.stderr).to_string();
    let want = want.as_str();
    std::thread::scope(|s| {
        for &pw in PASSWORDS {
            s.spawn(move || {
                let out = run(url, pw, how, extra);
                let got = String::from_utf8_lossy(&out.stderr).to_string();
                assert!(!out.status.success(), "{case}, password {pw:?}: {got}");
                assert_eq!(got, want, "{case}, password {pw:?}");
            });
        }
    });
}

#[test]
fn every_receiver_refused_connection() {
    let port = closed_port();
    std::thread::scope(|s| {
        for scheme in ["http", "ws", "rtsp", "tcp", "vbc"] {
            s.spawn(move || {
                let url = format!("{scheme}://127.0.0.1:{port}/live");
                let url = if matches!(scheme, "tcp" | "vbc") {
                    format!("{scheme}://127.0.0.1:{port}")
                } else {
                    url
                };
                same_message_for_every_password(scheme, &url, Given::InUrl, "connect", &[]);
            });
        }
    });
}

#[test]
fn every_receiver_silent_server() {
    // Accepts connections (the kernel's backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::scope(|s| {
        for scheme in ["http", "ws", "rtsp", "tcp"] {
            s.spawn(move || {
                let url = if scheme == "tcp" {
                    format!("{scheme}://127.0.0.1:{port}")
                } else {
                    format!("{scheme}://127.0.0.1:{port}/live")
                };
                same_message_for_every_password(scheme, &url, Given::InUrl, "1 s", &[]);
            });
        }
    });
    drop(silent);
}

#[test]
fn http_camera_refuses_the_password() {
    for digest in [false, true] {
        let mut args = vec![
            "--protocol",
            "mjpeg-http",
            "--size",
            "160x120",
            "--auth",
            "admin:right",
        ];
        if digest {
            args.push("--digest");
        }
        let cam = Camera::start(&args);
        let what = "refused the user name or password";
        same_message_for_every_password("http 401", &cam.url, Given::InUrl, what, &[]);
        same_message_for_every_password("http 401, --password", &cam.url, Given::Flag, what, &[]);
    }
}

#[test]
fn websocket_upgrade_refused() {
    let cam = Camera::start(&["--size", "160x120"]);
    let url = cam.url.replace("/live", "/no-such-camera");
    same_message_for_every_password("ws 404", &url, Given::InUrl, "HTTP 404", &[]);
}

#[test]
fn rtsp_server_refuses_the_password() {
    let server = RtspServer::start(&RtspOpts::default().h264().basic("admin", "right"));
    let url = server.url();
    same_message_for_every_password("rtsp 401", &url, Given::InUrl, "401", &[]);
    same_message_for_every_password("rtsp 401, --password", &url, Given::Flag, "401", &[]);
}

#[test]
fn a_password_never_stars_other_text() {
    // The unit of the whole property: the message for `e` is the neutral
    // one, so no `e` in it was starred.
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/e");
    let out = run(&url, "e", Given::InUrl, &[]);
    let line = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(line.contains("refused"), "{line}");
    assert!(
        line.contains(&format!("http://admin:***@127.0.0.1:{port}/e")),
        "{line}"
    );
}
