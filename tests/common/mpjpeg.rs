//! ffmpeg as a one-client MJPEG-over-HTTP camera (`-f mpjpeg -listen 1`),
//! the real peer for MJPEG cameras.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a helper process when the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg as a one-client HTTP server: `ffmpeg -v error ARGS -listen 1 URL`
/// (ARGS split on spaces, `-content_type` values without spaces), once it
/// listens.
pub fn ffmpeg_listen(port: u16, args: &str, url: &str) -> Killed {
    let child = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args.split_whitespace())
        .args(["-listen", "1", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let k = Killed(child);
    wait_listening(port);
    k
}

/// An MJPEG camera: `seconds` of a 25 fps test pattern at `size`, sent in
/// real time as multipart JPEGs to the first client. Returns the server
/// and its URL.
pub fn mjpeg_camera(size: &str, seconds: u32) -> (Killed, String) {
    let port = super::closed_port();
    let url = format!("http://127.0.0.1:{port}/cam");
    let args = format!(
        "-re -f lavfi -i testsrc2=size={size}:rate=25 -t {seconds} -c:v mjpeg -q:v 3 \
         -f mpjpeg -content_type multipart/x-mixed-replace;boundary=ffmpeg"
    );
    (ffmpeg_listen(port, &args, &url), url)
}

/// Waits until something listens on 127.0.0.1:`port`, reading the kernel's
/// socket table: connecting to look would use up ffmpeg's only client.
pub fn wait_listening(port: u16) {
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if table.contains(&needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}
