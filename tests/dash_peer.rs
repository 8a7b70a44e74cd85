//! Self-check of the DASH player the end-to-end tests use, independent of
//! camflow: Chromium with Shaka Player (tests/common/dash_player.rs,
//! tests/browser/play_dash.js) playing ffmpeg-made clear DASH, and Shaka
//! Packager-made encrypted DASH with its ClearKey key but not without it or
//! with a wrong one. When these fail, scripts/setup or the machine is
//! broken, not camflow.

mod common;

use std::path::Path;
use std::time::Duration;

use common::dash_player::{package_encrypted, play_dash, play_dash_expect_fail, DashFailure};
use common::{ffmpeg_make, tempdir};

const TIMEOUT: Duration = Duration::from_secs(60);
const KID: [u8; 16] = *b"camflow-dash-kid";
const KEY: [u8; 16] = [
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const WRONG_KEY: [u8; 16] = [0x42; 16];
const OTHER_KID: [u8; 16] = [0x99; 16];

/// 8 s of 320x240 H.264 at 25 fps (GOP 2 s) and 440 Hz AAC.
const INPUT: &str = "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 \
                     -t 8 -c:v libx264 -g 50 -c:a aac -shortest";

/// The same content as an MP4, packaged by Shaka Packager with every sample
/// encrypted (cbcs) under KID/KEY into `out/stream.mpd`.
fn encrypted_dash(out: &Path) {
    let src = out.join("src.mp4");
    ffmpeg_make(&src, &format!("{INPUT} -f mp4"));
    package_encrypted(&src, out, &["video", "audio"], "cbcs", &KID, &KEY);
}

fn refused(dir: &Path, keys: &[(&[u8; 16], &[u8; 16])]) -> DashFailure {
    let f = play_dash_expect_fail(dir, "stream.mpd", keys, TIMEOUT).expect("it must not play");
    eprintln!("refused after {:.1} s: {}", f.elapsed, f.reason);
    assert!(
        f.elapsed < 15.0,
        "took {} s to fail: {}",
        f.elapsed,
        f.report
    );
    f
}

#[test]
fn chromium_plays_ffmpeg_clear_dash() {
    let dir = tempdir();
    ffmpeg_make(
        &dir.path().join("stream.mpd"),
        &format!("{INPUT} -f dash -seg_duration 2 -use_template 1 -use_timeline 1"),
    );
    let p = play_dash(dir.path(), "stream.mpd", 2.0, &[], TIMEOUT).expect("Chromium plays it");
    eprintln!("played {:.1} s in {:.1} s", p.played, p.elapsed);
    assert!(p.played > 2.0 && p.current_time > 2.0, "{p:?}");
    assert_eq!((p.video_width, p.video_height), (320, 240), "{p:?}");
    assert_eq!(p.audio_tracks, 1, "{p:?}");
    let codecs = p.codecs.as_deref().unwrap_or("");
    assert!(
        codecs.contains("avc1.") && codecs.contains("mp4a.40.2"),
        "{p:?}"
    );
    assert_eq!(p.key_system, None, "{p:?}");
    assert!(!p.encrypted, "{p:?}");
    assert!(p.decoded_frames.is_some_and(|n| n >= 50), "{p:?}");
    assert!(p.errors.is_empty(), "{p:?}");
    assert!(p.elapsed < 20.0, "{p:?}");
}

#[test]
fn chromium_plays_encrypted_dash_only_with_its_key() {
    let dir = tempdir();
    encrypted_dash(dir.path());

    let p = play_dash(dir.path(), "stream.mpd", 2.0, &[(&KID, &KEY)], TIMEOUT)
        .expect("Chromium plays it with the key");
    eprintln!("played {:.1} s in {:.1} s", p.played, p.elapsed);
    assert!(p.played > 2.0, "{p:?}");
    assert_eq!((p.video_width, p.video_height), (320, 240), "{p:?}");
    assert_eq!(p.audio_tracks, 1, "{p:?}");
    assert_eq!(p.key_system.as_deref(), Some("org.w3.clearkey"), "{p:?}");
    assert!(p.encrypted, "{p:?}");
    assert!(p.errors.is_empty(), "{p:?}");

    // No key for a manifest with ContentProtection: Shaka refuses at load.
    let f = refused(dir.path(), &[]);
    assert_eq!(f.failure, "drm", "{f:?}");
    assert!(f.codes.contains(&6012), "{f:?}");
    assert!(f.reason.contains("NO_LICENSE_SERVER_GIVEN"), "{f:?}");

    // The right KID with a wrong key: garbage reaches the decoders.
    let f = refused(dir.path(), &[(&KID, &WRONG_KEY)]);
    assert_eq!(f.failure, "media", "{f:?}");
    assert!(f.codes.contains(&3016), "{f:?}");
    assert!(f.reason.contains("PIPELINE_ERROR_DECODE"), "{f:?}");

    // A key for another KID: the stream's KID stays missing.
    let f = refused(dir.path(), &[(&OTHER_KID, &KEY)]);
    assert_eq!(f.failure, "drm", "{f:?}");
    assert!(f.codes.contains(&4012), "{f:?}");
    assert!(f.report.contains(&common::dash_player::hex(&KID)), "{f:?}");
}

#[test]
fn encrypted_dash_without_content_protection_needs_the_key_too() {
    let dir = tempdir();
    encrypted_dash(dir.path());
    // The same segments, the manifest without its ContentProtection
    // elements: only the init segments (tenc, pssh) say it is encrypted.
    let mpd = dir.path().join("stream.mpd");
    let text = std::fs::read_to_string(&mpd).expect("read the manifest");
    assert!(text.contains("<ContentProtection"), "{text}");
    let bare: String = text
        .lines()
        .filter(|l| !l.contains("ContentProtection") && !l.contains("cenc:pssh"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&mpd, &bare).expect("write the manifest");

    // clearKeys make Shaka use ClearKey for every stream.
    let p = play_dash(dir.path(), "stream.mpd", 2.0, &[(&KID, &KEY)], TIMEOUT)
        .expect("Chromium plays it with the key");
    eprintln!("played {:.1} s in {:.1} s", p.played, p.elapsed);
    assert_eq!(p.key_system.as_deref(), Some("org.w3.clearkey"), "{p:?}");

    let f = refused(dir.path(), &[]);
    assert_eq!(f.failure, "drm", "{f:?}");
    assert!(f.codes.contains(&6010), "{f:?}");

    // A key for another KID: Shaka does not know the stream's KID, the CDM
    // just waits for it (`waitingforkey`) and playback never starts.
    let f = refused(dir.path(), &[(&OTHER_KID, &KEY)]);
    assert_eq!(f.failure, "drm", "{f:?}");
    assert!(f.reason.contains("waiting for a key"), "{f:?}");
}
