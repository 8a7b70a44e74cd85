//! Fuzzes the RFC 2435 (RTP/JPEG) depacketizer.
//!
//! Input layout: a control byte (size limit, first sequence number), then
//! records of a sequence number step (signed), a flags byte, a length byte
//! and that many payload bytes (fewer at the end of the input). Flags: bit 0
//! is the marker; bits 1-2 move the timestamp (not, +3000, -3000, +1); bit 3
//! puts well-formed RFC 2435 headers before the payload bytes, so whole
//! frames come out: the fragment offset the harness counted, the type from
//! bits 4-5 (0, 1, 64, 65), Q 50 or, with bit 6, Q 200, whose first packet
//! carries tables or, with bit 7, a table length of 0.

#![no_main]

use camflow::proto::jpeg::dimensions;
use camflow::proto::rtp_jpeg::{Depacketizer, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [control, records @ ..] = data else {
        return;
    };
    let max = match control & 3 {
        0 => 700,
        1 => 2048,
        2 => 1 << 16,
        _ => DEFAULT_MAX_FRAME,
    };
    let mut d = Depacketizer::new(max);
    let mut seq = u16::from(*control) << 8;
    let mut ts = 0u32;
    // Scan bytes sent so far in the harness's current frame.
    let mut offset = 0usize;
    let mut frames = 0u64;
    let mut errs = 0u64;
    let mut payload = Vec::new();
    let mut rest = records;
    while let [step, flags, len, tail @ ..] = rest {
        let (body, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        seq = seq.wrapping_add(*step as i8 as u16);
        let new_ts = match flags >> 1 & 3 {
            0 => ts,
            1 => ts.wrapping_add(3000),
            2 => ts.wrapping_sub(3000),
            _ => ts.wrapping_add(1),
        };
        if new_ts != ts {
            offset = 0;
        }
        ts = new_ts;
        let marker = flags & 1 == 1;

        payload.clear();
        if flags & 8 != 0 {
            let typ = [0, 1, 64, 65][usize::from(flags >> 4 & 3)];
            let q = if flags & 0x40 != 0 { 200 } else { 50 };
            let [_, o0, o1, o2] = u32::try_from(offset).unwrap_or(0).to_be_bytes();
            payload.extend_from_slice(&[0, o0, o1, o2, typ, q, 8, 6]);
            if typ >= 64 {
                payload.extend_from_slice(&[0, 4, 0xFF, 0xFF]);
            }
            if q >= 128 && offset == 0 {
                if flags & 0x80 != 0 {
                    payload.extend_from_slice(&[0, 0, 0, 0]);
                } else {
                    payload.extend_from_slice(&[0, 0, 0, 128]);
                    payload.extend(1..=128u8);
                }
            }
            offset += body.len();
        }
        payload.extend_from_slice(body);
        if marker {
            offset = 0;
        }

        match d.push(seq, ts, marker, &payload) {
            Ok(Some(frame)) => {
                frames += 1;
                let jpeg = &frame.data[..];
                assert!(jpeg.len() <= max);
                assert!(jpeg.starts_with(&[0xFF, 0xD8]));
                assert!(jpeg.ends_with(&[0xFF, 0xD9]));
                assert_eq!(frame.timestamp, ts);
                assert!(frame.width > 0 && frame.width % 8 == 0);
                assert!(frame.height > 0 && frame.height % 8 == 0);
                // The rebuilt headers are well-formed up to the frame header.
                assert_eq!(dimensions(jpeg), Some((frame.width, frame.height)));
            }
            Ok(None) => {}
            Err(dropped) => {
                errs += 1;
                assert!(!dropped.to_string().contains('\n'));
            }
        }
        let stats = d.stats();
        assert_eq!(stats.frames, frames);
        // One push may drop two frames, or drop one and return another.
        assert!(stats.dropped_frames >= errs);
    }
});
