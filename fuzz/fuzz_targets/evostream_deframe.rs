//! Fuzzes the EvoStream de-framer.
//!
//! Input layout: a control byte, a split byte, then the stream. The control
//! byte picks the size limit, whether a valid MOOV header is put in front of
//! the stream (so the fuzzer spends its time on fragments, not on rediscovering
//! an init segment), and how the stream is fed.

#![no_main]

use camflow::proto::bmff;
use camflow::proto::evostream::{Deframer, Error, Item, DEFAULT_MAX_MESSAGE, TAG_MOOV};
use libfuzzer_sys::fuzz_target;

/// A MOOV header message: tag, length, 4 extra bytes, a minimal ftyp + moov.
fn moov_message() -> Vec<u8> {
    let mut init = Vec::new();
    init.extend_from_slice(b"\0\0\0\x10ftypiso5\0\0\0\0");
    init.extend_from_slice(b"\0\0\0\x10moov\0\0\0\x08mvex");
    let len = (init.len() + 4) as u32;
    let mut msg = vec![TAG_MOOV, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    msg.extend_from_slice(&[0xf1, 0x42, 0xc0, 0x1e]);
    msg.extend_from_slice(&init);
    msg
}

/// Pulls items until the de-framer needs more input or fails, checking what
/// every item must satisfy.
fn drain(d: &mut Deframer, max: usize, out: &mut Vec<Item>) -> Option<Error> {
    loop {
        match d.next_item() {
            Ok(Some(item)) => {
                check_item(&item, max);
                out.push(item);
            }
            Ok(None) => return None,
            Err(err) => {
                // Fatal errors are sticky.
                assert_eq!(d.next_item(), Err(err.clone()));
                assert!(!err.to_string().contains('\n'));
                return Some(err);
            }
        }
    }
}

fn check_item(item: &Item, max: usize) {
    match item {
        Item::Init(init) => {
            assert!(init.len() <= max);
            let first = bmff::boxes(init).next();
            assert!(
                matches!(first, Some(Ok(b)) if matches!(&b.header.kind, b"ftyp" | b"styp" | b"moov"))
            );
        }
        Item::Fragment(frag) => {
            assert!(frag.len() <= max);
            // Exactly a moof then an mdat, nothing else.
            let kinds: Vec<_> = bmff::boxes(frag)
                .map(|b| b.map(|b| b.header.kind))
                .collect::<Result<_, _>>()
                .expect("a fragment is well-formed boxes");
            assert_eq!(kinds, [*b"moof", *b"mdat"]);
        }
    }
}

fn check_stats(d: &Deframer, fed: usize, items: &[Item], failed: bool) {
    let s = d.stats();
    assert_eq!(s.messages, s.tags.values().sum::<u64>());
    let fragments = items
        .iter()
        .filter(|i| matches!(i, Item::Fragment(_)))
        .count();
    assert_eq!(s.fragments, fragments as u64);
    assert!(s.bytes >= 4 * s.messages);
    if !failed {
        // Every byte fed is either consumed, discarded as truncated, or
        // still buffered.
        assert_eq!(d.position() + d.buffered() as u64, fed as u64);
        assert!(s.bytes <= d.position());
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, split, stream @ ..] = data else {
        return;
    };
    let max = match control & 3 {
        0 => 64,
        1 => 1024,
        2 => 70_000,
        _ => DEFAULT_MAX_MESSAGE,
    };
    let mut input = Vec::new();
    if control & 4 != 0 {
        input.extend_from_slice(&moov_message());
    }
    input.extend_from_slice(stream);
    let input = input.as_slice();

    if control & 8 == 0 {
        // Plain byte stream: output must not depend on where it is split.
        let at = usize::from(*split) * input.len() / 255;
        let (a, b) = input.split_at(at.min(input.len()));

        let mut whole = Deframer::new(max);
        whole.feed(input);
        let mut want = Vec::new();
        let want_err = drain(&mut whole, max, &mut want);
        check_stats(&whole, input.len(), &want, want_err.is_some());

        let mut parts = Deframer::new(max);
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

        if want_err.is_none() {
            let clean = whole.is_clean();
            let end = whole.end_of_stream();
            assert_eq!(end.is_ok(), clean);
            assert!(whole.is_clean());
        }
    } else {
        // WebSocket messages of `split` bytes each, with end_of_message
        // after each: truncation is reported and recovered from.
        let chunk = usize::from(*split).max(1);
        let mut d = Deframer::new(max);
        let mut items = Vec::new();
        let mut fed = 0;
        let mut failed = false;
        for piece in input.chunks(chunk) {
            d.feed(piece);
            fed += piece.len();
            if drain(&mut d, max, &mut items).is_some() {
                failed = true;
                break;
            }
            match d.end_of_message() {
                Ok(()) => assert_eq!(d.buffered(), 0),
                Err(Error::Truncated { declared, got, .. }) => {
                    assert!(got < declared);
                    assert_eq!(d.buffered(), 0);
                }
                Err(other) => panic!("end_of_message returned {other:?}"),
            }
        }
        check_stats(&d, fed, &items, failed);
    }
});
