//! Fuzzes the JPEG frame splitter.
//!
//! Input layout: a control byte (size limit), a split byte, then the stream.

#![no_main]

use bytes::Bytes;
use camflow::proto::jpeg::{Error, Splitter};
use libfuzzer_sys::fuzz_target;

fn drain(s: &mut Splitter, max: usize, out: &mut Vec<Bytes>) -> Option<Error> {
    loop {
        match s.next_frame() {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max);
                assert!(frame.starts_with(&[0xFF, 0xD8]));
                assert!(frame.ends_with(&[0xFF, 0xD9]));
                assert!(frame.len() >= 4);
                out.push(frame);
            }
            Ok(None) => return None,
            Err(err) => {
                assert_eq!(s.next_frame(), Err(err.clone()));
                assert!(!err.to_string().contains('\n'));
                return Some(err);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, split, stream @ ..] = data else {
        return;
    };
    let max = match control & 3 {
        0 => 64,
        1 => 1024,
        2 => 1 << 20,
        _ => usize::MAX,
    };

    // The same frames, errors and counters whatever the split point.
    let at = (usize::from(*split) * stream.len() / 255).min(stream.len());
    let (a, b) = stream.split_at(at);
    let mut whole = Splitter::new(max);
    whole.feed(stream);
    let mut want = Vec::new();
    let want_err = drain(&mut whole, max, &mut want);

    let mut parts = Splitter::new(max);
    let mut got = Vec::new();
    parts.feed(a);
    let mut got_err = drain(&mut parts, max, &mut got);
    if got_err.is_none() {
        parts.feed(b);
        got_err = drain(&mut parts, max, &mut got);
    }
    assert_eq!(got, want);
    assert_eq!(got_err, want_err);
    assert_eq!(parts.stats(), whole.stats());
    assert_eq!(whole.stats().frames, want.len() as u64);

    if let Some(err) = &want_err {
        // Sticky, even after more input.
        whole.feed(stream);
        assert_eq!(whole.next_frame().as_ref(), Err(err));
        assert_eq!(whole.buffered(), 0);
        return;
    }

    // Every input byte is in a frame, skipped, or still buffered; frames
    // are pieces of the input, in order.
    let frame_bytes: usize = want.iter().map(Bytes::len).sum();
    let skipped = usize::try_from(whole.stats().skipped_bytes).unwrap_or(usize::MAX);
    assert_eq!(frame_bytes + skipped + whole.buffered(), stream.len());
    assert_eq!(whole.position(), (frame_bytes + skipped) as u64);
    assert_eq!(parts.position(), whole.position());
    assert_eq!(parts.buffered(), whole.buffered());
    let mut rest = stream;
    for frame in &want {
        let Some(found) = rest.windows(frame.len()).position(|w| w == &frame[..]) else {
            panic!("frame not in the input");
        };
        rest = &rest[found + frame.len()..];
    }
    if !whole.in_frame() {
        assert!(whole.buffered() <= 1);
    }
    if let Some(broken) = whole.last_broken() {
        assert!(broken.pos < broken.at);
        assert!(!broken.to_string().contains('\n'));
    }
});
