//! Fuzzes the RFC 7798 (RTP H.265) depacketizer.
//!
//! Input layout: a control byte (size limit in bits 0-1, loss policy in bit
//! 2, DONL fields present in bit 3, first sequence number from the rest),
//! then records of a sequence number step (signed), a flags byte, a length
//! byte and that many bytes (fewer at the end of the input). Flags: bit 0 is
//! the marker; bits 1-2 move the timestamp (not, +3000, -3000, +1); bit 3
//! wraps the bytes in a well-formed payload, so whole units come out: bits
//! 4-5 pick a single NAL unit, an AP of the bytes cut in two, or an FU
//! fragment (start, or with bit 6 end), and bit 7 makes the NAL unit an IDR
//! slice (else a trailing one), whose first byte sets
//! first_slice_segment_in_pic_flag.

#![no_main]

use camflow::proto::rtp_h265::{Depacketizer, OnLoss, DEFAULT_MAX_FRAME};
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
    let don = control & 8 != 0;
    let donl: &[u8] = if don { &[0, 1] } else { &[] };
    let mut d = Depacketizer::new(max, on_loss, u32::from(don));
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
            let typ: u8 = if flags & 0x80 != 0 { 19 } else { 1 };
            match flags >> 4 & 3 {
                0 => {
                    payload.extend_from_slice(&[typ << 1, 1]);
                    payload.extend_from_slice(donl);
                    payload.push(0x80);
                }
                1 => {
                    let (a, b) = body.split_at(body.len() / 2);
                    payload.extend_from_slice(&[48 << 1, 1]);
                    for (i, part) in [a, b].into_iter().enumerate() {
                        if don {
                            payload.extend_from_slice(if i == 0 { &[0, 1] } else { &[1] });
                        }
                        payload.extend_from_slice(&(part.len() as u16 + 2).to_be_bytes());
                        payload.extend_from_slice(&[typ << 1, 1]);
                        payload.extend_from_slice(part);
                    }
                }
                2 => {
                    payload.extend_from_slice(&[49 << 1, 1, 0x80 | typ]);
                    payload.extend_from_slice(donl);
                    payload.push(0x80);
                }
                _ => {
                    let end = if flags & 0x40 != 0 { 0x40 } else { 0 };
                    payload.extend_from_slice(&[49 << 1, 1, end | typ]);
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
                assert!(
                    len >= 2 && len <= after.len(),
                    "length prefix past the unit"
                );
                nals.push(&after[..len]);
                left = &after[len..];
            }
            assert!(left.is_empty(), "length prefixes do not add up");
            assert!(!nals.is_empty());
            // Key means an IRAP picture is in it.
            assert_eq!(
                au.key,
                nals.iter().any(|n| (16..=23).contains(&(n[0] >> 1 & 0x3F)))
            );
            let p = &au.params;
            for ps in p.vps.iter().chain(&p.sps).chain(&p.pps) {
                assert!(nals.contains(&&ps[..]));
            }
            assert!(!au.damaged || on_loss == OnLoss::Conceal);
        }
        assert_eq!(d.stats().units, units);
    }
});
