//! RTP H.265 depacketizer (RFC 7798): rebuilds access units from the
//! payloads of the RTP packets that carry a camera's H.265.
//!
//! In: every RTP packet of the stream, in arrival order, as its sequence
//! number, timestamp, marker bit and payload ([`Depacketizer::push`]); the
//! RTP header itself is parsed by the caller. Out ([`Depacketizer::pull`]):
//! one [`AccessUnit`] per RTP timestamp, its NAL units each prefixed by its
//! 4-byte big-endian length (what a decoder given `hvcC` extradata takes),
//! whether it is an IRAP picture, and the VPS, SPS and PPS it carried; or
//! why something was thrown away ([`Dropped`], from `push`).
//!
//! Packets: single NAL unit packets (types 0-47), aggregation packets (48)
//! and fragmentation units (49); PACI (50) and the undefined types are
//! counted and skipped. The DONL and DOND fields are present only when the
//! SDP's `sprop-max-don-diff` is above 0; they are skipped, not used to
//! reorder. Sessions that begin anywhere, losses ([`OnLoss`]), bad payloads
//! and the size limit are handled as for H.264 ([`super::rtp_h264`]).

use bytes::Bytes;

use super::rtp_h264::{aggregate, Codec, Core, Payload};
pub use super::rtp_h264::{Dropped, OnLoss, Reason, Stats, DEFAULT_MAX_FRAME};

/// One H.265 access unit.
pub type AccessUnit = super::rtp_h264::AccessUnit<ParameterSets>;

/// The parameter sets an H.265 access unit carried, each NAL unit whole
/// (header included), in arrival order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

/// RFC 7798 section 4.4 payload types, and the NAL unit types (ITU-T H.265
/// table 7-1) this module looks at.
const AP: u8 = 48;
const FU: u8 = 49;
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

/// Bytes of the DONL field (and the DOND field is one).
const DONL: usize = 2;

/// The NAL unit type in a 2-byte NAL unit (or payload) header, checked.
fn header(nal: &[u8]) -> Result<u8, Reason> {
    match *nal {
        [] => Err(Reason::Empty),
        [_] => Err(Reason::Short { len: 1, need: 2 }),
        [h0, ..] if h0 & 0x80 != 0 => Err(Reason::ForbiddenBit),
        // nuh_temporal_id_plus1 of 0 is forbidden (7.4.2.2).
        [_, h1, ..] if h1 & 7 == 0 => Err(Reason::BadHeader),
        [h0, ..] => Ok(h0 >> 1 & 0x3F),
    }
}

/// The type of a NAL unit inside an aggregation packet: not itself an
/// aggregation, fragmentation or PACI type (RFC 7798 section 4.4.2).
fn unit(nal: &[u8]) -> Result<u8, Reason> {
    match header(nal)? {
        48..=63 => Err(Reason::BadHeader),
        typ => Ok(typ),
    }
}

/// The RFC 7798 payload format.
#[derive(Debug)]
struct H265 {
    /// DONL and DOND fields are present (`sprop-max-don-diff` > 0).
    don: bool,
}

impl Codec for H265 {
    type Params = ParameterSets;
    const HEADER_LEN: usize = 2;

    fn parse<'a>(&self, payload: &'a [u8]) -> Result<Payload<'a>, Reason> {
        let typ = header(payload)?;
        let don = if self.don { DONL } else { 0 };
        let short = |need| Reason::Short {
            len: payload.len(),
            need,
        };
        match typ {
            0..=47 if don == 0 => Ok(Payload::Single(payload)),
            // The DONL field sits between the header and the rest: the
            // unit is rebuilt as a fragment that starts and ends here.
            0..=47 => {
                let &[h0, h1, _, _, ref data @ ..] = payload else {
                    return Err(short(2 + don));
                };
                Ok(Payload::Fragment {
                    start: true,
                    end: true,
                    header: [h0, h1],
                    header_len: 2,
                    data,
                })
            }
            AP => aggregate(&payload[2..], payload.len(), don, unit).map(Payload::Aggregate),
            FU => {
                let &[h0, h1, fu, ref data @ ..] = payload else {
                    return Err(short(3));
                };
                let typ = fu & 0x3F;
                if typ >= AP {
                    return Err(Reason::BadHeader);
                }
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start && end {
                    return Err(Reason::StartAndEnd);
                }
                // Only the first fragment carries the DONL field.
                let data = if start {
                    data.get(don..).ok_or(short(3 + don))?
                } else {
                    data
                };
                Ok(Payload::Fragment {
                    start,
                    end,
                    header: [h0 & 0x81 | typ << 1, h1],
                    header_len: 2,
                    data,
                })
            }
            _ => Ok(Payload::Unsupported),
        }
    }

    fn note(params: &mut ParameterSets, nal: &[u8]) -> bool {
        match nal.first().map(|h| h >> 1 & 0x3F) {
            Some(VPS) => params.vps.push(Bytes::copy_from_slice(nal)),
            Some(SPS) => params.sps.push(Bytes::copy_from_slice(nal)),
            Some(PPS) => params.pps.push(Bytes::copy_from_slice(nal)),
            // BLA, IDR, CRA and the reserved IRAP types.
            Some(16..=23) => return true,
            _ => {}
        }
        false
    }

    fn starts_unit(header: &[u8], next: Option<u8>) -> bool {
        match header.first().map(|h| h >> 1 & 0x3F) {
            // VPS, SPS, PPS, access unit delimiter, prefix SEI and the
            // reserved types that come before the first slice (7.4.2.4.4).
            Some(32..=35 | 39 | 41..=44) => true,
            // A slice segment with first_slice_segment_in_pic_flag set.
            Some(0..=31) => next.is_some_and(|b| b & 0x80 != 0),
            _ => false,
        }
    }
}

/// Rebuilds H.265 access units from RFC 7798 RTP payloads.
#[derive(Debug)]
pub struct Depacketizer {
    core: Core<H265>,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME, OnLoss::default(), 0)
    }
}

impl Depacketizer {
    /// `max_frame` bounds each access unit, length prefixes included;
    /// `sprop_max_don_diff` is the SDP's (0 when absent): above 0, payloads
    /// carry DONL and DOND fields.
    pub fn new(max_frame: usize, on_loss: OnLoss, sprop_max_don_diff: u32) -> Self {
        let codec = H265 {
            don: sprop_max_don_diff > 0,
        };
        Self {
            core: Core::new(codec, max_frame, on_loss),
        }
    }

    /// One RTP packet of the H.265 stream, in arrival order. Then take the
    /// access units it completed with [`Depacketizer::pull`]. `Err` as for
    /// [`super::rtp_h264::Depacketizer::push`].
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), Dropped> {
        self.core.push(seq, timestamp, marker, payload)
    }

    /// The next access unit done, oldest first.
    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.core.pull()
    }

    pub fn stats(&self) -> &Stats {
        self.core.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::super::rtp_h264::testing::*;
    use super::*;

    // testdata/rtp_h265/: see testdata/README.md. FFmpeg's RTP muxer sending
    // 3 s of 160x120 libx265 video (a key frame every 10) in packets of at
    // most 400 bytes, and FFmpeg's decode of the same stream.
    const CAPTURE: &[u8] = include_bytes!("../../testdata/rtp_h265/ffmpeg-160x120.rtp");
    const FRAMEMD5: &str = include_str!("../../testdata/rtp_h265/ffmpeg-160x120.framemd5");

    const VPS_NAL: &[u8] = &[0x40, 0x01, 0x0C, 0x01, 0xFF, 0xFF];
    const SPS_NAL: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60];
    const PPS_NAL: &[u8] = &[0x44, 0x01, 0xC0, 0x73];

    /// A slice segment of NAL type `typ`; `first` if it is the first of its
    /// picture.
    fn slice(typ: u8, len: usize, first: bool) -> Vec<u8> {
        let mut nal = vec![typ << 1, 0x01, if first { 0xAF } else { 0x2F }];
        nal.extend((0..len - 3).map(|i| (i * 5) as u8 | 1));
        nal
    }

    impl Depack for Depacketizer {
        type Params = ParameterSets;
        fn push_pkt(&mut self, p: &Pkt) -> Result<(), Dropped> {
            self.push(p.seq, p.ts, p.marker, &p.payload)
        }
        fn pull_unit(&mut self) -> Option<AccessUnit> {
            self.pull()
        }
    }

    /// Cuts NAL units into RFC 7798 payloads; with DONL fields if `don`.
    struct Packer {
        s: Sender,
        don: bool,
    }

    impl Packer {
        fn single(&mut self, ts: u32, marker: bool, nal: &[u8]) -> Pkt {
            let mut payload = nal[..2].to_vec();
            if self.don {
                payload.extend_from_slice(&[0, 7]);
            }
            payload.extend_from_slice(&nal[2..]);
            self.s.pkt(ts, marker, payload)
        }

        fn ap(&mut self, ts: u32, marker: bool, nals: &[&[u8]]) -> Pkt {
            let mut payload = vec![AP << 1, 0x01];
            for (i, nal) in nals.iter().enumerate() {
                if self.don {
                    payload.extend_from_slice(if i == 0 { &[0, 7] } else { &[1] });
                }
                payload.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                payload.extend_from_slice(nal);
            }
            self.s.pkt(ts, marker, payload)
        }

        fn fu(&mut self, ts: u32, marker: bool, nal: &[u8], cuts: &[usize]) -> Vec<Pkt> {
            let don = self.don;
            self.s.fragments(ts, marker, &nal[2..], cuts, |flags| {
                let mut head = vec![nal[0] & 0x81 | FU << 1, nal[1], flags | nal[0] >> 1 & 0x3F];
                if don && flags & 0x80 != 0 {
                    head.extend_from_slice(&[0, 7]);
                }
                head
            })
        }

        fn key(&mut self, ts: u32) -> Vec<Pkt> {
            let mut pkts = vec![self.ap(ts, false, &[VPS_NAL, SPS_NAL, PPS_NAL])];
            pkts.extend(self.fu(ts, true, &slice(19, 60, true), &[20, 40]));
            pkts
        }

        fn delta(&mut self, ts: u32) -> Vec<Pkt> {
            self.fu(ts, true, &slice(1, 60, true), &[20, 40])
        }
    }

    fn packer(don: bool) -> Packer {
        Packer {
            s: Sender { seq: 65000 },
            don,
        }
    }

    fn depacketizer(don: bool, on_loss: OnLoss) -> Depacketizer {
        Depacketizer::new(DEFAULT_MAX_FRAME, on_loss, u32::from(don))
    }

    #[test]
    fn ffmpeg_capture_decodes_as_the_stream_sent() {
        let pkts = read_capture(CAPTURE);
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!(drops, []);
        assert_eq!(units.len(), 30);
        let keys: Vec<usize> = (0..30).filter(|&i| units[i].key).collect();
        assert_eq!(keys, [0, 10, 20]);
        for au in units.iter().filter(|au| au.key) {
            let p = &au.params;
            assert_eq!((p.vps.len(), p.sps.len(), p.pps.len()), (1, 1, 1));
        }
        assert!(units.iter().all(|au| !au.damaged));
        assert_eq!(ffmpeg_framemd5("hevc", &annex_b(&units)), FRAMEMD5);
    }

    #[test]
    fn single_ap_and_fu_round_trip_with_and_without_donl() {
        for don in [false, true] {
            let mut p = packer(don);
            let idr = slice(19, 40, true);
            let trail = slice(1, 30, true);
            let mut pkts = vec![
                p.ap(0, false, &[VPS_NAL, SPS_NAL]),
                p.single(0, false, PPS_NAL),
                p.single(0, true, &idr),
            ];
            pkts.extend(p.fu(3000, true, &trail, &[5]));
            let (units, drops) = run(&mut depacketizer(don, OnLoss::SkipToKeyframe), &pkts);
            assert_eq!(drops, [], "don {don}");
            assert_eq!(units.len(), 2);
            assert_eq!(units[0].data, avcc(&[VPS_NAL, SPS_NAL, PPS_NAL, &idr]));
            assert!(units[0].key);
            assert_eq!(units[0].params.vps, [VPS_NAL]);
            assert_eq!(units[0].params.sps, [SPS_NAL]);
            assert_eq!(units[0].params.pps, [PPS_NAL]);
            assert_eq!(units[1].data, avcc(&[&trail]));
            assert!(!units[1].key);
        }
    }

    #[test]
    fn every_split_of_a_fragmented_nal_unit_gives_it_back() {
        let nal = slice(21, 30, true);
        for don in [false, true] {
            for cut in 1..nal.len() - 2 {
                let mut p = packer(don);
                let mut pkts = vec![p.ap(5, false, &[VPS_NAL, SPS_NAL, PPS_NAL])];
                pkts.extend(p.fu(5, true, &nal, &[cut]));
                let (units, drops) = run(&mut depacketizer(don, OnLoss::Conceal), &pkts);
                assert_eq!(drops, [], "{cut}");
                assert_eq!(units[0].data, avcc(&[VPS_NAL, SPS_NAL, PPS_NAL, &nal]));
            }
        }
    }

    #[test]
    fn a_session_joined_anywhere_starts_at_the_next_whole_key_unit() {
        let starts_nal = |p: &[u8]| p[0] >> 1 & 0x3F != FU || p[2] & 0x80 != 0;
        let has_slice = |p: &[u8]| match p[0] >> 1 & 0x3F {
            FU => p[2] & 0x3F < 32,
            typ => typ < 32,
        };
        check_joins(
            |on_loss| depacketizer(false, on_loss),
            &read_capture(CAPTURE),
            starts_nal,
            has_slice,
        );
    }

    #[test]
    fn loss_mid_fragment_under_both_policies() {
        let mut p = packer(false);
        let mut pkts = p.key(0);
        let mut b = p.delta(3000);
        b.remove(1);
        pkts.extend(b);
        pkts.extend(p.delta(6000));
        pkts.extend(p.key(9000));
        let mut d = depacketizer(false, OnLoss::SkipToKeyframe);
        let (units, drops) = run(&mut d, &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 9000]);
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].what, Reason::Lost { count: 1 });
        // Concealed: B's one NAL unit is gone, so B is; C goes on.
        let mut d = depacketizer(false, OnLoss::Conceal);
        let (units, drops) = run(&mut d, &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 6000, 9000]);
        assert_eq!(drops, []);
        assert_eq!(d.stats().lost_packets, 1);
    }

    #[test]
    fn payloads_that_make_no_sense_are_reported_and_end_nothing() {
        let cases: [(&[u8], Reason); 8] = [
            (
                &[AP << 1, 0x01, 0x00, 0x02, AP << 1, 0x01],
                Reason::BadHeader,
            ),
            (&[], Reason::Empty),
            (&[0x02], Reason::Short { len: 1, need: 2 }),
            (&[0x82, 0x01, 0xAF], Reason::ForbiddenBit),
            (&[0x02, 0x00, 0xAF], Reason::BadHeader),
            (&[FU << 1, 0x01], Reason::Short { len: 2, need: 3 }),
            (&[FU << 1, 0x01, 0x80 | 49, 1], Reason::BadHeader),
            (
                &[AP << 1, 0x01, 0x00, 0x09, 0x02],
                Reason::PastEnd { len: 9, left: 1 },
            ),
        ];
        for (payload, reason) in cases {
            let mut p = packer(false);
            let mut pkts = p.key(0);
            pkts.push(p.s.pkt(3000, true, payload.to_vec()));
            pkts.extend(p.key(6000));
            let mut d = depacketizer(false, OnLoss::Conceal);
            let (units, drops) = run(&mut d, &pkts);
            assert_eq!(drops.len(), 1, "{payload:?}");
            assert_eq!(drops[0].what, reason, "{payload:?}");
            assert_eq!(units.len(), 2);
        }
        // PACI and the undefined types are skipped.
        let mut p = packer(false);
        let mut pkts = p.key(0);
        for typ in [50u8, 51, 63] {
            pkts.push(p.s.pkt(3000, false, vec![typ << 1, 1, 0, 0]));
        }
        pkts.extend(p.delta(3000));
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!((units.len(), drops.len()), (2, 0));
        assert_eq!(d.stats().unsupported_packets, 3);
    }

    #[test]
    fn garbage_never_panics_and_units_stay_well_formed() {
        let mut rng = Lcg(7798);
        for round in 0..200 {
            let max = [64, 300, DEFAULT_MAX_FRAME][round % 3];
            let on_loss = [OnLoss::SkipToKeyframe, OnLoss::Conceal][round % 2];
            let mut d = Depacketizer::new(max, on_loss, (round % 4) as u32);
            // Mostly valid headers, to reach past the first checks.
            let pkts = garbage(&mut rng, |payload, r| {
                if let [h0, h1, ..] = payload {
                    *h0 &= 0x7F;
                    *h1 |= 1;
                    if r & 4 != 0 {
                        *h0 = *h0 & 0x81 | [1, 19, 32, 48, 49, 49][usize::from(r >> 3) % 6] << 1;
                    }
                }
            });
            let (units, _) = run(&mut d, &pkts);
            assert!(units.iter().all(|au| au.data.len() <= max));
        }
    }
}
