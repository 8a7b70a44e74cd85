//! A cut-short MP4 (a copy or a recording that stopped part-way) copied by
//! `record`, `hls` and `transcode`: one "partial file" warning, the picture
//! the cut runs through left out, and a count equal to what ffprobe reads
//! from the output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// (position, size) of every video packet of `path`, as ffprobe lists them.
fn packets(path: &Path) -> Vec<(u64, u64)> {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "packet=pos,size", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffprobe failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|v| v.trim().parse::<u64>().ok());
            // ffprobe prints the fields in its own order: size, then pos.
            let size = f.next()??;
            let pos = f.next()??;
            Some((pos, size))
        })
        .collect()
}

/// An MP4 with its index in front (as `-movflags faststart` writes, and
/// as phones and editors do), cut in the middle of a picture about half-way
/// through. Returns the cut file and how many pictures it holds whole.
fn cut_mp4(dir: &Path) -> (PathBuf, usize) {
    let whole = dir.join("whole.mp4");
    ffmpeg_make(
        &whole,
        "-f lavfi -i testsrc2=size=640x360:rate=25 -t 4 -c:v libx264 -preset veryfast \
         -pix_fmt yuv420p -g 25 -b:v 1M -movflags +faststart",
    );
    let bytes = std::fs::read(&whole).expect("read");
    let list = packets(&whole);
    assert!(list.len() == 100, "{} packets", list.len());
    // Half-way through the 51st picture's bytes.
    let (pos, size) = list[50];
    let cut_at = usize::try_from(pos + size / 2).expect("fits");
    let whole_before = list.iter().filter(|(p, s)| p + s <= pos + size / 2).count();
    assert_eq!(whole_before, 50, "pictures are stored in order");
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..cut_at]).expect("write");
    (cut, whole_before)
}

/// The count in the summary line (`... N video frames ...`).
fn summary_count(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(" video frame"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("frame"))
        .expect("a count");
    words[at - 2].parse().expect("a number")
}

/// Exit 0 (the pictures before the cut are good data), exactly one warning
/// line, naming the input and saying "partial file"; returns the count the
/// summary gives.
fn warned_once(out: &Output, input: &Path) -> u64 {
    assert_ok(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(path_str(input)) && warnings[0].contains("partial file"),
        "{stderr}"
    );
    summary_count(&stderr)
}

#[test]
fn record_of_a_cut_mp4_leaves_out_the_cut_picture_and_warns() {
    let dir = tempdir();
    let (cut, whole) = cut_mp4(dir.path());
    let out_path = dir.path().join("r.mp4");
    let out = camflow_run(&["record", path_str(&cut), "-o", path_str(&out_path)]);
    let said = warned_once(&out, &cut);
    // ffprobe_frames also fails on any decoding error (the cut picture
    // copied would give "Invalid NAL unit size").
    let read = ffprobe_frames(&out_path);
    assert_eq!(said, read, "the summary says {said}, ffprobe reads {read}");
    assert_eq!(read, whole as u64);

    // The same file whole: no warning.
    let whole_path = dir.path().join("whole.mp4");
    let out = camflow_run(&["record", path_str(&whole_path), "-o", path_str(&out_path)]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(summary_count(&stderr), 100, "{stderr}");
}

#[test]
fn hls_vod_of_a_cut_mp4_leaves_out_the_cut_picture_and_warns() {
    let dir = tempdir();
    let (cut, whole) = cut_mp4(dir.path());
    let hls = dir.path().join("hls");
    let out = camflow_run(&["hls", path_str(&cut), "--vod", "--out", path_str(&hls)]);
    let said = warned_once(&out, &cut);
    let read = ffprobe_frames(&hls.join("index.m3u8"));
    assert_eq!(said, read, "the summary says {said}, ffprobe reads {read}");
    assert_eq!(read, whole as u64);
}

#[test]
fn transcode_to_flv_of_a_cut_mp4_leaves_out_the_cut_picture_and_warns() {
    let dir = tempdir();
    let (cut, whole) = cut_mp4(dir.path());
    let flv = dir.path().join("t.flv");
    let out = camflow_run(&[
        "transcode",
        path_str(&cut),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]);
    let said = warned_once(&out, &cut);
    let read = ffprobe_frames(&flv);
    assert_eq!(said, read, "the summary says {said}, ffprobe reads {read}");
    assert_eq!(read, whole as u64);

    // Re-encoded, the decoder leaves the cut picture out: the same warning,
    // and a count that is what the file holds.
    let flv = dir.path().join("e.flv");
    let out = camflow_run(&[
        "transcode",
        path_str(&cut),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
        "--bitrate",
        "500k",
    ]);
    let said = warned_once(&out, &cut);
    let read = ffprobe_frames(&flv);
    assert_eq!(said, read, "the summary says {said}, ffprobe reads {read}");
}
