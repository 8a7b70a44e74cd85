//! De-framer and framer for EvoStream's fragmented-MP4-over-WebSocket protocol.
//!
//! An EvoStream media server does not send a plain fMP4 byte stream: it cuts
//! each fragment into tagged messages, one per WebSocket binary message:
//!
//! ```text
//! tag (1 byte) | length (3 bytes, big-endian, counts what follows) | body
//! ```
//!
//! | tag | name        | body                                              |
//! |-----|-------------|---------------------------------------------------|
//! | 250 | MOOV header | 4 player-specific bytes, then `ftyp` + `moov`     |
//! | 249 | PBT begin   | empty: starts a fragment                          |
//! | 252 | video       | the `mdat` payload                                |
//! | 251 | MOOF header | a piece of the `moof` box (several per fragment)  |
//! | 254 | MDAT header | the `mdat` box header (8 bytes, 16 with largesize)|
//! | 255 | PBT end     | empty: ends the fragment                          |
//!
//! The order seen from servers is 250 once, then `249 252 251 251 251 254 255`
//! per fragment. [`Deframer`] turns that back into the init segment and one
//! `moof` + `mdat` per fragment, which concatenated form an fMP4 stream any
//! MP4 demuxer reads.
//!
//! The framing is checked rather than trusted: every fragment is rebuilt and
//! verified (one well-formed `moof`, an `mdat` header whose size matches the
//! payload) before it is emitted, and anything out of place is dropped and
//! counted, resynchronising at the next PBT begin. A decoder downstream then
//! never sees a half fragment, only a gap.
//!
//! The writer goes the other way, for servers (the simulated camera, a
//! relay): [`init_message`] wraps an init segment in a MOOV header and
//! [`fragment_messages`] cuts one `moof` + `mdat` into the seven messages
//! above, each a `Vec<u8>` to send as one WebSocket binary message;
//! [`write_message`] frames any one message. What they write, [`Deframer`]
//! reads back unchanged.

use crate::proto::bmff;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::BTreeMap;

pub const TAG_MOOV: u8 = 250;
pub const TAG_BEGIN: u8 = 249;
pub const TAG_VIDEO: u8 = 252;
pub const TAG_MOOF: u8 = 251;
pub const TAG_MDAT: u8 = 254;
pub const TAG_END: u8 = 255;

/// A sensible `max_message`: far above any real fragment (a 1080p keyframe
/// is a few hundred KiB), low enough that a corrupt length cannot make the
/// receiver hold much memory. Also bounds a whole rebuilt fragment.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

const HEADER_LEN: usize = 4;
/// Player-specific bytes that precede `ftyp` in a MOOV header's body.
const MOOV_EXTRA: usize = 4;
/// The MOOV header's extra bytes as a captured server sent them; the
/// de-framer skips them unread, so the writer sends these.
const CAPTURED_MOOV_EXTRA: [u8; MOOV_EXTRA] = [0xf1, 0x42, 0xc0, 0x1e];

/// The largest body one message can carry: its length field is 3 bytes.
pub const MAX_BODY: usize = 0xff_ffff;

/// What the de-framer produces. Init followed by fragments, concatenated, is
/// a playable fragmented MP4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The init segment: `ftyp` + `moov` (the MOOV header's 4 extra bytes
    /// removed).
    Init(Bytes),
    /// One fragment: `moof` + `mdat`.
    Fragment(Bytes),
}

/// Why de-framing failed. `pos` is the stream byte offset of the header of
/// the message concerned.
///
/// Errors from [`Deframer::next_item`] are fatal and sticky; the others say
/// what was lost and leave the de-framer usable (see each method).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message tag {tag} at byte {pos} declares {len} bytes, over the {max}-byte limit")]
    Oversized {
        pos: u64,
        tag: u8,
        len: usize,
        max: usize,
    },
    #[error("message tag {tag} at byte {pos} would grow its fragment to {len} bytes, over the {max}-byte limit")]
    FragmentOversized {
        pos: u64,
        tag: u8,
        len: usize,
        max: usize,
    },
    #[error("not an evostream stream: message tag {tag} at byte {pos}: {why}")]
    NotEvoStream {
        pos: u64,
        tag: u8,
        why: &'static str,
    },
    /// `declared` and `got` count the whole message, its 4-byte header
    /// included; when even the header was cut short, `declared` is 4.
    #[error("websocket message ended inside message tag {tag} at byte {pos}: got {got} of its {declared} bytes")]
    Truncated {
        pos: u64,
        tag: u8,
        declared: usize,
        got: usize,
    },
    #[error("stream ended inside the fragment begun at byte {pos}")]
    UnfinishedFragment { pos: u64 },
}

/// Counters for diagnostics ("why is the picture freezing?").
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Complete messages seen, by tag, unknown tags included.
    pub tags: BTreeMap<u8, u64>,
    /// Complete messages seen: the sum of `tags`.
    pub messages: u64,
    /// Bytes of complete messages, headers included.
    pub bytes: u64,
    /// Fragments emitted.
    pub fragments: u64,
    /// Messages whose content was thrown away: strays outside a fragment, a
    /// MOOV header whose payload is not an init segment, and every message
    /// (PBT begin included) of a dropped fragment. Skipped unknown tags are
    /// not counted here.
    pub dropped_messages: u64,
    /// Fragments begun (PBT begin) but not emitted.
    pub dropped_fragments: u64,
    /// Messages cut short by the end of a WebSocket message or the stream.
    pub truncated_messages: u64,
}

/// A fragment being collected between PBT begin and PBT end.
#[derive(Debug)]
struct Fragment {
    /// Stream offset of its PBT begin.
    pos: u64,
    /// Messages it holds, PBT begin included: what dropping it discards.
    messages: u64,
    moof: BytesMut,
    mdat_header: Option<Bytes>,
    video: BytesMut,
}

impl Fragment {
    fn new(pos: u64) -> Self {
        Self {
            pos,
            messages: 1,
            moof: BytesMut::new(),
            mdat_header: None,
            video: BytesMut::new(),
        }
    }

    fn len(&self) -> usize {
        self.moof.len() + self.mdat_header.as_ref().map_or(0, Bytes::len) + self.video.len()
    }

    /// The rebuilt `moof` + `mdat`, if the pieces fit together.
    fn assemble(&self) -> Option<Bytes> {
        let mdat_header = self.mdat_header.as_ref()?;
        let mdat = bmff::parse_header(mdat_header).ok()??;
        let mdat_ok = mdat.kind == *b"mdat"
            && mdat.header_len == mdat_header.len()
            && mdat.body_len() == self.video.len() as u64;

        // The pieces must form exactly one moof whose children tile it;
        // a lost or repeated piece breaks one or the other.
        let moof = bmff::parse_header(&self.moof).ok()??;
        let moof_ok = moof.kind == *b"moof"
            && moof.size == self.moof.len() as u64
            && self
                .moof
                .get(moof.header_len..)
                .is_some_and(|body| bmff::boxes(body).all(|b| b.is_ok()));
        if !(mdat_ok && moof_ok) {
            return None;
        }
        // Bounded: pieces were checked against max_message as they came.
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.moof);
        out.extend_from_slice(mdat_header);
        out.extend_from_slice(&self.video);
        Some(out.freeze())
    }
}

enum Step {
    NeedMore,
    Item(Item),
    Continue,
}

/// Sans-IO EvoStream de-framer: [`feed`](Self::feed) bytes as they arrive,
/// split anywhere, and take items from [`next_item`](Self::next_item).
#[derive(Debug)]
pub struct Deframer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    pos: u64,
    max_message: usize,
    /// A valid MOOV header has been seen.
    started: bool,
    open: Option<Fragment>,
    failed: Option<Error>,
    stats: Stats,
}

impl Deframer {
    /// `max_message` bounds both a single message's declared length and a
    /// rebuilt fragment; see [`DEFAULT_MAX_MESSAGE`].
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            pos: 0,
            max_message,
            started: false,
            open: None,
            failed: None,
            stats: Stats::default(),
        }
    }

    /// Appends received bytes. Any split is fine: TCP and WebSocket
    /// fragmentation can cut anywhere.
    pub fn feed(&mut self, data: &[u8]) {
        // After a fatal error nothing is consumed any more; don't hoard.
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete item; `Ok(None)` means more bytes are needed.
    ///
    /// Errors are fatal (the stream cannot be trusted or would need too much
    /// memory) and every later call returns the same error.
    pub fn next_item(&mut self) -> Result<Option<Item>, Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        loop {
            match self.step() {
                Ok(Step::NeedMore) => return Ok(None),
                Ok(Step::Item(item)) => return Ok(Some(item)),
                Ok(Step::Continue) => {}
                Err(err) => {
                    self.failed = Some(err.clone());
                    self.buf = BytesMut::new();
                    self.open = None;
                    return Err(err);
                }
            }
        }
    }

    fn step(&mut self) -> Result<Step, Error> {
        let Some(&[tag, l0, l1, l2]) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(Step::NeedMore);
        };
        let len = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        let pos = self.pos;
        // Every check that needs only the header is made before waiting for
        // the body, so a bad stream fails after 4 bytes, not after buffering
        // up to 16 MiB.
        if len > self.max_message {
            return Err(Error::Oversized {
                pos,
                tag,
                len,
                max: self.max_message,
            });
        }
        if !self.started && tag != TAG_MOOV {
            return Err(Error::NotEvoStream {
                pos,
                tag,
                why: "the first message must be a moov header (tag 250)",
            });
        }
        if let Some(open) = &self.open {
            let grown = open.len().saturating_add(len);
            if matches!(tag, TAG_VIDEO | TAG_MOOF | TAG_MDAT) && grown > self.max_message {
                return Err(Error::FragmentOversized {
                    pos,
                    tag,
                    len: grown,
                    max: self.max_message,
                });
            }
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(Step::NeedMore);
        }

        // split_to + advance hand out views of the buffer without copying.
        let mut body = self.buf.split_to(HEADER_LEN + len);
        body.advance(HEADER_LEN);
        self.pos += (HEADER_LEN + len) as u64;
        self.stats.messages += 1;
        self.stats.bytes += (HEADER_LEN + len) as u64;
        *self.stats.tags.entry(tag).or_default() += 1;

        Ok(match tag {
            TAG_MOOV => self.on_moov(pos, body)?,
            TAG_BEGIN => {
                // A begin inside a fragment means its end was lost; what was
                // collected cannot be completed. (The body, empty in every
                // capture, carries nothing we need and is ignored.)
                self.drop_open();
                self.open = Some(Fragment::new(pos));
                Step::Continue
            }
            TAG_VIDEO | TAG_MOOF | TAG_MDAT => {
                self.on_piece(tag, body);
                Step::Continue
            }
            TAG_END => self.on_end(),
            // Unknown tags are skipped without touching the open fragment:
            // a server may interleave messages this de-framer doesn't know.
            _ => Step::Continue,
        })
    }

    fn on_moov(&mut self, pos: u64, body: BytesMut) -> Result<Step, Error> {
        // Fragments refer to the init segment in force when they began.
        self.drop_open();
        match init_payload(body) {
            Ok(init) => {
                self.started = true;
                Ok(Step::Item(Item::Init(init)))
            }
            Err(why) if !self.started => Err(Error::NotEvoStream {
                pos,
                tag: TAG_MOOV,
                why,
            }),
            // A later bad one is dropped: the consumer keeps the init
            // segment it has, and fragments are still checked one by one.
            Err(_) => {
                self.stats.dropped_messages += 1;
                Ok(Step::Continue)
            }
        }
    }

    fn on_piece(&mut self, tag: u8, body: BytesMut) {
        let Some(open) = self.open.as_mut() else {
            // No fragment to add to: wait for the next PBT begin.
            self.stats.dropped_messages += 1;
            return;
        };
        open.messages += 1;
        let fits = match tag {
            TAG_VIDEO => {
                // One video message per fragment is the norm: take it
                // without copying. Should a server split the payload, the
                // rest is appended.
                if open.video.is_empty() {
                    open.video = body;
                } else {
                    open.video.extend_from_slice(&body);
                }
                true
            }
            TAG_MOOF => {
                open.moof.extend_from_slice(&body);
                true
            }
            _ => {
                let first = open.mdat_header.is_none();
                let plausible = body.len() == 8 || body.len() == 16;
                if first && plausible {
                    open.mdat_header = Some(body.freeze());
                }
                first && plausible
            }
        };
        if !fits {
            self.drop_open();
        }
    }

    fn on_end(&mut self) -> Step {
        let Some(open) = self.open.take() else {
            self.stats.dropped_messages += 1;
            return Step::Continue;
        };
        match open.assemble() {
            Some(fragment) => {
                self.stats.fragments += 1;
                Step::Item(Item::Fragment(fragment))
            }
            None => {
                self.stats.dropped_fragments += 1;
                // The PBT end belongs to the dropped fragment too.
                self.stats.dropped_messages += open.messages + 1;
                Step::Continue
            }
        }
    }

    fn drop_open(&mut self) {
        if let Some(open) = self.open.take() {
            self.stats.dropped_fragments += 1;
            self.stats.dropped_messages += open.messages;
        }
    }

    /// To be called after feeding one whole WebSocket message and draining
    /// [`next_item`](Self::next_item) to `Ok(None)`.
    ///
    /// Servers send one framed message per WebSocket message, so bytes left
    /// over are a message cut short. They are discarded, along with the open
    /// fragment they belonged to, and `Err(Truncated)` says so; the
    /// de-framer is then ready for the next WebSocket message, and the caller
    /// may go on (the loss is in [`stats`](Self::stats)) or stop.
    ///
    /// If a complete message is still buffered (`next_item` was not
    /// drained), nothing is discarded and this returns `Ok(())`.
    pub fn end_of_message(&mut self) -> Result<(), Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.discard_partial() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Discards a partial message at the head of the buffer, returning what
    /// was lost.
    fn discard_partial(&mut self) -> Option<Error> {
        let &tag = self.buf.first()?;
        let declared = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(&[_, l0, l1, l2]) => HEADER_LEN + u32::from_be_bytes([0, l0, l1, l2]) as usize,
            None => HEADER_LEN,
        };
        let got = self.buf.len();
        if got >= declared {
            return None;
        }
        let err = Error::Truncated {
            pos: self.pos,
            tag,
            declared,
            got,
        };
        self.pos += got as u64;
        self.buf.clear();
        self.stats.truncated_messages += 1;
        // A cut unknown-tag message costs the fragment nothing; any
        // protocol message leaves it incomplete (or was to close it).
        if matches!(
            tag,
            TAG_MOOV | TAG_BEGIN | TAG_VIDEO | TAG_MOOF | TAG_MDAT | TAG_END
        ) {
            self.drop_open();
        }
        Some(err)
    }

    /// To be called when the connection closes, after draining
    /// [`next_item`](Self::next_item): `Ok(())` if the stream ended cleanly
    /// between fragments. Otherwise says what was cut short (a partial
    /// message first, else the unfinished fragment), counts it as dropped,
    /// and leaves the de-framer empty.
    pub fn end_of_stream(&mut self) -> Result<(), Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let partial = self.discard_partial();
        // A complete message left undrained is abandoned too.
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        let unfinished = self
            .open
            .as_ref()
            .map(|open| Error::UnfinishedFragment { pos: open.pos });
        self.drop_open();
        match partial.or(unfinished) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// True if nothing partial is buffered: no partial message and no open
    /// fragment. At the end of a stream, false means data was cut off.
    pub fn is_clean(&self) -> bool {
        self.buf.is_empty() && self.open.is_none()
    }

    /// True between a PBT begin and its PBT end.
    pub fn in_fragment(&self) -> bool {
        self.open.is_some()
    }

    /// Bytes fed but not yet consumed as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next message header.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The init segment inside a MOOV header body, or why it isn't one.
fn init_payload(mut body: BytesMut) -> Result<Bytes, &'static str> {
    if body.len() < MOOV_EXTRA {
        return Err("the moov header is too short for its 4 extra bytes");
    }
    body.advance(MOOV_EXTRA);
    // Copied (it is small) rather than sliced: the consumer keeps the init
    // segment for the whole session, and a slice would pin the receive
    // buffer it came from.
    let init = Bytes::copy_from_slice(&body);
    let mut walk = bmff::boxes(&init);
    match walk.next() {
        Some(Ok(first)) if matches!(&first.header.kind, b"ftyp" | b"styp" | b"moov") => {}
        Some(Ok(_)) => return Err("the moov header does not start with an ftyp, styp or moov box"),
        Some(Err(_)) => return Err("the moov header does not hold iso-bmff boxes"),
        None => return Err("the moov header holds no init segment"),
    }
    if walk.any(|b| b.is_err()) {
        return Err("the moov header's boxes do not fit its length");
    }
    Ok(init)
}

/// True if `data`, the first bytes of a stream, starts with an EvoStream MOOV
/// header: tag 250, a plausible length, and after the 4 extra bytes an
/// `ftyp`, `styp` or `moov` box that fits in it. Needs 24 bytes to say yes.
pub fn looks_like_evostream(data: &[u8]) -> bool {
    let Some(&[TAG_MOOV, l0, l1, l2]) = data.first_chunk::<HEADER_LEN>() else {
        return false;
    };
    let len = u64::from(u32::from_be_bytes([0, l0, l1, l2]));
    let Some(payload) = data.get(HEADER_LEN + MOOV_EXTRA..) else {
        return false;
    };
    let Ok(Some(first)) = bmff::parse_header(payload) else {
        return false;
    };
    matches!(&first.kind, b"ftyp" | b"styp" | b"moov")
        && first.size <= len.saturating_sub(MOOV_EXTRA as u64)
        && bmff::looks_like_bmff(payload)
}

/// Why a message could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The init segment does not fit in one MOOV header (a message body is
    /// at most [`MAX_BODY`] bytes, and the MOOV header's 4 extra bytes count).
    #[error("the init segment is {len} bytes, too large for one evostream message")]
    InitTooLarge { len: usize },
    /// The fragment's boxes do not parse, or none of them is an `mdat`.
    #[error("the fragment has no mdat box")]
    NoMdat,
}

/// One message: `tag`, the 3-byte big-endian length, then `parts` one after
/// the other as its body.
///
/// # Panics
///
/// If the body is over [`MAX_BODY`] bytes: the length cannot say so. Bodies
/// of any size go through [`init_message`] and [`fragment_messages`], which
/// check or split them.
pub fn write_message(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    assert!(
        len <= MAX_BODY,
        "an evostream message body of {len} bytes is over {MAX_BODY}"
    );
    let mut m = Vec::with_capacity(HEADER_LEN + len);
    m.push(tag);
    m.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

/// The MOOV header (tag 250) that carries an init segment (`ftyp` + `moov`),
/// with the 4 player-specific bytes a captured server puts before it.
pub fn init_message(init: &[u8]) -> Result<Vec<u8>, WriteError> {
    if init.len() > MAX_BODY - MOOV_EXTRA {
        return Err(WriteError::InitTooLarge { len: init.len() });
    }
    Ok(write_message(TAG_MOOV, &[&CAPTURED_MOOV_EXTRA, init]))
}

/// The messages that carry one fragment, in the order servers send them:
/// PBT begin, video (the `mdat` payload), the `moof` in three MOOF pieces,
/// the MDAT header, PBT end.
///
/// `frag` is a `moof` then an `mdat`, as a fragmenting muxer writes them:
/// every box before the `mdat` goes into the MOOF pieces, and everything
/// after the `mdat` header is video. A video payload or piece too large for
/// one message is cut into several, which the de-framer joins again.
pub fn fragment_messages(frag: &[u8]) -> Result<Vec<Vec<u8>>, WriteError> {
    let mut off = 0usize;
    let (mdat_at, mdat_header_len) = loop {
        let header = frag
            .get(off..)
            .and_then(|rest| bmff::parse_header(rest).ok().flatten())
            .ok_or(WriteError::NoMdat)?;
        if &header.kind == b"mdat" {
            break (off, header.header_len);
        }
        off = usize::try_from(header.size)
            .ok()
            .and_then(|size| off.checked_add(size))
            .ok_or(WriteError::NoMdat)?;
    };
    let (moof, mdat) = frag.split_at(mdat_at);
    let (mdat_header, video) = mdat.split_at(mdat_header_len);
    let third = moof.len() / 3;
    let (a, rest) = moof.split_at(third);
    let (b, c) = rest.split_at(third);

    let mut msgs = vec![write_message(TAG_BEGIN, &[])];
    // An empty payload is still sent: the order is what servers send.
    msgs.extend(pieces(TAG_VIDEO, video));
    for piece in [a, b, c] {
        msgs.extend(pieces(TAG_MOOF, piece));
    }
    msgs.push(write_message(TAG_MDAT, &[mdat_header]));
    msgs.push(write_message(TAG_END, &[]));
    Ok(msgs)
}

/// `body` as messages of one tag, each at most [`MAX_BODY`] bytes (one
/// message, empty or not, for a body that fits).
fn pieces(tag: u8, body: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let count = body.len().div_ceil(MAX_BODY).max(1);
    (0..count).map(move |i| {
        let start = i * MAX_BODY;
        let end = body.len().min(start + MAX_BODY);
        write_message(tag, &[&body[start..end]])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = (8 + body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
        bx(kind, &[&flags.to_be_bytes()[..], body].concat())
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_be_bytes();
        [&[tag, len[1], len[2], len[3]][..], body].concat()
    }

    /// ftyp + moov, as a camera's init segment would be laid out.
    fn init() -> Vec<u8> {
        let ftyp = bx(b"ftyp", b"iso5\0\0\x02\0iso5iso6mp41");
        let tkhd = full(b"tkhd", 7, &[0; 80]);
        let trak = bx(b"trak", &tkhd);
        let mvex = bx(
            b"mvex",
            &full(
                b"trex",
                0,
                &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        );
        let moov = bx(b"moov", &[full(b"mvhd", 0, &[0; 96]), trak, mvex].concat());
        [ftyp, moov].concat()
    }

    fn moov_msg() -> Vec<u8> {
        // The 4 extra bytes of the captured stream.
        msg(TAG_MOOV, &[&[0xf1, 0x42, 0xc0, 0x1e][..], &init()].concat())
    }

    fn moof(seq: u32, video_len: usize) -> Vec<u8> {
        let mfhd = full(b"mfhd", 0, &seq.to_be_bytes());
        let tfhd = full(b"tfhd", 0x02_0000, &1u32.to_be_bytes());
        let tfdt = full(b"tfdt", 0, &(seq * 3600).to_be_bytes());
        let trun = full(
            b"trun",
            0x201,
            &[
                1u32.to_be_bytes(),
                0u32.to_be_bytes(),
                (video_len as u32).to_be_bytes(),
            ]
            .concat(),
        );
        bx(
            b"moof",
            &[mfhd, bx(b"traf", &[tfhd, tfdt, trun].concat())].concat(),
        )
    }

    fn video(seq: u32, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8)
            .collect()
    }

    fn mdat_header(video_len: usize) -> Vec<u8> {
        [&(8 + video_len as u32).to_be_bytes()[..], b"mdat"].concat()
    }

    /// The messages of one fragment, in the order servers send them, with
    /// the moof cut into three pieces as EvoStream does.
    fn fragment_msgs(seq: u32, video_len: usize) -> Vec<Vec<u8>> {
        let moof = moof(seq, video_len);
        // Cut mid-box, so that pieces in the wrong order cannot happen to
        // form a valid moof.
        let (a, rest) = moof.split_at(10);
        let (b, c) = rest.split_at(20);
        vec![
            msg(TAG_BEGIN, &[]),
            msg(TAG_VIDEO, &video(seq, video_len)),
            msg(TAG_MOOF, a),
            msg(TAG_MOOF, b),
            msg(TAG_MOOF, c),
            msg(TAG_MDAT, &mdat_header(video_len)),
            msg(TAG_END, &[]),
        ]
    }

    fn expected_fragment(seq: u32, video_len: usize) -> Item {
        Item::Fragment(
            [
                moof(seq, video_len),
                mdat_header(video_len),
                video(seq, video_len),
            ]
            .concat()
            .into(),
        )
    }

    fn stream(fragments: u32) -> Vec<u8> {
        let mut out = moov_msg();
        for seq in 1..=fragments {
            out.extend(fragment_msgs(seq, 100 + 37 * seq as usize).concat());
        }
        out
    }

    fn expected(fragments: u32) -> Vec<Item> {
        let mut out = vec![Item::Init(init().into())];
        out.extend((1..=fragments).map(|seq| expected_fragment(seq, 100 + 37 * seq as usize)));
        out
    }

    fn drain(d: &mut Deframer) -> Vec<Item> {
        let mut out = Vec::new();
        while let Some(item) = d.next_item().unwrap() {
            out.push(item);
        }
        out
    }

    fn deframe(data: &[u8]) -> (Vec<Item>, Deframer) {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(data);
        (drain(&mut d), d)
    }

    #[test]
    fn happy_path_rebuilds_init_then_moof_mdat_per_fragment() {
        let (items, d) = deframe(&stream(3));
        assert_eq!(items, expected(3));
        assert!(d.is_clean());
        // The rebuilt fragments are what an MP4 parser expects.
        if let Some(Item::Fragment(f)) = items.get(2) {
            let info = bmff::parse_fragment(f).unwrap();
            assert_eq!((info.sequence_number, info.mdat_len), (2, Some(174)));
        } else {
            panic!("no second fragment");
        }
    }

    /// Feeds `data` in two pieces, split at every point: the items must not
    /// depend on where the split falls.
    fn assert_any_split_gives(data: &[u8], want: &[Item]) {
        for split in 0..=data.len() {
            let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
            d.feed(&data[..split]);
            let mut got = drain(&mut d);
            d.feed(&data[split..]);
            got.extend(drain(&mut d));
            assert_eq!(got, want, "split at {split}");
            assert!(d.is_clean(), "split at {split}");
        }
    }

    #[test]
    fn any_split_point_gives_identical_output() {
        assert_any_split_gives(&stream(3), &expected(3));
    }

    #[test]
    fn byte_by_byte_feeding_gives_identical_output() {
        let data = stream(3);
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        let mut got = Vec::new();
        for byte in &data {
            d.feed(std::slice::from_ref(byte));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, expected(3));
        assert_eq!(d.stats().bytes, data.len() as u64);
    }

    #[test]
    fn one_websocket_message_per_framed_message_ends_cleanly() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        let mut messages = vec![moov_msg()];
        messages.extend(fragment_msgs(1, 500));
        let mut got = Vec::new();
        for m in &messages {
            d.feed(m);
            got.extend(drain(&mut d));
            assert_eq!(d.end_of_message(), Ok(()));
        }
        assert_eq!(got, [Item::Init(init().into()), expected_fragment(1, 500)]);
        assert_eq!(d.end_of_stream(), Ok(()));
    }

    #[test]
    fn sixty_four_bit_mdat_header_is_accepted() {
        let moof = moof(1, 10);
        let mut header = vec![0, 0, 0, 1];
        header.extend_from_slice(b"mdat");
        header.extend_from_slice(&26u64.to_be_bytes());
        let data = [
            moov_msg(),
            msg(TAG_BEGIN, &[]),
            msg(TAG_VIDEO, &video(1, 10)),
            msg(TAG_MOOF, &moof),
            msg(TAG_MDAT, &header),
            msg(TAG_END, &[]),
        ]
        .concat();
        let (items, _) = deframe(&data);
        assert_eq!(
            items.get(1),
            Some(&Item::Fragment(
                [moof, header, video(1, 10)].concat().into()
            ))
        );
    }

    #[test]
    fn oversized_length_fails_from_the_header_alone() {
        let mut d = Deframer::new(1000);
        d.feed(&moov_msg());
        d.feed(&[TAG_VIDEO, 0x01, 0x00, 0x00]); // 65536 bytes, none sent yet
        assert!(matches!(d.next_item(), Ok(Some(Item::Init(_)))));
        let pos = moov_msg().len() as u64;
        let err = Error::Oversized {
            pos,
            tag: TAG_VIDEO,
            len: 65536,
            max: 1000,
        };
        assert_eq!(d.next_item(), Err(err.clone()));
        assert_eq!(
            err.to_string(),
            format!("message tag 252 at byte {pos} declares 65536 bytes, over the 1000-byte limit")
        );
        // Sticky, and nothing more is buffered.
        d.feed(&[0; 100]);
        assert_eq!(d.next_item(), Err(err.clone()));
        assert_eq!(d.end_of_message(), Err(err));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn fragment_growing_past_the_limit_fails_before_buffering_the_piece() {
        // Each message fits in 600 bytes; the fragment as a whole does not.
        let msgs = fragment_msgs(1, 550);
        let mut d = Deframer::new(600);
        d.feed(&moov_msg());
        d.feed(&[&msgs[0][..], &msgs[1], &msgs[2], &msgs[3]].concat());
        d.feed(&msgs[4][..4]);
        assert!(matches!(d.next_item(), Ok(Some(Item::Init(_)))));
        let err = d.next_item().unwrap_err();
        assert!(
            matches!(
                err,
                Error::FragmentOversized {
                    tag: TAG_MOOF,
                    max: 600,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("would grow its fragment to"),
            "{err}"
        );
    }

    #[test]
    fn truncated_websocket_message_is_reported_and_its_fragment_dropped() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(&moov_msg());
        drain(&mut d);
        d.end_of_message().unwrap();
        let first = fragment_msgs(1, 300);
        d.feed(&first[0]);
        assert_eq!(drain(&mut d), []);
        d.end_of_message().unwrap();
        // Only 100 of the video message's 304 bytes arrive.
        d.feed(&first[1][..100]);
        assert_eq!(drain(&mut d), []);
        assert!(d.in_fragment() && !d.is_clean());
        let pos = (moov_msg().len() + 4) as u64;
        let err = d.end_of_message().unwrap_err();
        assert_eq!(
            err,
            Error::Truncated {
                pos,
                tag: TAG_VIDEO,
                declared: 304,
                got: 100
            }
        );
        assert_eq!(
            err.to_string(),
            format!("websocket message ended inside message tag 252 at byte {pos}: got 100 of its 304 bytes")
        );
        assert!(d.is_clean(), "resynchronised at the message boundary");
        // The rest of the cut fragment is dropped; the next one comes through.
        for m in &first[2..] {
            d.feed(m);
        }
        d.feed(&fragment_msgs(2, 300).concat());
        assert_eq!(drain(&mut d), [expected_fragment(2, 300)]);
        let s = d.stats();
        assert_eq!(
            (
                s.truncated_messages,
                s.dropped_fragments,
                s.dropped_messages
            ),
            (1, 1, 1 + 5)
        );
        // Offsets still count every byte received.
        assert_eq!(
            d.position(),
            (moov_msg().len()
                + 4
                + 100
                + first[2..].concat().len()
                + fragment_msgs(2, 300).concat().len()) as u64
        );
    }

    #[test]
    fn truncated_inside_the_header_reports_four_declared_bytes() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(&moov_msg());
        drain(&mut d);
        d.feed(&[TAG_BEGIN, 0]);
        assert_eq!(drain(&mut d), []);
        let pos = moov_msg().len() as u64;
        assert_eq!(
            d.end_of_message(),
            Err(Error::Truncated {
                pos,
                tag: TAG_BEGIN,
                declared: 4,
                got: 2
            })
        );
    }

    #[test]
    fn end_of_message_leaves_an_undrained_complete_message_alone() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(&moov_msg());
        assert_eq!(d.end_of_message(), Ok(()));
        assert!(matches!(d.next_item(), Ok(Some(Item::Init(_)))));
    }

    #[test]
    fn stream_ending_mid_fragment_is_reported() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        let msgs = fragment_msgs(1, 10);
        d.feed(&[moov_msg(), msgs[0].clone(), msgs[1].clone()].concat());
        drain(&mut d);
        assert!(d.in_fragment() && !d.is_clean());
        let pos = moov_msg().len() as u64;
        assert_eq!(d.end_of_stream(), Err(Error::UnfinishedFragment { pos }));
        assert_eq!(
            (d.stats().dropped_fragments, d.stats().dropped_messages),
            (1, 2)
        );
        assert!(d.is_clean());
    }

    #[test]
    fn stray_pieces_without_begin_are_dropped_until_next_begin() {
        let msgs = fragment_msgs(1, 50);
        // Joined mid-fragment: the first fragment's begin was never seen.
        let data = [
            moov_msg(),
            msgs[1..].concat(),
            fragment_msgs(2, 50).concat(),
        ]
        .concat();
        let (items, d) = deframe(&data);
        assert_eq!(items, [Item::Init(init().into()), expected_fragment(2, 50)]);
        let s = d.stats();
        assert_eq!(
            (s.dropped_messages, s.dropped_fragments, s.fragments),
            (6, 0, 1)
        );
    }

    #[test]
    fn begin_inside_open_fragment_drops_it_and_starts_anew() {
        let msgs = fragment_msgs(1, 50);
        let data = [
            moov_msg(),
            msgs[..4].concat(),
            fragment_msgs(2, 50).concat(),
        ]
        .concat();
        let (items, d) = deframe(&data);
        assert_eq!(items, [Item::Init(init().into()), expected_fragment(2, 50)]);
        let s = d.stats();
        assert_eq!((s.dropped_messages, s.dropped_fragments), (4, 1));
    }

    /// Runs `first` (a broken fragment) then a good one, checking that the
    /// good one comes through and the broken one is counted as dropped.
    fn recovers_after(first: &[Vec<u8>], dropped_messages: u64) {
        let data = [moov_msg(), first.concat(), fragment_msgs(2, 80).concat()].concat();
        let (items, d) = deframe(&data);
        assert_eq!(items, [Item::Init(init().into()), expected_fragment(2, 80)]);
        let s = d.stats();
        assert_eq!(
            (s.dropped_messages, s.dropped_fragments, s.fragments),
            (dropped_messages, 1, 1)
        );
        assert!(d.is_clean());
    }

    #[test]
    fn end_without_mdat_header_drops_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.remove(5);
        recovers_after(&msgs, 6);
    }

    #[test]
    fn end_without_moof_drops_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.drain(2..5);
        recovers_after(&msgs, 4);
    }

    #[test]
    fn lost_moof_piece_drops_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.remove(3);
        recovers_after(&msgs, 6);
    }

    #[test]
    fn moof_pieces_out_of_order_drop_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.swap(3, 4);
        recovers_after(&msgs, 7);
    }

    #[test]
    fn mdat_size_not_matching_video_drops_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs[5] = msg(TAG_MDAT, &mdat_header(81));
        recovers_after(&msgs, 7);
    }

    #[test]
    fn second_mdat_header_drops_fragment_at_once() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.insert(5, msg(TAG_MDAT, &mdat_header(80)));
        // Dropped when the second header arrives (7 messages so far); the
        // PBT end that follows is then a stray.
        recovers_after(&msgs, 7 + 1);
    }

    #[test]
    fn mdat_header_of_odd_length_drops_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs[5] = msg(TAG_MDAT, &[0; 12]);
        recovers_after(&msgs, 6 + 1);
    }

    #[test]
    fn unknown_tags_are_counted_and_skipped_inside_a_fragment() {
        let mut msgs = fragment_msgs(1, 80);
        msgs.insert(3, msg(7, b"whatever"));
        msgs.insert(1, msg(253, &[]));
        let data = [moov_msg(), msg(0, &[1, 2, 3]), msgs.concat()].concat();
        let (items, d) = deframe(&data);
        assert_eq!(items, [Item::Init(init().into()), expected_fragment(1, 80)]);
        let s = d.stats();
        assert_eq!(
            (s.tags.get(&7), s.tags.get(&253), s.tags.get(&0)),
            (Some(&1), Some(&1), Some(&1))
        );
        assert_eq!((s.dropped_messages, s.dropped_fragments), (0, 0));
    }

    #[test]
    fn split_video_payload_is_reassembled() {
        let mut msgs = fragment_msgs(1, 80);
        let v = video(1, 80);
        msgs.splice(1..2, [msg(TAG_VIDEO, &v[..30]), msg(TAG_VIDEO, &v[30..])]);
        let (items, _) = deframe(&[moov_msg(), msgs.concat()].concat());
        assert_eq!(items, [Item::Init(init().into()), expected_fragment(1, 80)]);
    }

    #[test]
    fn first_message_not_moov_is_not_evostream_from_its_header() {
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(&[TAG_VIDEO, 0, 0x10, 0]);
        let err = d.next_item().unwrap_err();
        assert_eq!(
            err,
            Error::NotEvoStream {
                pos: 0,
                tag: TAG_VIDEO,
                why: "the first message must be a moov header (tag 250)"
            }
        );
        assert_eq!(
            err.to_string(),
            "not an evostream stream: message tag 252 at byte 0: the first message must be a moov header (tag 250)"
        );
        // A raw fMP4 stream (ftyp box) is not EvoStream either.
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        d.feed(&init());
        assert!(matches!(
            d.next_item(),
            Err(Error::NotEvoStream { tag: 0, .. })
        ));
    }

    #[test]
    fn moov_header_without_iso_bmff_payload_is_not_evostream() {
        for (body, why) in [
            (
                &b"ab"[..],
                "the moov header is too short for its 4 extra bytes",
            ),
            (b"abcd", "the moov header holds no init segment"),
            (
                b"abcd\0\0\0\x08mdat",
                "the moov header does not start with an ftyp, styp or moov box",
            ),
            (
                b"abcd\0\0\0\x04ftyp",
                "the moov header does not hold iso-bmff boxes",
            ),
            (
                b"abcd\0\0\0\x08ftyp\0\0\0\x20moov",
                "the moov header's boxes do not fit its length",
            ),
        ] {
            let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
            d.feed(&msg(TAG_MOOV, body));
            assert_eq!(
                d.next_item(),
                Err(Error::NotEvoStream {
                    pos: 0,
                    tag: TAG_MOOV,
                    why
                })
            );
        }
    }

    #[test]
    fn second_moov_yields_init_again_and_drops_open_fragment() {
        let msgs = fragment_msgs(1, 80);
        let bad_moov = msg(TAG_MOOV, b"abcdjunk");
        let data = [
            moov_msg(),
            msgs[..3].concat(),
            moov_msg(),
            bad_moov,
            fragment_msgs(2, 80).concat(),
        ]
        .concat();
        let (items, d) = deframe(&data);
        assert_eq!(
            items,
            [
                Item::Init(init().into()),
                Item::Init(init().into()),
                expected_fragment(2, 80)
            ]
        );
        let s = d.stats();
        // 3 messages of the cut fragment, then the bad moov.
        assert_eq!((s.dropped_messages, s.dropped_fragments), (3 + 1, 1));
    }

    #[test]
    fn stats_count_each_tag_and_all_bytes() {
        let data = stream(4);
        let (_, d) = deframe(&data);
        let s = d.stats();
        let tags: Vec<_> = s.tags.iter().map(|(&t, &n)| (t, n)).collect();
        assert_eq!(
            tags,
            [
                (TAG_BEGIN, 4),
                (TAG_MOOV, 1),
                (TAG_MOOF, 12),
                (TAG_VIDEO, 4),
                (TAG_MDAT, 4),
                (TAG_END, 4)
            ]
        );
        assert_eq!(s.messages, 1 + 4 * 7);
        assert_eq!(s.messages, s.tags.values().sum::<u64>());
        assert_eq!((s.bytes, s.fragments), (data.len() as u64, 4));
    }

    #[test]
    fn looks_like_evostream_recognises_the_captured_first_message() {
        // The capture's first bytes: tag 250, length 646, 4 extra bytes,
        // a 24-byte ftyp.
        let mut captured = vec![0xfa, 0x00, 0x02, 0x86, 0xf1, 0x42, 0xc0, 0x1e];
        captured.extend_from_slice(&[
            0, 0, 0, 0x18, b'f', b't', b'y', b'p', b'i', b's', b'o', b'5',
        ]);
        captured.extend_from_slice(&[0, 0, 2, 0, b'i', b's', b'o', b'5']);
        assert!(looks_like_evostream(&captured));
        assert!(looks_like_evostream(&moov_msg()));
        assert!(!looks_like_evostream(&captured[..15]), "too short to tell");
        // ftyp larger than the message that holds it.
        let mut lying = captured.clone();
        lying[2] = 0;
        lying[3] = 0x10;
        assert!(!looks_like_evostream(&lying));
        assert!(!looks_like_evostream(&init()), "raw fMP4");
        assert!(!looks_like_evostream(&msg(TAG_BEGIN, &[])));
        assert!(!looks_like_evostream(
            b"\xfa\0\0\x20HTTP/1.1 200 OK\r\n\r\n"
        ));
    }
    // testdata/frag.mp4: see testdata/README.md.
    const FFMPEG_FRAG: &[u8] = include_bytes!("../../testdata/frag.mp4");

    /// The capture's init segment (`ftyp` + `moov`) and its first `n`
    /// fragments (`moof` + `mdat`), as FFmpeg wrote them.
    fn ffmpeg_init_and_fragments(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let whole = |b: &bmff::BoxRef| {
            let start = b.offset as usize;
            FFMPEG_FRAG[start..start + b.header.size as usize].to_vec()
        };
        let top: Vec<bmff::BoxRef> = bmff::boxes(FFMPEG_FRAG).map(|b| b.unwrap()).collect();
        assert_eq!(
            (&top[0].header.kind, &top[1].header.kind),
            (b"ftyp", b"moov")
        );
        let init = [whole(&top[0]), whole(&top[1])].concat();
        let fragments: Vec<Vec<u8>> = top[2..]
            .chunks(2)
            .take(n)
            .map(|pair| {
                assert_eq!(
                    (&pair[0].header.kind, &pair[1].header.kind),
                    (b"moof", b"mdat")
                );
                [whole(&pair[0]), whole(&pair[1])].concat()
            })
            .collect();
        assert_eq!(fragments.len(), n);
        (init, fragments)
    }

    /// What the writer makes of an init segment and fragments: one
    /// WebSocket message each.
    fn written(init: &[u8], fragments: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut msgs = vec![init_message(init).unwrap()];
        for frag in fragments {
            msgs.extend(fragment_messages(frag).unwrap());
        }
        msgs
    }

    #[test]
    fn writer_frames_as_the_captured_server_does() {
        assert_eq!(init_message(&init()).unwrap(), moov_msg());
        assert_eq!(write_message(TAG_BEGIN, &[]), msg(TAG_BEGIN, &[]));
        assert_eq!(
            write_message(TAG_VIDEO, &[b"ab", b"", b"cde"]),
            msg(TAG_VIDEO, b"abcde")
        );
        let moof = moof(1, 300);
        let frag = [moof.clone(), mdat_header(300), video(1, 300)].concat();
        let msgs = fragment_messages(&frag).unwrap();
        let tags: Vec<u8> = msgs.iter().map(|m| m[0]).collect();
        assert_eq!(
            tags,
            [TAG_BEGIN, TAG_VIDEO, TAG_MOOF, TAG_MOOF, TAG_MOOF, TAG_MDAT, TAG_END]
        );
        assert_eq!(msgs[1], msg(TAG_VIDEO, &video(1, 300)));
        let pieces: Vec<u8> = msgs[2..5].iter().flat_map(|m| m[4..].to_vec()).collect();
        assert_eq!(pieces, moof);
        assert_eq!(msgs[5], msg(TAG_MDAT, &mdat_header(300)));
    }

    #[test]
    fn ffmpeg_fragments_written_then_deframed_at_every_split_point() {
        let (init, fragments) = ffmpeg_init_and_fragments(8);
        let mut want = vec![Item::Init(init.clone().into())];
        want.extend(fragments.iter().map(|f| Item::Fragment(f.clone().into())));
        let msgs = written(&init, &fragments);
        assert_any_split_gives(&msgs.concat(), &want);
        // One WebSocket message per written message, as the camera sends.
        let mut d = Deframer::new(DEFAULT_MAX_MESSAGE);
        let mut got = Vec::new();
        for m in &msgs {
            d.feed(m);
            got.extend(drain(&mut d));
            d.end_of_message().unwrap();
        }
        d.end_of_stream().unwrap();
        assert_eq!(got, want);
        assert_eq!(d.stats().dropped_messages, 0);
    }

    #[test]
    fn video_over_one_message_is_cut_into_several_and_rejoined() {
        let len = MAX_BODY + 10;
        let video = video(7, len);
        let frag = [moof(7, len), mdat_header(len), video].concat();
        let msgs = fragment_messages(&frag).unwrap();
        let video_msgs: Vec<usize> = msgs
            .iter()
            .filter(|m| m[0] == TAG_VIDEO)
            .map(Vec::len)
            .collect();
        assert_eq!(video_msgs, [4 + MAX_BODY, 4 + 10]);
        let mut d = Deframer::new(2 * MAX_BODY);
        d.feed(&init_message(&init()).unwrap());
        for m in &msgs {
            d.feed(m);
        }
        assert_eq!(
            drain(&mut d),
            [Item::Init(init().into()), Item::Fragment(frag.into())]
        );
        assert!(d.is_clean());
    }

    #[test]
    fn writer_refuses_what_it_cannot_frame() {
        let big = vec![0; MAX_BODY - MOOV_EXTRA + 1];
        assert_eq!(
            init_message(&big),
            Err(WriteError::InitTooLarge { len: big.len() })
        );
        assert!(init_message(&big[1..]).is_ok(), "exactly the largest body");
        assert_eq!(fragment_messages(&moof(1, 10)), Err(WriteError::NoMdat));
        assert_eq!(fragment_messages(b"junk"), Err(WriteError::NoMdat));
        assert_eq!(fragment_messages(&[]), Err(WriteError::NoMdat));
    }

    #[test]
    #[should_panic(expected = "over 16777215")]
    fn write_message_panics_rather_than_write_a_wrong_length() {
        write_message(TAG_VIDEO, &[&vec![0; MAX_BODY + 1]]);
    }
}
