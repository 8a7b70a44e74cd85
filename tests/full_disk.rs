//! Outputs on a full disk: a small tmpfs mounted inside a temp folder
//! (root only; skipped with a reason otherwise). Each output must fail
//! with one line naming it and "No space left on device", leave files that
//! are whole up to their last segment, fragment or tag, and count in that
//! line exactly the frames ffprobe reads from what is left.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmpfs of `kib` KiB, unmounted (and its folder removed) when dropped.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn new(kib: u32) -> Option<SmallDisk> {
        // SAFETY: a plain query of the process's user id.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempdir();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        let out = run_limited(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
                .arg(&mount),
            Duration::from_secs(20),
        );
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(SmallDisk { _dir: dir, mount })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// 8 s of 320x240 H.264 with a keyframe a second (about 300 KB), made
/// outside the small disk.
fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    ffmpeg_make(
        &path,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 8 -c:v libx264 -preset veryfast \
         -pix_fmt yuv420p -g 25",
    );
    path
}

/// The error line, which must name `output` and the full disk; returns
/// the frame count it gives.
fn full_disk_error(out: &std::process::Output, source: &str, output: &Path) -> u64 {
    let line = assert_one_line_error(out, source, "No space left on device");
    assert!(
        line.contains(path_str(output)),
        "{line:?} does not name the output"
    );
    // "... (N frames ...)"
    let count = line
        .rsplit_once(" (")
        .and_then(|(_, tail)| tail.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    count.unwrap_or_else(|| panic!("no frame count in {line:?}"))
}

/// ffprobe's frame and packet counts of `path`, which must read without
/// errors (a partial file makes ffprobe complain).
fn ffprobe_counts(path: &Path) -> (u64, u64) {
    let out = run_limited(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets",
            "-of",
            "csv=p=0",
            path_str(path),
        ]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffprobe: {stderr}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("counts");
    let mut n = line
        .trim()
        .trim_end_matches(',')
        .split(',')
        .map(|v| v.parse::<u64>().expect("a count"));
    (n.next().expect("frames"), n.next().expect("packets"))
}

fn camflow_fails(args: &[&str]) -> std::process::Output {
    let out = camflow_run(args);
    assert!(!out.status.success(), "camflow succeeded on a full disk");
    out
}

#[test]
fn record_on_a_full_disk_keeps_whole_fragments_and_counts_them() {
    let Some(disk) = SmallDisk::new(160) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let out_path = disk.path("r.mp4");
    let out = camflow_fails(&["record", path_str(&src), "-o", path_str(&out_path)]);
    let said = full_disk_error(&out, "clip.mp4", &out_path);
    let (frames, packets) = ffprobe_counts(&out_path);
    assert!(frames > 0 && frames < 200, "{frames} frames");
    assert_eq!(said, frames);
    assert_eq!(packets, frames);
    ffmpeg_decodes_cleanly(&out_path);
}

#[test]
fn transcode_to_flv_on_a_full_disk_keeps_whole_tags_and_counts_them() {
    let Some(disk) = SmallDisk::new(160) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let out_path = disk.path("t.flv");
    for extra in [&[][..], &["--bitrate", "600k"][..]] {
        let mut args = vec![
            "transcode",
            path_str(&src),
            "--to",
            "flv",
            "-o",
            path_str(&out_path),
        ];
        args.extend_from_slice(extra);
        let out = camflow_fails(&args);
        let said = full_disk_error(&out, "clip.mp4", &out_path);
        let (frames, packets) = ffprobe_counts(&out_path);
        assert!(frames > 0 && frames < 200, "{extra:?}: {frames} frames");
        assert_eq!(said, frames, "{extra:?}");
        assert_eq!(packets, frames, "{extra:?}");
        ffmpeg_decodes_cleanly(&out_path);
        std::fs::remove_file(&out_path).expect("remove");
    }
}

/// `transcode --to mp4` writes fragmented MP4, as `record` does: an index
/// at the end would be lost with the disk full, and nothing would play.
#[test]
fn transcode_to_mp4_on_a_full_disk_keeps_whole_fragments_and_counts_them() {
    let Some(disk) = SmallDisk::new(160) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let out_path = disk.path("t.mp4");
    for extra in [&[][..], &["--bitrate", "600k"][..]] {
        let mut args = vec![
            "transcode",
            path_str(&src),
            "--to",
            "mp4",
            "-o",
            path_str(&out_path),
        ];
        args.extend_from_slice(extra);
        let out = camflow_fails(&args);
        let said = full_disk_error(&out, "clip.mp4", &out_path);
        let (frames, packets) = ffprobe_counts(&out_path);
        assert!(frames > 0 && frames < 200, "{extra:?}: {frames} frames");
        assert_eq!(said, frames, "{extra:?}");
        assert_eq!(packets, frames, "{extra:?}");
        ffmpeg_decodes_cleanly(&out_path);
        std::fs::remove_file(&out_path).expect("remove");
    }
}

/// A disk that takes the header but not the first fragment: nothing would
/// play, so no file is left.
#[test]
fn transcode_to_mp4_that_fits_no_fragment_leaves_no_file() {
    let Some(disk) = SmallDisk::new(8) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let out_path = disk.path("t.mp4");
    let out = camflow_fails(&[
        "transcode",
        path_str(&src),
        "--to",
        "mp4",
        "-o",
        path_str(&out_path),
    ]);
    let line = assert_one_line_error(&out, "clip.mp4", "No space left on device");
    assert!(
        line.contains(&format!(
            "no fragment was written whole; {} was not created",
            path_str(&out_path)
        )),
        "{line:?}"
    );
    assert!(!out_path.exists(), "a file without a fragment is left");
    assert_eq!(files_in(&disk.mount), Vec::<String>::new());
}

/// Names in `dir`: a temporary file left behind shows here.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// A full disk before the first whole tag or fragment: an earlier file at
/// the output path is left as it was (it used to be truncated when the
/// output opened, and then removed as a file holding no video).
#[test]
fn transcode_on_a_disk_too_full_for_one_frame_keeps_an_earlier_file() {
    let Some(disk) = SmallDisk::new(8) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    for (to, unit) in [("flv", "frame"), ("mp4", "fragment")] {
        let out_path = disk.path(&format!("old.{to}"));
        let before = b"an earlier file, no video of this run".to_vec();
        std::fs::write(&out_path, &before).expect("the earlier file");
        let out = camflow_fails(&[
            "transcode",
            path_str(&src),
            "--to",
            to,
            "-o",
            path_str(&out_path),
        ]);
        let line = assert_one_line_error(&out, "clip.mp4", "No space left on device");
        assert!(
            line.contains(&format!(
                "no {unit} was written whole; the earlier {} was left as it was",
                path_str(&out_path)
            )),
            "{line:?}"
        );
        assert_eq!(std::fs::read(&out_path).expect("the earlier file"), before);
        assert_eq!(files_in(&disk.mount), vec![format!("old.{to}")]);
        std::fs::remove_file(&out_path).expect("remove");
    }
}

/// The WebSocket camera's fMP4 is recorded as it comes; the file is cut
/// back to its last whole fragment and the count is of frames, not
/// fragments.
#[test]
fn record_of_a_websocket_camera_on_a_full_disk_keeps_whole_fragments_and_counts_frames() {
    let Some(disk) = SmallDisk::new(160) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    // The clip's H.264 is sent as it is, a fragment per second (about
    // 300 KB in all, more than the disk holds).
    let cam = Camera::start(&["--input", path_str(&src)]);
    let out_path = disk.path("r.mp4");
    let out = camflow_fails(&["record", &cam.url, "-o", path_str(&out_path)]);
    let said = full_disk_error(&out, &cam.url, &out_path);
    let (frames, packets) = ffprobe_counts(&out_path);
    assert!(frames > 0 && frames < 200, "{frames} frames");
    assert_eq!(said, frames);
    assert_eq!(packets, frames);
    ffmpeg_decodes_cleanly(&out_path);
}

/// Every segment in `dir` is listed in the playlist, which is ended.
fn assert_hls_whole(dir: &Path) {
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).expect("playlist");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let listed: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!listed.is_empty(), "{playlist}");
    for e in std::fs::read_dir(dir).expect("dir") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        if name.ends_with(".m4s") {
            assert!(listed.contains(&name.as_str()), "{name} is left unlisted");
        }
        assert!(!name.ends_with(".tmp"), "{name} is left");
    }
}

fn hls_on_a_full_disk(extra: &[&str]) {
    let Some(disk) = SmallDisk::new(160) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let dir = disk.path("hls");
    let mut args = vec!["hls", path_str(&src), "--out", path_str(&dir)];
    args.extend_from_slice(extra);
    let out = camflow_fails(&args);
    let playlist = dir.join("index.m3u8");
    let said = full_disk_error(&out, "clip.mp4", &playlist);
    assert_hls_whole(&dir);
    let (frames, packets) = ffprobe_counts(&playlist);
    assert!(frames > 0 && frames < 200, "{frames} frames");
    assert_eq!(said, frames);
    assert_eq!(packets, frames);
    ffmpeg_decodes_cleanly(&playlist);
}

#[test]
fn hls_vod_on_a_full_disk_lists_whole_segments_and_counts_them() {
    hls_on_a_full_disk(&["--vod"]);
}

#[test]
fn hls_live_on_a_full_disk_lists_whole_segments_and_counts_them() {
    hls_on_a_full_disk(&["--window", "6"]);
}

/// A window smaller than what was written: the playlist lists its last
/// whole segments, and the count is of those.
#[test]
fn hls_live_on_a_full_disk_lists_the_window_of_whole_segments() {
    // Two 1 s segments fill it: the muxer has deleted the first by then.
    let Some(disk) = SmallDisk::new(80) else {
        return;
    };
    let work = tempdir();
    let src = clip(work.path());
    let dir = disk.path("hls");
    let out = camflow_fails(&[
        "hls",
        path_str(&src),
        "--out",
        path_str(&dir),
        "--window",
        "1",
        "--segment-seconds",
        "1",
    ]);
    let playlist = dir.join("index.m3u8");
    let said = full_disk_error(&out, "clip.mp4", &playlist);
    let text = std::fs::read_to_string(&playlist).expect("playlist");
    assert_eq!(text.matches("#EXTINF").count(), 1, "{text}");
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    assert!(
        !dir.join("seg00000.m4s").exists(),
        "the window did not slide"
    );
    let (frames, _) = ffprobe_counts(&playlist);
    assert_eq!(said, frames);
    ffmpeg_decodes_cleanly(&playlist);
}
