//! Fuzzes the ISO-BMFF box splitter and the init/fragment parsers.
//!
//! Input layout: a control byte (size limit), a split byte, then the stream.

#![no_main]

use bytes::Bytes;
use camflow::proto::bmff::{self, BoxHeader, BoxSplitter, Error};
use camflow::proto::evostream;
use libfuzzer_sys::fuzz_target;

fn drain(s: &mut BoxSplitter, max: u64, out: &mut Vec<(BoxHeader, Bytes)>) -> Option<Error> {
    loop {
        match s.next_box() {
            Ok(Some((header, data))) => {
                assert!(header.size <= max);
                assert_eq!(header.size, data.len() as u64);
                assert!(header.header_len <= data.len());
                assert_eq!(bmff::parse_header(&data), Ok(Some(header)));
                out.push((header, data));
            }
            Ok(None) => return None,
            Err(err) => {
                assert_eq!(s.next_box(), Err(err.clone()));
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
        1 => 4096,
        2 => 1 << 20,
        _ => u64::MAX,
    };

    // Splitting: the same boxes whatever the split point, and the boxes
    // are exactly the input's prefix.
    let at = (usize::from(*split) * stream.len() / 255).min(stream.len());
    let (a, b) = stream.split_at(at);
    let mut whole = BoxSplitter::new(max);
    whole.feed(stream);
    let mut want = Vec::new();
    let want_err = drain(&mut whole, max, &mut want);

    let mut parts = BoxSplitter::new(max);
    let mut got = Vec::new();
    parts.feed(a);
    let mut got_err = drain(&mut parts, max, &mut got);
    if got_err.is_none() {
        parts.feed(b);
        got_err = drain(&mut parts, max, &mut got);
    }
    assert_eq!(got, want);
    assert_eq!(got_err, want_err);

    let joined: Vec<u8> = want.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    assert!(stream.starts_with(&joined));
    if want_err.is_none() {
        assert_eq!(joined.len() + whole.buffered(), stream.len());
        assert_eq!(whole.offset(), joined.len() as u64);
    }

    // The complete-buffer walk never claims more than the buffer holds.
    let mut end = 0u64;
    for b in bmff::boxes(stream) {
        let Ok(b) = b else { break };
        assert_eq!(b.offset, end);
        assert_eq!(b.header.header_len + b.body.len(), b.header.size as usize);
        end += b.header.size;
    }
    assert!(end <= stream.len() as u64);

    // Parsers: no panics, and results bounded by the input.
    let init = bmff::parse_init(stream);
    if let Ok(info) = &init {
        assert!(info.tracks.len() <= stream.len() / 8);
    }
    if let Ok(frag) = bmff::parse_fragment(stream) {
        assert!(frag.trafs.len() <= stream.len() / 8);
        if let Some(len) = frag.mdat_len {
            assert!(len <= stream.len() as u64);
        }
    }
    if let Ok(info) = &init {
        let _ = bmff::parse_fragment_with_init(stream, info);
    }
    // Each split box on its own, as a receiver would hand them over.
    for (_, data) in &want {
        let _ = bmff::parse_fragment(data);
        let _ = bmff::parse_init(data);
    }
    let _ = bmff::looks_like_bmff(stream);
    let _ = evostream::looks_like_evostream(stream);
});
