//! Every pixel as the reference decoders give it: `camflow decode` against
//! `ffmpeg -i X -f rawvideo -pix_fmt bgr24 -` (libav paths) and against
//! libjpeg-turbo's own `djpeg` (the turbojpeg path), at every even width
//! from 320 to 1300, in BT.601 and BT.709 at both ranges, 10-bit H.264,
//! VP9, MJPEG, and rotated video. Plus: a rotation survives `record` and
//! `hls`, and `probe` shows it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::mpjpeg::ffmpeg_listen;
use common::*;

/// The most a frame may differ from the reference: mean absolute
/// difference per sample, and the largest single difference.
const MAX_MEAN: f64 = 0.5;
const MAX_ABS: u32 = 2;

/// Compares the frames of a `decode` folder, in frames.csv order, with
/// what a reference decoder gives, frame by frame: `ffmpeg ARGS -f rawvideo
/// -pix_fmt bgr24 -` (cut into frames of each .npy's shape, so a frame of
/// the wrong size fails), or `djpeg` of each given JPEG file.
const COMPARE: &str = r#"
import sys, csv, json, subprocess, numpy as np
d, mode, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rows = list(csv.DictReader(open(d + '/frames.csv')))
frames = [np.load(d + '/' + r['file']) for r in rows]
if mode == 'ffmpeg':
    raw = subprocess.run(['ffmpeg', '-v', 'error', *arg, '-f', 'rawvideo', '-pix_fmt', 'bgr24', '-'],
                         check=True, capture_output=True).stdout
    refs, pos = [], 0
    for f in frames:
        n = f.size
        if pos + n > len(raw):
            break
        refs.append(np.frombuffer(raw, np.uint8, n, pos).reshape(f.shape))
        pos += n
    left = len(raw) - pos
else:
    refs, left = [], 0
    for path in arg:
        ppm = subprocess.run(['djpeg', '-ppm', path], check=True, capture_output=True).stdout
        parts = ppm.split(maxsplit=4)
        w, h = int(parts[1]), int(parts[2])
        refs.append(np.frombuffer(parts[4], np.uint8, w * h * 3).reshape(h, w, 3)[:, :, ::-1])
worst, biggest, where = 0.0, 0, ''
for i, (f, r) in enumerate(zip(frames, refs)):
    if f.shape != r.shape:
        print(f'error frame {i}: shape {f.shape}, reference {r.shape}')
        sys.exit(0)
    diff = np.abs(f.astype(int) - r.astype(int))
    if diff.mean() > worst or diff.max() > biggest:
        cols = np.nonzero(diff.max(axis=(0, 2)))[0]
        if len(cols):
            where = f'frame {i} ({f.shape[1]}x{f.shape[0]}), columns {cols.min()}..{cols.max()}'
    worst, biggest = max(worst, float(diff.mean())), max(biggest, int(diff.max()))
print('frames', len(frames))
print('refs', len(refs))
print('left', left)
print('mean', worst)
print('max', biggest)
print('where', where)
for f in frames:
    print('size', f.shape[1], f.shape[0])
"#;

#[derive(Debug)]
struct Diff {
    frames: usize,
    sizes: Vec<(u32, u32)>,
}

/// Runs [`COMPARE`] and asserts the frames match their references in
/// number, size and pixels; returns what was compared.
fn assert_matches(what: &str, frames: &Path, mode: &str, arg: &[String]) -> Diff {
    let json = format!(
        "[{}]",
        arg.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = python(COMPARE, &[path_str(frames), mode, &json]);
    assert!(!out.starts_with("error"), "{what}: {out}");
    // Lines of "key value".
    let v = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{what}: no {key} in {out}"))
            .to_string()
    };
    let n: usize = v("frames").parse().unwrap();
    let refs: usize = v("refs").parse().unwrap();
    let left: usize = v("left").parse().unwrap();
    let mean: f64 = v("mean").parse().unwrap();
    let max: u32 = v("max").parse().unwrap();
    assert!(n > 0, "{what}: no frames");
    assert_eq!(n, refs, "{what}: {n} frames, the reference has {refs}");
    assert_eq!(left, 0, "{what}: the reference has more frames");
    assert!(
        mean <= MAX_MEAN && max <= MAX_ABS,
        "{what}: mean abs difference {mean}, max {max} (worst at {})",
        v("where")
    );
    let sizes = out
        .lines()
        .filter_map(|l| l.strip_prefix("size "))
        .map(|p| {
            let (w, h) = p.split_once(' ').expect("w h");
            (w.parse().unwrap(), h.parse().unwrap())
        })
        .collect();
    Diff { frames: n, sizes }
}

/// `camflow decode SRC EXTRA` against `ffmpeg FFMPEG_ARGS -i SRC`.
fn decode_matches_ffmpeg(what: &str, src: &Path, extra: &[&str], ffmpeg_args: &[&str]) -> Diff {
    let frames = decode_ok(path_str(src), extra);
    let mut args: Vec<String> = ffmpeg_args.iter().map(|s| s.to_string()).collect();
    args.extend(["-i".to_string(), path_str(src).to_string()]);
    assert_matches(what, frames.path(), "ffmpeg", &args)
}

/// The black right edge: FFmpeg 5.1's x86 YUV→RGB converter skipped the
/// last 2–6 columns when width mod 16 was 2, 4 or 6 (854x480, 16:9
/// 480p, among them). Every even width from 320 to 1300, one frame each,
/// a test pattern with detail up to the right edge. The widths go in
/// batches, each one raw H.264 stream whose pictures change size (one
/// ffmpeg, one camflow, one reference ffmpeg per batch).
#[test]
fn every_width_from_320_to_1300_matches_ffmpeg() {
    let widths: Vec<u32> = (320..=1300).step_by(2).collect();
    let batches: Vec<&[u32]> = widths.chunks(62).collect();
    let dir = tempdir();
    std::thread::scope(|s| {
        // Two at a time: each runs three processes in a row.
        for pair in batches.chunks(2) {
            let handles: Vec<_> = pair
                .iter()
                .map(|batch| s.spawn(|| width_batch(dir.path(), batch)))
                .collect();
            for h in handles {
                h.join().expect("batch");
            }
        }
    });
}

fn width_batch(dir: &Path, widths: &[u32]) {
    let first = widths[0];
    let height = 32;
    // One encoder per width, from one test pattern cropped at the left.
    let mut graph = format!("[0:v]split={}", widths.len());
    for i in 0..widths.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1300x{height}:rate=25"));
    let mut outs = Vec::new();
    for (i, w) in widths.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]crop={w}:{height}:0:0[o{i}]"));
        let out = dir.join(format!("w{w}.h264"));
        outs.push(out);
    }
    cmd.arg("-filter_complex").arg(&graph);
    for (i, out) in outs.iter().enumerate() {
        cmd.args(["-map", &format!("[o{i}]"), "-frames:v", "1"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1"])
            .args(["-pix_fmt", "yuv420p", "-f", "h264"])
            .arg(out);
    }
    let made = run_limited(&mut cmd, Duration::from_secs(120));
    assert!(
        made.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let all = dir.join(format!("from{first}.h264"));
    let mut bytes = Vec::new();
    for out in &outs {
        bytes.extend(std::fs::read(out).expect("clip"));
    }
    std::fs::write(&all, bytes).expect("write");
    // The reference keeps each picture's own size (no scaling to the
    // first one's).
    let frames = decode_ok(path_str(&all), &["--quiet"]);
    let args = ["-i", path_str(&all), "-autoscale", "0"].map(String::from);
    let what = format!("widths {first}..{}", widths[widths.len() - 1]);
    let diff = assert_matches(&what, frames.path(), "ffmpeg", &args);
    let want: Vec<(u32, u32)> = widths.iter().map(|w| (*w, height)).collect();
    assert_eq!(diff.sizes, want);
}

/// SMPTE bars tagged BT.601 or BT.709, limited or full range: the matrix
/// and range come from the stream, as the ffmpeg CLI takes them (most HD
/// cameras send BT.709; decoding it as BT.601 was 6 levels off on
/// average, 30 at most).
#[test]
fn bt601_and_bt709_at_both_ranges_match_ffmpeg() {
    let dir = tempdir();
    for (space, range) in [
        ("bt709", "tv"),
        ("bt709", "pc"),
        ("smpte170m", "tv"),
        ("bt470bg", "pc"),
    ] {
        let src = dir.path().join(format!("{space}-{range}.mp4"));
        ffmpeg_make(
            &src,
            &format!(
                "-f lavfi -i smptebars=size=320x240:rate=25 -t 0.2 -c:v libx264 -pix_fmt yuv420p \
                 -colorspace {space} -color_range {range}"
            ),
        );
        let d = decode_matches_ffmpeg(&format!("{space} {range}"), &src, &[], &[]);
        assert_eq!(d.frames, 5);
    }
}

/// 10-bit H.264 in 4:2:0, 4:2:2 and 4:4:4 (tagged BT.709), and untagged
/// 10-bit: swscale's general path, where the filter (ffmpeg: bicubic)
/// matters.
#[test]
fn ten_bit_h264_matches_ffmpeg() {
    let dir = tempdir();
    for (fmt, tag) in [
        ("yuv420p10le", "-colorspace bt709"),
        ("yuv422p10le", "-colorspace bt709"),
        ("yuv444p10le", "-colorspace bt709"),
        ("yuv420p10le", ""),
    ] {
        let src = dir.path().join(format!("{fmt}{}.mp4", tag.len()));
        ffmpeg_make(
            &src,
            &format!(
                "-f lavfi -i testsrc2=size=326x240:rate=25 -t 0.2 -c:v libx264 -pix_fmt {fmt} {tag}"
            ),
        );
        decode_matches_ffmpeg(&format!("{fmt} {tag}"), &src, &[], &[]);
    }
}

/// VP9 in WebM and MJPEG in AVI go through libavformat and libavcodec.
#[test]
fn vp9_and_mjpeg_files_match_ffmpeg() {
    let dir = tempdir();
    let vp9 = dir.path().join("cam.webm");
    ffmpeg_make(
        &vp9,
        "-f lavfi -i testsrc2=size=854x240:rate=25 -t 0.2 -c:v libvpx-vp9 -deadline realtime",
    );
    decode_matches_ffmpeg("vp9", &vp9, &[], &[]);
    let avi = dir.path().join("cam.avi");
    ffmpeg_make(
        &avi,
        "-f lavfi -i testsrc2=size=854x240:rate=25 -t 0.2 -c:v mjpeg -q:v 3",
    );
    decode_matches_ffmpeg("mjpeg in avi", &avi, &[], &[]);
}

/// JPEGs made by ffmpeg, each kept as a file, and the same bytes back to
/// back as an MJPEG stream (what a camera sends).
fn jpegs(dir: &Path, size: &str) -> (Vec<PathBuf>, PathBuf) {
    let pattern = dir.join("j%03d.jpg");
    ffmpeg_make(
        &pattern,
        &format!("-f lavfi -i testsrc2=size={size}:rate=25 -frames:v 6 -c:v mjpeg -q:v 3"),
    );
    let files: Vec<PathBuf> = (1..=6).map(|i| dir.join(format!("j{i:03}.jpg"))).collect();
    let stream = dir.join("cam.mjpeg");
    let mut bytes = Vec::new();
    for f in &files {
        bytes.extend(std::fs::read(f).expect("jpeg"));
    }
    std::fs::write(&stream, bytes).expect("write");
    (files, stream)
}

/// MJPEG cameras' pictures: libavcodec's decoder (`--jpeg-decoder libav`)
/// against the ffmpeg CLI, libjpeg-turbo (the default) against its own
/// `djpeg`, on the same JPEG bytes; at a width (854) where the converter
/// dropped columns.
#[test]
fn mjpeg_stream_matches_ffmpeg_and_djpeg() {
    let dir = tempdir();
    let (files, stream) = jpegs(dir.path(), "854x240");
    let files: Vec<String> = files.iter().map(|f| path_str(f).to_string()).collect();
    let libav = decode_ok(path_str(&stream), &["--jpeg-decoder", "libav"]);
    let args = ["-f", "mjpeg", "-i", path_str(&stream)].map(String::from);
    let d = assert_matches("libav mjpeg", libav.path(), "ffmpeg", &args);
    assert_eq!(d.frames, 6);
    let turbo = decode_ok(path_str(&stream), &[]);
    let d = assert_matches("turbojpeg", turbo.path(), "djpeg", &files);
    assert_eq!(d.frames, 6);
}

/// The same JPEGs from ffmpeg as an MJPEG-over-HTTP camera (`-c copy`, so
/// the bytes are the files'), decoded by libjpeg-turbo.
#[test]
fn mjpeg_camera_over_http_matches_djpeg() {
    let dir = tempdir();
    let (files, stream) = jpegs(dir.path(), "658x120");
    let files: Vec<String> = files.iter().map(|f| path_str(f).to_string()).collect();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/cam");
    let args = format!(
        "-f mjpeg -i {} -c copy -f mpjpeg -content_type multipart/x-mixed-replace;boundary=ffmpeg",
        path_str(&stream)
    );
    let _camera = ffmpeg_listen(port, &args, &url);
    let frames = decode_ok(&url, &["--quiet"]);
    let d = assert_matches("turbojpeg over http", frames.path(), "djpeg", &files);
    assert_eq!(d.frames, 6);
}

/// A file as phones write it: a display matrix in the track header.
/// `rotate` is ffmpeg's name for it (`-metadata:s:v rotate=N`; ffprobe then
/// says `rotation=N`, counter-clockwise).
fn rotated_file(dir: &Path, rotate: u32) -> PathBuf {
    let plain = dir.join("plain.mp4");
    if !plain.exists() {
        ffmpeg_make(
            &plain,
            "-f lavfi -i testsrc2=size=326x240:rate=25 -t 0.2 -c:v libx264 -pix_fmt yuv420p",
        );
    }
    let out = dir.join(format!("rot{rotate}.mp4"));
    ffmpeg_make(
        &out,
        &format!(
            "-i {} -c copy -metadata:s:v rotate={rotate}",
            path_str(&plain)
        ),
    );
    out
}

/// Frames are turned as the ffmpeg CLI's autorotate turns them (sizes in
/// frames.csv too), and `--no-autorotate` keeps them as stored, as
/// `ffmpeg -noautorotate` does.
#[test]
fn rotated_video_is_turned_as_ffmpeg_turns_it() {
    let dir = tempdir();
    for (rotate, size) in [(90, (240, 326)), (180, (326, 240)), (270, (240, 326))] {
        let src = rotated_file(dir.path(), rotate);
        let d = decode_matches_ffmpeg(&format!("rotate={rotate}"), &src, &[], &[]);
        assert!(
            d.sizes.iter().all(|s| *s == size),
            "{rotate}: {:?}",
            d.sizes
        );
        let frames = decode_ok(path_str(&src), &["--no-autorotate"]);
        let csv = std::fs::read_to_string(frames.path().join("frames.csv")).unwrap();
        let args = ["-noautorotate", "-i", path_str(&src)].map(String::from);
        let d = assert_matches(
            &format!("rotate={rotate} --no-autorotate"),
            frames.path(),
            "ffmpeg",
            &args,
        );
        assert!(d.sizes.iter().all(|s| *s == (326, 240)), "{csv}");
    }
}

/// Mirrored pictures (front cameras): a copy of `plain.mp4` with `matrix`
/// written into its one track header (version 0: the matrix is 40 bytes
/// into the box's body).
fn with_matrix(dir: &Path, name: &str, matrix: [i32; 9]) -> PathBuf {
    let plain = dir.join("plain.mp4");
    let mut bytes = std::fs::read(&plain).expect("plain.mp4");
    let at = bytes
        .windows(4)
        .position(|w| w == b"tkhd")
        .expect("a tkhd box");
    assert_eq!(bytes[at + 4], 0, "tkhd version 0");
    let m = at + 4 + 40;
    for (i, v) in matrix.iter().enumerate() {
        bytes[m + 4 * i..m + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    let out = dir.join(name);
    std::fs::write(&out, bytes).expect("write");
    out
}

/// Every branch of ffmpeg's autorotate: a horizontal and a vertical
/// mirror, and the two transposes that mirror (`cclock_flip`,
/// `clock_flip`).
#[test]
fn mirrored_video_is_turned_as_ffmpeg_turns_it() {
    let dir = tempdir();
    rotated_file(dir.path(), 90);
    let one = 1 << 16;
    for (name, a, b, c, d, size) in [
        ("hflip", -one, 0, 0, one, (326, 240)),
        ("vflip", one, 0, 0, -one, (326, 240)),
        ("cclock_flip", 0, one, one, 0, (240, 326)),
        ("clock_flip", 0, -one, -one, 0, (240, 326)),
    ] {
        let src = with_matrix(
            dir.path(),
            &format!("{name}.mp4"),
            [a, b, 0, c, d, 0, 0, 0, 1 << 30],
        );
        let d = decode_matches_ffmpeg(name, &src, &[], &[]);
        assert!(d.sizes.iter().all(|s| *s == size), "{name}: {:?}", d.sizes);
    }
}

/// ffprobe's rotation of a file's (or playlist's) video stream.
fn ffprobe_rotation(path: &Path) -> Option<i32> {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_streams"])
            .arg(path),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("rotation="))
        .and_then(|r| r.trim().parse().ok())
}

/// `record` and `hls` keep the display matrix (FFmpeg 5.1's own HLS muxer
/// drops it: `ffmpeg -c copy -f hls` output plays sideways), in stream
/// copy and when `hls` re-encodes; `probe` says how the picture is turned.
#[test]
fn record_hls_and_probe_keep_the_rotation() {
    let dir = tempdir();
    let src = rotated_file(dir.path(), 270);
    assert_eq!(ffprobe_rotation(&src), Some(-90), "the test file");

    let mp4 = dir.path().join("rec.mp4");
    assert_ok(&camflow_run(&[
        "record",
        path_str(&src),
        "-o",
        path_str(&mp4),
    ]));
    assert_eq!(ffprobe_rotation(&mp4), Some(-90), "record");

    for (name, extra) in [
        ("copy", vec![]),
        ("vod", vec!["--vod"]),
        ("encoded", vec!["--bitrate", "500k"]),
    ] {
        let out = dir.path().join(name);
        let mut args = vec!["hls", path_str(&src), "--out", path_str(&out)];
        args.extend(extra);
        assert_ok(&camflow_run(&args));
        assert_eq!(
            ffprobe_rotation(&out.join("init.mp4")),
            Some(-90),
            "hls {name}: init.mp4"
        );
        assert_eq!(
            ffprobe_rotation(&out.join("index.m3u8")),
            Some(-90),
            "hls {name}: the playlist"
        );
    }

    let probe = camflow_run(&["probe", path_str(&src)]);
    assert_ok(&probe);
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        text.contains("rotated 90° clockwise for display"),
        "probe: {text}"
    );
    let json = camflow_run(&["probe", path_str(&src), "--json"]);
    assert_ok(&json);
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(text.contains("\"rotation\": 90.0"), "probe --json: {text}");
}
