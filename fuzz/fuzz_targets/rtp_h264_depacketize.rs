//! Fuzzes the RFC 6184 (RTP H.264) depacketizer.
//!
//! Input layout: a control byte (size limit in bits 0-1, loss policy in bit
//! 2, first sequence number from the rest), then records of a sequence
//! number step (signed), a flags byte, a length byte and that many bytes
//! (fewer at the end of the input). Flags: bit 0 is the marker; bits 1-2
//! move the timestamp (not, +3000, -3000, +1); bit 3 wraps the bytes in a
//! well-formed payload, so whole units come out: bits 4-5 pick a single NAL
//! unit, a STAP-A of the bytes cut in two, or a FU-A fragment (start, or
//! with bit 6 end), and bit 7 makes the NAL unit an IDR slice (else a
//! non-IDR one), whose first byte says first_mb_in_slice is 0.

#![no_main]

use camflow::proto::rtp_h264::{Depacketizer, OnLoss, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [control, records @ ..] = data else {
        return;
    };
    let max = [300, 4096, 1 << 16, DEFAULT_MAX_FRAME][usize::from(control & 3)];
    let on_loss = if control & 4 == 0 {
        OnLoss::SkipToKeyframe
    } else {
        OnLoss::Conceal
    };
    let mut d = Depacketizer::new(max, on_loss);
    let mut seq = u16::from(*control) << 8;
    let mut ts = 0u32;
    let mut units = 0u64;
    let mut payload = Vec::new();
    let mut rest = records;
    while let [step, flags, len, tail @ ..] = rest {
        let (body, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        seq = seq.wrapping_add(*step as i8 as u16);
        ts = match flags >> 1 & 3 {
            0 => ts,
            1 => ts.wrapping_add(3000),
            2 => ts.wrapping_sub(3000),
            _ => ts.wrapping_add(1),
        };
        payload.clear();
        if flags & 8 != 0 {
            let header = if flags & 0x80 != 0 { 0x65 } else { 0x41 };
            match flags >> 4 & 3 {
                0 => payload.extend_from_slice(&[header, 0x80]),
                1 => {
                    let (a, b) = body.split_at(body.len() / 2);
                    payload.push(24);
                    for part in [a, b] {
                        payload.extend_from_slice(&(part.len() as u16 + 1).to_be_bytes());
                        payload.push(header);
                        payload.extend_from_slice(part);
                    }
                }
                2 => payload.extend_from_slice(&[header & 0x60 | 28, 0x80 | header & 0x1F, 0x80]),
                _ => {
                    let end = if flags & 0x40 != 0 { 0x40 } else { 0 };
                    payload.extend_from_slice(&[header & 0x60 | 28, end | header & 0x1F]);
                }
            }
        }
        if flags & 0x38 != 0x18 {
            payload.extend_from_slice(body);
        }
        let pushed = d.push(seq, ts, flags & 1 == 1, &payload);
        if let Err(dropped) = pushed {
            assert!(!dropped.to_string().contains('\n'));
        }
        while let Some(au) = d.pull() {
            units += 1;
            assert!(au.data.len() <= max);
            let mut nals = Vec::new();
            let mut left = &au.data[..];
            while let Some((len, after)) = left.split_first_chunk::<4>() {
                let len = u32::from_be_bytes(*len) as usize;
                assert!(len > 0 && len <= after.len(), "length prefix past the unit");
                nals.push(&after[..len]);
                left = &after[len..];
            }
            assert!(left.is_empty(), "length prefixes do not add up");
            assert!(!nals.is_empty());
            // Key means an IDR slice is in it.
            assert_eq!(au.key, nals.iter().any(|n| n[0] & 0x1F == 5));
            for ps in au.params.sps.iter().chain(&au.params.pps) {
                assert!(nals.contains(&&ps[..]));
            }
            assert!(!au.damaged || on_loss == OnLoss::Conceal);
        }
        assert_eq!(d.stats().units, units);
    }
});
