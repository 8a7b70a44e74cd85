//! RTP/JPEG depacketizer (RFC 2435): rebuilds whole JPEG images from the
//! payloads of the RTP packets that carry a camera's Motion-JPEG.
//!
//! In: every RTP packet of the stream, in arrival order, as its sequence
//! number, timestamp, marker bit and payload ([`Depacketizer::push`]); the
//! RTP header itself is parsed by the caller. Out: each complete frame as a
//! JFIF image, SOI through EOI, that any baseline JPEG decoder takes
//! ([`Frame`]), or why a frame was thrown away ([`Dropped`]).
//!
//! RFC 2435 sends no JPEG headers. Each packet starts with an 8-byte header
//! (type, Q, size in 8-pixel units, and the offset of its piece of the
//! scan); types 64-127 add a restart marker header, and the first packet of
//! a frame with Q 128-255 may carry the quantization tables. The rest is
//! entropy-coded scan data. The depacketizer writes the headers a decoder
//! needs: quantization tables computed from Q (RFC 2435 appendix A) or taken
//! from the packet (or, for Q 128-254, the tables last sent for that Q), the
//! frame header the type implies (section 4.1), the standard Huffman tables
//! of ITU-T T.81 K.3, and the restart interval.
//!
//! A frame is returned only if every packet of it arrived, in order, with
//! headers that agree: a sequence gap, a fragment offset other than the
//! number of scan bytes collected so far, a missing marker packet (the next
//! frame starts first), a header field that changes mid-frame, or a frame
//! over the size limit drops it, and the rest of its packets are skipped
//! without another report. Nothing is fatal: the next frame starts afresh.
//! No partial frame is ever returned, even where restart markers would let
//! a decoder conceal the missing part.

use super::rtp_seq::{Seq, SeqTracker};
use bytes::{Bytes, BytesMut};

/// A limit well above any camera's JPEG (the largest RFC 2435 image is
/// 2040x2040; a fragment offset cannot pass 16 MiB either) that still bounds
/// the memory a bad stream can take.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes of the main JPEG header (RFC 2435 section 3.1).
const MAIN_HEADER: usize = 8;
/// Bytes of the restart marker header (section 3.1.7).
const RESTART_HEADER: usize = 4;
/// Bytes of the quantization table header before its data (section 3.1.8).
const TABLE_HEADER: usize = 4;

/// One rebuilt image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// A complete JFIF image: SOI, APP0, DQT, SOF, DHT, DRI (types 64-127),
    /// SOS, the scan data as sent, EOI.
    pub data: Bytes,
    /// The RTP timestamp of the frame's packets.
    pub timestamp: u32,
    /// Size in pixels, from the payload header: a multiple of 8, at most 2040.
    pub width: u16,
    pub height: u16,
}

/// A frame thrown away. Never fatal: push the next packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jpeg frame at rtp time {timestamp} dropped at packet {seq}: {what}")]
pub struct Dropped {
    /// The RTP timestamp of the dropped frame.
    pub timestamp: u32,
    /// The sequence number of the packet that showed the frame is lost.
    pub seq: u16,
    pub what: Reason,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Sequence numbers skipped `count` packets while the frame was in
    /// progress.
    #[error("{count} packets lost before it")]
    Lost { count: u16 },
    /// The sequence numbers jumped far from `from` (twice in a row, so not
    /// a stray packet): the sender restarted.
    #[error("sequence numbers jumped from {from}")]
    SeqJump { from: u16 },
    /// A packet of the frame at rtp time `next` came before this frame's
    /// marker packet.
    #[error("the frame at rtp time {next} started before its marker packet")]
    NoMarker { next: u32 },
    /// Another first packet (fragment offset 0) with the same timestamp
    /// came before this frame's marker packet.
    #[error("a first packet with the same timestamp came before its marker packet")]
    Restarted,
    /// The frame's first packet never came: the first one seen has
    /// fragment offset `offset`.
    #[error("its first packet was lost (first seen: fragment offset {offset})")]
    FirstLost { offset: u32 },
    /// The payload is shorter than the headers it must hold.
    #[error("payload of {len} bytes is shorter than its {need} bytes of headers")]
    Short { len: usize, need: usize },
    #[error("type {0} is not supported (types 0, 1, 64 and 65 are)")]
    Type(u8),
    #[error("Q 0 is invalid")]
    ZeroQ,
    /// Q 100-127 (RFC 2435 section 3.1.4).
    #[error("Q {0} is reserved")]
    ReservedQ(u8),
    #[error("image size {width}x{height} is empty")]
    ZeroSize { width: u16, height: u16 },
    /// The quantization table header's length reaches past the packet
    /// (section 3.1.8: the packet MUST be discarded).
    #[error("quantization table length {len} is past the {left} bytes left in the packet")]
    TablesPastPacket { len: u16, left: usize },
    /// The quantization table data holds less than two tables of the
    /// precisions given.
    #[error("quantization table length {len} is under the {need} bytes of two tables of precision {precision:#04x}")]
    TablesShort {
        len: u16,
        need: usize,
        precision: u8,
    },
    /// A quantizer of 0 (table 0 is luma, 1 chroma): no decoder can use it.
    #[error("a zero in quantization table {table}")]
    ZeroQuantizer { table: u8 },
    /// Q 128-254 with a table length of 0 before any tables came for it.
    #[error("Q {0} without quantization tables, and none were sent for it yet")]
    NoTables(u8),
    /// Q 255 with a table length of 0, which RFC 2435 forbids: its tables
    /// may change every frame.
    #[error("Q 255 without quantization tables")]
    Q255NoTables,
    /// A packet's fragment offset is not the number of scan bytes collected:
    /// a packet was lost or reordered.
    #[error("fragment offset {offset}, expected {expected}")]
    Offset { offset: u32, expected: usize },
    /// A header field differs between packets of one frame.
    #[error("{field} changed from {was} to {now} within the frame")]
    Changed {
        field: &'static str,
        was: u16,
        now: u16,
    },
    /// The rebuilt image would be larger than the limit.
    #[error("over the {max}-byte limit")]
    TooLarge { max: usize },
    /// The marker packet came and not one byte of scan data.
    #[error("no scan data")]
    Empty,
}

/// Counters since the depacketizer was made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Frames returned by [`Depacketizer::push`].
    pub frames: u64,
    /// Frames dropped, each counted once. At least the number of `Err`s
    /// [`Depacketizer::push`] returned: one push can end two frames, or
    /// drop one and return another.
    pub dropped_frames: u64,
    /// Packets missing by sequence number: the sizes of the forward gaps,
    /// wrap-aware. A jump of more than 3000 is not counted (see `resyncs`);
    /// a reordered packet counts as lost (and is then ignored as late).
    pub lost_packets: u64,
    /// Packets ignored by sequence number: duplicates, packets up to 100
    /// behind the newest (late), and a lone packet far from the sequence.
    pub ignored_packets: u64,
    /// Sequence numbers that jumped far, twice in a row: a sender restart.
    pub resyncs: u64,
    /// Packets of frames already dropped, skipped without a report.
    pub skipped_packets: u64,
}

/// The main JPEG header's fields that must agree across a frame's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    typ: u8,
    q: u8,
    width8: u8,
    height8: u8,
}

impl Header {
    fn width(self) -> u16 {
        u16::from(self.width8) * 8
    }

    fn height(self) -> u16 {
        u16::from(self.height8) * 8
    }

    /// Types 64-127 carry a restart marker header.
    fn has_restart(self) -> bool {
        self.typ & 0x40 != 0
    }
}

/// One quantization table, in zigzag order as DQT carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QTable {
    /// 16-bit values (DQT Pq = 1), else 8-bit.
    wide: bool,
    values: [u16; 64],
}

impl QTable {
    fn len(&self) -> usize {
        if self.wide {
            128
        } else {
            64
        }
    }
}

/// Luma (table 0) and chroma (table 1).
type Tables = [QTable; 2];

/// One RTP packet, its main header parsed.
struct Packet<'a> {
    seq: u16,
    timestamp: u32,
    marker: bool,
    offset: u32,
    header: Header,
    /// The whole payload's length.
    len: usize,
    /// The payload after the main header.
    rest: &'a [u8],
}

/// A frame being collected.
#[derive(Debug)]
struct Partial {
    timestamp: u32,
    header: Header,
    restart_interval: u16,
    /// The rebuilt headers, then the scan data so far.
    buf: BytesMut,
    header_len: usize,
}

impl Partial {
    fn scan_len(&self) -> usize {
        self.buf.len().saturating_sub(self.header_len)
    }
}

#[derive(Debug)]
enum State {
    /// Between frames.
    Idle,
    InFrame(Partial),
    /// The frame with this timestamp was dropped (or its first packet
    /// lost): its other packets are skipped until a first packet comes.
    Skipping(u32),
}

/// What one push found: at most a frame and the first drop.
#[derive(Default)]
struct Outcome {
    frame: Option<Frame>,
    dropped: Option<Dropped>,
}

/// Rebuilds JPEG images from RFC 2435 RTP payloads.
///
/// Types 0 and 1 (4:2:2 and 4:2:0, section 4.1) and the same with restart
/// markers (64 and 65) are supported; Q 1-99 (tables computed), 128-254
/// (tables in band, or the last ones sent for that Q) and 255 (tables in
/// band in every frame). The type-specific field (interlacing) is ignored:
/// each field of an interlaced source is returned as its own image.
#[derive(Debug)]
pub struct Depacketizer {
    max_frame: usize,
    state: State,
    /// RTP sequence numbers: loss, late packets, restarts.
    seq: SeqTracker,
    /// The quantization tables last sent in band for Q 128-254 (index Q -
    /// 128). Q 255 tables are never kept: they may change every frame.
    cache: Vec<Option<Tables>>,
    /// The size of the last frame, to allocate the next one's buffer.
    size_hint: usize,
    stats: Stats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Depacketizer {
    /// `max_frame` bounds each rebuilt image, headers included.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            state: State::Idle,
            seq: SeqTracker::default(),
            cache: vec![None; 127],
            size_hint: 0,
            stats: Stats::default(),
        }
    }

    /// One RTP packet of the JPEG stream, in arrival order.
    ///
    /// `Ok(Some(frame))` when the packet completes a frame (its marker bit
    /// is set); `Err` when a frame was dropped, which the caller reports and
    /// goes on. A packet that starts a new frame while one is in progress
    /// drops the old frame (`Err` for it) and starts the new one. When one
    /// packet both drops a frame and completes another (a sequence gap, then
    /// a single-packet frame), the frame is returned and the drop is only
    /// counted in [`Stats::dropped_frames`]; when one packet drops two
    /// frames, the older one's `Err` is returned and both are counted.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<Frame>, Dropped> {
        let mut out = Outcome::default();
        match self.seq.classify(seq) {
            Seq::Next => {}
            Seq::Ignore => {
                self.stats.ignored_packets += 1;
                return Ok(None);
            }
            Seq::Gap(count) => {
                self.stats.lost_packets += u64::from(count);
                self.abandon(seq, Reason::Lost { count }, &mut out);
            }
            Seq::Resync(from) => {
                self.stats.resyncs += 1;
                self.abandon(seq, Reason::SeqJump { from }, &mut out);
            }
        }
        self.packet(seq, timestamp, marker, payload, &mut out);
        match out {
            Outcome {
                frame: Some(frame), ..
            } => Ok(Some(frame)),
            Outcome {
                dropped: Some(dropped),
                ..
            } => Err(dropped),
            _ => Ok(None),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Drops the frame in progress, if any.
    fn abandon(&mut self, seq: u16, what: Reason, out: &mut Outcome) {
        if let State::InFrame(p) = &self.state {
            let timestamp = p.timestamp;
            self.drop_frame(timestamp, seq, what, out);
        }
    }

    /// Counts a dropped frame, keeps the first report of the push, and skips
    /// the frame's other packets.
    fn drop_frame(&mut self, timestamp: u32, seq: u16, what: Reason, out: &mut Outcome) {
        self.stats.dropped_frames += 1;
        out.dropped.get_or_insert(Dropped {
            timestamp,
            seq,
            what,
        });
        self.state = State::Skipping(timestamp);
    }

    fn packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Outcome,
    ) {
        let Some((head, rest)) = payload.split_first_chunk::<MAIN_HEADER>() else {
            let what = Reason::Short {
                len: payload.len(),
                need: MAIN_HEADER,
            };
            return self.stray_packet(seq, timestamp, what, out);
        };
        let [_type_specific, o0, o1, o2, typ, q, width8, height8] = *head;
        let pkt = Packet {
            seq,
            timestamp,
            marker,
            offset: u32::from_be_bytes([0, o0, o1, o2]),
            header: Header {
                typ,
                q,
                width8,
                height8,
            },
            len: payload.len(),
            rest,
        };
        if pkt.offset == 0 {
            self.first_packet(&pkt, out);
        } else {
            self.next_packet(&pkt, out);
        }
    }

    /// A packet that cannot continue the frame in progress (if any) and does
    /// not start one: its frame is dropped, once.
    fn stray_packet(&mut self, seq: u16, timestamp: u32, what: Reason, out: &mut Outcome) {
        match &self.state {
            State::InFrame(p) if p.timestamp == timestamp => {
                self.drop_frame(timestamp, seq, what, out);
            }
            State::InFrame(p) => {
                let old = p.timestamp;
                self.drop_frame(old, seq, Reason::NoMarker { next: timestamp }, out);
                self.drop_frame(timestamp, seq, what, out);
            }
            State::Skipping(t) if *t == timestamp => self.stats.skipped_packets += 1,
            State::Idle | State::Skipping(_) => self.drop_frame(timestamp, seq, what, out),
        }
    }

    /// Fragment offset 0: a new frame, whatever was in progress.
    fn first_packet(&mut self, pkt: &Packet<'_>, out: &mut Outcome) {
        if let State::InFrame(p) = &self.state {
            let old = p.timestamp;
            let what = if old == pkt.timestamp {
                Reason::Restarted
            } else {
                Reason::NoMarker {
                    next: pkt.timestamp,
                }
            };
            self.drop_frame(old, pkt.seq, what, out);
        }
        match self.begin(pkt) {
            Ok((partial, scan)) => {
                self.state = State::InFrame(partial);
                self.append(pkt, scan, out);
            }
            Err(what) => self.drop_frame(pkt.timestamp, pkt.seq, what, out),
        }
    }

    /// Fragment offset above 0: the next piece of the frame in progress.
    fn next_packet(&mut self, pkt: &Packet<'_>, out: &mut Outcome) {
        let checked = match &self.state {
            State::InFrame(p) if p.timestamp == pkt.timestamp => continues(p, pkt),
            _ => {
                let what = Reason::FirstLost { offset: pkt.offset };
                return self.stray_packet(pkt.seq, pkt.timestamp, what, out);
            }
        };
        match checked {
            Ok(scan) => self.append(pkt, scan, out),
            Err(what) => self.drop_frame(pkt.timestamp, pkt.seq, what, out),
        }
    }

    /// Checks a first packet's headers and writes the JPEG headers for its
    /// frame. Returns the frame and the packet's scan data.
    fn begin<'a>(&mut self, pkt: &Packet<'a>) -> Result<(Partial, &'a [u8]), Reason> {
        let header = pkt.header;
        match header.typ {
            0 | 1 | 64 | 65 => {}
            typ => return Err(Reason::Type(typ)),
        }
        match header.q {
            0 => return Err(Reason::ZeroQ),
            q @ 100..=127 => return Err(Reason::ReservedQ(q)),
            _ => {}
        }
        if header.width8 == 0 || header.height8 == 0 {
            return Err(Reason::ZeroSize {
                width: header.width(),
                height: header.height(),
            });
        }
        let mut rest = pkt.rest;
        let mut need = MAIN_HEADER;
        let restart_interval = if header.has_restart() {
            need += RESTART_HEADER;
            let (interval, after) =
                restart_header(rest).ok_or(Reason::Short { len: pkt.len, need })?;
            rest = after;
            interval
        } else {
            0
        };
        let tables = if header.q < 128 {
            computed_tables(header.q)
        } else {
            need += TABLE_HEADER;
            let (&[_mbz, precision, l0, l1], after) = rest
                .split_first_chunk::<TABLE_HEADER>()
                .ok_or(Reason::Short { len: pkt.len, need })?;
            let len = u16::from_be_bytes([l0, l1]);
            // Q 255 has no slot: its tables are never reused.
            let cached = match header.q {
                255 => None,
                q => self.cache.get_mut(usize::from(q - 128)),
            };
            if len == 0 {
                rest = after;
                match cached {
                    None => return Err(Reason::Q255NoTables),
                    Some(slot) => slot.clone().ok_or(Reason::NoTables(header.q))?,
                }
            } else {
                let (data, after) =
                    after
                        .split_at_checked(usize::from(len))
                        .ok_or(Reason::TablesPastPacket {
                            len,
                            left: after.len(),
                        })?;
                rest = after;
                let tables = parse_tables(data, precision, len)?;
                if let Some(slot) = cached {
                    *slot = Some(tables.clone());
                }
                tables
            }
        };
        let mut buf = BytesMut::with_capacity(self.size_hint.clamp(1024, self.max_frame.max(1024)));
        write_headers(&mut buf, header, &tables, restart_interval);
        let partial = Partial {
            timestamp: pkt.timestamp,
            header,
            restart_interval,
            header_len: buf.len(),
            buf,
        };
        Ok((partial, rest))
    }

    /// Adds scan data to the frame in progress; at the marker, finishes it.
    fn append(&mut self, pkt: &Packet<'_>, scan: &[u8], out: &mut Outcome) {
        let State::InFrame(p) = &mut self.state else {
            return;
        };
        let timestamp = p.timestamp;
        // The EOI this frame may still need is checked at the marker: a
        // frame exactly at the limit may end with its own.
        if p.buf.len().saturating_add(scan.len()) > self.max_frame {
            let what = Reason::TooLarge {
                max: self.max_frame,
            };
            return self.drop_frame(timestamp, pkt.seq, what, out);
        }
        p.buf.extend_from_slice(scan);
        if !pkt.marker {
            return;
        }
        if p.scan_len() == 0 {
            return self.drop_frame(timestamp, pkt.seq, Reason::Empty, out);
        }
        let has_eoi = p
            .buf
            .get(p.header_len..)
            .is_some_and(|scan| scan.ends_with(&[0xFF, 0xD9]));
        if !has_eoi {
            if p.buf.len().saturating_add(2) > self.max_frame {
                let what = Reason::TooLarge {
                    max: self.max_frame,
                };
                return self.drop_frame(timestamp, pkt.seq, what, out);
            }
            p.buf.extend_from_slice(&[0xFF, 0xD9]);
        }
        let State::InFrame(p) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        self.size_hint = p.buf.len();
        self.stats.frames += 1;
        out.frame = Some(Frame {
            data: p.buf.freeze(),
            timestamp,
            width: p.header.width(),
            height: p.header.height(),
        });
    }
}

/// Checks that a later packet continues `p`; returns its scan data.
fn continues<'a>(p: &Partial, pkt: &Packet<'a>) -> Result<&'a [u8], Reason> {
    let (was, now) = (p.header, pkt.header);
    let fields = [
        ("type", was.typ.into(), now.typ.into()),
        ("Q", was.q.into(), now.q.into()),
        ("width", was.width(), now.width()),
        ("height", was.height(), now.height()),
    ];
    for (field, was, now) in fields {
        if was != now {
            return Err(Reason::Changed { field, was, now });
        }
    }
    let mut scan = pkt.rest;
    if now.has_restart() {
        let (interval, after) = restart_header(scan).ok_or(Reason::Short {
            len: pkt.len,
            need: MAIN_HEADER + RESTART_HEADER,
        })?;
        if interval != p.restart_interval {
            return Err(Reason::Changed {
                field: "restart interval",
                was: p.restart_interval,
                now: interval,
            });
        }
        scan = after;
    }
    let expected = p.scan_len();
    if usize::try_from(pkt.offset).ok() != Some(expected) {
        return Err(Reason::Offset {
            offset: pkt.offset,
            expected,
        });
    }
    Ok(scan)
}

/// The restart interval from a restart marker header (section 3.1.7), and
/// what follows. F, L and the restart count only matter to a receiver that
/// decodes partial frames, which this one never returns.
fn restart_header(data: &[u8]) -> Option<(u16, &[u8])> {
    let (&[i0, i1, _, _], rest) = data.split_first_chunk::<RESTART_HEADER>()?;
    Some((u16::from_be_bytes([i0, i1]), rest))
}

/// The two tables of a quantization table header's data (section 3.1.8):
/// precision bit `i` set makes table `i` 16-bit. Tables past the first two
/// (types 0 and 1 use two) are ignored.
fn parse_tables(data: &[u8], precision: u8, len: u16) -> Result<Tables, Reason> {
    let wide = |i: u8| precision >> i & 1 == 1;
    let size = |i: u8| if wide(i) { 128 } else { 64 };
    let short = Reason::TablesShort {
        len,
        need: size(0) + size(1),
        precision,
    };
    let mut tables = [0u8, 1].map(|i| QTable {
        wide: wide(i),
        values: [0; 64],
    });
    let mut at = 0;
    for (id, table) in (0u8..).zip(tables.iter_mut()) {
        let bytes = data.get(at..at + table.len()).ok_or(short)?;
        at += table.len();
        if table.wide {
            for (v, pair) in table.values.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = u16::from_be_bytes([pair[0], pair[1]]);
            }
        } else {
            for (v, &b) in table.values.iter_mut().zip(bytes) {
                *v = b.into();
            }
        }
        if table.values.contains(&0) {
            return Err(Reason::ZeroQuantizer { table: id });
        }
    }
    Ok(tables)
}

/// ITU-T T.81 table K.1, luminance, in natural (row-major) order.
const LUMA: [u8; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// ITU-T T.81 table K.2, chrominance, in natural order.
const CHROMA: [u8; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, //
    18, 21, 26, 66, 99, 99, 99, 99, //
    24, 26, 56, 99, 99, 99, 99, 99, //
    47, 66, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99,
];

/// The natural-order index of each zigzag position (T.81 figure A.6).
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, //
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, //
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, //
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The tables for Q 1-99 (RFC 2435 appendix A): K.1 and K.2 scaled as
/// libjpeg's quality setting does, clamped to 1-255, in zigzag order.
fn computed_tables(q: u8) -> Tables {
    let factor = u32::from(q.clamp(1, 99));
    let scale = if factor < 50 {
        5000 / factor
    } else {
        200 - factor * 2
    };
    let table = |base: &[u8; 64]| {
        let mut values = [0u16; 64];
        for (v, &natural) in values.iter_mut().zip(&ZIGZAG) {
            let scaled = (u32::from(base[usize::from(natural)]) * scale + 50) / 100;
            // 1..=255 fits.
            *v = scaled.clamp(1, 255) as u16;
        }
        QTable {
            wide: false,
            values,
        }
    };
    [table(&LUMA), table(&CHROMA)]
}

/// Huffman tables of T.81 K.3 as DHT carries them: class and id, code
/// counts by length, symbols.
const HUFFMAN: [(u8, [u8; 16], &[u8]); 4] = [
    (
        0x00,
        [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        &DC_SYMBOLS,
    ),
    (
        0x10,
        [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125],
        &AC_LUMA_SYMBOLS,
    ),
    (
        0x01,
        [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        &DC_SYMBOLS,
    ),
    (
        0x11,
        [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119],
        &AC_CHROMA_SYMBOLS,
    ),
];

const DC_SYMBOLS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// T.81 table K.5.
const AC_LUMA_SYMBOLS: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, //
    0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, //
    0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, //
    0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, //
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, //
    0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, //
    0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, //
    0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, //
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, //
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, //
    0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, //
    0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, //
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, //
    0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
];

/// T.81 table K.6.
const AC_CHROMA_SYMBOLS: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, //
    0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, //
    0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, //
    0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, //
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, //
    0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, //
    0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, //
    0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, //
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, //
    0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, //
    0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, //
    0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, //
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, //
    0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
];

/// A marker and the length of a segment whose body is `body_len` bytes.
fn segment(buf: &mut BytesMut, marker: u8, body_len: usize) {
    // Every segment written here is well under 64 KiB.
    let len = u16::try_from(body_len + 2).unwrap_or(u16::MAX);
    buf.extend_from_slice(&[0xFF, marker]);
    buf.extend_from_slice(&len.to_be_bytes());
}

/// SOI through SOS for a frame (RFC 2435 section 4.1 and appendix B).
///
/// Components are numbered 1, 2, 3 (Y, Cb, Cr) as in the table of section
/// 4.1 and in JFIF, whose APP0 is written too; appendix B's sample code
/// numbers them 0, 1, 2, which decoders also accept. A 16-bit table makes
/// the frame header SOF1 (extended sequential, as libjpeg writes it), else
/// it is SOF0 (baseline).
fn write_headers(buf: &mut BytesMut, header: Header, tables: &Tables, restart_interval: u16) {
    buf.extend_from_slice(&[0xFF, 0xD8]);
    // APP0: JFIF 1.01, no density unit, 1:1 pixels, no thumbnail.
    segment(buf, 0xE0, 14);
    buf.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");

    segment(buf, 0xDB, tables.iter().map(|t| 1 + t.len()).sum());
    for (id, table) in (0u8..).zip(tables) {
        buf.extend_from_slice(&[u8::from(table.wide) << 4 | id]);
        for &v in &table.values {
            if table.wide {
                buf.extend_from_slice(&v.to_be_bytes());
            } else {
                // 8-bit tables hold values up to 255.
                buf.extend_from_slice(&[v as u8]);
            }
        }
    }

    let sof = if tables.iter().any(|t| t.wide) {
        0xC1
    } else {
        0xC0
    };
    // Luma sampling: types 0 and 64 are 4:2:2 (2x1), 1 and 65 4:2:0 (2x2).
    let luma = if header.typ & 0x3F == 0 { 0x21 } else { 0x22 };
    segment(buf, sof, 15);
    buf.extend_from_slice(&[8]);
    buf.extend_from_slice(&header.height().to_be_bytes());
    buf.extend_from_slice(&header.width().to_be_bytes());
    buf.extend_from_slice(&[3, 1, luma, 0, 2, 0x11, 1, 3, 0x11, 1]);

    segment(
        buf,
        0xC4,
        HUFFMAN
            .iter()
            .map(|(_, _, symbols)| 17 + symbols.len())
            .sum(),
    );
    for (class_id, counts, symbols) in &HUFFMAN {
        buf.extend_from_slice(&[*class_id]);
        buf.extend_from_slice(counts);
        buf.extend_from_slice(symbols);
    }

    // An interval of 0 means no restart markers, the same as no DRI.
    if restart_interval != 0 {
        segment(buf, 0xDD, 2);
        buf.extend_from_slice(&restart_interval.to_be_bytes());
    }

    // SOS: three components, Y with Huffman tables 0/0, Cb and Cr with
    // 1/1; spectral selection 0-63, no successive approximation.
    segment(buf, 0xDA, 10);
    buf.extend_from_slice(&[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    // testdata/rtp_jpeg/*.jpg: see testdata/README.md. 64x48 images made by
    // cjpeg (libjpeg-turbo) with the standard Huffman tables, as an RFC 2435
    // sender's encoder must; names give the quality and sampling.
    const Q80_420: &[u8] = include_bytes!("../../testdata/rtp_jpeg/q80-420.jpg");
    const Q10_422: &[u8] = include_bytes!("../../testdata/rtp_jpeg/q10-422.jpg");
    const Q50_420_RESTART: &[u8] = include_bytes!("../../testdata/rtp_jpeg/q50-420-restart.jpg");
    const Q50_422_RESTART: &[u8] = include_bytes!("../../testdata/rtp_jpeg/q50-422-restart.jpg");
    const Q5_16BIT: &[u8] = include_bytes!("../../testdata/rtp_jpeg/q5-420-16bit.jpg");

    const EOI: [u8; 2] = [0xFF, 0xD9];

    /// What the tests compare in a JPEG: every table and header a decoder
    /// uses, and the scan.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Jpeg {
        /// Quantization tables by id: 16-bit or not, values in zigzag order.
        tables: [Option<(bool, Vec<u16>)>; 4],
        /// Frame header: marker, body.
        sof: Option<(u8, Vec<u8>)>,
        /// Huffman tables, sorted: class and id, then counts and symbols.
        huffman: Vec<(u8, Vec<u8>)>,
        dri: Option<u16>,
        /// Scan header body.
        sos: Vec<u8>,
        /// Everything after the scan header: scan data, EOI.
        scan: Vec<u8>,
    }

    /// Walks a (well-formed) JPEG's segments up to its scan.
    fn parse(jpeg: &[u8]) -> Jpeg {
        assert_eq!(jpeg[..2], [0xFF, 0xD8]);
        let mut j = Jpeg::default();
        let mut i = 2;
        loop {
            assert_eq!(jpeg[i], 0xFF, "marker at byte {i}");
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            let mut body = &jpeg[i + 4..i + 2 + len];
            match marker {
                0xDB => {
                    while let [pq_tq, rest @ ..] = body {
                        let wide = pq_tq >> 4 == 1;
                        let values: Vec<u16> = if wide {
                            rest[..128]
                                .chunks(2)
                                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                                .collect()
                        } else {
                            rest[..64].iter().map(|&v| v.into()).collect()
                        };
                        j.tables[usize::from(pq_tq & 15)] = Some((wide, values));
                        body = &rest[if wide { 128 } else { 64 }..];
                    }
                }
                0xC0..=0xC3 => j.sof = Some((marker, body.to_vec())),
                0xC4 => {
                    while let [class_id, rest @ ..] = body {
                        let n = 16 + rest[..16].iter().map(|&c| usize::from(c)).sum::<usize>();
                        j.huffman.push((*class_id, rest[..n].to_vec()));
                        body = &rest[n..];
                    }
                }
                0xDD => j.dri = Some(u16::from_be_bytes([body[0], body[1]])),
                0xDA => {
                    j.sos = body.to_vec();
                    j.scan = jpeg[i + 2 + len..].to_vec();
                    j.huffman.sort();
                    return j;
                }
                _ => {}
            }
            i += 2 + len;
        }
    }

    /// The scan data of a JPEG file, EOI included.
    fn scan(jpeg: &[u8]) -> Vec<u8> {
        parse(jpeg).scan
    }

    /// The quantization table header's precision and data for `jpeg`'s
    /// tables 0 and 1.
    fn tables_of(jpeg: &[u8]) -> (u8, Vec<u8>) {
        let j = parse(jpeg);
        let mut precision = 0;
        let mut data = Vec::new();
        for (i, table) in j.tables[..2].iter().enumerate() {
            let (wide, values) = table.as_ref().expect("tables 0 and 1");
            if *wide {
                precision |= 1 << i;
                data.extend(values.iter().flat_map(|v| v.to_be_bytes()));
            } else {
                data.extend(values.iter().map(|&v| v as u8));
            }
        }
        (precision, data)
    }

    /// Checks that a rebuilt image decodes as `original` does: the same
    /// tables, frame and scan headers, restart interval and scan bytes
    /// (segment order and grouping may differ).
    fn assert_same_image(rebuilt: &[u8], original: &[u8]) {
        assert_eq!(parse(rebuilt), parse(original));
    }

    #[derive(Debug, Clone)]
    struct Pkt {
        seq: u16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
    }

    /// The sending side of RFC 2435, for tests: payload headers, scan data
    /// cut into packets.
    #[derive(Debug, Clone)]
    struct Sender {
        seq: u16,
        typ: u8,
        q: u8,
        width8: u8,
        height8: u8,
        restart_interval: u16,
        /// Precision and data of the quantization table header sent in the
        /// first packet when Q >= 128; `None` sends length 0.
        tables: Option<(u8, Vec<u8>)>,
    }

    impl Sender {
        /// Sends `jpeg`'s scan: the type its sampling and DRI give, Q 255
        /// with its tables in band.
        fn for_jpeg(jpeg: &[u8]) -> Self {
            let j = parse(jpeg);
            let (_, sof) = j.sof.expect("a frame header");
            let height = u16::from_be_bytes([sof[1], sof[2]]);
            let width = u16::from_be_bytes([sof[3], sof[4]]);
            let typ = match sof[7] {
                0x21 => 0,
                0x22 => 1,
                s => panic!("luma sampling {s:#x}"),
            };
            Self {
                seq: 1000,
                typ: if j.dri.is_some() { typ + 64 } else { typ },
                q: 255,
                width8: (width / 8) as u8,
                height8: (height / 8) as u8,
                restart_interval: j.dri.unwrap_or(0),
                tables: Some(tables_of(jpeg)),
            }
        }

        /// A payload: headers for fragment offset `offset`, then `data`.
        fn payload(&self, offset: usize, data: &[u8]) -> Vec<u8> {
            let [_, o0, o1, o2] = u32::try_from(offset).unwrap().to_be_bytes();
            let mut p = vec![0, o0, o1, o2, self.typ, self.q, self.width8, self.height8];
            if self.typ >= 64 {
                p.extend(self.restart_interval.to_be_bytes());
                // F = L = 1, count 0x3FFF: restart intervals not aligned
                // with packets.
                p.extend([0xFF, 0xFF]);
            }
            if offset == 0 && self.q >= 128 {
                match &self.tables {
                    Some((precision, data)) => {
                        p.extend([0, *precision]);
                        p.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
                        p.extend(data);
                    }
                    None => p.extend([0, 0, 0, 0]),
                }
            }
            p.extend(data);
            p
        }

        /// One frame's packets: `scan` cut at `cuts` (ascending, inside it).
        fn frame_cut(&mut self, ts: u32, scan: &[u8], cuts: &[usize]) -> Vec<Pkt> {
            let bounds: Vec<usize> = [&[0], cuts, &[scan.len()]].concat();
            let n = bounds.len() - 1;
            let mut pkts = Vec::new();
            for (i, w) in bounds.windows(2).enumerate() {
                pkts.push(Pkt {
                    seq: self.seq,
                    ts,
                    marker: i == n - 1,
                    payload: self.payload(w[0], &scan[w[0]..w[1]]),
                });
                self.seq = self.seq.wrapping_add(1);
            }
            pkts
        }

        /// One frame's packets, `size` bytes of scan data each.
        fn frame(&mut self, ts: u32, scan: &[u8], size: usize) -> Vec<Pkt> {
            let cuts: Vec<usize> = (size..scan.len()).step_by(size).collect();
            self.frame_cut(ts, scan, &cuts)
        }
    }

    type Pushed = Result<Option<Frame>, Dropped>;

    /// A change to a sender's headers.
    type Change = fn(&mut Sender);

    fn push(d: &mut Depacketizer, p: &Pkt) -> Pushed {
        d.push(p.seq, p.ts, p.marker, &p.payload)
    }

    fn push_all(d: &mut Depacketizer, pkts: &[Pkt]) -> Vec<Pushed> {
        pkts.iter().map(|p| push(d, p)).collect()
    }

    /// Frames and drops out of pushing `pkts`.
    fn run(d: &mut Depacketizer, pkts: &[Pkt]) -> (Vec<Frame>, Vec<Dropped>) {
        let mut frames = Vec::new();
        let mut drops = Vec::new();
        for pushed in push_all(d, pkts) {
            match pushed {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {}
                Err(e) => {
                    assert!(!e.to_string().contains('\n'));
                    drops.push(e);
                }
            }
        }
        (frames, drops)
    }

    /// The one frame `pkts` make.
    fn one_frame(d: &mut Depacketizer, pkts: &[Pkt]) -> Frame {
        let (mut frames, drops) = run(d, pkts);
        assert_eq!(drops, []);
        assert_eq!(frames.len(), 1);
        frames.remove(0)
    }

    fn dropped(timestamp: u32, seq: u16, what: Reason) -> Pushed {
        Err(Dropped {
            timestamp,
            seq,
            what,
        })
    }

    #[test]
    fn zigzag_is_a_permutation() {
        let mut z = ZIGZAG;
        z.sort();
        assert!(z.iter().copied().eq(0..64));
    }

    #[test]
    fn q50_computes_the_tables_of_t81_k1_and_k2() {
        let [luma, chroma] = computed_tables(50);
        assert!(!luma.wide && !chroma.wide);
        // K.1 and K.2 unscaled, in zigzag order.
        assert_eq!(luma.values[..8], [16, 11, 12, 14, 12, 10, 16, 14]);
        assert_eq!(chroma.values[..8], [17, 18, 18, 24, 21, 24, 47, 26]);
        assert_eq!(luma.values[63], 99);
        assert_eq!(chroma.values[63], 99);
        for (&v, &n) in luma.values.iter().zip(&ZIGZAG) {
            assert_eq!(v, u16::from(LUMA[usize::from(n)]));
        }
        // What libjpeg writes at quality 50.
        let (precision, data) = tables_of(Q50_420_RESTART);
        assert_eq!(precision, 0);
        let want: Vec<u16> = data.iter().map(|&v| v.into()).collect();
        assert_eq!([luma.values, chroma.values].concat(), want);
    }

    #[test]
    fn q80_and_q10_scale_the_tables_as_libjpeg_quality_does() {
        let [luma, chroma] = computed_tables(80);
        assert_eq!(luma.values[..8], [6, 4, 5, 6, 5, 4, 6, 6]);
        assert_eq!(chroma.values[..8], [7, 7, 7, 10, 8, 10, 19, 10]);
        let [luma10, chroma10] = computed_tables(10);
        assert_eq!(luma10.values[..8], [80, 55, 60, 70, 60, 50, 80, 70]);
        assert_eq!(chroma10.values[..8], [85, 90, 90, 120, 105, 120, 235, 130]);
        // Q 10 scales by 5: large values clamp to 255.
        assert_eq!(luma10.values[63], 255);
        // cjpeg -quality 80 and -quality 10 -baseline.
        for (q, jpeg) in [(80, Q80_420), (10, Q10_422)] {
            let [l, c] = computed_tables(q);
            let want: Vec<u16> = tables_of(jpeg).1.iter().map(|&v| v.into()).collect();
            assert_eq!([l.values, c.values].concat(), want, "Q {q}");
        }
    }

    #[test]
    fn q1_and_q99_clamp_to_1_255() {
        let [luma, chroma] = computed_tables(1);
        assert!(luma.values.iter().chain(&chroma.values).all(|&v| v == 255));
        let [luma, chroma] = computed_tables(99);
        assert!(luma
            .values
            .iter()
            .chain(&chroma.values)
            .all(|&v| v == 1 || v == 2));
        assert_eq!(luma.values[0], 1);
    }

    #[test]
    fn q_under_128_rebuilds_the_libjpeg_image() {
        // No tables in band: the computed ones must be libjpeg's.
        for (q, jpeg) in [(80, Q80_420), (10, Q10_422)] {
            let mut s = Sender::for_jpeg(jpeg);
            s.q = q;
            let mut d = Depacketizer::default();
            let frame = one_frame(&mut d, &s.frame(3000, &scan(jpeg), 300));
            assert_same_image(&frame.data, jpeg);
            assert_eq!((frame.timestamp, frame.width, frame.height), (3000, 64, 48));
        }
    }

    #[test]
    fn in_band_8_bit_tables_round_trip_a_real_jpeg() {
        for q in [128, 200, 255] {
            let mut s = Sender::for_jpeg(Q80_420);
            s.q = q;
            let mut d = Depacketizer::default();
            let frame = one_frame(&mut d, &s.frame(3000, &scan(Q80_420), 100));
            assert_same_image(&frame.data, Q80_420);
            let j = parse(&frame.data);
            // Baseline, components 1-3, 4:2:0 (type 1), chroma on table 1.
            assert_eq!(
                j.sof,
                Some((
                    0xC0,
                    vec![8, 0, 48, 0, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]
                ))
            );
            assert_eq!(
                frame.data[2..20],
                *b"\xFF\xE0\x00\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
            );
            assert_eq!(d.stats().frames, 1);
        }
    }

    #[test]
    fn in_band_16_bit_tables_make_sof1() {
        let mut s = Sender::for_jpeg(Q5_16BIT);
        assert_eq!(s.tables.as_ref().map(|t| t.0), Some(0b11));
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &s.frame(3000, &scan(Q5_16BIT), 100));
        // cjpeg writes SOF1 for 16-bit tables too: the same image.
        assert_same_image(&frame.data, Q5_16BIT);
        let j = parse(&frame.data);
        assert_eq!(j.sof.map(|s| s.0), Some(0xC1));
        assert!(j.tables[0]
            .as_ref()
            .is_some_and(|t| t.0 && t.1.iter().any(|&v| v > 255)));

        // Mixed: 16-bit luma, 8-bit chroma.
        let (_, data8) = tables_of(Q80_420);
        let mut mixed: Vec<u8> = data8[..64].iter().flat_map(|&v| [0, v]).collect();
        mixed.extend(&data8[64..]);
        s.tables = Some((0b01, mixed));
        let frame = one_frame(&mut d, &s.frame(6000, &scan(Q80_420), 100));
        let j = parse(&frame.data);
        let want = parse(Q80_420);
        assert_eq!(j.tables[0].as_ref().map(|t| t.0), Some(true));
        assert_eq!(
            j.tables[0].as_ref().map(|t| &t.1),
            want.tables[0].as_ref().map(|t| &t.1)
        );
        assert_eq!(j.tables[1], want.tables[1]);
        assert_eq!(j.scan, want.scan);
    }

    #[test]
    fn type_0_is_4_2_2_with_2x1_luma() {
        let mut s = Sender::for_jpeg(Q10_422);
        assert_eq!(s.typ, 0);
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &s.frame(3000, &scan(Q10_422), 250));
        assert_same_image(&frame.data, Q10_422);
        assert_eq!(parse(&frame.data).sof.map(|s| s.1[7]), Some(0x21));
    }

    #[test]
    fn restart_types_64_and_65_write_the_interval_as_dri() {
        for (jpeg, typ, interval) in [(Q50_420_RESTART, 65, 4), (Q50_422_RESTART, 64, 2)] {
            let mut s = Sender::for_jpeg(jpeg);
            assert_eq!((s.typ, s.restart_interval), (typ, interval));
            // Q 50 computed: the same tables as the file's.
            s.q = 50;
            let scan = scan(jpeg);
            assert!(scan.windows(2).any(|w| w == [0xFF, 0xD1]));
            let mut d = Depacketizer::default();
            let frame = one_frame(&mut d, &s.frame(3000, &scan, 128));
            assert_same_image(&frame.data, jpeg);
            assert_eq!(parse(&frame.data).dri, Some(interval));
        }
        // An interval of 0 means none: no DRI.
        let mut s = Sender::for_jpeg(Q80_420);
        s.typ = 65;
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &s.frame(3000, &scan(Q80_420), 500));
        assert_same_image(&frame.data, Q80_420);
    }

    #[test]
    fn table_length_0_reuses_the_tables_last_sent_for_that_q() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        s.q = 200;
        let mut d = Depacketizer::default();
        let tables = |f: &Frame| parse(&f.data).tables;
        let want_80 = parse(Q80_420).tables;
        let want_10 = parse(Q10_422).tables;

        let f = one_frame(&mut d, &s.frame(3000, &scan, 400));
        assert_eq!(tables(&f), want_80);
        s.tables = None;
        let f = one_frame(&mut d, &s.frame(6000, &scan, 400));
        assert_eq!(tables(&f), want_80);
        // New tables for Q 200 replace the old.
        s.tables = Some(tables_of(Q10_422));
        let f = one_frame(&mut d, &s.frame(9000, &scan, 400));
        assert_eq!(tables(&f), want_10);
        s.tables = None;
        let f = one_frame(&mut d, &s.frame(12000, &scan, 400));
        assert_eq!(tables(&f), want_10);
        // Each Q has its own: Q 201's tables leave Q 200's alone.
        s.q = 201;
        s.tables = Some(tables_of(Q80_420));
        let f = one_frame(&mut d, &s.frame(15000, &scan, 400));
        assert_eq!(tables(&f), want_80);
        s.q = 200;
        s.tables = None;
        let f = one_frame(&mut d, &s.frame(18000, &scan, 400));
        assert_eq!(tables(&f), want_10);
        assert_eq!(d.stats().frames, 6);
        assert_eq!(d.stats().dropped_frames, 0);
    }

    #[test]
    fn table_length_0_with_no_tables_for_that_q_is_dropped() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        s.q = 130;
        s.tables = None;
        let mut d = Depacketizer::default();
        let pkts = s.frame(3000, &scan, 400);
        let got = push_all(&mut d, &pkts);
        let want = dropped(3000, 1000, Reason::NoTables(130));
        assert_eq!(got, [want.clone(), Ok(None), Ok(None)]);
        assert_eq!(
            want.unwrap_err().to_string(),
            "jpeg frame at rtp time 3000 dropped at packet 1000: \
             Q 130 without quantization tables, and none were sent for it yet"
        );
        // Tables for another Q do not count.
        s.q = 131;
        s.tables = Some(tables_of(Q80_420));
        one_frame(&mut d, &s.frame(6000, &scan, 400));
        s.q = 130;
        s.tables = None;
        let (frames, drops) = run(&mut d, &s.frame(9000, &scan, 400));
        assert_eq!(frames, []);
        assert_eq!(drops.len(), 1);
        assert_eq!(
            d.stats(),
            &Stats {
                frames: 1,
                dropped_frames: 2,
                skipped_packets: 4,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn q255_tables_are_never_reused() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        one_frame(&mut d, &s.frame(3000, &scan, 400));
        s.tables = None;
        let pkts = s.frame(6000, &scan, 400);
        assert_eq!(
            push(&mut d, &pkts[0]),
            dropped(6000, pkts[0].seq, Reason::Q255NoTables)
        );
    }

    #[test]
    fn bad_quantization_table_headers_are_dropped() {
        let scan = scan(Q80_420);
        let s = Sender::for_jpeg(Q80_420);
        let (_, good) = tables_of(Q80_420);
        let mut zero = good.clone();
        zero[64 + 10] = 0;
        let cases = [
            // Length 100: under two 8-bit tables.
            (
                0,
                good[..100].to_vec(),
                Reason::TablesShort {
                    len: 100,
                    need: 128,
                    precision: 0,
                },
            ),
            // Table 1 said to be 16-bit: 192 bytes needed.
            (
                2,
                good.clone(),
                Reason::TablesShort {
                    len: 128,
                    need: 192,
                    precision: 2,
                },
            ),
            (0, zero, Reason::ZeroQuantizer { table: 1 }),
        ];
        for (precision, data, what) in cases {
            let mut s = s.clone();
            s.tables = Some((precision, data));
            let mut d = Depacketizer::default();
            let pkts = s.frame(3000, &scan, 400);
            assert_eq!(push(&mut d, &pkts[0]), dropped(3000, 1000, what));
        }

        // A length past the end of the packet (RFC 2435: discard it).
        let mut payload = s.payload(0, &scan[..10]);
        assert_eq!(payload[10..12], 128u16.to_be_bytes());
        payload[10..12].copy_from_slice(&139u16.to_be_bytes());
        let mut d = Depacketizer::default();
        assert_eq!(
            d.push(7, 3000, false, &payload),
            dropped(
                3000,
                7,
                Reason::TablesPastPacket {
                    len: 139,
                    left: 138
                }
            )
        );
        // 138 bytes after the table header: the length may take them all.
        payload[10..12].copy_from_slice(&138u16.to_be_bytes());
        let mut d = Depacketizer::default();
        assert_eq!(d.push(7, 3000, false, &payload), Ok(None));
    }

    #[test]
    fn lost_middle_fragment_drops_the_frame_and_the_next_is_fine() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        let mut pkts = s.frame(3000, &scan, 200);
        assert_eq!(pkts.len(), 6);
        pkts.remove(2);
        let got = push_all(&mut d, &pkts);
        let lost = dropped(3000, 1003, Reason::Lost { count: 1 });
        assert_eq!(got, [Ok(None), Ok(None), lost, Ok(None), Ok(None)]);
        let frame = one_frame(&mut d, &s.frame(6000, &scan, 200));
        assert_same_image(&frame.data, Q80_420);
        assert_eq!(
            d.stats(),
            &Stats {
                frames: 1,
                dropped_frames: 1,
                lost_packets: 1,
                skipped_packets: 3,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn wrong_fragment_offset_without_a_sequence_gap_is_dropped() {
        // Data missing at the sender: consecutive packets, offsets that skip.
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.remove(1);
        pkts[1].seq = 1001;
        let mut d = Depacketizer::default();
        let got = push_all(&mut d, &pkts);
        let want = dropped(
            3000,
            1001,
            Reason::Offset {
                offset: 800,
                expected: 400,
            },
        );
        assert_eq!(got, [Ok(None), want.clone()]);
        assert_eq!(
            want.unwrap_err().to_string(),
            "jpeg frame at rtp time 3000 dropped at packet 1001: fragment offset 800, expected 400"
        );
        // A repeated piece, as a retransmitting sender might: offset too small.
        let mut pkts = s.frame(6000, &scan, 400);
        pkts[1].payload = s.payload(0, &scan[..400]);
        pkts[1].payload[3] = 200;
        let got = push_all(&mut d, &pkts);
        let want = dropped(
            6000,
            pkts[1].seq,
            Reason::Offset {
                offset: 200,
                expected: 400,
            },
        );
        assert_eq!(got, [Ok(None), want, Ok(None)]);
    }

    #[test]
    fn lost_first_packet_drops_the_frame_once() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        one_frame(&mut d, &s.frame(3000, &scan, 200));
        let pkts = s.frame(6000, &scan, 200);
        let got = push_all(&mut d, &pkts[1..]);
        let first_lost = dropped(6000, pkts[1].seq, Reason::FirstLost { offset: 200 });
        assert_eq!(got[0], first_lost);
        assert!(got[1..].iter().all(|g| g == &Ok(None)));
        one_frame(&mut d, &s.frame(9000, &scan, 200));
        assert_eq!(
            d.stats(),
            &Stats {
                frames: 2,
                dropped_frames: 1,
                lost_packets: 1,
                skipped_packets: 4,
                ..Stats::default()
            }
        );

        // Joining a stream mid-frame: no gap, the same single report.
        let mut d = Depacketizer::default();
        let (frames, drops) = run(&mut d, &pkts[2..]);
        assert_eq!(frames, []);
        assert_eq!(
            drops,
            [Dropped {
                timestamp: 6000,
                seq: pkts[2].seq,
                what: Reason::FirstLost { offset: 400 }
            }]
        );
        one_frame(&mut d, &s.frame(9000, &scan, 200));
    }

    #[test]
    fn reordered_packets_drop_the_frame_and_the_late_one_is_ignored() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 200);
        pkts.swap(1, 2);
        let mut d = Depacketizer::default();
        let got = push_all(&mut d, &pkts);
        assert_eq!(got[1], dropped(3000, 1002, Reason::Lost { count: 1 }));
        assert!(got.iter().filter(|g| g.is_err()).count() == 1);
        one_frame(&mut d, &s.frame(6000, &scan, 200));
        assert_eq!(
            d.stats(),
            &Stats {
                frames: 1,
                dropped_frames: 1,
                lost_packets: 1,
                ignored_packets: 1,
                // The packet that showed the gap, and the three after.
                skipped_packets: 4,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn duplicate_packet_is_ignored() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 200);
        pkts.insert(2, pkts[1].clone());
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &pkts);
        assert_same_image(&frame.data, Q80_420);
        assert_eq!(d.stats().ignored_packets, 1);
        assert_eq!(d.stats().lost_packets, 0);
    }

    #[test]
    fn marker_never_sent_drops_the_frame_when_the_next_starts() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.last_mut().unwrap().marker = false;
        let next = s.frame(6000, &scan, 400);
        let mut d = Depacketizer::default();
        assert_eq!(push_all(&mut d, &pkts), [Ok(None), Ok(None), Ok(None)]);
        // The old frame's report; the new frame goes on.
        let got = push_all(&mut d, &next);
        assert_eq!(
            got[0],
            dropped(3000, next[0].seq, Reason::NoMarker { next: 6000 })
        );
        let Ok(Some(frame)) = &got[2] else {
            panic!("{got:?}");
        };
        assert_same_image(&frame.data, Q80_420);
        assert_eq!(d.stats().dropped_frames, 1);
    }

    #[test]
    fn marker_packet_lost_drops_the_frame_at_the_next() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.pop();
        pkts.extend(s.frame(6000, &scan, 400));
        let mut d = Depacketizer::default();
        let (frames, drops) = run(&mut d, &pkts);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].timestamp, 6000);
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].timestamp, 3000);
        assert_eq!(drops[0].what, Reason::Lost { count: 1 });
    }

    #[test]
    fn new_timestamp_mid_frame_without_a_gap_drops_both_frames() {
        // Frame 3000 lost its marker packet and frame 6000 its first one,
        // yet the sequence runs on (a sender bug): two drops, one report.
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.pop();
        let mut next = s.frame(6000, &scan, 400);
        next.remove(0);
        pkts.extend(next);
        for (seq, p) in (1000..).zip(&mut pkts) {
            p.seq = seq;
        }
        let mut d = Depacketizer::default();
        let got = push_all(&mut d, &pkts);
        assert_eq!(got[2], dropped(3000, 1002, Reason::NoMarker { next: 6000 }));
        assert_eq!(got[3], Ok(None));
        assert_eq!(d.stats().dropped_frames, 2);
        one_frame(&mut d, &s.frame(9000, &scan, 400));
    }

    #[test]
    fn first_packet_again_with_the_same_timestamp_restarts_the_frame() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.pop();
        pkts.extend(s.frame(3000, &scan, 400));
        for (seq, p) in (1000..).zip(&mut pkts) {
            p.seq = seq;
        }
        let mut d = Depacketizer::default();
        let (frames, drops) = run(&mut d, &pkts);
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].what, Reason::Restarted);
        assert_eq!(frames.len(), 1);
        assert_same_image(&frames[0].data, Q80_420);
    }

    #[test]
    fn sequence_wrap_from_65535_to_0_is_not_a_loss() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        s.seq = 65533;
        let pkts = s.frame(3000, &scan, 200);
        assert_eq!(
            pkts.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [65533, 65534, 65535, 0, 1, 2]
        );
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &pkts);
        assert_same_image(&frame.data, Q80_420);
        one_frame(&mut d, &s.frame(6000, &scan, 200));
        assert_eq!(d.stats().lost_packets, 0);

        // A gap across the wrap counts what is missing.
        s.seq = 65534;
        let mut pkts = s.frame(9000, &scan, 200);
        pkts.drain(1..3);
        let mut d = Depacketizer::default();
        let (_, drops) = run(&mut d, &pkts);
        assert_eq!(drops[0].what, Reason::Lost { count: 2 });
        assert_eq!(d.stats().lost_packets, 2);
    }

    #[test]
    fn lone_far_packet_is_ignored_and_two_in_a_row_resync() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        // A huge backward jump mid-frame: a stray, not 35000 lost packets.
        let mut pkts = s.frame(3000, &scan, 200);
        let mut stray = pkts[1].clone();
        stray.seq = pkts[1].seq.wrapping_sub(30000);
        pkts.insert(2, stray);
        let frame = one_frame(&mut d, &pkts);
        assert_same_image(&frame.data, Q80_420);
        assert_eq!(d.stats().ignored_packets, 1);
        assert_eq!(d.stats().lost_packets, 0);

        // The sender restarts its numbering mid-frame: the first packet of
        // the new numbering is held a stray, the second resyncs.
        let mut pkts = s.frame(6000, &scan, 200);
        pkts.truncate(3);
        s.seq = 40000;
        pkts.extend(s.frame(9000, &scan, 200));
        let got = push_all(&mut d, &pkts);
        assert_eq!(got[3], Ok(None));
        assert_eq!(
            got[4],
            dropped(6000, 40001, Reason::SeqJump { from: pkts[2].seq })
        );
        one_frame(&mut d, &s.frame(12000, &scan, 200));
        let stats = d.stats();
        assert_eq!(
            (stats.resyncs, stats.lost_packets, stats.ignored_packets),
            (1, 0, 2)
        );
        // Frame 6000 and frame 9000, whose first packet was the stray.
        assert_eq!(stats.dropped_frames, 2);
    }

    #[test]
    fn frame_over_the_limit_is_dropped_and_not_buffered() {
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let whole = one_frame(&mut Depacketizer::default(), &s.frame(3000, &scan, 200));
        let len = whole.data.len();

        // Exactly at the limit.
        let mut d = Depacketizer::new(len);
        one_frame(&mut d, &s.frame(3000, &scan, 200));

        // One byte under: dropped at the packet that crosses, the rest skipped.
        let mut d = Depacketizer::new(len - 1);
        let got = push_all(&mut d, &s.frame(6000, &scan, 200));
        let max = len - 1;
        assert_eq!(
            got[5],
            dropped(6000, got_seq(&s, 1), Reason::TooLarge { max })
        );
        assert!(matches!(d.state, State::Skipping(6000)));
        // A smaller frame fits.
        let small = scan_of_smaller();
        let mut s2 = Sender::for_jpeg(Q10_422);
        s2.seq = s.seq;
        one_frame(&mut d, &s2.frame(9000, &small, 200));

        // Without its EOI the scan fits; the EOI it needs does not.
        let bare = &scan[..scan.len() - 2];
        let mut d = Depacketizer::new(len - 1);
        let got = push_all(&mut d, &s.frame(12000, bare, 200));
        assert_eq!(
            got[5],
            dropped(12000, got_seq(&s, 1), Reason::TooLarge { max })
        );
        let mut d = Depacketizer::new(len);
        one_frame(&mut d, &s.frame(15000, bare, 200));

        // A limit under the headers' size drops every frame, at once.
        let mut d = Depacketizer::new(100);
        let pkts = s.frame(18000, &scan, 200);
        assert_eq!(
            push(&mut d, &pkts[0]),
            dropped(18000, pkts[0].seq, Reason::TooLarge { max: 100 })
        );
    }

    /// The sequence number of the `back`th packet before `s`'s next.
    fn got_seq(s: &Sender, back: u16) -> u16 {
        s.seq.wrapping_sub(back)
    }

    fn scan_of_smaller() -> Vec<u8> {
        let small = scan(Q10_422);
        assert!(small.len() < scan(Q80_420).len());
        small
    }

    #[test]
    fn every_split_into_two_packets_gives_the_same_image() {
        // Restart markers, FF 00 stuffing: nothing in the scan is looked at.
        let scan = scan(Q50_420_RESTART);
        let mut s = Sender::for_jpeg(Q50_420_RESTART);
        let mut d = Depacketizer::default();
        let whole = one_frame(&mut d, &s.frame_cut(0, &scan, &[]));
        assert_same_image(&whole.data, Q50_420_RESTART);
        for at in 1..scan.len() {
            let ts = at as u32 * 3000;
            let frame = one_frame(&mut d, &s.frame_cut(ts, &scan, &[at]));
            assert_eq!(frame.data, whole.data, "split at {at}");
            assert_eq!(frame.timestamp, ts);
        }
        assert_eq!(d.stats().frames, scan.len() as u64);
        assert_eq!(d.stats().dropped_frames, 0);
    }

    #[test]
    fn eoi_is_added_only_when_the_scan_lacks_it() {
        let scan = scan(Q80_420);
        assert!(scan.ends_with(&EOI));
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        let with = one_frame(&mut d, &s.frame(3000, &scan, 300));
        let without = one_frame(&mut d, &s.frame(6000, &scan[..scan.len() - 2], 300));
        assert_eq!(with.data, without.data);
        assert!(with.data.ends_with(&EOI));
        assert!(!with.data[..with.data.len() - 2].ends_with(&EOI));
        // The EOI alone in the marker packet.
        let cut = scan.len() - 2;
        let alone = one_frame(&mut d, &s.frame_cut(9000, &scan, &[cut]));
        assert_eq!(alone.data, with.data);
    }

    #[test]
    fn marker_packet_without_scan_data_is_dropped() {
        let s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        let payload = s.payload(0, &[]);
        assert_eq!(
            d.push(1, 3000, true, &payload),
            dropped(3000, 1, Reason::Empty)
        );
    }

    #[test]
    fn unsupported_headers_drop_the_frame_with_the_reason() {
        let scan = scan(Q80_420);
        let good = Sender::for_jpeg(Q80_420);
        let cases: [(Change, Reason); 9] = [
            (|s| s.typ = 2, Reason::Type(2)),
            (|s| s.typ = 66, Reason::Type(66)),
            (|s| s.typ = 128, Reason::Type(128)),
            (|s| s.q = 0, Reason::ZeroQ),
            (|s| s.q = 100, Reason::ReservedQ(100)),
            (|s| s.q = 127, Reason::ReservedQ(127)),
            (
                |s| s.width8 = 0,
                Reason::ZeroSize {
                    width: 0,
                    height: 48,
                },
            ),
            (
                |s| s.height8 = 0,
                Reason::ZeroSize {
                    width: 64,
                    height: 0,
                },
            ),
            (
                |s| {
                    s.typ = 1;
                    s.q = 99;
                },
                Reason::Empty,
            ),
        ];
        for (change, what) in cases {
            let mut s = good.clone();
            change(&mut s);
            let mut d = Depacketizer::default();
            let pkts = if what == Reason::Empty {
                // The control case: a good header on an empty frame.
                s.frame_cut(3000, &[], &[])
            } else {
                s.frame(3000, &scan, 400)
            };
            let (frames, drops) = run(&mut d, &pkts);
            assert_eq!(frames, []);
            assert_eq!(
                drops,
                [Dropped {
                    timestamp: 3000,
                    seq: 1000,
                    what
                }]
            );
            assert!(!drops[0].to_string().contains('\n'));
            let mut s = good.clone();
            s.seq = pkts.last().unwrap().seq.wrapping_add(1);
            one_frame(&mut d, &s.frame(6000, &scan, 400));
            assert_eq!(d.stats().dropped_frames, 1, "{what}");
        }
    }

    #[test]
    fn payloads_shorter_than_their_headers_are_dropped() {
        let s = Sender::for_jpeg(Q80_420);
        let mut restart = s.clone();
        restart.typ = 65;
        let cases = [
            (s.payload(0, &[])[..5].to_vec(), 8),
            (restart.payload(0, &[1])[..10].to_vec(), 12),
            (s.payload(0, &[1])[..10].to_vec(), 12),
        ];
        for (payload, need) in cases {
            let mut d = Depacketizer::default();
            let what = Reason::Short {
                len: payload.len(),
                need,
            };
            assert_eq!(d.push(9, 3000, false, &payload), dropped(3000, 9, what));
            // Its frame's other packets are skipped quietly.
            assert_eq!(d.push(10, 3000, true, &s.payload(300, &[1, 2])), Ok(None));
            assert_eq!(d.stats().skipped_packets, 1);
        }
        // A short continuation packet drops the frame in progress.
        let mut d = Depacketizer::default();
        assert_eq!(
            d.push(1, 3000, false, &restart.payload(0, &[1, 2])),
            Ok(None)
        );
        let what = Reason::Short { len: 9, need: 12 };
        assert_eq!(
            d.push(2, 3000, false, &restart.payload(2, &[])[..9]),
            dropped(3000, 2, what)
        );
    }

    #[test]
    fn header_changing_mid_frame_is_dropped() {
        let scan = scan(Q50_420_RESTART);
        let good = Sender::for_jpeg(Q50_420_RESTART);
        let cases: [(Change, &str, u16, u16); 5] = [
            (|s| s.typ = 64, "type", 65, 64),
            (|s| s.q = 254, "Q", 255, 254),
            (|s| s.width8 = 10, "width", 64, 80),
            (|s| s.height8 = 1, "height", 48, 8),
            (|s| s.restart_interval = 8, "restart interval", 4, 8),
        ];
        for (change, field, was, now) in cases {
            let mut s = good.clone();
            let mut pkts = s.frame(3000, &scan, 300);
            change(&mut s);
            pkts[1].payload = s.payload(300, &scan[300..600]);
            let mut d = Depacketizer::default();
            let got = push_all(&mut d, &pkts);
            let what = Reason::Changed { field, was, now };
            assert_eq!(got[1], dropped(3000, 1001, what), "{field}");
            assert!(got[2..].iter().all(|g| g == &Ok(None)));
        }
    }

    #[test]
    fn one_push_that_drops_a_frame_and_completes_another_returns_the_frame() {
        // A gap ends frame 3000; the packet after it is all of frame 6000.
        let scan = scan(Q80_420);
        let mut s = Sender::for_jpeg(Q80_420);
        let mut pkts = s.frame(3000, &scan, 400);
        pkts.truncate(1);
        s.seq += 1;
        pkts.extend(s.frame(6000, &scan, 2000));
        let mut d = Depacketizer::default();
        let got = push_all(&mut d, &pkts);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], Ok(Some(f)) if f.timestamp == 6000));
        assert_eq!(d.stats().dropped_frames, 1);
        assert_eq!(d.stats().frames, 1);
    }

    #[test]
    fn huffman_tables_are_those_of_t81_k3() {
        // cjpeg writes the K.3 tables when not optimizing.
        let mut s = Sender::for_jpeg(Q80_420);
        let mut d = Depacketizer::default();
        let frame = one_frame(&mut d, &s.frame(3000, &scan(Q80_420), 2000));
        let j = parse(&frame.data);
        assert_eq!(j.huffman.len(), 4);
        assert_eq!(j.huffman, parse(Q80_420).huffman);
    }
}
