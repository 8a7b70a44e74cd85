//! H.265 end to end: files made by ffmpeg with libx265 (MP4, MPEG-TS,
//! Matroska) through `decode`, `record`, `hls`, `transcode --to flv` and
//! `probe`, each output refereed by ffprobe or the ffmpeg CLI; and H.265 as
//! coded packets (what an RTSP receiver hands on), with the `hvcC` record
//! built by `proto::hevc` from the stream's own parameter sets, through the
//! library's decode, record and transcode stages.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use camflow::packet::{Input, VideoCodec, VideoPacket, VideoParams};
use camflow::pipeline::{self, decode, encode, mux, remux, transcode};
use camflow::proto::hevc;
use common::*;

const X265: &str = "-c:v libx265 -x265-params log-level=none -pix_fmt yuv420p";

/// Two seconds of 320x240 at 25 fps in H.265, in the container `name`
/// says (`-f hevc` for a raw Annex B stream); `x265` adds x265 options.
fn make_h265(dir: &Path, name: &str, x265: &str) -> PathBuf {
    let path = dir.join(name);
    let raw = if name.ends_with(".hevc") {
        " -f hevc"
    } else {
        ""
    };
    let x265 = if x265.is_empty() {
        X265.to_string()
    } else {
        X265.replace("log-level=none", &format!("log-level=none:{x265}"))
    };
    ffmpeg_make(
        &path,
        &format!("-f lavfi -i testsrc2=size=320x240:rate=25 -t 2 {x265}{raw}"),
    );
    path
}

/// `ffmpeg -xerror` decodes `path` to the end with nothing on stderr.
fn decodes_strictly(path: &Path) {
    let out = run_limited(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-xerror",
            "-i",
            path_str(path),
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg -xerror on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `hvcC` record in an MP4 (or init segment) holds the VPS, SPS and
/// PPS; with `complete_wanted`, each array is marked complete, as an
/// `hvc1` sample entry asks. FFmpeg 5.1's mp4 muxer leaves the flag unset
/// in the records it builds itself (from Annex B, as in its own files),
/// which players accept; the record camflow builds for packets sets it.
fn assert_hvcc_has_parameter_sets(path: &Path, complete_wanted: bool) {
    let data = std::fs::read(path).expect("read mp4");
    let at = data
        .windows(4)
        .position(|w| w == b"hvcC")
        .unwrap_or_else(|| panic!("no hvcC in {}", path.display()));
    let size = u32::from_be_bytes(data[at - 4..at].try_into().unwrap()) as usize;
    let rec = &data[at + 4..at - 4 + size];
    assert_eq!(rec[21] & 3, 3, "4-byte length prefixes");
    let mut types = Vec::new();
    let mut rest = &rec[23..];
    for _ in 0..rec[22] {
        let (complete, ty) = (rest[0] & 0x80 != 0, rest[0] & 0x3f);
        let n = u16::from_be_bytes([rest[1], rest[2]]);
        rest = &rest[3..];
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            assert!(len > 0);
            rest = &rest[2 + len..];
        }
        if matches!(ty, 32..=34) {
            assert!(n > 0, "hvcC array of type {ty} is empty");
            assert!(
                complete || !complete_wanted,
                "hvcC array of type {ty} is not complete"
            );
            types.push(ty);
        }
    }
    for ty in [32, 33, 34] {
        assert!(types.contains(&ty), "hvcC arrays {types:?} lack {ty}");
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    ["clip.mp4", "clip.ts", "clip.mkv"]
        .iter()
        .map(|n| make_h265(dir, n, ""))
        .collect()
}

#[test]
fn decode_gives_ffmpegs_frames() {
    let dir = tempdir();
    for src in files(dir.path()) {
        let out = decode_ok(path_str(&src), &[]);
        let worst = worst_mad_against_ffmpeg(&src, out.path(), 320, 240);
        assert!(
            worst < 0.01,
            "{}: worst frame differs by {worst}",
            src.display()
        );
        assert_eq!(assert_frames_complete(out.path()), 50);
    }
}

#[test]
fn record_writes_hvc1_with_the_parameter_sets_in_hvcc() {
    let dir = tempdir();
    for src in files(dir.path()) {
        let out = dir.path().join(format!(
            "{}.rec.mp4",
            src.file_name().unwrap().to_string_lossy()
        ));
        let run = camflow_run(&["record", path_str(&src), "-o", path_str(&out)]);
        assert_ok(&run);
        let probed = ffprobe_stream(&out, "codec_name,codec_tag_string,width,height");
        assert!(
            probed.contains("codec_name=hevc") && probed.contains("codec_tag_string=hvc1"),
            "{}: {probed}",
            src.display()
        );
        assert!(probed.contains("width=320") && probed.contains("height=240"));
        // From MPEG-TS the parameter sets arrive in band (Annex B): the
        // mp4 muxer builds the record from them.
        assert_hvcc_has_parameter_sets(&out, false);
        decodes_strictly(&out);
        assert_eq!(ffprobe_frames(&out), 50);
    }
}

#[test]
fn hls_copies_h265_as_hvc1() {
    let dir = tempdir();
    for src in files(dir.path()).into_iter().take(2) {
        let hls = dir.path().join(format!(
            "{}.hls",
            src.file_name().unwrap().to_string_lossy()
        ));
        let run = camflow_run(&["hls", path_str(&src), "--out", path_str(&hls), "--vod"]);
        assert_ok(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("(H.265 copied)"), "{stderr}");
        let init = hls.join("init.mp4");
        assert!(ffprobe_stream(&init, "codec_tag_string").contains("hvc1"));
        assert_hvcc_has_parameter_sets(&init, false);
        let playlist = hls.join("index.m3u8");
        assert!(ffprobe_stream(&playlist, "codec_name").contains("codec_name=hevc"));
        assert_eq!(ffprobe_frames(&playlist), 50);
    }
}

#[test]
fn transcode_to_flv_encodes_h264_and_says_why() {
    let dir = tempdir();
    let src = make_h265(dir.path(), "clip.mkv", "");
    let out = dir.path().join("out.flv");
    let run = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("(encoded to H.264: FLV cannot carry H.265)"),
        "{stderr}"
    );
    assert!(ffprobe_stream(&out, "codec_name").contains("codec_name=h264"));
    assert_eq!(ffprobe_frames(&out), 50);
}

#[test]
fn probe_names_hevc_with_size_and_rate() {
    let dir = tempdir();
    let src = make_h265(dir.path(), "clip.mp4", "");
    let run = camflow_run(&["probe", path_str(&src)]);
    assert_ok(&run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("video hevc, 320x240, 25.000 fps"),
        "{stdout}"
    );
}

// ---- H.265 as coded packets ----

/// An Annex B stream's NAL units, without their start codes.
fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut e = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            // A 4-byte start code leaves its first zero behind.
            while e > s && data[e - 1] == 0 {
                e -= 1;
            }
            &data[s..e]
        })
        .collect()
}

/// Length-prefixed NAL units of one picture, and whether it is IRAP.
type AccessUnit = (Vec<u8>, bool);

/// The stream's parameter sets and its access units, each as
/// length-prefixed NAL units (as `hvcC` announces) and whether it is an
/// IRAP picture. A new access unit starts at a parameter set, SEI or AUD
/// after a picture, or at a picture's first slice.
fn split_access_units(data: &[u8]) -> ([Vec<u8>; 3], Vec<AccessUnit>) {
    let mut sets: [Vec<u8>; 3] = Default::default();
    let mut aus: Vec<AccessUnit> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut key = false;
    let mut has_picture = false;
    for nal in annexb_nals(data) {
        let ty = hevc::nal_unit_type(nal).expect("NAL header");
        let vcl = ty < 32;
        let first_slice = vcl && nal.get(2).is_some_and(|b| b & 0x80 != 0);
        if has_picture && (!vcl || first_slice) && ty != 38 && ty != 40 {
            aus.push((std::mem::take(&mut cur), key));
            has_picture = false;
            key = false;
        }
        if (32..=34).contains(&ty) && sets[usize::from(ty - 32)].is_empty() {
            sets[usize::from(ty - 32)] = nal.to_vec();
        }
        if vcl {
            has_picture = true;
            key |= (16..=23).contains(&ty);
        }
        cur.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        cur.extend_from_slice(nal);
    }
    if has_picture {
        aus.push((cur, key));
    }
    (sets, aus)
}

/// A packet channel as an RTSP receiver fills it, from an Annex B file:
/// the parameters (hvcC built by `proto::hevc`) on the first packet, 25
/// pictures a second, in decode order (the stream has no B-frames).
fn packets(path: &Path) -> (camflow::packet::Items<VideoPacket>, usize) {
    let data = std::fs::read(path).expect("read stream");
    let (sets, aus) = split_access_units(&data);
    let config = hevc::configuration(&[&sets[0]], &[&sets[1]], &[&sets[2]]).expect("hvcC");
    assert_eq!((config.width, config.height), (320, 240));
    assert!(
        config.rfc6381.starts_with("hvc1.1.6.L"),
        "{}",
        config.rfc6381
    );
    let params = Arc::new(VideoParams {
        codec: VideoCodec::H265,
        width: config.width,
        height: config.height,
        extradata: config.hvcc,
        rfc6381: config.rfc6381,
    });
    let n = aus.len();
    let (tx, rx) = tokio::sync::mpsc::channel(n + 1);
    for (i, (au, key)) in aus.into_iter().enumerate() {
        tx.try_send(Ok(VideoPacket {
            data: au.into(),
            pts: i as f64 / 25.0,
            key,
            at_unix: camflow::packet::unix_now(),
            params: (i == 0).then(|| params.clone()),
        }))
        .expect("room in the channel");
    }
    (rx, n)
}

fn raw_stream(dir: &Path) -> PathBuf {
    // Cameras send no B-frames; packets then come in presentation order.
    make_h265(dir, "cam.hevc", "bframes=0")
}

#[test]
fn packets_with_a_built_hvcc_decode_to_ffmpegs_frames() {
    pipeline::init().unwrap();
    let dir = tempdir();
    let src = raw_stream(dir.path());
    let (rx, n) = packets(&src);
    assert_eq!(n, 50);
    let stop = Arc::new(AtomicBool::new(false));
    let mut frames = decode::frames(Input::Packets(rx), decode::DecodeSettings::default(), stop)
        .expect("decode starts");
    let mut got = Vec::new();
    for f in frames.by_ref() {
        assert_eq!((f.width, f.height), (320, 240));
        got.push(f.pixels().to_vec());
    }
    frames.finish().expect("decode ends cleanly");
    let reference = run_limited(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-i",
            path_str(&src),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-",
        ]),
        Duration::from_secs(60),
    );
    assert!(reference.status.success());
    let size = 320 * 240 * 3;
    assert_eq!(got.len(), reference.stdout.len() / size);
    for (i, (a, b)) in got.iter().zip(reference.stdout.chunks(size)).enumerate() {
        let diff: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        assert!(
            diff as f64 / size as f64 <= 0.01,
            "frame {i} differs from ffmpeg's"
        );
    }
}

#[test]
fn packets_record_to_hvc1() {
    pipeline::init().unwrap();
    let dir = tempdir();
    let (rx, _) = packets(&raw_stream(dir.path()));
    let out = dir.path().join("rec.mp4");
    let stop = Arc::new(AtomicBool::new(false));
    let summary = remux::record_packets(rx, &out, None, stop, &mut |_| {}).expect("record");
    assert_eq!(summary.video_frames, 50);
    let probed = ffprobe_stream(&out, "codec_name,codec_tag_string,width,height");
    assert!(
        probed.contains("codec_name=hevc") && probed.contains("codec_tag_string=hvc1"),
        "{probed}"
    );
    assert_hvcc_has_parameter_sets(&out, true);
    decodes_strictly(&out);
    assert_eq!(ffprobe_frames(&out), 50);
}

fn job(target: mux::Target) -> transcode::OutputJob {
    transcode::OutputJob {
        target,
        encode: encode::EncodeSettings {
            size: None,
            bitrate: None,
            gop_seconds: 2.0,
            preset: "ultrafast".into(),
            zerolatency: true,
            frame_rate: None,
        },
        force_encode: false,
        fps: None,
        duration: None,
        realtime: false,
    }
}

#[test]
fn packets_copy_into_hls_and_encode_for_flv() {
    pipeline::init().unwrap();
    let dir = tempdir();
    let src = raw_stream(dir.path());
    let run = |target| {
        let (rx, _) = packets(&src);
        transcode::run(
            pipeline::Fed::Packets(rx),
            &job(target),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            &mut |_| {},
        )
        .expect("output")
    };

    let hls = mux::HlsSpec {
        dir: dir.path().join("hls"),
        segment_seconds: 2.0,
        window: None,
    };
    let playlist = hls.playlist();
    mux::prepare_hls_dir(&hls.dir).expect("hls folder");
    let s = run(mux::Target::Hls(hls));
    assert!(s.copied && s.h265 && s.encoded_because.is_none());
    let init = dir.path().join("hls/init.mp4");
    assert!(ffprobe_stream(&init, "codec_tag_string").contains("hvc1"));
    assert_hvcc_has_parameter_sets(&init, true);
    assert_eq!(ffprobe_frames(&playlist), 50);

    let flv = dir.path().join("out.flv");
    let s = run(mux::Target::Stream {
        container: mux::Container::Flv,
        to: path_str(&flv).to_string(),
        timeout: 10.0,
    });
    assert!(!s.copied);
    assert_eq!(s.encoded_because, Some("FLV cannot carry H.265"));
    assert!(ffprobe_stream(&flv, "codec_name").contains("codec_name=h264"));
    assert_eq!(ffprobe_frames(&flv), 50);
}
