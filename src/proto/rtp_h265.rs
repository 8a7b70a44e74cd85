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
            AP => aggregate(&payload[2..], payload.len(), don, header).map(Payload::Aggregate),
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
