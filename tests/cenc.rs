//! Common Encryption written by camflow (`proto::cenc_mp4`) into fragmented
//! MP4 made by the ffmpeg CLI, decrypted by the ffmpeg CLI as the referee
//! (`-decryption_key`, fed through a pipe: FFmpeg 5.1 fails on a
//! multi-fragment file opened by name but decrypts the same bytes from a
//! pipe).

mod common;

use std::path::Path;

use camflow::proto::cenc::{self, Scheme};
use camflow::proto::cenc_mp4::{
    h264_subsamples, protect_init, write_all, FragmentProtector, Node, Protection,
};
use camflow::proto::h264::ParamSets;
use common::*;

/// From `moov` to the sample descriptions.
const STSD: &[&[u8; 4]] = &[b"trak", b"mdia", b"minf", b"stbl", b"stsd"];

const KEY: [u8; 16] = [0x22; 16];

/// Decoded frames' MD5s of `bytes` (an MP4), decrypted with `key`.
fn frame_hashes(bytes: &[u8], key: Option<&[u8; 16]>) -> Vec<String> {
    let hex = key.map(cenc::hex);
    let mut args = Vec::new();
    if let Some(h) = &hex {
        args.extend(["-decryption_key", h.as_str()]);
    }
    args.extend(["-i", "pipe:0", "-f", "framemd5", "-"]);
    String::from_utf8_lossy(&ffmpeg_stdin(bytes, &args).stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// Protects `clear` (ftyp+moov, then moof+mdat pairs), each pair as its
/// own segment, as a packager would.
fn protect(clear: &Path, scheme: Scheme) -> Vec<u8> {
    let data = std::fs::read(clear).expect("read");
    let nodes = Node::parse_all(&data).expect("parse");
    let (init, frags): (Vec<Node>, Vec<Node>) = nodes
        .into_iter()
        .partition(|n| &n.kind == b"ftyp" || &n.kind == b"moov");
    let p = Protection {
        track_id: 1,
        scheme,
        kid: [0x11; 16],
        key: KEY,
        iv: [0x33; 16],
    };
    // The avcC (SPS, PPS, NAL length size) the slice headers are read with.
    let moov = init.iter().find(|n| &n.kind == b"moov").expect("moov");
    let avc1 = &moov.descend(STSD).expect("stsd").children[0];
    let avcc = avc1
        .children
        .iter()
        .find(|c| &c.kind == b"avcC")
        .expect("avcC");
    let mut params = ParamSets::new();
    let length_size = params.add_avcc(&avcc.prefix).expect("avcC");
    let mut out = protect_init(&write_all(&init), &p).expect("init");
    let mut fp = FragmentProtector::new(p, move |s: &[u8]| {
        h264_subsamples(&mut params, length_size, s)
    });
    for pair in frags.chunks(2) {
        out.extend(fp.protect_segment(&write_all(pair)).expect("segment"));
    }
    out
}

#[test]
fn cenc_and_cbcs_fragments_decrypt_in_ffmpeg_to_the_clear_frames() {
    let dir = tempdir();
    let clear = dir.path().join("clear.mp4");
    ffmpeg_make(
        &clear,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libx264 -g 25 -bf 3 \
         -x264-params slices=2 -movflags frag_keyframe+empty_moov+default_base_moof",
    );
    let want = frame_hashes(&std::fs::read(&clear).unwrap(), None);
    assert_eq!(want.len(), 75);
    for scheme in [Scheme::Cenc, Scheme::Cbcs] {
        let protected = protect(&clear, scheme);
        assert_eq!(
            frame_hashes(&protected, Some(&KEY)),
            want,
            "{scheme:?}: decrypted frames differ"
        );
        let wrong = frame_hashes(&protected, Some(&[0x23; 16]));
        assert_ne!(wrong, want, "{scheme:?}: a wrong key decrypts it");
        // The sample entry says how it is protected.
        let top = Node::parse_all(&protected).unwrap();
        let moov = top.iter().find(|n| &n.kind == b"moov").unwrap();
        let entry = &moov.descend(STSD).expect("stsd").children[0];
        assert_eq!(&entry.kind, b"encv");
        let sinf = entry.child(b"sinf").unwrap();
        assert_eq!(sinf.child(b"frma").unwrap().prefix, b"avc1");
        assert_eq!(sinf.child(b"schm").unwrap().prefix[4..8], scheme.fourcc());
        let tenc = &sinf.child(b"schi").unwrap().child(b"tenc").unwrap().prefix;
        assert_eq!(tenc[8..24], [0x11; 16], "default_KID");
        let pssh = moov.child(b"pssh").unwrap();
        assert_eq!(
            pssh.prefix[4..20],
            camflow::proto::cenc_mp4::COMMON_SYSTEM_ID
        );
    }
}
