//! `camflow package`: encrypted MPEG-DASH checked by the ffmpeg CLI
//! (`-decryption_key`, fed through a pipe: FFmpeg 5.1 fails on a
//! multi-fragment file opened by name but decrypts the same bytes from a
//! pipe) and by the boxes themselves.

mod common;

use std::path::Path;

use camflow::proto::cenc_mp4::Node;
use common::*;

/// The seed's example key and KID, and the key in hex.
const KEY: &str = "hyN9IKGfWKdAwFaE5pm0qg";
const KID: &str = "oW5AK5BW43HzbTSKpiu3SQ";
const KEY_HEX: &str = "87237d20a19f58a740c05684e699b4aa";
const KID_UUID: &str = "a16e402b-9056-e371-f36d-348aa62bb749";

/// ffmpeg on `bytes` through a pipe: (ran without errors, stdout).
fn ffmpeg_pipe(bytes: &[u8], args: &[&str]) -> (bool, String) {
    let out = ffmpeg_stdin(bytes, args);
    (
        out.status.success() && out.stderr.is_empty(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// One representation's init and media segments, concatenated.
fn representation(dir: &Path, rep: usize) -> Vec<u8> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&format!("chunk-{rep}-")))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no segments for representation {rep}");
    let mut bytes = std::fs::read(dir.join(format!("init-{rep}.m4s"))).unwrap();
    for n in names {
        bytes.extend(std::fs::read(dir.join(n)).unwrap());
    }
    bytes
}

fn av_file(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("av.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 9 \
         -c:v libx264 -g 50 -c:a aac -shortest",
    );
    src
}

#[test]
fn cbcs_and_cenc_packages_decrypt_to_the_input_video_and_keep_audio_clear() {
    let dir = tempdir();
    let src = av_file(dir.path());
    let want = video_packet_hashes(&src);
    assert_eq!(want.len(), 225);
    for scheme in ["cbcs", "cenc"] {
        let out = dir.path().join(scheme);
        let run = camflow_run(&[
            "package",
            path_str(&src),
            "--key",
            KEY,
            "--kid",
            KID,
            "--scheme",
            scheme,
            "--out",
            path_str(&out),
            "--hls",
        ]);
        assert_ok(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !stderr.contains(KEY) && !stderr.contains(KEY_HEX),
            "key printed: {stderr}"
        );
        // The MPD says how, and with which key ID.
        let mpd = std::fs::read_to_string(out.join("stream.mpd")).unwrap();
        assert!(mpd.contains(&format!(
            "schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"{scheme}\" cenc:default_KID=\"{KID_UUID}\""
        )), "{mpd}");
        assert!(
            mpd.contains("urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"),
            "{mpd}"
        );
        assert!(mpd.contains("<cenc:pssh>"), "{mpd}");
        assert!(out.join("master.m3u8").is_file());
        assert!(!std::fs::read_dir(&out).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".camflow")));
        // Every video segment is encrypted: no clear lead.
        for e in std::fs::read_dir(&out).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            if n.starts_with("chunk-0-") {
                let top = Node::parse_all(&std::fs::read(out.join(&n)).unwrap()).unwrap();
                let moof = top.iter().find(|b| &b.kind == b"moof").unwrap();
                assert!(
                    moof.child(b"traf").unwrap().child(b"senc").is_some(),
                    "{n} has no senc"
                );
            }
        }
        // With the key: the input's video packets, byte for byte.
        let video = representation(&out, 0);
        let (ok, got) = ffmpeg_pipe(
            &video,
            &[
                "-decryption_key",
                KEY_HEX,
                "-i",
                "pipe:0",
                "-map",
                "0:v",
                "-c",
                "copy",
                "-f",
                "framemd5",
                "-",
            ],
        );
        assert!(ok, "{scheme}: ffmpeg failed to decrypt");
        assert_eq!(
            framemd5_hashes(&got),
            want,
            "{scheme}: decrypted packets differ"
        );
        // A wrong key gives other bytes.
        let (_, wrong) = ffmpeg_pipe(
            &video,
            &[
                "-decryption_key",
                "00112233445566778899aabbccddeeff",
                "-i",
                "pipe:0",
                "-map",
                "0:v",
                "-c",
                "copy",
                "-f",
                "framemd5",
                "-",
            ],
        );
        assert_ne!(
            framemd5_hashes(&wrong),
            want,
            "{scheme}: a wrong key decrypted it"
        );
        // The audio decodes without any key.
        let (ok, frames) = ffmpeg_pipe(
            &representation(&out, 1),
            &["-i", "pipe:0", "-f", "framemd5", "-"],
        );
        assert!(ok, "{scheme}: clear audio does not decode");
        assert!(frames.lines().filter(|l| !l.starts_with('#')).count() > 300);
    }
}

#[test]
fn bad_inputs_and_keys_are_one_clear_line() {
    let dir = tempdir();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a video\n").unwrap();
    let out = dir.path().join("o");
    let run = camflow_run(&[
        "package",
        path_str(&text),
        "--key",
        KEY,
        "--kid",
        KID,
        "--out",
        path_str(&out),
    ]);
    assert_one_line_error(&run, path_str(&text), "");
    let src = make_h264_file(dir.path(), "v.mp4", "160x120", 1);
    for (key, kid, what) in [
        ("short", KID, "--key"),
        (KEY, "0011", "--kid"),
        ("hyN9IKGfWKdAwFaE5pm0q!", KID, "--key"),
        // A typo in the key, with a space after it: the message must not
        // quote what is nearly the key.
        ("hyN9IKGfWKdAwFaE5pm0q! ", KID, "--key"),
    ] {
        let run = camflow_run(&[
            "package",
            path_str(&src),
            "--key",
            key,
            "--kid",
            kid,
            "--out",
            path_str(&out),
        ]);
        let line = assert_one_line_error(&run, what, "base64url");
        assert!(!line.contains(KEY));
        if what == "--key" {
            assert!(!line.contains(key.trim()), "{line}");
        }
    }
    let mpeg4 = dir.path().join("m4.mp4");
    ffmpeg_make(
        &mpeg4,
        "-f lavfi -i testsrc2=size=160x120:rate=25 -t 1 -c:v mpeg4",
    );
    let run = camflow_run(&[
        "package",
        path_str(&mpeg4),
        "--key",
        KEY,
        "--kid",
        KID,
        "--out",
        path_str(&out),
    ]);
    assert_one_line_error(&run, path_str(&mpeg4), "H.264");
}

fn key16(hex: &str) -> [u8; 16] {
    camflow::proto::cenc::parse_key16(hex).unwrap()
}

#[test]
fn packages_play_in_chromium_with_their_clearkey_and_not_without() {
    let dir = tempdir();
    let src = av_file(dir.path());
    let key = key16(KEY_HEX);
    let kid = key16(KID);
    for scheme in ["cbcs", "cenc"] {
        let out = dir.path().join(scheme);
        assert_ok(&camflow_run(&[
            "package",
            path_str(&src),
            "--key",
            KEY,
            "--kid",
            KID,
            "--scheme",
            scheme,
            "--out",
            path_str(&out),
        ]));
        let timeout = std::time::Duration::from_secs(60);
        let played =
            common::dash_player::play_dash(&out, "stream.mpd", 2.0, &[(&kid, &key)], timeout)
                .unwrap_or_else(|e| panic!("{scheme}: Chromium did not play it: {e}"));
        assert!(played.current_time > 2.0, "{scheme}: {played:?}");
        assert_eq!(played.audio_tracks, 1, "{scheme}: {played:?}");
        for keys in [vec![], vec![(&kid, &[0x5au8; 16])]] {
            let keys: Vec<(&[u8; 16], &[u8; 16])> = keys;
            common::dash_player::play_dash_expect_fail(&out, "stream.mpd", &keys, timeout)
                .unwrap_or_else(|e| panic!("{scheme} with keys {}: {e}", keys.len()));
        }
    }
}

/// Shaka Packager's output and camflow's, for the same input and scheme,
/// both decrypt to the input's video packets.
#[test]
fn camflow_and_shaka_packager_both_decrypt_to_the_input_packets() {
    let dir = tempdir();
    let src = av_file(dir.path());
    let want = video_packet_hashes(&src);
    let decrypt = |bytes: &[u8]| {
        let (ok, got) = ffmpeg_pipe(
            bytes,
            &[
                "-decryption_key",
                KEY_HEX,
                "-i",
                "pipe:0",
                "-map",
                "0:v",
                "-c",
                "copy",
                "-f",
                "framemd5",
                "-",
            ],
        );
        assert!(ok, "ffmpeg could not decrypt");
        framemd5_hashes(&got)
    };
    for scheme in ["cbcs", "cenc"] {
        let shaka = dir.path().join(format!("shaka-{scheme}"));
        common::dash_player::package_encrypted(
            &src,
            &shaka,
            &["video"],
            scheme,
            &key16(KID),
            &key16(KEY_HEX),
        );
        let mut names: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(shaka.join("video"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_suffix(".m4s")?.parse().ok().map(|k| (k, e.path()))
            })
            .collect();
        names.sort();
        let mut bytes = std::fs::read(shaka.join("video/init.mp4")).unwrap();
        for (_, p) in names {
            bytes.extend(std::fs::read(p).unwrap());
        }
        assert_eq!(decrypt(&bytes), want, "Shaka Packager {scheme}");
        let ours = dir.path().join(format!("camflow-{scheme}"));
        assert_ok(&camflow_run(&[
            "package",
            path_str(&src),
            "--key",
            KEY,
            "--kid",
            KID,
            "--scheme",
            scheme,
            "--out",
            path_str(&ours),
        ]));
        assert_eq!(decrypt(&representation(&ours, 0)), want, "camflow {scheme}");
    }
}

#[test]
fn transcode_packages_video_in_other_codecs() {
    let dir = tempdir();
    let src = dir.path().join("m4.mkv");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 6 \
         -c:v mpeg4 -c:a aac -shortest",
    );
    let out = dir.path().join("t");
    let run = camflow_run(&[
        "package",
        path_str(&src),
        "--key",
        KEY,
        "--kid",
        KID,
        "--out",
        path_str(&out),
        "--transcode",
        "--segment-seconds",
        "2",
    ]);
    assert_ok(&run);
    assert!(!std::fs::read_dir(&out).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".camflow")));
    let (ok, frames) = ffmpeg_pipe(
        &representation(&out, 0),
        &[
            "-decryption_key",
            KEY_HEX,
            "-i",
            "pipe:0",
            "-map",
            "0:v",
            "-f",
            "framemd5",
            "-",
        ],
    );
    assert!(
        ok,
        "the re-encoded video does not decrypt and decode cleanly"
    );
    assert_eq!(frames.lines().filter(|l| !l.starts_with('#')).count(), 150);
    let (ok, _) = ffmpeg_pipe(
        &representation(&out, 1),
        &["-i", "pipe:0", "-f", "null", "-"],
    );
    assert!(ok, "the audio does not decode");
    // A segment per 2 s: the encoder put a keyframe at each.
    let chunks = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("chunk-0-")
        })
        .count();
    assert_eq!(chunks, 3);
}

#[test]
fn a_second_package_into_the_same_folder_leaves_nothing_of_the_first() {
    let dir = tempdir();
    let long = av_file(dir.path());
    let short = dir.path().join("short.mp4");
    ffmpeg_make(
        &short,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -c:v libx264 -g 50",
    );
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    let package = |src: &Path, out: &Path, hls: bool| {
        let (src, out) = (path_str(src), path_str(out));
        let mut args = vec!["package", src, "--key", KEY, "--kid", KID, "--out", out];
        args.extend(["--segment-seconds", "2"]);
        if hls {
            args.push("--hls");
        }
        assert_ok(&camflow_run(&args));
    };
    // The long input with audio and HLS playlists, then the short one
    // (video only, no HLS) into the same folder, beside a file of the user's.
    let reused = dir.path().join("reused");
    std::fs::create_dir_all(&reused).unwrap();
    std::fs::write(reused.join("notes.txt"), b"mine").unwrap();
    package(&long, &reused, true);
    assert!(names(&reused).contains(&"master.m3u8".to_string()));
    package(&short, &reused, false);
    let fresh = dir.path().join("fresh");
    package(&short, &fresh, false);
    let mut want = names(&fresh);
    want.push("notes.txt".into());
    want.sort();
    assert_eq!(names(&reused), want);
}

#[test]
fn pictures_with_more_slices_than_cenc_can_describe_are_refused() {
    // 64 slices per picture: the per-sample encryption info would pass the
    // 255 bytes saiz can give it. Refused in one line, nothing left behind.
    let dir = tempdir();
    let src = dir.path().join("slices.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=1920x1080:rate=25 -t 1 -c:v libx264 -preset ultrafast \
         -x264-params slices=64 -pix_fmt yuv420p",
    );
    for scheme in ["cbcs", "cenc"] {
        let out = dir.path().join(scheme);
        let run = camflow_run(&[
            "package",
            path_str(&src),
            "--key",
            KEY,
            "--kid",
            KID,
            "--scheme",
            scheme,
            "--out",
            path_str(&out),
        ]);
        assert_one_line_error(&run, path_str(&src), "saiz");
        assert!(
            !out.exists(),
            "{scheme}: a failed run left {}",
            out.display()
        );
    }
}
