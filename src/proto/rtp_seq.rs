//! RTP sequence numbers as RFC 3550 appendix A.1 reads them, for every
//! depacketizer (`rtp_jpeg`, `rtp_h264`, `rtp_h265`): small forward gaps
//! are loss, small steps back are late packets, and a large jump counts
//! only once the packet after it confirms it. Packets are never put back
//! in order.

/// A jump of more than this many sequence numbers is not a loss but a
/// discontinuity (RFC 3550 appendix A.1, MAX_DROPOUT).
pub const MAX_DROPOUT: u16 = 3000;

/// A packet at most this many sequence numbers behind the newest is late:
/// reordered or duplicated (RFC 3550 appendix A.1, MAX_MISORDER).
pub const MAX_MISORDER: u16 = 100;

/// What the sequence number says about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// The one expected (or the first).
    Next,
    /// That many packets are missing before it.
    Gap(u16),
    /// The sender restarted its sequence; the last number was this.
    Resync(u16),
    /// Duplicate, late, or stray: skip it.
    Ignore,
}

/// The newest sequence number accepted, and a jump waiting to be confirmed.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    last: Option<u16>,
    /// After a lone packet far from the sequence: the number that, coming
    /// next, confirms the jump.
    probation: Option<u16>,
}

impl SeqTracker {
    /// Classifies `seq` and, unless it is to be ignored, accepts it.
    pub fn classify(&mut self, seq: u16) -> Seq {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return Seq::Next;
        };
        let delta = seq.wrapping_sub(last);
        let verdict = match delta {
            1 => Seq::Next,
            2..=MAX_DROPOUT => Seq::Gap(delta - 1),
            _ if delta == 0 || delta > u16::MAX - MAX_MISORDER => return Seq::Ignore,
            _ if self.probation == Some(seq) => Seq::Resync(last),
            _ => {
                // One packet far away is a stray; the next one right after
                // it would show the sender restarted.
                self.probation = Some(seq.wrapping_add(1));
                return Seq::Ignore;
            }
        };
        self.probation = None;
        self.last = Some(seq);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_late_packets_wraps_and_confirmed_jumps() {
        let mut t = SeqTracker::default();
        assert_eq!(t.classify(65534), Seq::Next);
        assert_eq!(t.classify(65535), Seq::Next);
        assert_eq!(t.classify(0), Seq::Next);
        assert_eq!(t.classify(3), Seq::Gap(2));
        assert_eq!(t.classify(2), Seq::Ignore);
        assert_eq!(t.classify(3), Seq::Ignore);
        // A stray far away is ignored; confirmed by the next, it is a restart.
        assert_eq!(t.classify(20000), Seq::Ignore);
        assert_eq!(t.classify(4), Seq::Next);
        assert_eq!(t.classify(30000), Seq::Ignore);
        assert_eq!(t.classify(30001), Seq::Resync(4));
        assert_eq!(t.classify(30002), Seq::Next);
    }
}
