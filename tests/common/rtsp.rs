//! A real RTSP peer for end-to-end tests: GStreamer's RTSP server, run by
//! `tests/rtsp_server.py` (see that script's doc comment for what it
//! serves, the colour bars' BGR values, and its pitfalls).
//!
//! Not registered yet: wire it in with `mod rtsp;` (and, if wanted,
//! `pub use rtsp::{RtspCodec, RtspOpts, RtspServer};`) inside
//! tests/common/mod.rs. It uses `super::PYTHON` from there.
//!
//! ```ignore
//! let mut server = RtspServer::start(&RtspOpts::default().h264().digest("u", "p"));
//! // ... point camflow at server.url() with credentials u / p ...
//! server.restart(); // same port, same options
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server may take to print its `PORT n` line (about 0.05 s
/// normally, 0.3 s with a cold GStreamer registry).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `stop()` waits after SIGTERM before SIGKILL (exit takes a few
/// tens of milliseconds).
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtspCodec {
    /// RTP/JPEG, payload type 26. Width and height must be multiples of 8,
    /// at most 2040 (the script refuses others).
    Mjpeg,
    /// H.264, payload type 96, a key frame every `fps` frames, SPS/PPS in
    /// band and in the SDP.
    H264,
}

impl RtspCodec {
    fn arg(self) -> &'static str {
        match self {
            RtspCodec::Mjpeg => "mjpeg",
            RtspCodec::H264 => "h264",
        }
    }
}

/// What the server streams. Plain fields with a `Default` (MJPEG 320x240 at
/// 25 fps with PCMU audio, no auth, endless), plus chainable shorthands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspOpts {
    pub codec: RtspCodec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// A PCMU (G.711 mu-law, 8 kHz mono, payload type 0) track beside the
    /// video.
    pub audio: bool,
    /// `Some((user, password, digest))`: the mount requires credentials,
    /// with Digest if `digest`, else Basic.
    pub auth: Option<(String, String, bool)>,
    /// `Some(n)`: end the stream (RTCP BYE on every track) after n video
    /// frames. Over UDP, ffmpeg may see only n-1 of them.
    pub frames: Option<u32>,
    /// H.264: B-frames between reference pictures (0: none, as most
    /// cameras).
    pub bframes: u32,
}

impl Default for RtspOpts {
    fn default() -> Self {
        RtspOpts {
            codec: RtspCodec::Mjpeg,
            width: 320,
            height: 240,
            fps: 25,
            audio: true,
            auth: None,
            frames: None,
            bframes: 0,
        }
    }
}

impl RtspOpts {
    pub fn mjpeg(mut self) -> Self {
        self.codec = RtspCodec::Mjpeg;
        self
    }
    pub fn h264(mut self) -> Self {
        self.codec = RtspCodec::H264;
        self
    }
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }
    pub fn no_audio(mut self) -> Self {
        self.audio = false;
        self
    }
    pub fn basic(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string(), false));
        self
    }
    pub fn digest(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string(), true));
        self
    }
    pub fn bframes(mut self, n: u32) -> Self {
        self.bframes = n;
        self
    }

    pub fn frames(mut self, n: u32) -> Self {
        self.frames = Some(n);
        self
    }

    /// The script's command line (without `--port`).
    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--codec".into(),
            self.codec.arg().into(),
            "--width".into(),
            self.width.to_string(),
            "--height".into(),
            self.height.to_string(),
            "--fps".into(),
            self.fps.to_string(),
            if self.audio { "--audio" } else { "--no-audio" }.into(),
        ];
        if let Some((user, password, digest)) = &self.auth {
            a.extend([
                "--user".into(),
                user.clone(),
                "--password".into(),
                password.clone(),
                "--auth".into(),
                if *digest { "digest" } else { "basic" }.into(),
            ]);
        }
        if let Some(n) = self.frames {
            a.extend(["--frames".into(), n.to_string()]);
        }
        if self.bframes > 0 {
            a.extend(["--bframes".into(), self.bframes.to_string()]);
        }
        a
    }
}

/// A running `tests/rtsp_server.py`, serving `rtsp://127.0.0.1:PORT/stream`.
/// Killed (SIGKILL) when dropped.
pub struct RtspServer {
    opts: RtspOpts,
    port: u16,
    /// `None` once stopped.
    child: Option<Child>,
    /// Everything the current process wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_server.py")
}

impl RtspServer {
    /// Starts a server on a free port; panics, with the server's stderr, if
    /// it does not print `PORT n` within 20 s.
    pub fn start(opts: &RtspOpts) -> RtspServer {
        let mut server = RtspServer {
            opts: opts.clone(),
            port: 0,
            child: None,
            stderr: Arc::new(Mutex::new(String::new())),
            stderr_thread: None,
        };
        server.spawn(0);
        server
    }

    /// `rtsp://127.0.0.1:PORT/stream`, without credentials.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }

    /// The URL with `user:password@` in it when auth is on (for the ffmpeg
    /// CLI; user and password are not percent-encoded, so keep them plain).
    pub fn url_with_credentials(&self) -> String {
        match &self.opts.auth {
            Some((user, password, _)) => {
                format!("rtsp://{user}:{password}@127.0.0.1:{}/stream", self.port)
            }
            None => self.url(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn opts(&self) -> &RtspOpts {
        &self.opts
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// What the server has logged to stderr so far (since the last
    /// start/restart).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 5 s if it is still there; waits for it.
    /// Connected clients see their connection close. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped
            // (try_wait said it is running), so the pid is still ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the server (if running) and starts it again on the same port
    /// with the same options. The port can be rebound at once (the script
    /// binds with SO_REUSEADDR), also with clients connected at stop time.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(port);
        assert_eq!(self.port, port, "restarted on another port");
    }

    /// Spawns the script on `port` (0: any), waits for its `PORT n` line
    /// and records the port.
    fn spawn(&mut self, port: u16) {
        let mut cmd = Command::new(super::PYTHON);
        cmd.arg(script())
            .arg("--port")
            .arg(port.to_string())
            .args(self.opts.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));

        // Collect stderr in the background (and keep the pipe drained).
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("server stderr");
        let sink = Arc::clone(&log);
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut s) = sink.lock() {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            }
        });

        // The first stdout line, on a thread so that it can time out; the
        // thread then drains stdout until the process ends.
        let out = child.stdout.take().expect("server stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });

        let failure = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => match line
                .trim()
                .strip_prefix("PORT ")
                .and_then(|p| p.parse::<u16>().ok())
            {
                Some(p) if p != 0 => {
                    self.port = p;
                    self.child = Some(child);
                    self.stderr = log;
                    self.stderr_thread = Some(stderr_thread);
                    return;
                }
                _ => format!("printed {line:?} instead of `PORT n`"),
            },
            Ok(Err(e)) => format!("stdout unreadable: {e}"),
            Err(_) => format!("no `PORT n` line within {START_TIMEOUT:?}"),
        };
        let _ = child.kill();
        let status = child.wait();
        let _ = stderr_thread.join();
        let stderr = log.lock().map(|s| s.clone()).unwrap_or_default();
        panic!("RTSP server {cmd:?} {failure} (exit: {status:?}); stderr:\n{stderr}");
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }
}
