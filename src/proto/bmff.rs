//! ISO base media file format (ISO/IEC 14496-12, "MP4") box parsing.
//!
//! Three layers, all sans-IO:
//! - [`parse_header`] and [`boxes`] read box headers out of a complete buffer;
//! - [`BoxSplitter`] cuts a byte stream that arrives in arbitrary pieces into
//!   complete top-level boxes, with a bound on how large a box may be;
//! - [`parse_init`] and [`parse_fragment`] pull the few facts the receivers
//!   need (tracks, codecs, timing) out of an fMP4 init segment or fragment.
//!
//! Everything here reads untrusted bytes from the network, so every read is
//! bounds-checked and no allocation is sized from a length field: the only
//! allocations grow with the bytes actually received.

use bytes::{Bytes, BytesMut};
use std::fmt;

/// A box type ("four-character code"), shown as text when printable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const fn new(code: [u8; 4]) -> Self {
        Self(code)
    }

    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl From<[u8; 4]> for FourCc {
    fn from(code: [u8; 4]) -> Self {
        Self(code)
    }
}

impl PartialEq<[u8; 4]> for FourCc {
    fn eq(&self, other: &[u8; 4]) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Garbage input produces garbage codes; escaping keeps error messages
        // on one line and free of control characters.
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCc(\"{self}\")")
    }
}

/// Why a box could not be parsed. `offset` is the byte offset of the box
/// header in the buffer (or stream, for [`BoxSplitter`]) being parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("box '{kind}' at byte {offset} declares size {size}, smaller than its {header_len}-byte header")]
    SizeTooSmall {
        offset: u64,
        kind: FourCc,
        size: u64,
        header_len: usize,
    },
    #[error("box '{kind}' at byte {offset} has size 0 (\"extends to end of file\"), which a stream cannot delimit")]
    SizeToEnd { offset: u64, kind: FourCc },
    #[error("box '{kind}' at byte {offset} is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        offset: u64,
        kind: FourCc,
        size: u64,
        max: u64,
    },
    #[error("box '{kind}' at byte {offset} declares {size} bytes but only {available} remain")]
    Truncated {
        offset: u64,
        kind: FourCc,
        size: u64,
        available: u64,
    },
    #[error("{available} stray bytes at byte {offset}, too few for a box header")]
    TrailingBytes { offset: u64, available: usize },
    #[error("box '{kind}' at byte {offset} is malformed: {what}")]
    Malformed {
        offset: u64,
        kind: FourCc,
        what: &'static str,
    },
    #[error("no '{kind}' box in {within}")]
    Missing { kind: FourCc, within: &'static str },
}

/// A parsed box header. `size` counts the whole box, header included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    /// 8, 16 with a 64-bit `largesize`, plus 16 for a `uuid` box's user type.
    pub header_len: usize,
    pub size: u64,
}

impl BoxHeader {
    pub fn fourcc(&self) -> FourCc {
        FourCc(self.kind)
    }

    /// Bytes after the header.
    pub fn body_len(&self) -> u64 {
        // parse_header guarantees size >= header_len; saturate anyway so a
        // hand-built header cannot make this underflow.
        self.size.saturating_sub(self.header_len as u64)
    }
}

/// A header whose size may be "to end of enclosing space" (size field 0).
struct RawHeader {
    kind: [u8; 4],
    header_len: usize,
    size: Option<u64>,
}

fn be_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn raw_header(data: &[u8], offset: u64) -> Result<Option<RawHeader>, Error> {
    let Some(&[s0, s1, s2, s3, k0, k1, k2, k3]) = data.first_chunk::<8>() else {
        return Ok(None);
    };
    let kind = [k0, k1, k2, k3];
    let (mut header_len, size) = match u32::from_be_bytes([s0, s1, s2, s3]) {
        0 => (8, None),
        1 => match be_u64(data, 8) {
            Some(large) => (16, Some(large)),
            None => return Ok(None),
        },
        small => (8, Some(u64::from(small))),
    };
    if kind == *b"uuid" {
        header_len += 16;
    }
    // Reject an impossible size before waiting for the rest of the header,
    // so a stream of garbage fails as early as possible.
    if let Some(size) = size {
        if size < header_len as u64 {
            return Err(Error::SizeTooSmall {
                offset,
                kind: FourCc(kind),
                size,
                header_len,
            });
        }
    }
    if data.len() < header_len {
        return Ok(None);
    }
    Ok(Some(RawHeader {
        kind,
        header_len,
        size,
    }))
}

/// Parses the box header at the start of `data`.
///
/// `Ok(None)` means more bytes are needed. A size of 0 ("extends to the end of
/// the file") is an error: the callers of this function split streams, where
/// there is no end to extend to.
pub fn parse_header(data: &[u8]) -> Result<Option<BoxHeader>, Error> {
    header_at(data, 0)
}

fn header_at(data: &[u8], offset: u64) -> Result<Option<BoxHeader>, Error> {
    let Some(raw) = raw_header(data, offset)? else {
        return Ok(None);
    };
    match raw.size {
        Some(size) => Ok(Some(BoxHeader {
            kind: raw.kind,
            header_len: raw.header_len,
            size,
        })),
        None => Err(Error::SizeToEnd {
            offset,
            kind: FourCc(raw.kind),
        }),
    }
}

/// One box inside a complete buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef<'a> {
    pub header: BoxHeader,
    /// Offset of the header within the buffer given to [`boxes`] (for
    /// nested walks, within the outermost buffer).
    pub offset: u64,
    pub body: &'a [u8],
}

impl BoxRef<'_> {
    pub fn kind(&self) -> FourCc {
        self.header.fourcc()
    }

    fn body_offset(&self) -> u64 {
        self.offset + self.header.header_len as u64
    }

    fn malformed(&self, what: &'static str) -> Error {
        Error::Malformed {
            offset: self.offset,
            kind: self.kind(),
            what,
        }
    }

    /// The children of a container box.
    pub fn children(&self) -> Boxes<'_> {
        Boxes::at(self.body, self.body_offset())
    }
}

/// Iterator over the boxes that tile a complete buffer; see [`boxes`].
#[derive(Debug, Clone)]
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    done: bool,
}

/// Walks the boxes that tile `data` (e.g. the top level of a file, or the
/// body of a container box). Yields an error, then stops, if a box overruns
/// the buffer or a header is malformed. Unlike [`parse_header`], size 0 is
/// accepted here and means "to the end of `data`", as the format specifies.
pub fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes::at(data, 0)
}

impl<'a> Boxes<'a> {
    fn at(data: &'a [u8], base: u64) -> Self {
        Self {
            data,
            pos: 0,
            base,
            done: false,
        }
    }

    fn fail(&mut self, err: Error) -> Option<Result<BoxRef<'a>, Error>> {
        self.done = true;
        Some(Err(err))
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<BoxRef<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.base + self.pos as u64;
        let raw = match raw_header(rest, offset) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                // QuickTime ends some containers with a 4-byte zero
                // terminator; tolerate zero padding too short for a box.
                if rest.len() < 8 && rest.iter().all(|&b| b == 0) {
                    self.done = true;
                    return None;
                }
                if let Some(kind) = rest.get(4..8).and_then(|k| <[u8; 4]>::try_from(k).ok()) {
                    // The header is cut short (largesize or uuid part).
                    return self.fail(Error::Truncated {
                        offset,
                        kind: FourCc(kind),
                        size: 0,
                        available: rest.len() as u64,
                    });
                }
                return self.fail(Error::TrailingBytes {
                    offset,
                    available: rest.len(),
                });
            }
            Err(e) => return self.fail(e),
        };
        let available = rest.len() as u64;
        let size = raw.size.unwrap_or(available);
        let Some(body) = usize::try_from(size)
            .ok()
            .filter(|_| size <= available)
            .and_then(|end| rest.get(raw.header_len..end))
        else {
            return self.fail(Error::Truncated {
                offset,
                kind: FourCc(raw.kind),
                size,
                available,
            });
        };
        // size <= rest.len() was checked just above, so this cannot overflow.
        self.pos += raw.header_len + body.len();
        Some(Ok(BoxRef {
            header: BoxHeader {
                kind: raw.kind,
                header_len: raw.header_len,
                size,
            },
            offset,
            body,
        }))
    }
}

/// Splits a byte stream, fed in pieces of any size, into complete top-level
/// boxes.
///
/// A box larger than `max_box` is an error as soon as its header is read, so
/// a hostile size field cannot make the splitter buffer without limit. Errors
/// are sticky: the stream has lost sync and every later call repeats the
/// error.
#[derive(Debug)]
pub struct BoxSplitter {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    max_box: u64,
    failed: Option<Error>,
}

impl BoxSplitter {
    pub fn new(max_box: u64) -> Self {
        Self {
            buf: BytesMut::new(),
            offset: 0,
            max_box,
            failed: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        // After an error nothing will be consumed again; keeping the bytes
        // would only grow memory.
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete box (header included), `Ok(None)` if more bytes are
    /// needed.
    pub fn next_box(&mut self) -> Result<Option<(BoxHeader, Bytes)>, Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.try_next() {
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = BytesMut::new();
                Err(err)
            }
            ok => ok,
        }
    }

    fn try_next(&mut self) -> Result<Option<(BoxHeader, Bytes)>, Error> {
        let Some(header) = header_at(&self.buf, self.offset)? else {
            return Ok(None);
        };
        let too_large = Error::TooLarge {
            offset: self.offset,
            kind: header.fourcc(),
            size: header.size,
            max: self.max_box,
        };
        if header.size > self.max_box {
            return Err(too_large);
        }
        // Only reachable on 32-bit targets with max_box above 4 GiB.
        let Ok(size) = usize::try_from(header.size) else {
            return Err(too_large);
        };
        if self.buf.len() < size {
            return Ok(None);
        }
        let data = self.buf.split_to(size).freeze();
        self.offset += header.size;
        Ok(Some((header, data)))
    }

    /// Bytes fed but not yet returned in a box.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next box's header.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// True if `data` starts with a plausible box of a kind that begins an MP4 or
/// fragmented-MP4 stream (`ftyp`, `styp`, `moov`, `moof`, `sidx`, `free`,
/// `skip`). Needs 16 bytes to say yes.
pub fn looks_like_bmff(data: &[u8]) -> bool {
    let Ok(Some(header)) = parse_header(data) else {
        return false;
    };
    let body = data.get(header.header_len..).unwrap_or_default();
    match &header.kind {
        // A file-type box holds a major brand, a minor version and usually
        // compatible brands; brands are printable ASCII in practice.
        b"ftyp" | b"styp" => {
            (16..=4096).contains(&header.size)
                && body.get(..4).is_some_and(|brand| {
                    brand
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b' ')
                })
        }
        // Containers: their first child must look like a box too.
        b"moov" | b"moof" => {
            header.size >= 16
                && body
                    .get(4..8)
                    .is_some_and(|kind| kind.iter().all(|&b| b.is_ascii_alphanumeric()))
                && be_u32(body, 0)
                    .is_some_and(|size| size >= 8 && u64::from(size) <= header.body_len())
        }
        // A full box: version 0 or 1, then reference_ID and timescale.
        b"sidx" => header.size >= 32 && body.first().is_some_and(|&v| v <= 1),
        b"free" | b"skip" => header.size <= 1 << 20,
        _ => false,
    }
}

/// One track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    /// `hdlr` handler type: "vide", "soun", "text", "meta", ...
    pub handler: FourCc,
    /// Media timescale (`mdhd`): units per second of sample times.
    pub timescale: u32,
    /// Video only: `tkhd` width/height (integer part of the 16.16 fixed-point
    /// value), or the sample entry's when `tkhd` says 0.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Type of the first `stsd` sample entry ("avc1", "hev1", "mp4a", ...).
    pub codec: Option<FourCc>,
    /// `trex` defaults, used when a fragment leaves them out.
    pub default_sample_duration: Option<u32>,
    pub default_sample_size: Option<u32>,
    pub default_sample_flags: Option<u32>,
}

impl TrackInfo {
    pub fn is_video(&self) -> bool {
        self.handler == *b"vide"
    }
}

/// What an init segment (`ftyp` + `moov`) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitInfo {
    /// `ftyp` major brand, if there is an `ftyp`.
    pub major_brand: Option<FourCc>,
    /// True if `moov` holds `mvex`, i.e. the media comes in fragments.
    pub fragmented: bool,
    pub tracks: Vec<TrackInfo>,
}

impl InitInfo {
    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }
}

/// Reads version and flags of a full box.
fn full_box(b: &BoxRef<'_>) -> Result<(u8, u32), Error> {
    let vf = be_u32(b.body, 0).ok_or_else(|| b.malformed("too short for version and flags"))?;
    // Truncation keeps the top byte, which is the version.
    Ok(((vf >> 24) as u8, vf & 0x00ff_ffff))
}

fn first_child<'a>(parent: &BoxRef<'a>, kind: &[u8; 4]) -> Result<Option<BoxRef<'a>>, Error> {
    // `children()` borrows `parent`; rebuild the walk over the same slice so
    // the result keeps the buffer's lifetime rather than the BoxRef's.
    for child in Boxes::at(parent.body, parent.body_offset()) {
        let child = child?;
        if child.header.kind == *kind {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

fn require<'a>(
    parent: &BoxRef<'a>,
    kind: &[u8; 4],
    within: &'static str,
) -> Result<BoxRef<'a>, Error> {
    first_child(parent, kind)?.ok_or(Error::Missing {
        kind: FourCc(*kind),
        within,
    })
}

/// Parses an init segment: `ftyp` (optional) and `moov`, plus any other
/// top-level boxes, which are skipped.
pub fn parse_init(init: &[u8]) -> Result<InitInfo, Error> {
    let mut info = InitInfo::default();
    let mut moov = None;
    for b in boxes(init) {
        let b = b?;
        match &b.header.kind {
            b"ftyp" if info.major_brand.is_none() => {
                let brand = b
                    .body
                    .first_chunk::<4>()
                    .ok_or_else(|| b.malformed("no major brand"))?;
                info.major_brand = Some(FourCc(*brand));
            }
            b"moov" if moov.is_none() => moov = Some(b),
            _ => {}
        }
    }
    let moov = moov.ok_or(Error::Missing {
        kind: FourCc(*b"moov"),
        within: "the init segment",
    })?;
    let mut trexes = Vec::new();
    for child in Boxes::at(moov.body, moov.body_offset()) {
        let child = child?;
        match &child.header.kind {
            b"trak" => info.tracks.push(parse_trak(&child)?),
            b"mvex" => {
                info.fragmented = true;
                for t in Boxes::at(child.body, child.body_offset()) {
                    let t = t?;
                    if t.header.kind == *b"trex" {
                        trexes.push(parse_trex(&t)?);
                    }
                }
            }
            _ => {}
        }
    }
    for trex in trexes {
        if let Some(track) = info.tracks.iter_mut().find(|t| t.track_id == trex.track_id) {
            track.default_sample_duration = Some(trex.duration);
            track.default_sample_size = Some(trex.size);
            track.default_sample_flags = Some(trex.flags);
        }
    }
    Ok(info)
}

/// A `trex` box: the per-track sample defaults of a fragmented file.
struct Trex {
    track_id: u32,
    duration: u32,
    size: u32,
    flags: u32,
}

fn parse_trex(trex: &BoxRef<'_>) -> Result<Trex, Error> {
    full_box(trex)?;
    // After version/flags: track_ID, default_sample_description_index,
    // default_sample_duration, default_sample_size, default_sample_flags.
    let field = |at| be_u32(trex.body, at).ok_or_else(|| trex.malformed("too short"));
    Ok(Trex {
        track_id: field(4)?,
        duration: field(12)?,
        size: field(16)?,
        flags: field(20)?,
    })
}

fn parse_trak(trak: &BoxRef<'_>) -> Result<TrackInfo, Error> {
    let tkhd = require(trak, b"tkhd", "a 'trak' box")?;
    let (version, _) = full_box(&tkhd)?;
    // Fixed layout: times are 32 bits in version 0 and 64 in version 1; the
    // 52 bytes of reserved/layer/volume/matrix sit between duration and size.
    let (id_at, width_at) = if version == 1 { (20, 88) } else { (12, 76) };
    let track_id =
        be_u32(tkhd.body, id_at).ok_or_else(|| tkhd.malformed("too short for track_ID"))?;
    let tkhd_size = be_u32(tkhd.body, width_at)
        .zip(be_u32(tkhd.body, width_at + 4))
        .ok_or_else(|| tkhd.malformed("too short for width and height"))?;

    let mdia = require(trak, b"mdia", "a 'trak' box")?;
    let mdhd = require(&mdia, b"mdhd", "an 'mdia' box")?;
    let (version, _) = full_box(&mdhd)?;
    let timescale = be_u32(mdhd.body, if version == 1 { 20 } else { 12 })
        .ok_or_else(|| mdhd.malformed("too short for timescale"))?;
    let hdlr = require(&mdia, b"hdlr", "an 'mdia' box")?;
    full_box(&hdlr)?;
    let handler = hdlr
        .body
        .get(8..12)
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .map(FourCc)
        .ok_or_else(|| hdlr.malformed("too short for handler_type"))?;

    // The sample table is optional here: a track without one is odd but
    // still worth reporting.
    let mut codec = None;
    let mut entry_size = None;
    if let Some(stsd) = first_child(&mdia, b"minf")?
        .map(|minf| first_child(&minf, b"stbl"))
        .transpose()?
        .flatten()
        .map(|stbl| first_child(&stbl, b"stsd"))
        .transpose()?
        .flatten()
    {
        full_box(&stsd)?;
        let entries = stsd
            .body
            .get(8..)
            .ok_or_else(|| stsd.malformed("too short for entry_count"))?;
        if let Some(entry) = Boxes::at(entries, stsd.body_offset() + 8).next() {
            let entry = entry?;
            codec = Some(entry.kind());
            // VisualSampleEntry: 8 bytes of SampleEntry, 16 of pre_defined/
            // reserved, then 16-bit width and height.
            entry_size = be_u16(entry.body, 24).zip(be_u16(entry.body, 26));
        }
    }

    let (mut width, mut height) = (None, None);
    if handler == *b"vide" {
        let (w, h) = (tkhd_size.0 >> 16, tkhd_size.1 >> 16);
        let (w, h) = match entry_size {
            Some((ew, eh)) if w == 0 || h == 0 => (u32::from(ew), u32::from(eh)),
            _ => (w, h),
        };
        width = Some(w);
        height = Some(h);
    }

    Ok(TrackInfo {
        track_id,
        handler,
        timescale,
        width,
        height,
        codec,
        default_sample_duration: None,
        default_sample_size: None,
        default_sample_flags: None,
    })
}

/// What one `traf` (the part of a fragment for one track) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafInfo {
    pub track_id: u32,
    /// `tfdt`: decode time of the first sample, in the track's timescale.
    pub base_media_decode_time: Option<u64>,
    /// Samples over all `trun` boxes.
    pub sample_count: u64,
    /// Sum of sample durations, if every sample's duration is known (from
    /// `trun`, else `tfhd` defaults, else `trex` defaults when parsed with
    /// [`parse_fragment_with_init`]).
    pub duration: Option<u64>,
    /// Sum of sample sizes, if known the same way.
    pub data_size: Option<u64>,
    /// Whether the first sample is a sync sample (keyframe), if the flags
    /// that say so are present.
    pub first_sample_sync: Option<bool>,
}

/// What a fragment (`moof`, usually followed by its `mdat`) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentInfo {
    /// `mfhd` sequence number.
    pub sequence_number: u32,
    pub trafs: Vec<TrafInfo>,
    /// Payload length of the `mdat` following the `moof`, if present.
    pub mdat_len: Option<u64>,
}

/// Parses a fragment: the first `moof` in `frag` and the `mdat` after it.
/// Boxes before the `moof` (`styp`, `sidx`, `prft`, ...) are skipped, and
/// nothing after that `mdat` is looked at.
pub fn parse_fragment(frag: &[u8]) -> Result<FragmentInfo, Error> {
    fragment(frag, None)
}

/// Like [`parse_fragment`], but falls back on the init segment's `trex`
/// defaults for sample durations, sizes and flags.
pub fn parse_fragment_with_init(frag: &[u8], init: &InitInfo) -> Result<FragmentInfo, Error> {
    fragment(frag, Some(init))
}

fn fragment(frag: &[u8], init: Option<&InitInfo>) -> Result<FragmentInfo, Error> {
    let mut info = None;
    for b in boxes(frag) {
        let b = b?;
        match (&b.header.kind, &mut info) {
            (b"moof", None) => info = Some(parse_moof(&b, init)?),
            (b"mdat", Some(info)) => {
                info.mdat_len = Some(b.header.body_len());
                break;
            }
            _ => {}
        }
    }
    info.ok_or(Error::Missing {
        kind: FourCc(*b"moof"),
        within: "the fragment",
    })
}

fn parse_moof(moof: &BoxRef<'_>, init: Option<&InitInfo>) -> Result<FragmentInfo, Error> {
    let mfhd = require(moof, b"mfhd", "a 'moof' box")?;
    full_box(&mfhd)?;
    let sequence_number =
        be_u32(mfhd.body, 4).ok_or_else(|| mfhd.malformed("too short for sequence_number"))?;
    let mut trafs = Vec::new();
    for child in Boxes::at(moof.body, moof.body_offset()) {
        let child = child?;
        if child.header.kind == *b"traf" {
            trafs.push(parse_traf(&child, init)?);
        }
    }
    Ok(FragmentInfo {
        sequence_number,
        trafs,
        mdat_len: None,
    })
}

/// Per-sample defaults in force for a `traf`: `tfhd`, else `trex`.
#[derive(Clone, Copy)]
struct Defaults {
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
}

fn parse_traf(traf: &BoxRef<'_>, init: Option<&InitInfo>) -> Result<TrafInfo, Error> {
    let tfhd = require(traf, b"tfhd", "a 'traf' box")?;
    let (_, flags) = full_box(&tfhd)?;
    let track_id = be_u32(tfhd.body, 4).ok_or_else(|| tfhd.malformed("too short for track_ID"))?;
    // Optional fields follow track_ID in this order, each present when its
    // flag is set; the first two are not needed, only skipped.
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 8; // base_data_offset
    }
    if flags & 0x02 != 0 {
        at += 4; // sample_description_index
    }
    let mut field = |flag: u32| -> Result<Option<u32>, Error> {
        if flags & flag == 0 {
            return Ok(None);
        }
        let value =
            be_u32(tfhd.body, at).ok_or_else(|| tfhd.malformed("too short for its flags"))?;
        at += 4;
        Ok(Some(value))
    };
    let trex = init.and_then(|i| i.track(track_id));
    let defaults = Defaults {
        duration: field(0x08)?.or(trex.and_then(|t| t.default_sample_duration)),
        size: field(0x10)?.or(trex.and_then(|t| t.default_sample_size)),
        flags: field(0x20)?.or(trex.and_then(|t| t.default_sample_flags)),
    };

    let mut info = TrafInfo {
        track_id,
        duration: Some(0),
        data_size: Some(0),
        ..TrafInfo::default()
    };
    let mut seen_samples = false;
    for child in Boxes::at(traf.body, traf.body_offset()) {
        let child = child?;
        match &child.header.kind {
            b"tfdt" if info.base_media_decode_time.is_none() => {
                let (version, _) = full_box(&child)?;
                let time = if version == 1 {
                    be_u64(child.body, 4)
                } else {
                    be_u32(child.body, 4).map(u64::from)
                };
                info.base_media_decode_time =
                    Some(time.ok_or_else(|| child.malformed("too short for its decode time"))?);
            }
            b"trun" => {
                let run = parse_trun(&child, defaults)?;
                info.sample_count += u64::from(run.count);
                info.duration = info
                    .duration
                    .zip(run.duration)
                    .map(|(a, b)| a.saturating_add(b));
                info.data_size = info
                    .data_size
                    .zip(run.size)
                    .map(|(a, b)| a.saturating_add(b));
                if !seen_samples && run.count > 0 {
                    seen_samples = true;
                    // ISO/IEC 14496-12 sample flags: bit 16 is
                    // sample_is_non_sync_sample.
                    info.first_sample_sync = run.first_flags.map(|f| f & 0x0001_0000 == 0);
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

struct Run {
    count: u32,
    duration: Option<u64>,
    size: Option<u64>,
    first_flags: Option<u32>,
}

fn parse_trun(trun: &BoxRef<'_>, defaults: Defaults) -> Result<Run, Error> {
    let (_, flags) = full_box(trun)?;
    let count = be_u32(trun.body, 4).ok_or_else(|| trun.malformed("too short for sample_count"))?;
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 4; // data_offset
    }
    let mut first_flags = None;
    if flags & 0x04 != 0 {
        first_flags = Some(
            be_u32(trun.body, at)
                .ok_or_else(|| trun.malformed("too short for first_sample_flags"))?,
        );
        at += 4;
    }
    let has_duration = flags & 0x100 != 0;
    let has_size = flags & 0x200 != 0;
    let has_flags = flags & 0x400 != 0;
    let has_cto = flags & 0x800 != 0;
    let record = 4 * usize::from(has_duration)
        + 4 * usize::from(has_size)
        + 4 * usize::from(has_flags)
        + 4 * usize::from(has_cto);
    let table = trun.body.get(at..).unwrap_or_default();
    // Check the declared count against the bytes present before looking at
    // any sample: sample_count is attacker-controlled.
    let table_len = u64::from(count) * record as u64;
    if table_len > table.len() as u64 {
        return Err(trun.malformed("sample table overruns the box"));
    }
    let table = table.get(..table_len as usize).unwrap_or_default();

    let sum_field = |present: bool, field_at: usize, default: Option<u32>| -> Option<u64> {
        if present {
            let total = table
                .chunks_exact(record)
                .filter_map(|r| be_u32(r, field_at))
                .fold(0u64, |sum, v| sum.saturating_add(u64::from(v)));
            Some(total)
        } else {
            default.map(|d| u64::from(count) * u64::from(d))
        }
    };
    let size_at = 4 * usize::from(has_duration);
    let flags_at = size_at + 4 * usize::from(has_size);
    let duration = sum_field(has_duration, 0, defaults.duration);
    let size = sum_field(has_size, size_at, defaults.size);
    if first_flags.is_none() {
        first_flags = if has_flags {
            be_u32(table, flags_at)
        } else {
            defaults.flags
        };
    }
    Ok(Run {
        count,
        duration,
        size,
        first_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box with a 32-bit size.
    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// A full box: version and flags, then `body`.
    fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut inner = Vec::with_capacity(4 + body.len());
        inner.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
        inner.extend_from_slice(body);
        bx(kind, &inner)
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn u32s(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn tkhd_v0(track_id: u32, width: u32, height: u32) -> Vec<u8> {
        let mut body = u32s(&[0, 0, track_id, 0, 0]); // times, id, reserved, duration
        body.extend_from_slice(&[0; 52]);
        body.extend_from_slice(&u32s(&[width << 16, height << 16]));
        full(b"tkhd", 0, 7, &body)
    }

    fn mdhd_v1(timescale: u32) -> Vec<u8> {
        let mut body = vec![0; 16]; // creation and modification, 64-bit
        body.extend_from_slice(&timescale.to_be_bytes());
        body.extend_from_slice(&[0; 8]); // duration
        body.extend_from_slice(&[0; 4]); // language, pre_defined
        full(b"mdhd", 1, 0, &body)
    }

    fn hdlr(handler: &[u8; 4]) -> Vec<u8> {
        let mut body = u32s(&[0]);
        body.extend_from_slice(handler);
        body.extend_from_slice(&[0; 12]);
        body.extend_from_slice(b"handler\0");
        full(b"hdlr", 0, 0, &body)
    }

    fn visual_entry(kind: &[u8; 4], width: u16, height: u16) -> Vec<u8> {
        let mut body = vec![0; 6];
        body.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&width.to_be_bytes());
        body.extend_from_slice(&height.to_be_bytes());
        body.extend_from_slice(&[0; 50]);
        body.extend_from_slice(&bx(b"avcC", &[1, 0x64, 0, 0x1f]));
        bx(kind, &body)
    }

    fn trak(id: u32, handler: &[u8; 4], timescale: u32, size: (u32, u32), entry: &[u8]) -> Vec<u8> {
        let stsd = full(b"stsd", 0, 0, &cat(&[&u32s(&[1]), entry]));
        let stbl = bx(b"stbl", &stsd);
        let minf = bx(b"minf", &cat(&[&bx(b"vmhd", &[0; 12]), &stbl]));
        let mdia = bx(b"mdia", &cat(&[&mdhd_v1(timescale), &hdlr(handler), &minf]));
        bx(
            b"trak",
            &cat(&[&tkhd_v0(id, size.0, size.1), &bx(b"edts", &[]), &mdia]),
        )
    }

    fn init_segment() -> Vec<u8> {
        let ftyp = bx(b"ftyp", b"iso5\0\0\x02\0iso5iso6mp41");
        let video = trak(
            1,
            b"vide",
            90000,
            (1920, 1080),
            &visual_entry(b"avc1", 1920, 1080),
        );
        let audio = trak(2, b"soun", 48000, (0, 0), &bx(b"mp4a", &[0; 28]));
        let trex = |id| full(b"trex", 0, 0, &u32s(&[id, 1, 3600, 0, 0x0101_0000]));
        let mvex = bx(b"mvex", &cat(&[&trex(1), &trex(2)]));
        let mvhd = full(b"mvhd", 0, 0, &[0; 96]);
        let moov = bx(b"moov", &cat(&[&mvhd, &video, &audio, &mvex]));
        cat(&[&ftyp, &moov])
    }

    fn mfhd(seq: u32) -> Vec<u8> {
        full(b"mfhd", 0, 0, &u32s(&[seq]))
    }

    #[test]
    fn header_needs_eight_bytes_then_reads_32_bit_size() {
        let data = bx(b"moof", &[0; 10]);
        for n in 0..8 {
            assert_eq!(parse_header(&data[..n]), Ok(None), "prefix {n}");
        }
        let h = parse_header(&data).unwrap().unwrap();
        assert_eq!(
            h,
            BoxHeader {
                kind: *b"moof",
                header_len: 8,
                size: 18
            }
        );
        assert_eq!(h.body_len(), 10);
    }

    #[test]
    fn header_largesize_needs_sixteen_bytes() {
        let mut data = u32s(&[1]);
        data.extend_from_slice(b"mdat");
        data.extend_from_slice(&(16u64 + 5).to_be_bytes());
        data.extend_from_slice(&[9; 5]);
        for n in 0..16 {
            assert_eq!(parse_header(&data[..n]), Ok(None), "prefix {n}");
        }
        let h = parse_header(&data).unwrap().unwrap();
        assert_eq!((h.header_len, h.size), (16, 21));
    }

    #[test]
    fn header_size_zero_is_an_error_for_streams() {
        let data = cat(&[&u32s(&[0]), b"mdat"]);
        assert!(matches!(
            parse_header(&data),
            Err(Error::SizeToEnd { offset: 0, .. })
        ));
    }

    #[test]
    fn header_size_below_header_length_is_an_error() {
        let data = cat(&[&u32s(&[7]), b"moov"]);
        assert!(matches!(
            parse_header(&data),
            Err(Error::SizeTooSmall {
                size: 7,
                header_len: 8,
                ..
            })
        ));
        // A largesize must cover the 16-byte header.
        let data = cat(&[&u32s(&[1]), b"moov", &15u64.to_be_bytes()]);
        assert!(matches!(
            parse_header(&data),
            Err(Error::SizeTooSmall {
                size: 15,
                header_len: 16,
                ..
            })
        ));
        // Detected before the uuid user type arrives.
        let data = cat(&[&u32s(&[20]), b"uuid"]);
        assert!(matches!(
            parse_header(&data),
            Err(Error::SizeTooSmall { header_len: 24, .. })
        ));
    }

    #[test]
    fn header_uuid_includes_user_type() {
        let data = cat(&[&u32s(&[24]), b"uuid", &[0xab; 16]]);
        assert_eq!(parse_header(&data[..23]), Ok(None));
        let h = parse_header(&data).unwrap().unwrap();
        assert_eq!((h.header_len, h.body_len()), (24, 0));
    }

    #[test]
    fn boxes_walk_reports_overrun_and_tolerates_zero_terminator() {
        let a = bx(b"free", &[1, 2]);
        let b = bx(b"skip", &[]);
        let ok = cat(&[&a, &b, &[0; 4]]);
        let kinds: Vec<_> = boxes(&ok).map(|b| b.unwrap().kind()).collect();
        assert_eq!(kinds, [FourCc(*b"free"), FourCc(*b"skip")]);

        let mut overrun = a.clone();
        overrun[3] = 200;
        let got: Vec<_> = boxes(&overrun).collect();
        assert!(matches!(
            got.as_slice(),
            [Err(Error::Truncated {
                size: 200,
                available: 10,
                ..
            })]
        ));

        let stray = cat(&[&a, &[1, 2, 3]]);
        let got: Vec<_> = boxes(&stray).collect();
        assert!(matches!(
            got.as_slice(),
            [
                Ok(_),
                Err(Error::TrailingBytes {
                    offset: 10,
                    available: 3
                })
            ]
        ));
    }

    #[test]
    fn boxes_walk_size_zero_runs_to_end_of_buffer() {
        let data = cat(&[&bx(b"moof", &[]), &u32s(&[0]), b"mdat", &[5; 7]]);
        let got: Vec<_> = boxes(&data).map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[1].offset, got[1].header.size, got[1].body.len()),
            (8, 15, 7)
        );
    }

    fn stream() -> Vec<u8> {
        let mut large = u32s(&[1]);
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&(16u64 + 3).to_be_bytes());
        large.extend_from_slice(&[7, 8, 9]);
        cat(&[
            &init_segment(),
            &bx(b"moof", &mfhd(1)),
            &large,
            &bx(b"free", &[]),
        ])
    }

    fn split_all(s: &mut BoxSplitter) -> Vec<(BoxHeader, Bytes)> {
        let mut out = Vec::new();
        while let Some(item) = s.next_box().unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn splitter_yields_whole_top_level_boxes() {
        let data = stream();
        let mut s = BoxSplitter::new(1 << 20);
        s.feed(&data);
        let got = split_all(&mut s);
        let kinds: Vec<_> = got.iter().map(|(h, _)| &h.kind).collect();
        assert_eq!(kinds, [b"ftyp", b"moov", b"moof", b"mdat", b"free"]);
        let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert_eq!(joined, data);
        assert_eq!((s.buffered(), s.offset()), (0, data.len() as u64));
    }

    #[test]
    fn splitter_output_is_independent_of_split_point() {
        let data = stream();
        let mut whole = BoxSplitter::new(1 << 20);
        whole.feed(&data);
        let expected = split_all(&mut whole);
        for split in 0..=data.len() {
            let mut s = BoxSplitter::new(1 << 20);
            s.feed(&data[..split]);
            let mut got = split_all(&mut s);
            s.feed(&data[split..]);
            got.extend(split_all(&mut s));
            assert_eq!(got, expected, "split at {split}");
        }
        let mut s = BoxSplitter::new(1 << 20);
        let mut got = Vec::new();
        for byte in &data {
            s.feed(std::slice::from_ref(byte));
            got.extend(split_all(&mut s));
        }
        assert_eq!(got, expected, "byte by byte");
    }

    #[test]
    fn splitter_rejects_oversized_box_from_header_alone() {
        let mut s = BoxSplitter::new(1000);
        s.feed(&bx(b"free", &[]));
        s.feed(&cat(&[&u32s(&[1_000_000]), b"mdat"]));
        assert!(s.next_box().unwrap().is_some());
        let err = s.next_box().unwrap_err();
        assert_eq!(
            err,
            Error::TooLarge {
                offset: 8,
                kind: FourCc(*b"mdat"),
                size: 1_000_000,
                max: 1000
            }
        );
        assert_eq!(
            err.to_string(),
            "box 'mdat' at byte 8 is 1000000 bytes, over the 1000-byte limit"
        );
        // Sticky, and stops buffering.
        s.feed(&[0; 100]);
        assert_eq!(s.next_box().unwrap_err(), err);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn splitter_rejects_size_zero() {
        let mut s = BoxSplitter::new(1000);
        s.feed(&cat(&[&u32s(&[0]), b"mdat"]));
        assert!(matches!(s.next_box(), Err(Error::SizeToEnd { .. })));
    }

    #[test]
    fn looks_like_bmff_accepts_stream_starts_only() {
        assert!(looks_like_bmff(&init_segment()));
        assert!(looks_like_bmff(&bx(b"moof", &mfhd(3))));
        assert!(looks_like_bmff(&bx(b"free", &[])));
        assert!(!looks_like_bmff(&bx(b"moof", &[])), "empty moof");
        assert!(
            !looks_like_bmff(&bx(b"ftyp", &[0xff, 0, 0, 0, 0, 0, 0, 0])),
            "binary brand"
        );
        assert!(
            !looks_like_bmff(&bx(b"mdat", &[0; 8])),
            "mdat cannot start a stream"
        );
        assert!(!looks_like_bmff(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_bmff(&[
            0xfa, 0, 2, 0x86, 0xf1, 0x42, 0xc0, 0x1e, 0, 0, 0, 0x18
        ]));
        assert!(!looks_like_bmff(&init_segment()[..7]));
    }

    #[test]
    fn init_reports_tracks_codecs_and_trex_defaults() {
        let info = parse_init(&init_segment()).unwrap();
        assert_eq!(info.major_brand, Some(FourCc(*b"iso5")));
        assert!(info.fragmented);
        assert_eq!(
            info.tracks,
            [
                TrackInfo {
                    track_id: 1,
                    handler: FourCc(*b"vide"),
                    timescale: 90000,
                    width: Some(1920),
                    height: Some(1080),
                    codec: Some(FourCc(*b"avc1")),
                    default_sample_duration: Some(3600),
                    default_sample_size: Some(0),
                    default_sample_flags: Some(0x0101_0000),
                },
                TrackInfo {
                    track_id: 2,
                    handler: FourCc(*b"soun"),
                    timescale: 48000,
                    width: None,
                    height: None,
                    codec: Some(FourCc(*b"mp4a")),
                    default_sample_duration: Some(3600),
                    default_sample_size: Some(0),
                    default_sample_flags: Some(0x0101_0000),
                },
            ]
        );
    }

    #[test]
    fn init_video_size_falls_back_to_sample_entry_when_tkhd_says_zero() {
        let video = trak(7, b"vide", 25, (0, 0), &visual_entry(b"hvc1", 640, 360));
        let init = bx(b"moov", &video);
        let info = parse_init(&init).unwrap();
        assert_eq!(info.major_brand, None);
        assert!(!info.fragmented);
        let t = info.track(7).unwrap();
        assert_eq!(
            (t.width, t.height, t.codec),
            (Some(640), Some(360), Some(FourCc(*b"hvc1")))
        );
    }

    #[test]
    fn init_errors_name_the_problem() {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        assert_eq!(
            parse_init(&ftyp).unwrap_err().to_string(),
            "no 'moov' box in the init segment"
        );
        // A trak without mdia.
        let moov = bx(b"moov", &bx(b"trak", &tkhd_v0(1, 0, 0)));
        assert_eq!(
            parse_init(&moov).unwrap_err().to_string(),
            "no 'mdia' box in a 'trak' box"
        );
        // A tkhd cut short.
        let moov = bx(b"moov", &bx(b"trak", &full(b"tkhd", 0, 0, &[0; 20])));
        assert!(matches!(
            parse_init(&moov),
            Err(Error::Malformed { offset: 16, .. })
        ));
        // Every prefix of a valid init segment fails cleanly (or parses, for
        // the prefix that ends exactly after a box).
        let init = init_segment();
        for n in 0..init.len() {
            let _ = parse_init(&init[..n]);
        }
    }

    fn trun(flags: u32, count: u32, first_flags: Option<u32>, samples: &[u32]) -> Vec<u8> {
        let mut body = u32s(&[count]);
        if flags & 1 != 0 {
            body.extend_from_slice(&u32s(&[123]));
        }
        if let Some(f) = first_flags {
            body.extend_from_slice(&u32s(&[f]));
        }
        body.extend_from_slice(&u32s(samples));
        full(b"trun", 0, flags, &body)
    }

    fn traf(
        tfhd_flags: u32,
        tfhd_fields: &[u32],
        tfdt: Option<&[u8]>,
        truns: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut body = full(b"tfhd", 0, tfhd_flags, &u32s(tfhd_fields));
        if let Some(tfdt) = tfdt {
            body.extend_from_slice(tfdt);
        }
        for t in truns {
            body.extend_from_slice(t);
        }
        bx(b"traf", &body)
    }

    #[test]
    fn fragment_reads_sequence_decode_time_durations_and_sync() {
        // Video: per-sample durations and sizes, first_sample_flags says sync.
        let video = traf(
            0x02_0000,
            &[1],
            Some(&full(b"tfdt", 1, 0, &(1u64 << 40).to_be_bytes())),
            &[trun(
                0x305,
                3,
                Some(0x0200_0000),
                &[3000, 100, 3003, 200, 2997, 300],
            )],
        );
        // Audio: tfhd default duration and flags, two truns, non-sync flags.
        let audio = traf(
            0x02_0028,
            &[2, 1024, 0x0001_0000],
            Some(&full(b"tfdt", 0, 0, &u32s(&[48000]))),
            &[trun(0x201, 2, None, &[10, 20]), trun(0x201, 1, None, &[30])],
        );
        let moof = bx(b"moof", &cat(&[&mfhd(42), &video, &audio]));
        let frag = cat(&[
            &bx(b"styp", b"msdh\0\0\0\0"),
            &moof,
            &bx(b"mdat", &[0; 660]),
            &[0xff; 3],
        ]);
        let info = parse_fragment(&frag).unwrap();
        assert_eq!(info.sequence_number, 42);
        assert_eq!(info.mdat_len, Some(660));
        assert_eq!(
            info.trafs,
            [
                TrafInfo {
                    track_id: 1,
                    base_media_decode_time: Some(1 << 40),
                    sample_count: 3,
                    duration: Some(9000),
                    data_size: Some(600),
                    first_sample_sync: Some(true),
                },
                TrafInfo {
                    track_id: 2,
                    base_media_decode_time: Some(48000),
                    sample_count: 3,
                    duration: Some(3072),
                    data_size: Some(60),
                    first_sample_sync: Some(false),
                },
            ]
        );
    }

    #[test]
    fn fragment_without_duration_source_reports_none_until_trex_supplies_it() {
        let moof = bx(
            b"moof",
            &cat(&[
                &mfhd(1),
                &traf(0, &[1], None, &[trun(0x200, 2, None, &[5, 6])]),
            ]),
        );
        let info = parse_fragment(&moof).unwrap();
        let t = &info.trafs[0];
        assert_eq!(
            (t.sample_count, t.duration, t.first_sample_sync),
            (2, None, None)
        );
        assert_eq!(info.mdat_len, None);

        let init = parse_init(&init_segment()).unwrap();
        let info = parse_fragment_with_init(&moof, &init).unwrap();
        let t = &info.trafs[0];
        // trex: 3600 per sample, flags with the non-sync bit set.
        assert_eq!(
            (t.duration, t.data_size, t.first_sample_sync),
            (Some(7200), Some(11), Some(false))
        );
    }

    #[test]
    fn fragment_trun_sample_count_beyond_box_is_malformed() {
        let moof = bx(
            b"moof",
            &cat(&[
                &mfhd(1),
                &traf(0, &[1], None, &[trun(0x100, u32::MAX, None, &[1])]),
            ]),
        );
        let err = parse_fragment(&moof).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Malformed {
                    what: "sample table overruns the box",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn fragment_needs_moof_and_mfhd() {
        assert_eq!(
            parse_fragment(&bx(b"mdat", &[])).unwrap_err(),
            Error::Missing {
                kind: FourCc(*b"moof"),
                within: "the fragment"
            }
        );
        assert!(matches!(
            parse_fragment(&bx(b"moof", &[])),
            Err(Error::Missing { .. })
        ));
    }

    #[test]
    fn fourcc_display_escapes_unprintable_bytes() {
        assert_eq!(FourCc(*b"avc1").to_string(), "avc1");
        assert_eq!(
            FourCc([b'a', 0, b'\n', 0xff]).to_string(),
            "a\\x00\\x0a\\xff"
        );
    }

    // testdata/frag.mp4: see testdata/README.md.
    const FFMPEG_FRAG: &[u8] = include_bytes!("../../testdata/frag.mp4");

    #[test]
    fn ffmpeg_fragmented_mp4_parses_end_to_end() {
        let mut s = BoxSplitter::new(1 << 20);
        s.feed(FFMPEG_FRAG);
        let all = split_all(&mut s);
        assert_eq!(s.buffered(), 0);
        let kinds: Vec<_> = all.iter().map(|(h, _)| h.fourcc()).collect();
        assert_eq!(
            &kinds[..3],
            [FourCc(*b"ftyp"), FourCc(*b"moov"), FourCc(*b"moof")]
        );

        let init_len: usize = all.iter().take(2).map(|(_, b)| b.len()).sum();
        let init = parse_init(FFMPEG_FRAG.get(..init_len).unwrap()).unwrap();
        assert!(init.fragmented);
        let video = init.tracks.iter().find(|t| t.is_video()).unwrap();
        assert_eq!(
            (video.width, video.height, video.codec),
            (Some(320), Some(240), Some(FourCc(*b"avc1")))
        );
        assert_eq!(video.timescale, 12800);
        let audio = init.tracks.iter().find(|t| t.handler == *b"soun").unwrap();
        assert_eq!(
            (audio.timescale, audio.codec),
            (48000, Some(FourCc(*b"mp4a")))
        );

        // Every moof+mdat pair: sequence numbers count up from 1, the mdat
        // holds exactly the samples' bytes, and each track's sample count and
        // end time (last tfdt + its duration) match ffprobe's packet count
        // and duration_ts. (Summing durations would not: FFmpeg's audio
        // timeline here has zero-duration samples and jumps.)
        let mut seq = 0;
        let mut tracks = std::collections::BTreeMap::new();
        let mut keyframes = 0;
        // FFmpeg ends a file it can seek in with a random-access index.
        let (last, fragments) = all[2..].split_last().unwrap();
        assert_eq!(last.0.fourcc(), FourCc(*b"mfra"));
        for pair in fragments.chunks(2) {
            let frag = cat(&[&pair[0].1, &pair[1].1]);
            let info = parse_fragment_with_init(&frag, &init).unwrap();
            seq += 1;
            assert_eq!(info.sequence_number, seq);
            let sizes: u64 = info.trafs.iter().map(|t| t.data_size.unwrap()).sum();
            assert_eq!(info.mdat_len, Some(sizes));
            for t in &info.trafs {
                let (count, end) = tracks.entry(t.track_id).or_insert((0, 0));
                let start = t.base_media_decode_time.unwrap();
                if t.track_id == video.track_id {
                    assert_eq!(start, *end, "video timeline has no gaps");
                }
                *count += t.sample_count;
                *end = start + t.duration.unwrap();
                if t.track_id == video.track_id && t.first_sample_sync == Some(true) {
                    keyframes += 1;
                }
            }
        }
        assert_eq!(tracks[&video.track_id], (25, 13074));
        assert_eq!(tracks[&audio.track_id], (48, 49024));
        assert_eq!(keyframes, 1, "-g 25 over one second: one keyframe");
    }
}
