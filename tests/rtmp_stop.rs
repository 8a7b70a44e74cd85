//! Ctrl-C on a file pushed to an RTMP server at its own pace
//! (`--realtime`): a clean stop, as for every other output, with the
//! summary and exit 0 (nginx-rtmp as the server).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn ctrl_c_on_a_realtime_rtmp_push_is_a_clean_stop() {
    let nginx = common::nginx::NginxRtmp::start();
    let url = nginx.url("stop");
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "320x240", 20);
    for extra in [&[][..], &["--bitrate", "500k"][..]] {
        let mut child = Command::new(camflow())
            .args(["transcode", path_str(&src), "--to", "flv", "-o", &url])
            .arg("--realtime")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("camflow transcode");
        // Well into the push, which takes 20 s.
        std::thread::sleep(Duration::from_secs(3));
        let status = ctrl_c_and_wait(&mut child);
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            status.success(),
            "{extra:?}: {status}: {stderr}\n{}",
            nginx.error_log()
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{extra:?}: {stderr}");
        assert!(
            lines[0].contains("wrote") && lines[0].contains("rtmp://127.0.0.1:"),
            "{extra:?}: no summary: {stderr}"
        );
        assert!(!lines[0].contains("frames (0.0 s)"), "{extra:?}: {stderr}");
    }
}
