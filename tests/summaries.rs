//! What `record` and `decode` say at the end agrees with ffprobe: a
//! recording's length, and a file that is cut short.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// ffprobe's length of a file, seconds.
fn ffprobe_duration(path: &std::path::Path) -> f64 {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration"])
            .args(["-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a duration")
}

#[test]
fn record_at_1_fps_reports_the_length_ffprobe_reads() {
    let dir = tempdir();
    let src = dir.path().join("one-fps.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=1 -t 10 -c:v libx264 -g 1 -pix_fmt yuv420p",
    );
    let out_path = dir.path().join("r.mp4");
    let out = camflow_run(&[
        "record",
        path_str(&src),
        "-o",
        path_str(&out_path),
        "--duration",
        "3",
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let length = ffprobe_duration(&out_path);
    assert!((length - 3.0).abs() < 0.01, "ffprobe reads {length} s");
    assert!(
        stderr.contains("recorded 3 video frames (3.0 s)"),
        "{stderr}"
    );
}

#[test]
fn a_truncated_mp4_decodes_what_it_holds_with_a_warning() {
    let dir = tempdir();
    let whole = dir.path().join("whole.mp4");
    ffmpeg_make(
        &whole,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -c:v libx264 -pix_fmt yuv420p \
         -movflags +faststart",
    );
    let bytes = std::fs::read(&whole).expect("read");
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let frames = tempdir();
    let out = camflow_run(&[
        "decode",
        path_str(&cut),
        "--frames-dir",
        path_str(frames.path()),
    ]);
    // The pictures before the cut are good data: exit 0, and one warning
    // line naming the file, as the ffmpeg CLI warns "partial file".
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(path_str(&cut)) && warnings[0].contains("partial file"),
        "{stderr}"
    );
    let n = assert_frames_complete(frames.path());
    assert!(n > 0 && n < 100, "{n} frames");
    // Every picture ffmpeg gets out of it, the ones still held for
    // reordering at the cut included, and the same pixels.
    let mad = worst_mad_against_ffmpeg(&cut, frames.path(), 320, 240);
    assert!(mad == 0.0, "mean difference {mad}");

    // The whole file: no warning.
    let frames = tempdir();
    let out = camflow_run(&[
        "decode",
        path_str(&whole),
        "--frames-dir",
        path_str(frames.path()),
    ]);
    assert_ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}
