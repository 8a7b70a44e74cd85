//! A test peer written in Python (tests/rtsp_server.py, tests/
//! rtsp_lossy_proxy.py): it prints `PORT n` as its first stdout line once
//! it listens, and logs to stderr, which is collected here.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a peer gets to print `PORT n`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a peer gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running peer process. Killed (SIGKILL) when dropped.
pub struct ScriptPeer {
    pub port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    log_thread: Option<JoinHandle<()>>,
}

impl ScriptPeer {
    /// Spawns `cmd` and waits for its `PORT n` line; panics with what it
    /// logged if none comes.
    pub fn start(mut cmd: Command) -> ScriptPeer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));

        // Collect stderr in the background (and keep the pipe drained).
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("peer stderr");
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

        // The first stdout line, on a thread so that it can time out; the
        // thread then drains stdout until the process ends.
        let out = child.stdout.take().expect("peer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line
                .trim()
                .strip_prefix("PORT ")
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("printed {line:?} instead of `PORT n`")),
            Ok(Err(e)) => Err(format!("stdout unreadable: {e}")),
            Err(_) => Err(format!("no `PORT n` line within {START_TIMEOUT:?}")),
        };
        let mut peer = ScriptPeer {
            port: 0,
            child: Some(child),
            log,
            log_thread: Some(log_thread),
        };
        match port {
            Ok(p) => peer.port = p,
            Err(why) => {
                let status = peer.kill();
                panic!(
                    "{cmd:?} {why} (exit: {status:?}); stderr:\n{}",
                    peer.stderr()
                );
            }
        }
        peer
    }

    /// What the peer has logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then SIGKILL after a grace period; waits for the process
    /// and its log. `Some(status)` if it exited by itself in time (or had
    /// already), `None` if it had to be killed or was stopped before.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let mut status = child.try_wait().ok().flatten();
        if status.is_none() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped
            // (try_wait said it is running), so the pid is still ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while status.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                status = child.try_wait().ok().flatten();
            }
            if status.is_none() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        self.join_log();
        status
    }

    /// SIGKILL at once; waits for the process and its log.
    fn kill(&mut self) -> Option<std::io::Result<ExitStatus>> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        let status = child.wait();
        self.join_log();
        Some(status)
    }

    fn join_log(&mut self) {
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScriptPeer {
    fn drop(&mut self) {
        self.kill();
    }
}
