//! A rotated video (a display matrix, as phones write) into FLV, which has
//! no place for the matrix: re-encoded, the pictures are turned upright as
//! the ffmpeg CLI's autorotate turns them; copied, one warning says the
//! player will show them as stored.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// ffprobe's width and height of the first video stream.
fn size_of(path: &Path) -> (u32, u32) {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.trim().split(',').map(|v| v.parse().expect("a number"));
    (f.next().expect("width"), f.next().expect("height"))
}

/// The first picture of `path` as BGR, as the ffmpeg CLI shows it
/// (autorotate on, its default).
fn first_picture(path: &Path) -> Vec<u8> {
    let out = run_limited(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-frames:v", "1", "-pix_fmt", "bgr24", "-f", "rawvideo", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "picture sizes differ");
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[test]
fn rotated_video_reencoded_to_flv_is_upright_as_ffmpeg_shows_it() {
    let dir = tempdir();
    let src = dir.path().join("src.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=646x362:rate=25 -t 1 -c:v libx264 -preset veryfast \
         -pix_fmt yuv420p",
    );
    for angle in [90u32, 180, 270] {
        let rotated = dir.path().join(format!("rot{angle}.mp4"));
        ffmpeg_make(
            &rotated,
            &format!("-i {} -c copy -metadata:s:v rotate={angle}", path_str(&src)),
        );
        let flv = dir.path().join(format!("rot{angle}.flv"));
        let out = camflow_run(&[
            "transcode",
            path_str(&rotated),
            "--to",
            "flv",
            "-o",
            path_str(&flv),
            "--bitrate",
            "2M",
        ]);
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("warning"), "{stderr}");
        // `ffmpeg -i rot.mp4 out.flv` gives 362x646 for a quarter turn.
        let want = if angle == 180 { (646, 362) } else { (362, 646) };
        assert_eq!(size_of(&flv), want, "rotate={angle}");
        // The same picture as ffmpeg shows the source, up to the encoding:
        // a picture turned the wrong way differs by tens.
        let d = mean_abs_diff(&first_picture(&flv), &first_picture(&rotated));
        assert!(d < 3.0, "rotate={angle}: mean difference {d}");
    }
}

#[test]
fn rotated_video_copied_to_flv_warns_once_that_it_plays_as_stored() {
    let dir = tempdir();
    let src = dir.path().join("src.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v libx264 -preset veryfast \
         -pix_fmt yuv420p",
    );
    let rotated = dir.path().join("rot.mp4");
    ffmpeg_make(
        &rotated,
        &format!("-i {} -c copy -metadata:s:v rotate=90", path_str(&src)),
    );
    let flv = dir.path().join("copy.flv");
    let out = camflow_run(&[
        "transcode",
        path_str(&rotated),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("FLV") && warnings[0].contains("upright"),
        "{stderr}"
    );
    assert!(stderr.contains("H.264 copied"), "{stderr}");
    assert_eq!(size_of(&flv), (320, 240));

    // Unrotated: no warning.
    let out = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]);
    assert_ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}
