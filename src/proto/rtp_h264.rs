//! RTP H.264 depacketizer (RFC 6184): rebuilds access units from the
//! payloads of the RTP packets that carry a camera's H.264, and the parts of
//! it that RFC 7798 (H.265, [`super::rtp_h265`]) shares.
//!
//! In: every RTP packet of the stream, in arrival order, as its sequence
//! number, timestamp, marker bit and payload ([`Depacketizer::push`]); the
//! RTP header itself is parsed by the caller. Out ([`Depacketizer::pull`]):
//! one [`AccessUnit`] per RTP timestamp, its NAL units each prefixed by its
//! 4-byte big-endian length (AVCC, what a decoder given `avcC` extradata
//! takes), whether it is a key picture, and the parameter sets it carried;
//! or why something was thrown away ([`Dropped`], from `push`).
//!
//! Packets: single NAL unit packets (types 1-23), STAP-A (24) and FU-A (28).
//! STAP-B, MTAP16, MTAP24, FU-B and the undefined types are counted and
//! skipped (packetization-mode 2 is not supported). An access unit ends at
//! its marker packet or at the first packet with another timestamp.
//!
//! A session may begin anywhere, and loses packets: nothing is handed out
//! before the first key access unit that arrived whole and from its start;
//! fragments whose start never came are skipped silently. A sequence gap
//! damages the access unit it falls in (or the one it precedes, unless that
//! one provably starts at its first NAL unit). What follows depends on
//! [`OnLoss`]. Payloads that make no sense are reported, counted and
//! skipped; nothing a packet holds ends the session.

use super::rtp_seq::{Seq, SeqTracker};
use std::collections::VecDeque;

use bytes::Bytes;

/// A limit well above any camera's access unit (a 4K intra picture at a
/// camera's bit rates is a few MiB) that still bounds the memory a bad stream
/// can take.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes of the length prefix before each NAL unit in an access unit.
const PREFIX: usize = 4;

/// What to do with an access unit a loss damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLoss {
    /// Drop the damaged access unit and every one after it until the next
    /// key access unit that arrives whole: the decoder only ever sees
    /// complete pictures whose references it has.
    #[default]
    SkipToKeyframe,
    /// Hand the damaged access unit on with the NAL units that arrived
    /// whole (a NAL unit with a lost fragment is left out), marked
    /// [`AccessUnit::damaged`], and go on: the decoder conceals.
    Conceal,
}

impl std::fmt::Display for OnLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnLoss::SkipToKeyframe => "skip-to-keyframe",
            OnLoss::Conceal => "conceal",
        })
    }
}

impl std::str::FromStr for OnLoss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip-to-keyframe" => Ok(OnLoss::SkipToKeyframe),
            "conceal" => Ok(OnLoss::Conceal),
            _ => Err(format!(
                "unknown loss policy {s:?} (expected skip-to-keyframe or conceal)"
            )),
        }
    }
}

/// One access unit: every NAL unit with one RTP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit<P> {
    /// The NAL units in arrival order, each after its 4-byte big-endian
    /// length (AVCC with `lengthSizeMinusOne` 3, or `hvcC` likewise).
    pub data: Bytes,
    /// The RTP timestamp of its packets.
    pub timestamp: u32,
    /// It holds an IDR slice (H.264) or an IRAP picture (H.265).
    pub key: bool,
    /// A loss or a bad packet took part of it (only with
    /// [`OnLoss::Conceal`]).
    pub damaged: bool,
    /// Packets lost in the gap that damaged it (0 if none did, or it was
    /// damaged by a bad packet or a sequence jump).
    pub lost_packets: u64,
    /// The parameter sets among its NAL units, so the receiver can build a
    /// new decoder configuration when they change.
    pub params: P,
}

/// Something thrown away. Never fatal: push the next packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rtp time {timestamp}, packet {seq}: {what}")]
pub struct Dropped {
    /// The RTP timestamp of the packet or access unit dropped.
    pub timestamp: u32,
    /// The sequence number of the packet that was dropped or showed the
    /// access unit is lost.
    pub seq: u16,
    pub what: Reason,
}

/// Why something was dropped. The first four drop an access unit; the
/// others drop one packet (which damages its access unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Sequence numbers skipped `count` packets in or before the access
    /// unit ([`OnLoss::SkipToKeyframe`]).
    #[error("access unit dropped: {count} packets lost")]
    Lost { count: u64 },
    /// The sequence numbers jumped far from `from` (twice in a row, so not a
    /// stray packet): the sender restarted ([`OnLoss::SkipToKeyframe`]).
    #[error("access unit dropped: sequence numbers jumped from {from}")]
    SeqJump { from: u16 },
    /// A bad packet, or a fragmented NAL unit that never ended, left it
    /// incomplete ([`OnLoss::SkipToKeyframe`]).
    #[error("access unit dropped: incomplete without a loss")]
    Incomplete,
    /// The access unit would be larger than the limit; the rest of its
    /// packets are skipped.
    #[error("access unit dropped: over the {max}-byte limit")]
    TooLarge { max: usize },
    #[error("empty payload")]
    Empty,
    /// The forbidden_zero_bit of a NAL unit header or payload header is set.
    #[error("forbidden bit set in a NAL unit header")]
    ForbiddenBit,
    /// A NAL unit or payload header field holds a value the RFC forbids
    /// (an H.265 TemporalId of 0, or an aggregation or fragmentation type
    /// inside an aggregation or fragmentation packet).
    #[error("invalid NAL unit header")]
    BadHeader,
    /// A payload is shorter than the headers its type needs.
    #[error("payload of {len} bytes is shorter than its {need} bytes of headers")]
    Short { len: usize, need: usize },
    /// An aggregation packet's NAL unit size reaches past the payload.
    #[error("aggregated NAL unit of {len} bytes is past the {left} bytes left")]
    PastEnd { len: usize, left: usize },
    /// An aggregation packet holds a NAL unit shorter than its header.
    #[error("aggregated NAL unit of {len} bytes")]
    TinyNal { len: usize },
    /// A fragmentation unit with both start and end bits set.
    #[error("fragmentation unit with both start and end bits")]
    StartAndEnd,
}

/// Counters since the depacketizer was made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Access units handed out by [`Depacketizer::pull`].
    pub units: u64,
    /// Of those, the damaged ones ([`OnLoss::Conceal`]).
    pub damaged_units: u64,
    /// Access units dropped with a [`Dropped`] report: loss, sequence jump,
    /// incomplete or too large.
    pub dropped_units: u64,
    /// Access units skipped silently while waiting for a key access unit
    /// (at the start, or after a drop with [`OnLoss::SkipToKeyframe`]).
    pub skipped_units: u64,
    /// Packets missing by sequence number: the sizes of the forward gaps,
    /// wrap-aware. A jump of more than 3000 is not counted (see `resyncs`);
    /// a reordered packet counts as lost (and is then ignored as late).
    pub lost_packets: u64,
    /// Packets ignored by sequence number: duplicates, packets up to 100
    /// behind the newest (late), and a lone packet far from the sequence.
    pub ignored_packets: u64,
    /// Sequence numbers that jumped far, twice in a row: a sender restart.
    pub resyncs: u64,
    /// Packets that made no sense, each reported once.
    pub bad_packets: u64,
    /// Packets of a type not supported (STAP-B, MTAP, FU-B, PACI, ...).
    pub unsupported_packets: u64,
    /// Fragments whose fragmented NAL unit's start was lost or never sent
    /// (a session joined mid-fragment), skipped silently.
    pub orphan_fragments: u64,
    /// Packets of access units already dropped for size, skipped.
    pub skipped_packets: u64,
}

/// What a codec's payload format says one RTP payload holds.
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    /// One whole NAL unit.
    Single(&'a [u8]),
    /// Whole NAL units (STAP-A, AP), each checked to hold its header.
    Aggregate(Vec<&'a [u8]>),
    /// A piece of a NAL unit (FU-A, FU): its rebuilt NAL header (`header[..
    /// header_len]`) and payload bytes.
    Fragment {
        start: bool,
        end: bool,
        header: [u8; 2],
        header_len: usize,
        data: &'a [u8],
    },
    /// A packet type this module skips.
    Unsupported,
}

/// What differs between H.264 and H.265.
pub(crate) trait Codec {
    /// The parameter sets an access unit carries.
    type Params: Default + std::fmt::Debug;
    /// Splits one RTP payload.
    fn parse<'a>(&self, payload: &'a [u8]) -> Result<Payload<'a>, Reason>;
    /// Notes one whole NAL unit of an access unit: keeps it if it is a
    /// parameter set, and says whether it makes the access unit key.
    fn note(params: &mut Self::Params, nal: &[u8]) -> bool;
    /// Bytes of a NAL unit header.
    const HEADER_LEN: usize;
    /// Whether a NAL unit, given its header and the byte after it, can only
    /// come before the slices of an access unit or as its first slice: a
    /// parameter set, a delimiter or SEI, or the first slice of a picture.
    /// An access unit whose first packet follows a gap is whole if it begins
    /// with one.
    fn starts_unit(header: &[u8], next: Option<u8>) -> bool;
}

/// An access unit being collected.
#[derive(Debug)]
struct Building<P> {
    timestamp: u32,
    /// A `Vec`, not a `BytesMut`, so its capacity can be held to the
    /// limit (`reserve_exact`); it becomes `Bytes` without a copy.
    buf: Vec<u8>,
    key: bool,
    /// Why it is incomplete, if it is.
    damage: Option<Reason>,
    lost: u64,
    params: P,
    /// A fragmented NAL unit in progress: where its length prefix is.
    frag: Option<usize>,
    /// Its first packet has been seen (fragments skipped as orphans do not
    /// count): the first NAL unit decides whether it starts whole.
    begun: bool,
}

#[derive(Debug)]
enum State<P> {
    /// Between access units.
    Idle,
    InUnit(Building<P>),
    /// The access unit with this timestamp was dropped for size: its other
    /// packets are skipped.
    Skipping(u32),
}

/// The depacketizer, whichever the codec: see the module documentation.
#[derive(Debug)]
pub(crate) struct Core<C: Codec> {
    codec: C,
    max_frame: usize,
    on_loss: OnLoss,
    state: State<C::Params>,
    /// Waiting for a whole key access unit before handing anything out.
    waiting: bool,
    /// An access unit has been begun: the next is not the session's first.
    started: bool,
    /// Access units done and not pulled yet.
    ready: VecDeque<AccessUnit<C::Params>>,
    /// RTP sequence numbers: loss, late packets, restarts.
    seq: SeqTracker,
    /// The size of the last access unit, to allocate the next one's buffer.
    size_hint: usize,
    stats: Stats,
    /// The first report of the current push.
    dropped: Option<Dropped>,
}

impl<C: Codec> Core<C> {
    pub(crate) fn new(codec: C, max_frame: usize, on_loss: OnLoss) -> Self {
        Self {
            codec,
            max_frame,
            on_loss,
            state: State::Idle,
            waiting: true,
            started: false,
            ready: VecDeque::new(),
            seq: SeqTracker::default(),
            size_hint: 0,
            stats: Stats::default(),
            dropped: None,
        }
    }

    pub(crate) fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), Dropped> {
        self.dropped = None;
        let mut broken = None;
        match self.seq.classify(seq) {
            Seq::Next => {}
            Seq::Gap(count) => {
                let count = u64::from(count);
                self.stats.lost_packets += count;
                broken = Some(Reason::Lost { count });
            }
            Seq::Resync(from) => {
                self.stats.resyncs += 1;
                broken = Some(Reason::SeqJump { from });
            }
            Seq::Ignore => {
                self.stats.ignored_packets += 1;
                return Ok(());
            }
        }
        self.packet(seq, timestamp, marker, payload, broken);
        match self.dropped.take() {
            Some(dropped) => Err(dropped),
            None => Ok(()),
        }
    }

    pub(crate) fn pull(&mut self) -> Option<AccessUnit<C::Params>> {
        self.ready.pop_front()
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    fn report(&mut self, timestamp: u32, seq: u16, what: Reason) {
        self.dropped.get_or_insert(Dropped {
            timestamp,
            seq,
            what,
        });
    }

    fn packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        broken: Option<Reason>,
    ) {
        // A packet with another timestamp ends the access unit in progress;
        // one after a gap may have lost that unit's last packets.
        let same = match &mut self.state {
            State::InUnit(b) if b.timestamp == timestamp => {
                if let Some(what) = broken {
                    // A fragment of the NAL unit in progress may be lost.
                    abort_fragment(b);
                    damage(b, what);
                }
                true
            }
            State::Skipping(t) if *t == timestamp => {
                self.stats.skipped_packets += 1;
                if marker {
                    self.state = State::Idle;
                }
                return;
            }
            State::InUnit(b) => {
                if let Some(what) = broken {
                    damage(b, what);
                }
                self.finish(seq);
                false
            }
            State::Skipping(_) | State::Idle => {
                self.state = State::Idle;
                false
            }
        };
        if !same {
            self.begin(timestamp, broken);
        }
        match self.codec.parse(payload) {
            Ok(Payload::Single(nal)) => self.whole(seq, &[nal]),
            Ok(Payload::Aggregate(nals)) => self.whole(seq, &nals),
            Ok(Payload::Fragment {
                start,
                end,
                header,
                header_len,
                data,
            }) => self.fragment(seq, start, end, &header[..header_len], data),
            Ok(Payload::Unsupported) => self.stats.unsupported_packets += 1,
            Err(what) => {
                self.stats.bad_packets += 1;
                self.report(timestamp, seq, what);
                if let State::InUnit(b) = &mut self.state {
                    b.begun = true;
                    abort_fragment(b);
                    damage(b, Reason::Incomplete);
                }
            }
        }
        if marker && matches!(self.state, State::InUnit(_)) {
            self.finish(seq);
        }
        if marker && matches!(self.state, State::Skipping(_)) {
            self.state = State::Idle;
        }
    }

    /// Starts the access unit of a packet. `broken`: a gap came right before
    /// it, which took the end of the last unit, or whole units, or the start
    /// of this one: which one is known only from its first NAL unit.
    fn begin(&mut self, timestamp: u32, broken: Option<Reason>) {
        let mut building = Building {
            timestamp,
            buf: Vec::with_capacity(self.size_hint.min(self.max_frame)),
            key: false,
            damage: None,
            lost: 0,
            params: C::Params::default(),
            frag: None,
            begun: false,
        };
        if let Some(what) = broken {
            if let Reason::Lost { count } = what {
                building.lost = count;
            }
            building.damage = Some(what);
        }
        // The first unit of a session may have begun before it: it is whole
        // only if its first NAL unit shows it.
        if !self.started {
            self.started = true;
            building.damage.get_or_insert(Reason::Incomplete);
        }
        self.state = State::InUnit(building);
    }

    /// Decides, at an access unit's first packet, whether a gap before it
    /// (or the start of the session) took part of it: not if its first NAL
    /// unit is one that starts a unit. Then the gap took only whole units
    /// before it, whose pictures may be references: with
    /// [`OnLoss::SkipToKeyframe`], wait for a key unit (this one may be).
    fn first_packet(&mut self, header: &[u8], next: Option<u8>) {
        let State::InUnit(b) = &mut self.state else {
            return;
        };
        if b.begun {
            return;
        }
        b.begun = true;
        if !C::starts_unit(header, next) {
            return;
        }
        let gap = matches!(b.damage, Some(Reason::Lost { .. } | Reason::SeqJump { .. }));
        b.damage = None;
        b.lost = 0;
        if gap && self.on_loss == OnLoss::SkipToKeyframe {
            self.waiting = true;
        }
    }

    fn whole(&mut self, seq: u16, nals: &[&[u8]]) {
        if let Some(nal) = nals.first() {
            let (header, rest) = nal.split_at(C::HEADER_LEN.min(nal.len()));
            self.first_packet(header, rest.first().copied());
        }
        let State::InUnit(b) = &mut self.state else {
            return;
        };
        // A whole NAL unit inside a fragmented one: the fragmented one's end
        // was lost.
        if b.frag.is_some() {
            abort_fragment(b);
            damage(b, Reason::Incomplete);
        }
        let need: usize = nals.iter().map(|n| PREFIX + n.len()).sum();
        if !self.room(seq, need) {
            return;
        }
        let State::InUnit(b) = &mut self.state else {
            return;
        };
        for nal in nals {
            let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
            b.buf.extend_from_slice(&len.to_be_bytes());
            b.buf.extend_from_slice(nal);
            b.key |= C::note(&mut b.params, nal);
        }
    }

    fn fragment(&mut self, seq: u16, start: bool, end: bool, header: &[u8], data: &[u8]) {
        if start {
            self.first_packet(header, data.first().copied());
        }
        let State::InUnit(b) = &mut self.state else {
            return;
        };
        if start {
            if b.frag.is_some() {
                abort_fragment(b);
                damage(b, Reason::Incomplete);
            }
        } else if b.frag.is_none() {
            // Its start was lost (then a gap damaged the unit already) or
            // came before the session did: the unit is not whole.
            self.stats.orphan_fragments += 1;
            b.begun = true;
            damage(b, Reason::Incomplete);
            return;
        }
        let need = if start { PREFIX + header.len() } else { 0 } + data.len();
        if !self.room(seq, need) {
            return;
        }
        let State::InUnit(b) = &mut self.state else {
            return;
        };
        if start {
            b.frag = Some(b.buf.len());
            b.buf.extend_from_slice(&[0; PREFIX]);
            b.buf.extend_from_slice(header);
        }
        b.buf.extend_from_slice(data);
        if end {
            if let Some(at) = b.frag.take() {
                let nal = &b.buf[at + PREFIX..];
                let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                b.key |= C::note(&mut b.params, nal);
                b.buf[at..at + PREFIX].copy_from_slice(&len.to_be_bytes());
            }
        }
    }

    /// Whether `need` more bytes fit the access unit in progress; if not,
    /// drops it and skips the rest of its packets.
    fn room(&mut self, seq: u16, need: usize) -> bool {
        let State::InUnit(b) = &mut self.state else {
            return false;
        };
        let len = b.buf.len().saturating_add(need);
        if len <= self.max_frame {
            if len > b.buf.capacity() {
                // Grow as a Vec would (doubling), but never past the limit.
                let target = len.max(b.buf.capacity() * 2).min(self.max_frame);
                b.buf.reserve_exact(target - b.buf.len());
            }
            return true;
        }
        let timestamp = b.timestamp;
        self.stats.dropped_units += 1;
        let max = self.max_frame;
        self.report(timestamp, seq, Reason::TooLarge { max });
        self.state = State::Skipping(timestamp);
        // The pictures that refer to it cannot be decoded either.
        if self.on_loss == OnLoss::SkipToKeyframe {
            self.waiting = true;
        }
        false
    }

    /// Ends the access unit in progress: hands it out, drops it, or skips
    /// it while waiting for a key unit.
    fn finish(&mut self, seq: u16) {
        let State::InUnit(mut b) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        if b.frag.is_some() {
            abort_fragment(&mut b);
            damage(&mut b, Reason::Incomplete);
        }
        if b.buf.is_empty() {
            // Only orphan fragments or bad packets: nothing to hand out.
            if b.damage.is_some() && !self.waiting && self.on_loss == OnLoss::SkipToKeyframe {
                self.drop_unit(&b, seq);
            } else {
                self.stats.skipped_units += 1;
            }
            return;
        }
        let damaged = b.damage.is_some();
        if damaged && self.on_loss == OnLoss::SkipToKeyframe {
            if self.waiting {
                self.stats.skipped_units += 1;
            } else {
                self.drop_unit(&b, seq);
            }
            return;
        }
        if self.waiting {
            if !b.key || damaged {
                self.stats.skipped_units += 1;
                return;
            }
            self.waiting = false;
        }
        self.size_hint = b.buf.len();
        self.stats.units += 1;
        if damaged {
            self.stats.damaged_units += 1;
        }
        self.ready.push_back(AccessUnit {
            data: Bytes::from(b.buf),
            timestamp: b.timestamp,
            key: b.key,
            damaged,
            lost_packets: b.lost,
            params: b.params,
        });
    }

    fn drop_unit(&mut self, b: &Building<C::Params>, seq: u16) {
        self.stats.dropped_units += 1;
        self.waiting = true;
        let what = b.damage.unwrap_or(Reason::Incomplete);
        self.report(b.timestamp, seq, what);
    }
}

/// Marks an access unit incomplete, keeping the first reason (and adding up
/// the losses).
fn damage<P>(b: &mut Building<P>, what: Reason) {
    if let Reason::Lost { count } = what {
        b.lost += count;
        if let Some(Reason::Lost { count: c }) = &mut b.damage {
            *c += count;
            return;
        }
    }
    b.damage.get_or_insert(what);
}

/// Drops the fragmented NAL unit in progress, if any: a piece of it is
/// missing.
fn abort_fragment<P>(b: &mut Building<P>) {
    if let Some(at) = b.frag.take() {
        b.buf.truncate(at);
    }
}

/// The parameter sets an H.264 access unit carried, each NAL unit whole
/// (header included), in arrival order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

/// The RFC 6184 payload format.
#[derive(Debug, Default)]
pub(crate) struct H264;

/// RFC 6184 section 5.2 payload types.
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

fn h264_header(nal: &[u8]) -> Result<u8, Reason> {
    match nal.first() {
        None => Err(Reason::Empty),
        Some(h) if h & 0x80 != 0 => Err(Reason::ForbiddenBit),
        Some(h) => Ok(h & 0x1F),
    }
}

/// The type of a NAL unit inside an aggregation packet: not itself an
/// aggregation or fragmentation type (RFC 6184 section 5.7.1: types 1-23).
fn h264_unit(nal: &[u8]) -> Result<u8, Reason> {
    match h264_header(nal)? {
        0 | 24..=31 => Err(Reason::BadHeader),
        typ => Ok(typ),
    }
}

impl Codec for H264 {
    type Params = ParameterSets;

    fn parse<'a>(&self, payload: &'a [u8]) -> Result<Payload<'a>, Reason> {
        match h264_header(payload)? {
            1..=23 => Ok(Payload::Single(payload)),
            STAP_A => aggregate(&payload[1..], payload.len(), 0, h264_unit).map(Payload::Aggregate),
            FU_A => {
                let &[indicator, fu, ref data @ ..] = payload else {
                    return Err(Reason::Short {
                        len: payload.len(),
                        need: 2,
                    });
                };
                let typ = fu & 0x1F;
                if matches!(typ, 0 | 24..=31) {
                    return Err(Reason::BadHeader);
                }
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start && end {
                    return Err(Reason::StartAndEnd);
                }
                Ok(Payload::Fragment {
                    start,
                    end,
                    header: [indicator & 0xE0 | typ, 0],
                    header_len: 1,
                    data,
                })
            }
            _ => Ok(Payload::Unsupported),
        }
    }

    fn note(params: &mut ParameterSets, nal: &[u8]) -> bool {
        match nal.first().map(|h| h & 0x1F) {
            Some(7) => params.sps.push(Bytes::copy_from_slice(nal)),
            Some(8) => params.pps.push(Bytes::copy_from_slice(nal)),
            Some(5) => return true,
            _ => {}
        }
        false
    }

    const HEADER_LEN: usize = 1;

    fn starts_unit(header: &[u8], next: Option<u8>) -> bool {
        match header.first().map(|h| h & 0x1F) {
            // SEI, SPS, PPS, access unit delimiter, SPS extension, prefix
            // NAL unit, subset SPS, depth parameter set (7.4.1.2.3: these
            // come before the first slice).
            Some(6..=9 | 13..=16) => true,
            // A slice whose first_mb_in_slice is 0: ue(v) 0 is the bit 1.
            Some(1 | 5) => next.is_some_and(|b| b & 0x80 != 0),
            _ => false,
        }
    }
}

/// Splits the NAL units of an aggregation packet (STAP-A, AP): each a 16-bit
/// size then the unit, after `skip` bytes before the first (DONL, 2) and
/// one before each other (DOND) if `skip` is not 0. Every unit must hold a valid header.
pub(crate) fn aggregate(
    mut rest: &[u8],
    len: usize,
    skip: usize,
    header: fn(&[u8]) -> Result<u8, Reason>,
) -> Result<Vec<&[u8]>, Reason> {
    let mut nals = Vec::new();
    let mut skip = skip;
    while !rest.is_empty() {
        let need = skip + 2;
        let Some((&[s0, s1], after)) = rest.get(skip..).and_then(|r| r.split_first_chunk()) else {
            return Err(Reason::Short { len, need });
        };
        let size = usize::from(u16::from_be_bytes([s0, s1]));
        let Some((nal, after)) = after.split_at_checked(size) else {
            return Err(Reason::PastEnd {
                len: size,
                left: after.len(),
            });
        };
        header(nal).map_err(|what| match what {
            Reason::Empty | Reason::Short { .. } => Reason::TinyNal { len: size },
            what => what,
        })?;
        nals.push(nal);
        rest = after;
        skip = skip.min(1);
    }
    if nals.is_empty() {
        return Err(Reason::Short { len, need: 3 });
    }
    Ok(nals)
}

/// Rebuilds H.264 access units from RFC 6184 RTP payloads.
#[derive(Debug)]
pub struct Depacketizer {
    core: Core<H264>,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME, OnLoss::default())
    }
}

impl Depacketizer {
    /// `max_frame` bounds each access unit, length prefixes included.
    pub fn new(max_frame: usize, on_loss: OnLoss) -> Self {
        Self {
            core: Core::new(H264, max_frame, on_loss),
        }
    }

    /// One RTP packet of the H.264 stream, in arrival order. Then take the
    /// access units it completed with [`Depacketizer::pull`] (one packet can
    /// complete two: the one its new timestamp ends, and its own).
    ///
    /// `Err` when a packet or an access unit was dropped, which the caller
    /// reports and goes on; when one push drops more than one thing, the
    /// first is returned and all are counted in [`Stats`].
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
    pub fn pull(&mut self) -> Option<AccessUnit<ParameterSets>> {
        self.core.pull()
    }

    pub fn stats(&self) -> &Stats {
        self.core.stats()
    }
}

/// Helpers the H.264 and H.265 tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{AccessUnit, Dropped, OnLoss};

    /// One RTP packet, its header parsed.
    #[derive(Debug, Clone)]
    pub(crate) struct Pkt {
        pub seq: u16,
        pub ts: u32,
        pub marker: bool,
        pub payload: Vec<u8>,
    }

    /// The packets of a capture: each RTP packet after its 16-bit length
    /// (RFC 4571 framing), as testdata/README.md describes.
    pub(crate) fn read_capture(mut data: &[u8]) -> Vec<Pkt> {
        let mut pkts = Vec::new();
        while let Some((&[l0, l1], rest)) = data.split_first_chunk() {
            let (rtp, after) = rest.split_at(usize::from(u16::from_be_bytes([l0, l1])));
            data = after;
            // Version 2, no padding or extension from FFmpeg's RTP muxer.
            assert_eq!(rtp[0] & 0xF0, 0x80);
            let csrcs = usize::from(rtp[0] & 0x0F);
            pkts.push(Pkt {
                seq: u16::from_be_bytes([rtp[2], rtp[3]]),
                ts: u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]),
                marker: rtp[1] & 0x80 != 0,
                payload: rtp[12 + 4 * csrcs..].to_vec(),
            });
        }
        pkts
    }

    /// What the tests need of a depacketizer, whichever the codec.
    pub(crate) trait Depack {
        type Params;
        fn push_pkt(&mut self, p: &Pkt) -> Result<(), Dropped>;
        fn pull_unit(&mut self) -> Option<AccessUnit<Self::Params>>;
    }

    /// Access units and drops out of pushing `pkts`.
    pub(crate) fn run<D: Depack>(
        d: &mut D,
        pkts: &[Pkt],
    ) -> (Vec<AccessUnit<D::Params>>, Vec<Dropped>) {
        let mut units = Vec::new();
        let mut drops = Vec::new();
        for p in pkts {
            if let Err(e) = d.push_pkt(p) {
                assert!(!e.to_string().contains('\n'));
                drops.push(e);
            }
            while let Some(au) = d.pull_unit() {
                // Panics unless the length prefixes add up.
                nal_units(&au.data);
                units.push(au);
            }
        }
        (units, drops)
    }

    /// Joins a capture at every packet: no report, and nothing but whole
    /// units from the first key unit all of whose slices came (joined in
    /// its parameter sets or SEI, it comes without them). `starts_nal`: a
    /// payload is not a fragment's continuation; `has_slice`: it holds a
    /// slice or a piece of one.
    pub(crate) fn check_joins<D: Depack>(
        make: impl Fn(OnLoss) -> D,
        pkts: &[Pkt],
        starts_nal: fn(&[u8]) -> bool,
        has_slice: fn(&[u8]) -> bool,
    ) where
        D::Params: PartialEq + std::fmt::Debug,
    {
        let (all, _) = run(&mut make(OnLoss::SkipToKeyframe), pkts);
        let first_of = |ts: u32| pkts.iter().position(|p| p.ts == ts).unwrap();
        for join in 0..pkts.len() {
            let first = first_of(pkts[join].ts);
            let whole = starts_nal(&pkts[join].payload)
                && !pkts[first..join].iter().any(|p| has_slice(&p.payload));
            let expect: Vec<_> = all
                .iter()
                .skip_while(|au| {
                    let at = first_of(au.timestamp);
                    at < first || !au.key || at == first && !whole
                })
                .collect();
            for on_loss in [OnLoss::SkipToKeyframe, OnLoss::Conceal] {
                let mut d = make(on_loss);
                let (units, drops) = run(&mut d, &pkts[join..]);
                assert_eq!(drops, [], "join at {join}");
                let got: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
                let want: Vec<u32> = expect.iter().map(|au| au.timestamp).collect();
                assert_eq!(got, want, "join at {join}");
                if let (Some(got), Some(want)) = (units.first(), expect.first()) {
                    assert!(got.key);
                    assert!(want.data.ends_with(&got.data));
                    assert!(units[1..].iter().zip(&expect[1..]).all(|(a, b)| a == *b));
                }
            }
        }
    }

    /// The NAL units of a length-prefixed access unit; panics unless the
    /// prefixes add up exactly.
    pub(crate) fn nal_units(mut data: &[u8]) -> Vec<&[u8]> {
        let mut nals = Vec::new();
        while let Some((len, rest)) = data.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            let (nal, after) = rest.split_at(len);
            assert!(!nal.is_empty());
            nals.push(nal);
            data = after;
        }
        assert!(data.is_empty(), "{} bytes left over", data.len());
        nals
    }

    /// Access units as an Annex B byte stream (start codes for prefixes).
    pub(crate) fn annex_b<P>(units: &[AccessUnit<P>]) -> Vec<u8> {
        let mut out = Vec::new();
        for au in units {
            for nal in nal_units(&au.data) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
        out
    }

    /// FFmpeg's decode of an Annex B stream (`format` h264 or hevc): one
    /// `framemd5` line per picture, comments left out.
    pub(crate) fn ffmpeg_framemd5(format: &str, stream: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!(
            "camflow-rtp-{format}-{}-{:?}.bin",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, stream).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-f", format, "-i"])
            .arg(&path)
            .args(["-f", "framemd5", "-"])
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The length-prefixed form of `nals`.
    pub(crate) fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// 60 packets of random bytes, `shape`d by the caller with a random
    /// byte; random timestamp steps, markers and sequence gaps.
    pub(crate) fn garbage(rng: &mut Lcg, shape: impl Fn(&mut [u8], u8)) -> Vec<Pkt> {
        let mut s = Sender {
            seq: rng.next().into(),
        };
        let mut ts = 0u32;
        (0..60)
            .map(|_| {
                let r = rng.next();
                if r & 3 == 0 {
                    ts = ts.wrapping_add(3000);
                }
                s.seq = s.seq.wrapping_add(u16::from(r >> 6 == 3));
                let len = usize::from(rng.next() % 40);
                let mut payload = rng.bytes(len);
                shape(&mut payload, r);
                s.pkt(ts, r & 0x10 != 0, payload)
            })
            .collect()
    }

    /// Numbers packets and cuts NAL units into payloads, as a sender does.
    pub(crate) struct Sender {
        pub seq: u16,
    }

    impl Sender {
        pub(crate) fn pkt(&mut self, ts: u32, marker: bool, payload: Vec<u8>) -> Pkt {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            Pkt {
                seq,
                ts,
                marker,
                payload,
            }
        }
    }

    impl Sender {
        /// Fragmentation unit packets of a NAL unit's `body` (after its
        /// header), cut at `cuts`: each after `head(flags)`, where flags
        /// holds the start (0x80) and end (0x40) bits; the marker on the
        /// last if `marker`.
        pub(crate) fn fragments(
            &mut self,
            ts: u32,
            marker: bool,
            body: &[u8],
            cuts: &[usize],
            head: impl Fn(u8) -> Vec<u8>,
        ) -> Vec<Pkt> {
            let mut bounds = vec![0];
            bounds.extend_from_slice(cuts);
            bounds.push(body.len());
            let n = bounds.len() - 1;
            (0..n)
                .map(|i| {
                    let start = if i == 0 { 0x80 } else { 0 };
                    let end = if i == n - 1 { 0x40 } else { 0 };
                    let mut payload = head(start | end);
                    payload.extend_from_slice(&body[bounds[i]..bounds[i + 1]]);
                    self.pkt(ts, marker && i == n - 1, payload)
                })
                .collect()
        }
    }

    /// A small deterministic generator for garbage.
    pub(crate) struct Lcg(pub u64);

    impl Lcg {
        pub(crate) fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 56) as u8
        }

        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    // testdata/rtp_h264/: see testdata/README.md. FFmpeg's RTP muxer sending
    // 3 s of 160x120 libx264 video (a key frame every 10) in packets of at
    // most 400 bytes, and FFmpeg's decode of the same stream.
    const CAPTURE: &[u8] = include_bytes!("../../testdata/rtp_h264/ffmpeg-160x120.rtp");
    const FRAMEMD5: &str = include_str!("../../testdata/rtp_h264/ffmpeg-160x120.framemd5");

    const SPS: &[u8] = &[0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x0A, 0x11, 0xF9];
    const PPS: &[u8] = &[0x68, 0xCE, 0x04, 0x72];

    /// An IDR slice whose first_mb_in_slice is 0.
    fn idr(len: usize) -> Vec<u8> {
        let mut nal = vec![0x65, 0x88];
        nal.extend((0..len - 2).map(|i| i as u8 | 1));
        nal
    }

    /// A non-IDR slice; `first` if it is the first of its picture.
    fn slice(len: usize, first: bool) -> Vec<u8> {
        let mut nal = vec![0x41, if first { 0x9A } else { 0x3A }];
        nal.extend((0..len - 2).map(|i| (i * 7) as u8 | 1));
        nal
    }

    impl Depack for Depacketizer {
        type Params = ParameterSets;
        fn push_pkt(&mut self, p: &Pkt) -> Result<(), Dropped> {
            self.push(p.seq, p.ts, p.marker, &p.payload)
        }
        fn pull_unit(&mut self) -> Option<AccessUnit<ParameterSets>> {
            self.pull()
        }
    }

    impl Sender {
        fn single(&mut self, ts: u32, marker: bool, nal: &[u8]) -> Pkt {
            self.pkt(ts, marker, nal.to_vec())
        }

        fn stap(&mut self, ts: u32, marker: bool, nals: &[&[u8]]) -> Pkt {
            let mut payload = vec![STAP_A];
            for nal in nals {
                payload.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                payload.extend_from_slice(nal);
            }
            self.pkt(ts, marker, payload)
        }

        /// FU-A packets of `nal`, cut after the NAL header at `cuts`.
        fn fu(&mut self, ts: u32, marker: bool, nal: &[u8], cuts: &[usize]) -> Vec<Pkt> {
            self.fragments(ts, marker, &nal[1..], cuts, |flags| {
                vec![nal[0] & 0xE0 | FU_A, flags | nal[0] & 0x1F]
            })
        }

        /// A key access unit: SPS and PPS in a STAP-A, an IDR slice in
        /// three fragments.
        fn key(&mut self, ts: u32) -> Vec<Pkt> {
            let mut pkts = vec![self.stap(ts, false, &[SPS, PPS])];
            pkts.extend(self.fu(ts, true, &idr(60), &[20, 40]));
            pkts
        }

        /// A non-key access unit: one slice in three fragments.
        fn delta(&mut self, ts: u32) -> Vec<Pkt> {
            self.fu(ts, true, &slice(60, true), &[20, 40])
        }
    }

    fn key_data() -> Vec<u8> {
        avcc(&[SPS, PPS, &idr(60)])
    }

    fn conceal() -> Depacketizer {
        Depacketizer::new(DEFAULT_MAX_FRAME, OnLoss::Conceal)
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
        for au in &units {
            assert!(!au.damaged);
            assert_eq!(au.params.sps.len(), usize::from(au.key));
            assert_eq!(au.params.pps.len(), usize::from(au.key));
        }
        assert!(units.windows(2).all(|w| w[1].timestamp > w[0].timestamp));
        assert_eq!(ffmpeg_framemd5("h264", &annex_b(&units)), FRAMEMD5);
        let stats = d.stats();
        assert_eq!(
            (stats.units, stats.lost_packets, stats.bad_packets),
            (30, 0, 0)
        );
    }

    #[test]
    fn single_nal_unit_packets_make_one_unit() {
        let mut s = Sender { seq: 7 };
        let idr = idr(30);
        let pkts = [
            s.single(90, false, SPS),
            s.single(90, false, PPS),
            s.single(90, true, &idr),
        ];
        let (units, drops) = run(&mut Depacketizer::default(), &pkts);
        assert_eq!(drops, []);
        assert_eq!(units.len(), 1);
        let au = &units[0];
        assert_eq!(au.data, avcc(&[SPS, PPS, &idr]));
        assert_eq!(
            (au.timestamp, au.key, au.damaged, au.lost_packets),
            (90, true, false, 0)
        );
        assert_eq!(au.params.sps, [SPS]);
        assert_eq!(au.params.pps, [PPS]);
    }

    #[test]
    fn stap_a_and_fu_a_round_trip() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        pkts.extend(s.delta(3000));
        let (units, drops) = run(&mut Depacketizer::default(), &pkts);
        assert_eq!(drops, []);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].data, key_data());
        assert_eq!(units[1].data, avcc(&[&slice(60, true)]));
        assert!(!units[1].key);
        assert_eq!(units[1].params, ParameterSets::default());
    }

    #[test]
    fn every_split_of_a_fragmented_nal_unit_gives_it_back() {
        let nal = idr(24);
        let body = nal.len() - 1;
        let mut cuts: Vec<Vec<usize>> = Vec::new();
        for i in 1..body {
            cuts.push(vec![i]);
            for j in i + 1..body {
                cuts.push(vec![i, j]);
            }
        }
        for cut in cuts {
            let mut s = Sender { seq: 100 };
            let mut pkts = vec![s.stap(5, false, &[SPS, PPS])];
            pkts.extend(s.fu(5, true, &nal, &cut));
            let (units, drops) = run(&mut Depacketizer::default(), &pkts);
            assert_eq!(drops, [], "{cut:?}");
            assert_eq!(units.len(), 1, "{cut:?}");
            assert_eq!(units[0].data, avcc(&[SPS, PPS, &nal]), "{cut:?}");
        }
    }

    #[test]
    fn a_unit_ends_at_a_new_timestamp_when_its_marker_is_missing() {
        let mut s = Sender { seq: 0 };
        let idr = idr(30);
        let pkts = [
            s.stap(0, false, &[SPS, PPS]),
            s.single(0, false, &idr),
            s.single(3000, true, &slice(20, true)),
        ];
        let mut d = Depacketizer::default();
        for p in &pkts {
            d.push_pkt(p).unwrap();
        }
        // The last push completed both.
        assert_eq!(d.pull().unwrap().timestamp, 0);
        assert_eq!(d.pull().unwrap().timestamp, 3000);
        assert_eq!(d.pull(), None);
    }

    /// Joining the capture at every packet: no report, and nothing but
    /// whole units from the first key unit all of whose slices came
    /// (joined in its parameter sets or SEI, it comes without them).
    #[test]
    fn a_session_joined_anywhere_starts_at_the_next_whole_key_unit() {
        let starts_nal = |p: &[u8]| p[0] & 0x1F != FU_A || p[1] & 0x80 != 0;
        let has_slice = |p: &[u8]| match p[0] & 0x1F {
            FU_A => matches!(p[1] & 0x1F, 1 | 5),
            typ => matches!(typ, 1 | 5),
        };
        check_joins(
            |on_loss| Depacketizer::new(DEFAULT_MAX_FRAME, on_loss),
            &read_capture(CAPTURE),
            starts_nal,
            has_slice,
        );
    }

    /// Units A (key), B (a whole slice, then a slice in three fragments),
    /// C, D (key); B's middle fragment is lost.
    fn loss_mid_fragment() -> Vec<Pkt> {
        let mut s = Sender { seq: 65530 };
        let mut pkts = s.key(0);
        pkts.push(s.single(3000, false, &slice(30, true)));
        let mut frags = s.fu(3000, true, &slice(50, false), &[10, 30]);
        frags.remove(1);
        pkts.extend(frags);
        pkts.extend(s.delta(6000));
        pkts.extend(s.key(9000));
        pkts
    }

    #[test]
    fn loss_mid_fragment_skips_to_the_next_key_unit() {
        let pkts = loss_mid_fragment();
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 9000]);
        let end_of_b = pkts[6].seq;
        assert_eq!(
            drops,
            [Dropped {
                timestamp: 3000,
                seq: end_of_b,
                what: Reason::Lost { count: 1 }
            }]
        );
        let stats = d.stats();
        assert_eq!(stats.lost_packets, 1);
        assert_eq!(stats.dropped_units, 1);
        assert_eq!(stats.skipped_units, 1);
        assert_eq!(stats.orphan_fragments, 1);
    }

    #[test]
    fn loss_mid_fragment_concealed_hands_on_the_whole_nal_units() {
        let pkts = loss_mid_fragment();
        let mut d = conceal();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!(drops, []);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 3000, 6000, 9000]);
        let b = &units[1];
        assert!(b.damaged);
        assert_eq!(b.lost_packets, 1);
        assert_eq!(b.data, avcc(&[&slice(30, true)]));
        assert!(!units[2].damaged && !units[3].damaged);
        assert_eq!(d.stats().damaged_units, 1);
    }

    #[test]
    fn a_unit_lost_whole_skips_to_the_next_key_unit_or_is_concealed() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        s.delta(3000); // lost
        pkts.extend(s.delta(6000));
        pkts.extend(s.key(9000));
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!(drops, []);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 9000]);
        assert_eq!(d.stats().lost_packets, 3);
        // Concealed: the unit after the gap begins whole, so is not damaged.
        let (units, _) = run(&mut conceal(), &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 6000, 9000]);
        assert!(units.iter().all(|au| !au.damaged));
    }

    #[test]
    fn a_gap_before_a_unit_that_does_not_begin_whole_damages_it() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        // The first slice of the picture is lost; the second arrives.
        s.single(3000, false, &slice(30, true));
        pkts.push(s.single(3000, true, &slice(30, false)));
        pkts.extend(s.key(6000));
        let (units, drops) = run(&mut conceal(), &pkts);
        assert_eq!(drops, []);
        assert!(units[1].damaged);
        assert_eq!(units[1].lost_packets, 1);
        let (units, drops) = run(&mut Depacketizer::default(), &pkts);
        assert_eq!(units.len(), 2);
        assert_eq!(drops[0].what, Reason::Lost { count: 1 });
    }

    #[test]
    fn late_packets_within_max_misorder_are_ignored_and_counted() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        let mut b = s.delta(3000);
        b.swap(1, 2);
        pkts.extend(b);
        // A duplicate, and a packet 100 behind.
        pkts.push(pkts[0].clone());
        pkts.extend(s.key(6000));
        let mut late = pkts[0].clone();
        late.seq = s.seq.wrapping_sub(101);
        pkts.push(late);
        pkts.extend(s.key(9000));
        let mut d = conceal();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!(drops, []);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        // B's one NAL unit lost a fragment: nothing of it is left.
        assert_eq!(times, [0, 6000, 9000]);
        let stats = d.stats();
        assert_eq!(stats.lost_packets, 1);
        assert_eq!(stats.ignored_packets, 3);
        assert_eq!(stats.skipped_units, 1);
    }

    #[test]
    fn sequence_wrap_from_65535_to_0_is_not_a_loss() {
        let mut s = Sender { seq: 65534 };
        let mut pkts = s.key(0);
        pkts.extend(s.delta(3000));
        assert_eq!(pkts[2].seq, 0);
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!((units.len(), drops.len()), (2, 0));
        assert_eq!(d.stats().lost_packets, 0);
    }

    #[test]
    fn far_jumps_resync_after_two_in_a_row() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        s.seq = 30000;
        pkts.extend(s.key(3000));
        pkts.extend(s.key(6000));
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        // The first packet after the jump (the parameter sets) is ignored
        // as a stray; the IDR slice after it is whole, so its unit is too.
        assert_eq!(times, [0, 3000, 6000]);
        assert_eq!(drops, []);
        assert_eq!(units[1].data, avcc(&[&idr(60)]));
        assert_eq!(d.stats().resyncs, 1);
        assert_eq!(d.stats().ignored_packets, 1);
        // Had the slice been cut short, its unit would be dropped.
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        s.seq = 30000;
        let mut jumped = s.key(3000);
        jumped.remove(1);
        pkts.extend(jumped);
        pkts.extend(s.key(6000));
        let (units, drops) = run(&mut Depacketizer::default(), &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 6000]);
        assert_eq!(drops[0].what, Reason::SeqJump { from: 3 });
    }

    #[test]
    fn a_unit_over_max_frame_is_dropped_and_the_rest_skipped() {
        let key = key_data().len();
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        let big = s.fu(3000, true, &slice(key + 10, true), &[40, 80]);
        pkts.extend(big);
        pkts.extend(s.delta(6000));
        pkts.extend(s.key(9000));
        // Exactly the key unit's size fits.
        let mut d = Depacketizer::new(key, OnLoss::SkipToKeyframe);
        let (units, drops) = run(&mut d, &pkts);
        let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
        assert_eq!(times, [0, 9000]);
        assert_eq!(
            drops,
            [Dropped {
                timestamp: 3000,
                seq: pkts[5].seq,
                what: Reason::TooLarge { max: key }
            }]
        );
        assert_eq!(d.stats().skipped_packets, 1);
        assert!(units.iter().all(|au| au.data.len() <= key));
        let mut d = Depacketizer::new(key, OnLoss::Conceal);
        let (units, _) = run(&mut d, &pkts);
        assert_eq!(units.len(), 3);
    }

    #[test]
    fn payloads_that_make_no_sense_are_reported_and_end_nothing() {
        let cases: [(&[u8], Reason); 9] = [
            (&[0x78, 0x00, 0x01, 0x7C], Reason::BadHeader),
            (&[], Reason::Empty),
            (&[0x80 | 0x41, 0x9A], Reason::ForbiddenBit),
            (&[0x7C], Reason::Short { len: 1, need: 2 }),
            (
                &[0x78, 0x00, 0x10, 0x67],
                Reason::PastEnd { len: 16, left: 1 },
            ),
            (&[0x78, 0x00, 0x00], Reason::TinyNal { len: 0 }),
            (&[0x78, 0x00], Reason::Short { len: 2, need: 2 }),
            (&[0x7C, 0x98, 1], Reason::BadHeader),
            (&[0x7C, 0xC5, 1], Reason::StartAndEnd),
        ];
        for (payload, reason) in cases {
            for on_loss in [OnLoss::SkipToKeyframe, OnLoss::Conceal] {
                let mut s = Sender { seq: 0 };
                let mut pkts = s.key(0);
                pkts.push(s.single(3000, false, &slice(20, true)));
                pkts.push(s.pkt(3000, true, payload.to_vec()));
                pkts.extend(s.key(6000));
                let mut d = Depacketizer::new(DEFAULT_MAX_FRAME, on_loss);
                let (units, drops) = run(&mut d, &pkts);
                assert_eq!(drops[0].what, reason, "{payload:?}");
                assert_eq!(drops[0].seq, pkts[5].seq);
                assert_eq!(d.stats().bad_packets, 1);
                let times: Vec<u32> = units.iter().map(|au| au.timestamp).collect();
                match on_loss {
                    OnLoss::SkipToKeyframe => {
                        assert_eq!(times, [0, 6000]);
                        // Its unit is dropped in the same push: counted.
                        assert_eq!(drops.len(), 1);
                        assert_eq!(d.stats().dropped_units, 1);
                    }
                    OnLoss::Conceal => {
                        assert_eq!(times, [0, 3000, 6000]);
                        assert!(units[1].damaged);
                    }
                }
            }
        }
    }

    #[test]
    fn unsupported_packet_types_are_counted_and_skipped() {
        let mut s = Sender { seq: 0 };
        let mut pkts = s.key(0);
        for typ in [0u8, 25, 26, 27, 29, 30, 31] {
            pkts.push(s.pkt(3000, false, vec![0x60 | typ, 1, 2, 3]));
        }
        pkts.push(s.single(3000, true, &slice(20, true)));
        let mut d = Depacketizer::default();
        let (units, drops) = run(&mut d, &pkts);
        assert_eq!(drops, []);
        assert_eq!(units.len(), 2);
        assert_eq!(d.stats().unsupported_packets, 7);
    }

    #[test]
    fn garbage_never_panics_and_units_stay_well_formed() {
        let mut rng = Lcg(13);
        for round in 0..200 {
            let max = [64, 300, DEFAULT_MAX_FRAME][round % 3];
            let on_loss = [OnLoss::SkipToKeyframe, OnLoss::Conceal][round % 2];
            let mut d = Depacketizer::new(max, on_loss);
            // Mostly valid NAL headers, to reach past the first check.
            let pkts = garbage(&mut rng, |payload, r| {
                if let Some(h) = payload.first_mut() {
                    *h &= 0x7F;
                    if r & 4 != 0 {
                        *h = *h & 0x60 | [1, 5, 7, 24, 28, 28][usize::from(r >> 3) % 6];
                    }
                }
            });
            let (units, _) = run(&mut d, &pkts);
            assert!(units.iter().all(|au| au.data.len() <= max));
        }
    }
}
