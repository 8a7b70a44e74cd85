//! Raw-MJPEG cameras over TCP (`tcp://`, and `vbc://` with the Canon VB
//! handshake) against the built-in camera: decode, --save-jpeg, record,
//! probe, and the faults such cameras have.

mod common;

use common::*;

/// Checks the test pattern in every frame: BGR bar colours and the frame
/// counter equal to the frame's index. (JPEG is lossier than the H.264 the
/// other tests see, hence the wider tolerance.)
const PATTERN_CHECK: &str = r#"
import sys, csv, numpy as np
d = sys.argv[1]
rows = list(csv.DictReader(open(d + '/frames.csv')))
bars = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)]
for i, r in enumerate(rows):
    a = np.load(d + '/' + r['file'])
    h, w, _ = a.shape
    for k, want in enumerate(bars):
        got = a[h // 4, w * k // 4 + w // 8].astype(int)
        assert np.abs(got - np.array(want)).max() <= 20, (i, k, got, want)
    y = (h - h // 8 + h) // 2
    n = 0
    for c in range(16):
        n = (n << 1) | int(a[y, (2 * c + 1) * w // 32, 1] > 128)
    assert n == i, ('frame', i, 'shows counter', n)
print(len(rows))
"#;

fn mjpeg_camera(protocol: &str, extra: &[&str]) -> Camera {
    let mut args = vec!["--protocol", protocol, "--size", "320x240", "--fps", "50"];
    args.extend_from_slice(extra);
    Camera::start(&args)
}

#[test]
fn tcp_and_vbc_cameras_with_exif_thumbnails_decode_to_bgr() {
    for protocol in ["tcp-mjpeg", "vbc"] {
        let cam = mjpeg_camera(protocol, &["--frames", "30", "--exif-thumbnail"]);
        let dir = decode_ok(&cam.url, &[]);
        assert_eq!(assert_frames_complete(dir.path()), 30, "{protocol}");
        assert_eq!(
            python(PATTERN_CHECK, &[path_str(dir.path())]).trim(),
            "30",
            "{protocol}"
        );
    }
}

#[test]
fn save_jpeg_writes_what_the_camera_sent_byte_for_byte() {
    let dir = tempdir();
    let src = dir.path().join("jpegs");
    std::fs::create_dir(&src).unwrap();
    ffmpeg_make(
        &src.join("img_%03d.jpg"),
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 12 -q:v 4",
    );
    let cam = Camera::start(&[
        "--protocol",
        "vbc",
        "--input",
        path_str(&src),
        "--fps",
        "50",
    ]);
    let out = decode_ok(&cam.url, &["--save-jpeg"]);
    let rows = csv_rows(out.path());
    assert_eq!(rows.len(), 12);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[1], format!("frame_{i:06}.jpg"));
        assert_eq!((r[4].as_str(), r[5].as_str()), ("320", "240"));
        let sent = std::fs::read(src.join(format!("img_{:03}.jpg", i + 1))).unwrap();
        let saved = std::fs::read(out.path().join(&r[1])).unwrap();
        assert!(sent == saved, "frame {i} differs from what the camera sent");
    }
}

#[test]
fn camera_dropping_the_connection_mid_jpeg_keeps_whole_frames_only() {
    let cam = mjpeg_camera(
        "tcp-mjpeg",
        &["--fault", "drop-mid-fragment", "--fault-after", "7"],
    );
    let dir = tempdir();
    let never = ["--reconnect", "never"];
    let mut args = vec!["decode", &cam.url, "--frames-dir", path_str(dir.path())];
    args.extend(never);
    let out = camflow_run(&args);
    assert_one_line_error(&out, &cam.url, "in the middle of a JPEG");
    assert_eq!(assert_frames_complete(dir.path()), 7);
    // The same with --save-jpeg, into a folder of its own.
    let jpegs = tempdir();
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(jpegs.path()),
        "--save-jpeg",
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &cam.url, "in the middle of a JPEG");
    let rows = csv_rows(jpegs.path());
    assert_eq!(rows.len(), 7);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[1], format!("frame_{i:06}.jpg"));
        let jpeg = std::fs::read(jpegs.path().join(&r[1])).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
    }
}

#[test]
fn camera_sending_bytes_but_no_jpeg_times_out() {
    let cam = mjpeg_camera("tcp-mjpeg", &["--fault", "garbage", "--fault-after", "3"]);
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(dir.path()),
        "--timeout",
        "1",
        "--reconnect",
        "never",
    ]);
    assert_one_line_error(&out, &cam.url, "no JPEG for 1 s");
    assert_eq!(assert_frames_complete(dir.path()), 3);
}

#[test]
fn record_of_an_mjpeg_camera_keeps_every_jpeg() {
    let cam = mjpeg_camera("tcp-mjpeg", &["--frames", "40"]);
    let dir = tempdir();
    let mp4 = dir.path().join("cam.mp4");
    assert_ok(&camflow_run(&["record", &cam.url, "-o", path_str(&mp4)]));
    assert_eq!(ffprobe_frames(&mp4), 40);
    ffmpeg_decodes_vfr_cleanly(&mp4);
}

#[test]
fn probe_reports_size_and_rate_of_an_mjpeg_camera() {
    let cam = mjpeg_camera("vbc", &[]);
    let out = camflow_run(&["probe", &cam.url, "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["protocol"], "vbc");
    let s = &v["streams"][0];
    assert_eq!(s["codec"], "mjpeg");
    assert_eq!(s["width"], 320);
    assert_eq!(s["height"], 240);
    let fps = s["fps"].as_f64().unwrap();
    assert!(fps > 20.0, "{fps}");
}

#[test]
fn save_jpeg_refuses_a_source_that_is_not_mjpeg() {
    let cam = Camera::start(&["--size", "320x240"]);
    let dir = tempdir();
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(dir.path()),
        "--save-jpeg",
    ]);
    assert_one_line_error(&out, &cam.url, "--save-jpeg needs an MJPEG source");
}

#[test]
fn mjpeg_file_decodes_with_both_decoders_close_to_ffmpeg() {
    let dir = tempdir();
    let src = dir.path().join("cam.mjpeg");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v mjpeg -q:v 3 -f mjpeg",
    );
    for (decoder, limit) in [("libav", 1.0), ("turbojpeg", 4.0)] {
        let frames = decode_ok(path_str(&src), &["--jpeg-decoder", decoder]);
        assert_eq!(assert_frames_complete(frames.path()), 25, "{decoder}");
        let rows = csv_rows(frames.path());
        assert_eq!(
            rows[1][2], "0.040000",
            "{decoder}: 25 fps assumed for a file"
        );
        let mad = worst_mad_against_ffmpeg(&src, frames.path(), 320, 240);
        // libavcodec + swscale match the ffmpeg CLI; libjpeg-turbo upsamples
        // chroma its own way.
        assert!(mad <= limit, "{decoder}: mean abs difference {mad}");
    }
}

#[test]
fn broken_jpegs_from_a_tcp_camera_are_counted_in_the_summary() {
    let dir = tempdir();
    let src = dir.path().join("jpegs");
    std::fs::create_dir(&src).unwrap();
    ffmpeg_make(
        &src.join("img_%03d.jpg"),
        "-f lavfi -i testsrc2=size=160x120:rate=25 -frames:v 10 -q:v 4",
    );
    // The fifth picture cut short in its scan: the splitter drops it when
    // the sixth one's SOI comes.
    let cut = src.join("img_005.jpg");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for protocol in ["tcp-mjpeg", "vbc"] {
        let cam = Camera::start(&[
            "--protocol",
            protocol,
            "--input",
            path_str(&src),
            "--fps",
            "50",
        ]);
        let frames = tempdir();
        let out = camflow_run(&["decode", &cam.url, "--frames-dir", path_str(frames.path())]);
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("wrote 9 frames"), "{protocol}: {stderr}");
        assert!(
            stderr.contains("(1 broken JPEG dropped)"),
            "{protocol}: {stderr}"
        );
        assert_eq!(assert_frames_complete(frames.path()), 9);
    }
}

#[test]
fn a_jpeg_libav_cannot_decode_is_counted_in_the_summary() {
    let dir = tempdir();
    let src = dir.path().join("jpegs");
    std::fs::create_dir(&src).unwrap();
    ffmpeg_make(
        &src.join("img_%03d.jpg"),
        "-f lavfi -i testsrc2=size=160x120:rate=25 -frames:v 8 -q:v 4",
    );
    // The fourth picture arithmetic-coded (cjpeg, libjpeg-turbo's encoder):
    // a whole, valid JPEG that libavcodec's decoder does not take.
    let ppm = dir.path().join("p.ppm");
    ffmpeg_make(&ppm, "-f lavfi -i testsrc2=size=160x120 -frames:v 1");
    let arith = run_limited(
        std::process::Command::new("cjpeg")
            .args(["-arithmetic", "-outfile"])
            .arg(src.join("img_004.jpg"))
            .arg(&ppm),
        std::time::Duration::from_secs(30),
    );
    assert_ok(&arith);
    let cam = Camera::start(&[
        "--protocol",
        "tcp-mjpeg",
        "--input",
        path_str(&src),
        "--fps",
        "50",
    ]);
    let frames = tempdir();
    let out = camflow_run(&[
        "decode",
        &cam.url,
        "--frames-dir",
        path_str(frames.path()),
        "--jpeg-decoder",
        "libav",
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrote 7 frames")
            && stderr.contains("1 JPEG that would not decode dropped"),
        "{stderr}"
    );
    assert_eq!(assert_frames_complete(frames.path()), 7);
}
