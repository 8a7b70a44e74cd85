//! A real RTMP server for end-to-end tests: nginx with Debian's RTMP module
//! (`libnginx-mod-rtmp`), run in the foreground from a config of its own in
//! a temporary folder, on a free loopback port. The system's nginx service
//! (if any) is never used or touched. Also the two other ends: an ffmpeg
//! publisher ([`RtmpPublisher`]) and a bounded ffprobe reader
//! ([`ffprobe_live`]).
//!
//! ```ignore
//! let server = NginxRtmp::start();
//! let _cam = RtmpPublisher::start(&server.url("cam"), nginx::H264_AAC);
//! let probe = nginx::ffprobe_live(&server.url("cam"), 2.0);
//! assert_eq!(probe.video().unwrap().codec_name, "h264");
//! ```
//!
//! How nginx-rtmp behaves (nginx 1.22 with module 1.2.2 on Debian 12):
//! - A player that asks for a name nobody publishes waits (no error, no
//!   data) and gets the stream once a publisher starts (`idle_streams` is
//!   on by default).
//! - A player starts at a key frame: `wait_key` is on by default in the
//!   code (its documentation says off); `"wait_key off;"` (see
//!   [`NginxRtmp::start_with`]) makes it join mid-GOP. So a player that
//!   joins a running stream sees its first frame up to a GOP later.
//! - When the publisher stops, players see no end of stream: nginx sends a
//!   User Control StreamEOF (and StreamBegin when a publisher comes back to
//!   the same name, whose stream then flows to the same connection, with
//!   new sequence headers and timestamps from 0), no status message unless
//!   `play_restart on;` or `publish_notify on;`, and the connection stays
//!   open, idle. ffmpeg ignores StreamEOF: bound every read (ffprobe:
//!   `-rw_timeout`, as [`ffprobe_live`] does).

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{closed_port, run_limited};

/// Debian's nginx binary (in /usr/sbin, which a non-root PATH may lack).
pub const NGINX: &str = "/usr/sbin/nginx";
/// Debian's RTMP module, loaded by the config.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// How long nginx gets to accept TCP connections on its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nginx gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How many free ports `start` tries (another process may take the port
/// between the probe and nginx's bind).
const PORT_TRIES: usize = 5;

/// A running nginx-rtmp serving `rtmp://127.0.0.1:PORT/live/NAME` (any
/// NAME: publish to it with ffmpeg, play it with camflow or ffprobe).
/// Killed (SIGKILL) when dropped; its folder is removed then.
pub struct NginxRtmp {
    /// Holds nginx.conf, error.log, access.log, nginx.pid, stderr.log.
    dir: tempfile::TempDir,
    /// Directives added to the `application live {}` block.
    app_directives: String,
    port: u16,
    /// `None` once stopped.
    child: Option<Child>,
}

impl NginxRtmp {
    /// Starts nginx-rtmp on a free loopback port with the module's defaults
    /// (`live on;` only); panics, with nginx's error log, if it does not
    /// accept connections within 10 s.
    pub fn start() -> NginxRtmp {
        NginxRtmp::start_with("")
    }

    /// As [`NginxRtmp::start`], with more directives for the `live`
    /// application, e.g. `"wait_key off;"` (players join mid-GOP),
    /// `"wait_video on;"` (a player's audio waits for its first video
    /// frame), `"play_restart on; publish_notify on;"` (status messages to
    /// players when the publisher stops and starts).
    pub fn start_with(app_directives: &str) -> NginxRtmp {
        let mut server = NginxRtmp {
            dir: super::tempdir(),
            app_directives: app_directives.to_string(),
            port: 0,
            child: None,
        };
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            match server.spawn(closed_port()) {
                Ok(()) => return server,
                // Lost the race for the port: try another.
                Err(why) if why.contains("Address already in use") => last = why,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("no free port in {PORT_TRIES} tries: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// nginx's error log so far (level `info`: every connect, publish,
    /// play and disconnect is there).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Whether nginx is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM (nginx's fast shutdown: every connection is closed), then
    /// SIGKILL after 5 s if it is still there; waits for it. Idempotent.
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
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops nginx (if running) and starts it again on the same port, same
    /// config (nginx binds with SO_REUSEADDR, so the port is free at once).
    /// Publishers and players were disconnected and must connect again.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(why) = self.spawn(self.port) {
            panic!("restart: {why}");
        }
    }

    /// Writes the config for `port`, starts nginx and waits until the port
    /// accepts TCP connections. `Err` (nginx killed) with its logs if it
    /// exits or does not listen in time.
    fn spawn(&mut self, port: u16) -> Result<(), String> {
        let dir = self.dir.path();
        let p = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid \"{pid}\";\n\
             error_log \"{error_log}\" info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{\n\
             \x20   access_log \"{access_log}\";\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       application live {{\n\
             \x20           live on;\n\
             \x20           record off;\n\
             \x20           {app}\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n",
            pid = p("nginx.pid"),
            error_log = p("error.log"),
            access_log = p("access.log"),
            app = self.app_directives,
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let stderr = File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(NGINX);
        // -e: the error log before the config is read (else the compiled-in
        // /var/log/nginx/error.log, unwritable for non-root users).
        cmd.arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(p("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (run scripts/setup)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break format!("exited ({status})");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.port = port;
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break format!("does not accept connections on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.wait();
        let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        Err(format!(
            "{cmd:?} {failure}; stderr:\n{stderr}\nerror.log:\n{}",
            self.error_log()
        ))
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// ffmpeg input and encoder arguments for [`RtmpPublisher::start`]: a 25 fps
/// 320x240 test pattern (testsrc2) as H.264, a key frame every second, no
/// B-frames, in real time.
pub const H264: &str = "-re -f lavfi -i testsrc2=size=320x240:rate=25 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 25 -pix_fmt yuv420p";

/// [`H264`] plus a 440 Hz tone as AAC (44.1 kHz mono), as most RTMP
/// sources send.
pub const H264_AAC: &str = "-re -f lavfi -i testsrc2=size=320x240:rate=25 \
    -re -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 25 -pix_fmt yuv420p \
    -c:a aac -b:a 64k";

/// An ffmpeg publishing to an RTMP URL in the background (the camera or
/// encoder side). Killed (SIGKILL) when dropped.
pub struct RtmpPublisher {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    log_thread: Option<JoinHandle<()>>,
}

impl RtmpPublisher {
    /// Runs `ffmpeg -nostdin -v error ARGS -f flv URL`, ARGS split on
    /// whitespace (e.g. [`H264`], [`H264_AAC`], with `-t N` at the end for a
    /// finite stream; `-re` before each `-i` keeps it real time). Returns at
    /// once: the stream is live on the server a few hundred ms later (a
    /// player that connects earlier just waits for it).
    pub fn start(url: &str, args: &str) -> RtmpPublisher {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-v", "error"])
            .args(args.split_whitespace())
            .args(["-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut err = child.stderr.take().expect("ffmpeg stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let log_thread = std::thread::spawn(move || {
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
        RtmpPublisher {
            child: Some(child),
            log,
            log_thread: Some(log_thread),
        }
    }

    /// What ffmpeg has logged (errors only) so far.
    pub fn stderr(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `limit` for ffmpeg to end by itself (a `-t` stream);
    /// `None` if it is still running (or was stopped before).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if status.is_some() {
                self.child = None;
                self.join_log();
                return status;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, as a user's Ctrl-C: ffmpeg ends the stream cleanly (FLV
    /// trailer, RTMP deleteStream); SIGKILL after 5 s. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on the pid of our own child, not yet
                // reaped (try_wait said it is running).
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGINT);
                }
                let deadline = Instant::now() + STOP_GRACE;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_log();
    }

    fn join_log(&mut self) {
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtmpPublisher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_log();
    }
}

/// One stream of a [`LiveProbe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbedStream {
    /// `video`, `audio`, `data`.
    pub codec_type: String,
    /// ffprobe's codec name: `h264`, `aac`, ...
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames ffprobe decoded in the interval read (`nb_read_frames`).
    pub frames: u64,
}

/// What [`ffprobe_live`] read of a live stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveProbe {
    /// Whether ffprobe exited 0 (it does so also when the stream went quiet
    /// and `-rw_timeout` ended the read early).
    pub success: bool,
    /// ffprobe's format name (`flv` for RTMP).
    pub format_name: String,
    pub streams: Vec<ProbedStream>,
    /// ffprobe's raw output (`-of compact`) and its errors (`-v error`).
    pub stdout: String,
    pub stderr: String,
}

impl LiveProbe {
    /// The first video stream.
    pub fn video(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.codec_type == "video")
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.codec_type == "audio")
    }
}

/// Reads about `seconds` of a live stream (RTMP, or any URL ffprobe opens)
/// with ffprobe, decoding it to count frames, and reports the format, the
/// streams and the frame counts. Takes about `seconds` + 1 s on a live
/// stream (`-analyzeduration` 1 s: a video-only FLV from nginx-rtmp
/// announces audio too, and by default ffprobe would wait 5 s for it).
///
/// Bounded: ffprobe gives up after 5 s without data (`-rw_timeout`), which
/// is what ends the read when the publisher stops early (nginx-rtmp never
/// ends the stream): then it takes about 10 s longer than the stream
/// lasted, and still succeeds with what it read. The publisher must be
/// live, or go live within 5 s. ffprobe is killed, failing the test, if it
/// still runs `seconds` + 30 s after start.
///
/// A player joins nginx-rtmp at a key frame (see the module's doc), so
/// `frames` can be up to a GOP short of `seconds` × fps.
pub fn ffprobe_live(url: &str, seconds: f64) -> LiveProbe {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error"])
            .args(["-rw_timeout", "5000000"])
            .args(["-analyzeduration", "1000000"])
            .arg("-count_frames")
            .args(["-read_intervals", &format!("%+{seconds}")])
            .args([
                "-show_entries",
                "stream=index,codec_type,codec_name,width,height,nb_read_frames:format=format_name",
            ])
            .args(["-of", "compact"])
            .arg(url),
        Duration::from_secs_f64(seconds) + Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut probe = LiveProbe {
        success: out.status.success(),
        format_name: String::new(),
        streams: Vec::new(),
        stdout: stdout.clone(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    };
    for line in stdout.lines() {
        let section = line.split('|').next().unwrap_or_default();
        let kv = |key: &str| {
            line.split('|')
                .skip(1)
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        match section {
            "stream" => probe.streams.push(ProbedStream {
                codec_type: kv("codec_type"),
                codec_name: kv("codec_name"),
                width: kv("width").parse().ok(),
                height: kv("height").parse().ok(),
                frames: kv("nb_read_frames").parse().unwrap_or(0),
            }),
            "format" => probe.format_name = kv("format_name"),
            _ => {}
        }
    }
    probe
}
