//! Fuzzes the multipart/x-mixed-replace splitter and the boundary parser.
//!
//! Input layout: a control byte (part size limit and boundary), a split
//! byte, then the body.

#![no_main]

use camflow::proto::multipart::{self, Error, Part, Splitter, DEFAULT_MAX_PART};
use libfuzzer_sys::fuzz_target;

/// Boundaries as cameras declare them: plain, with the leading `--`, one
/// byte, with a space, and the degenerate ones (nothing but the dashes).
const BOUNDARIES: [&str; 8] = [
    "ffmpeg",
    "--myboundary",
    "a",
    "-",
    "--video boundary--",
    "XYZ",
    "--",
    "",
];

struct Run {
    parts: Vec<Part>,
    err: Option<Error>,
    finished: bool,
    in_part: bool,
}

fn drain(s: &mut Splitter, max: usize, out: &mut Vec<Part>) -> Option<Error> {
    loop {
        let before = s.position();
        match s.next_part() {
            Ok(Some(part)) => {
                assert!(part.body.len() <= max);
                assert!(s.position() >= before + part.body.len() as u64);
                out.push(part);
            }
            Ok(None) => {
                assert!(s.position() >= before);
                return None;
            }
            Err(err) => {
                assert_eq!(s.next_part(), Err(err.clone()));
                let text = err.to_string();
                assert!(!text.contains(['\n', '\r']), "{text:?}");
                assert_eq!(s.buffered(), 0);
                assert!(!s.in_part());
                return Some(err);
            }
        }
    }
}

fn run(boundary: &str, max: usize, pieces: &[&[u8]]) -> Run {
    let mut s = Splitter::new(boundary, max);
    let mut parts = Vec::new();
    let mut err = None;
    for piece in pieces {
        s.feed(piece);
        err = drain(&mut s, max, &mut parts);
        if err.is_some() {
            break;
        }
    }
    if err.is_none() && !s.is_finished() {
        let fed: usize = pieces.iter().map(|p| p.len()).sum();
        assert_eq!(s.position() + s.buffered() as u64, fed as u64);
    }
    Run {
        parts,
        err,
        finished: s.is_finished(),
        in_part: s.in_part(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, split, stream @ ..] = data else {
        return;
    };
    let max = match control & 7 {
        0 => 0,
        1 => 1,
        2 => 16,
        3 => 64,
        4 => 4096,
        5 => DEFAULT_MAX_PART,
        _ => usize::MAX,
    };
    let boundary = BOUNDARIES[usize::from(control >> 3) % BOUNDARIES.len()];

    // Splitting: the same parts, error and state whatever the split point.
    let at = (usize::from(*split) * stream.len() / 255).min(stream.len());
    let (a, b) = stream.split_at(at);
    let whole = run(boundary, max, &[stream]);
    let halves = run(boundary, max, &[a, b]);
    assert_eq!(halves.parts, whole.parts);
    assert_eq!(halves.err, whole.err);
    assert_eq!(halves.finished, whole.finished);
    assert_eq!(halves.in_part, whole.in_part);

    // Bodies are the input's bytes, in order, unaltered.
    let mut from = 0;
    for part in &whole.parts {
        let body = &part.body[..];
        let rest = stream.get(from..).unwrap_or_default();
        let found = if body.is_empty() {
            Some(0)
        } else {
            rest.windows(body.len()).position(|w| w == body)
        };
        let Some(found) = found else {
            panic!("body not in the input after byte {from}");
        };
        from += found + body.len();
        if let Some(t) = part.timestamp {
            assert!(part.header("x-timestamp").is_some());
            assert!(t.is_finite() && t >= 0.0);
        }
    }

    // The header parser: no panics, and a boundary is never empty.
    let text = String::from_utf8_lossy(stream);
    if let Some(b) = multipart::boundary_from_content_type(&text) {
        assert!(!b.is_empty());
        assert!(b.len() <= text.len());
    }
});
