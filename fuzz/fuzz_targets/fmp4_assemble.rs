//! Fuzzes the raw-fMP4 assembler (plain fMP4 over WebSocket).
//!
//! Input layout: a control byte (size limit), a split byte, then the stream.
//! Invariants: no panic; the same chunks (or the same error) wherever the
//! stream is split; every chunk within the limit; a fragment only after an
//! init segment; each chunk is a run of whole boxes.

#![no_main]

use camflow::packet::Chunk;
use camflow::proto::{bmff, fmp4};
use libfuzzer_sys::fuzz_target;

fn run(parts: &[&[u8]], max: usize) -> (Vec<Chunk>, Option<String>) {
    let mut a = fmp4::Assembler::new(max);
    let mut out = Vec::new();
    for p in parts {
        a.feed(p);
        loop {
            match a.next_chunk() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => break,
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'));
                    return (out, Some(msg));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let [control, split, stream @ ..] = data else {
        return;
    };
    let max = match control & 3 {
        0 => 64,
        1 => 4096,
        _ => 1 << 20,
    };
    let at = (usize::from(*split) * stream.len() / 255).min(stream.len());
    let (a, b) = stream.split_at(at);
    let whole = run(&[stream], max);
    let parts = run(&[a, b], max);
    // An error stops the assembler, so only the chunks before it compare.
    if whole.1.is_none() && parts.1.is_none() {
        assert_eq!(whole.0, parts.0);
    }
    let mut seen_init = false;
    for c in &whole.0 {
        match c {
            Chunk::Init(_) => seen_init = true,
            Chunk::Fragment(f) => {
                assert!(seen_init, "fragment before init");
                assert!(f.len() <= max);
            }
            Chunk::Data(_) => panic!("the assembler only cuts init segments and fragments"),
        }
        // Whole boxes only.
        for b in bmff::boxes(c.bytes()) {
            assert!(b.is_ok());
        }
    }
});
