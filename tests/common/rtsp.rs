//! A real RTSP peer for end-to-end tests: GStreamer's RTSP server, run by
//! `tests/rtsp_server.py` (see that script's doc comment for what it
//! serves, the colour bars' BGR values, and its pitfalls).
//!
//! It uses `super::PYTHON`, and `super::peer` for the process.
//!
//! ```ignore
//! let mut server = RtspServer::start(&RtspOpts::default().h264().digest("u", "p"));
//! // ... point camflow at server.url() with credentials u / p ...
//! server.restart(); // same port, same options
//! ```

use std::path::PathBuf;
use std::process::Command;

use super::peer::ScriptPeer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtspCodec {
    /// RTP/JPEG, payload type 26. Width and height must be multiples of 8,
    /// at most 2040 (the script refuses others).
    Mjpeg,
    /// H.264, payload type 96, a key frame every `fps` frames, SPS/PPS in
    /// band and in the SDP.
    H264,
    /// H.265 (x265, Main), payload type 96, a key frame every `fps`
    /// frames, VPS/SPS/PPS in band and in the SDP.
    H265,
}

impl RtspCodec {
    fn arg(self) -> &'static str {
        match self {
            RtspCodec::Mjpeg => "mjpeg",
            RtspCodec::H264 => "h264",
            RtspCodec::H265 => "h265",
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
    pub fn h265(mut self) -> Self {
        self.codec = RtspCodec::H265;
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
    peer: Option<ScriptPeer>,
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
            peer: None,
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
        self.peer.as_mut().is_some_and(ScriptPeer::is_running)
    }

    /// What the server has logged to stderr so far (since the last
    /// start/restart).
    pub fn stderr(&self) -> String {
        self.peer
            .as_ref()
            .map(ScriptPeer::stderr)
            .unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 5 s if it is still there; waits for it.
    /// Connected clients see their connection close. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut peer) = self.peer.take() {
            peer.stop();
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

    /// Spawns the script on `port` (0: any) and records the port it took.
    fn spawn(&mut self, port: u16) {
        let mut cmd = Command::new(super::PYTHON);
        cmd.arg(script())
            .arg("--port")
            .arg(port.to_string())
            .args(self.opts.args());
        let peer = ScriptPeer::start(cmd);
        self.port = peer.port;
        self.peer = Some(peer);
    }
}
