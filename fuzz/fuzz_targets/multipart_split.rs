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
    /// What the end of the stream adds: its parts, then its error.
    ended: Vec<Part>,
    end_err: Option<Error>,
    /// Oversized parts skipped before the end.
    skipped: u64,
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
    let fed: usize = pieces.iter().map(|p| p.len()).sum();
    if err.is_none() && !s.is_finished() {
        assert_eq!(s.position() + s.buffered() as u64, fed as u64);
    }
    let (finished, in_part, skipped) = (s.is_finished(), s.in_part(), s.skipped_parts());

    // The connection closes: a last part without a delimiter after it is
    // returned only as one whole JPEG; anything else cut short is an error.
    let mut ended = Vec::new();
    let mut end_err = None;
    while err.is_none() {
        match s.end_of_stream() {
            Ok(Some(part)) => {
                assert!(part.body.len() <= max);
                assert!(part.body.starts_with(&[0xff, 0xd8]));
                assert!(part.body.ends_with(&[0xff, 0xd9]));
                ended.push(part);
            }
            Ok(None) => {
                assert!(!s.in_part());
                assert_eq!(s.is_finished(), finished);
                if !finished {
                    assert_eq!(s.position(), fed as u64);
                }
                break;
            }
            Err(e) => {
                assert!(in_part, "only a part cut short fails at the end");
                assert!(matches!(e, Error::Truncated { .. }));
                assert_eq!(s.end_of_stream(), Err(e.clone()));
                end_err = Some(e);
                break;
            }
        }
    }
    assert_eq!(s.buffered(), 0);
    assert!(!s.in_part());
    Run {
        parts,
        err,
        finished,
        in_part,
        ended,
        end_err,
        skipped,
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
    assert_eq!(halves.ended, whole.ended);
    assert_eq!(halves.end_err, whole.end_err);
    assert_eq!(halves.skipped, whole.skipped);

    // Sniffing: a prefix says "more" or what the whole body says.
    let sniffed = multipart::sniff(stream, true);
    match multipart::sniff(a, false) {
        multipart::Sniff::NeedMore => {}
        early => assert_eq!(early, sniffed),
    }
    if let multipart::Sniff::Multipart { boundary } = &sniffed {
        assert!(!boundary.is_empty() && boundary.len() <= stream.len());
    }

    // Bodies are the input's bytes, in order, unaltered.
    let mut from = 0;
    for part in whole.parts.iter().chain(&whole.ended) {
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
