//! VLC's RTSP server as a test peer (Debian's `vlc-bin vlc-plugin-base`,
//! installed by scripts/setup): a short H.264 clip made by ffmpeg, looped
//! by `cvlc --sout '#rtp{sdp=rtsp://127.0.0.1:PORT/cam}'`.
//!
//! What sets it apart from gst-rtsp-server: no RTP over TCP (SETUP with
//! interleaved TCP gets 461), and a live session begins wherever the
//! server is, often in the middle of a fragmented NAL unit.
//!
//! VLC refuses to run as root, and the tests run as root: it runs as
//! `nobody` (`runuser`), from a temporary folder that user can read. It
//! runs in a process group of its own (runuser, cvlc's vlc), killed as a
//! whole when the server is dropped.
//!
//! ```ignore
//! let vlc = VlcServer::start(&VlcClip::default());
//! // ... point camflow at vlc.url() ...
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long VLC gets to answer OPTIONS on its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Ports tried before giving up (a port picked free may be taken before
/// VLC binds it).
const PORT_TRIES: usize = 3;

/// The clip VLC loops: ffmpeg's `testsrc2` as H.264. VLC stumbles where
/// the loop starts over (DESCRIBE gets 500, SETUP a 404 with no CSeq, a
/// playing session's packets stop): the clip is long enough (two minutes)
/// that a test ends before it loops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlcClip {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: u32,
    /// Frames between IDRs.
    pub gop: u32,
    /// x264 `slice-max-size` in bytes: every NAL unit fits one RTP packet,
    /// so VLC sends no FU-A fragments.
    pub slice_max_size: Option<u32>,
}

impl Default for VlcClip {
    fn default() -> Self {
        VlcClip {
            width: 320,
            height: 240,
            fps: 25,
            seconds: 120,
            gop: 25,
            slice_max_size: None,
        }
    }
}

impl VlcClip {
    pub fn slice_max_size(mut self, bytes: u32) -> Self {
        self.slice_max_size = Some(bytes);
        self
    }

    /// The ffmpeg arguments that make it (no B-frames, as most cameras).
    fn ffmpeg_args(&self) -> String {
        let mut a = format!(
            "-f lavfi -i testsrc2=size={}x{}:rate={} -t {} -c:v libx264 -preset ultrafast \
             -pix_fmt yuv420p -bf 0 -g {}",
            self.width, self.height, self.fps, self.seconds, self.gop
        );
        if let Some(n) = self.slice_max_size {
            a.push_str(&format!(" -x264-params slice-max-size={n}"));
        }
        a
    }
}

/// A running VLC RTSP server, serving `rtsp://127.0.0.1:PORT/cam`.
pub struct VlcServer {
    port: u16,
    child: Child,
    /// Holds the clip; removed after VLC is gone.
    _dir: tempfile::TempDir,
}

impl VlcServer {
    /// Makes the clip, starts VLC on a free port and waits until it answers
    /// OPTIONS; panics if no port works.
    pub fn start(clip: &VlcClip) -> VlcServer {
        let dir = super::tempdir();
        // tempdir is 0700: nobody must reach the clip.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the clip's folder");
        let path = dir.path().join("clip.mp4");
        super::ffmpeg_make(&path, &clip.ffmpeg_args());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod the clip");
        let mut why = Vec::new();
        for _ in 0..PORT_TRIES {
            let port = super::closed_port();
            let mut child = spawn(dir.path(), port);
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return VlcServer {
                        port,
                        child,
                        _dir: dir,
                    }
                }
                Err(e) => {
                    kill_group(&mut child);
                    why.push(format!("port {port}: {e}"));
                }
            }
        }
        panic!("VLC's RTSP server did not start: {}", why.join("; "));
    }

    /// `rtsp://127.0.0.1:PORT/cam`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for VlcServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn spawn(dir: &Path, port: u16) -> Child {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "cvlc", "-q", "clip.mp4", "--loop"])
        .args(["--sout-keep", "--sout"])
        .arg(format!("#rtp{{sdp=rtsp://127.0.0.1:{port}/cam}}"))
        .current_dir(dir)
        // Its own group, so that runuser's child (vlc) goes with it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runuser -u nobody -- cvlc")
}

/// A child that leads its own process group (spawned with
/// `process_group(0)`), killed with everything in that group when dropped:
/// `runuser` does not pass SIGKILL on to the VLC it started.
pub struct GroupKilled(pub Child);

impl Drop for GroupKilled {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// SIGKILL to the whole group, then reaps runuser.
fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) on the process group our own child leads (it was
    // spawned with process_group(0) and is not reaped yet, so the id is
    // still ours).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Until VLC answers OPTIONS on `port` and holds the listening socket
/// itself (another server may have taken the port first: VLC then runs
/// on without saying so).
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("VLC exited ({status})"));
        }
        match options(port) {
            Ok(answer) if answer.starts_with("RTSP/1.0 200") => {
                return if listens_in_group(child.id(), port) {
                    Ok(())
                } else {
                    Err("another process listens on the port".into())
                };
            }
            Ok(answer) => last = format!("answered {answer:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("no RTSP answer within {START_TIMEOUT:?} ({last})"))
}

/// One OPTIONS request; the answer's head.
fn options(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "OPTIONS rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    )?;
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Whether a process of group `pgid` holds the TCP socket listening on
/// loopback `port` (from /proc: the socket's inode in /proc/net/tcp, then
/// the group's open files).
fn listens_in_group(pgid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // local_address is 0100007F:PORT (hex), st 0A is LISTEN, inode is the
    // tenth column.
    let local = format!("0100007F:{port:04X}");
    let Some(inode) = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
    }) else {
        return false;
    };
    let socket = format!("socket:[{inode}]");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let in_group = std::fs::read_to_string(p.path().join("stat"))
            .ok()
            // The group is the 5th field; the name (2nd) may hold spaces
            // but ends at the last ')'.
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_string();
                rest.split_whitespace().nth(2)?.parse::<u32>().ok()
            })
            == Some(pgid);
        in_group
            && std::fs::read_dir(p.path().join("fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.to_string_lossy() == socket.as_str())
                })
            })
    })
}
