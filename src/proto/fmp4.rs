//! Cuts a plain fragmented-MP4 byte stream into its init segment and
//! fragments, so that raw-fMP4 WebSocket sources give the pipeline the same
//! [`Chunk`]s as EvoStream-framed ones.
//!
//! In: bytes in any split. Out: `Chunk::Init` (everything up to and including
//! `moov`), then one `Chunk::Fragment` per `moof` + `mdat` pair (with any
//! `styp`/`sidx`/`prft`/`emsg` boxes that came before the `moof`).

use bytes::{Bytes, BytesMut};

use super::bmff::{self, BoxSplitter};
use crate::packet::Chunk;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not fMP4: the stream starts with {0}")]
    NotFmp4(String),
    #[error("fMP4 box at byte {pos}: {source}")]
    Box { pos: u64, source: bmff::Error },
    #[error("fMP4 `{kind}` box at byte {pos} came before any `moov` box")]
    FragmentBeforeInit { pos: u64, kind: String },
    #[error("fMP4 fragment at byte {pos} is {len} bytes, over the {max}-byte limit")]
    Oversized { pos: u64, len: usize, max: usize },
    #[error("fMP4 init segment at byte {pos} is {len} bytes, over the {max}-byte limit")]
    InitOversized { pos: u64, len: usize, max: usize },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub fragments: u64,
    /// `mdat` boxes with no `moof` before them, and other stray boxes skipped.
    pub dropped_boxes: u64,
}

pub struct Assembler {
    splitter: BoxSplitter,
    max: usize,
    pos: u64,
    started: bool,
    /// Init segment being gathered (until its `moov` arrives).
    init: Option<BytesMut>,
    have_init: bool,
    /// Boxes of the fragment being gathered.
    frag: BytesMut,
    frag_has_moof: bool,
    stats: Stats,
}

fn kind_str(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

impl Assembler {
    pub fn new(max: usize) -> Self {
        Assembler {
            splitter: BoxSplitter::new(max as u64),
            max,
            pos: 0,
            started: false,
            init: None,
            have_init: false,
            frag: BytesMut::new(),
            frag_has_moof: false,
            stats: Stats::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.splitter.feed(data);
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True when a fragment is partly received.
    pub fn in_fragment(&self) -> bool {
        !self.frag.is_empty() || self.splitter.buffered() > 0
    }

    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, Error> {
        loop {
            let pos = self.pos;
            let (hdr, data) = match self.splitter.next_box() {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(None),
                Err(source) => return Err(Error::Box { pos, source }),
            };
            self.pos += data.len() as u64;
            let kind = &hdr.kind;
            if !self.started {
                self.started = true;
                if !matches!(kind, b"ftyp" | b"styp" | b"moov" | b"free" | b"skip") {
                    return Err(Error::NotFmp4(format!("a `{}` box", kind_str(kind))));
                }
            }
            match kind {
                b"ftyp" => {
                    // A new init segment: any half-gathered fragment is stale.
                    self.frag.clear();
                    self.frag_has_moof = false;
                    let mut b = BytesMut::with_capacity(data.len());
                    b.extend_from_slice(&data);
                    self.init = Some(b);
                }
                b"moov" => {
                    let mut init = self.init.take().unwrap_or_default();
                    self.check_init(pos, init.len() + data.len())?;
                    init.extend_from_slice(&data);
                    self.have_init = true;
                    self.frag.clear();
                    self.frag_has_moof = false;
                    return Ok(Some(Chunk::Init(init.freeze())));
                }
                b"moof" | b"styp" | b"sidx" | b"prft" | b"emsg" => {
                    if !self.have_init {
                        if kind == b"styp" {
                            continue;
                        }
                        return Err(Error::FragmentBeforeInit {
                            pos,
                            kind: kind_str(kind),
                        });
                    }
                    if kind == b"moof" {
                        if self.frag_has_moof {
                            // A moof with no mdat after it: drop the old one.
                            self.stats.dropped_boxes += 1;
                            self.frag.clear();
                        }
                        self.frag_has_moof = true;
                    }
                    self.push_frag(pos, &data)?;
                }
                b"mdat" => {
                    if !self.frag_has_moof {
                        self.stats.dropped_boxes += 1;
                        self.frag.clear();
                        continue;
                    }
                    self.push_frag(pos, &data)?;
                    self.frag_has_moof = false;
                    self.stats.fragments += 1;
                    let f = std::mem::take(&mut self.frag).freeze();
                    return Ok(Some(Chunk::Fragment(f)));
                }
                _ => {
                    // free, skip, mfra, meta...: nothing a decoder needs.
                    // Before the `moov` they stay in the init segment,
                    // within its limit.
                    if let Some(len) = self.init.as_ref().map(|i| i.len() + data.len()) {
                        self.check_init(pos, len)?;
                    }
                    if let Some(init) = self.init.as_mut() {
                        init.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The init segment is held until its `moov` arrives: it gets the same
    /// limit as a fragment, or a server sending `ftyp` then endless `free`
    /// boxes would grow it without bound. `len` is its size with the box at
    /// `pos` added; over the limit, what was gathered is dropped.
    fn check_init(&mut self, pos: u64, len: usize) -> Result<(), Error> {
        if len > self.max {
            self.init = None;
            return Err(Error::InitOversized {
                pos,
                len,
                max: self.max,
            });
        }
        Ok(())
    }

    fn push_frag(&mut self, pos: u64, data: &Bytes) -> Result<(), Error> {
        let len = self.frag.len() + data.len();
        if len > self.max {
            self.frag.clear();
            self.frag_has_moof = false;
            return Err(Error::Oversized {
                pos,
                len,
                max: self.max,
            });
        }
        self.frag.extend_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkbox(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn stream() -> (Vec<u8>, Vec<Chunk>) {
        let ftyp = mkbox(b"ftyp", b"iso5\0\0\x02\0iso6mp41");
        let moov = mkbox(b"moov", &mkbox(b"mvhd", &[0; 20]));
        let moof1 = mkbox(b"moof", &mkbox(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]));
        let mdat1 = mkbox(b"mdat", b"frame one");
        let styp = mkbox(b"styp", b"msdh\0\0\0\0");
        let moof2 = mkbox(b"moof", &mkbox(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 2]));
        let mdat2 = mkbox(b"mdat", b"frame two!");
        let all = [
            ftyp.clone(),
            moov.clone(),
            moof1.clone(),
            mdat1.clone(),
            styp.clone(),
            moof2.clone(),
            mdat2.clone(),
        ]
        .concat();
        let want = vec![
            Chunk::Init(Bytes::from([ftyp, moov].concat())),
            Chunk::Fragment(Bytes::from([moof1, mdat1].concat())),
            Chunk::Fragment(Bytes::from([styp, moof2, mdat2].concat())),
        ];
        (all, want)
    }

    fn run(parts: &[&[u8]]) -> Result<Vec<Chunk>, Error> {
        let mut a = Assembler::new(1 << 20);
        let mut out = Vec::new();
        for p in parts {
            a.feed(p);
            while let Some(c) = a.next_chunk()? {
                out.push(c);
            }
        }
        Ok(out)
    }

    #[test]
    fn every_split_point_gives_the_same_chunks() {
        let (all, want) = stream();
        for split in 0..=all.len() {
            let (a, b) = all.split_at(split);
            assert_eq!(run(&[a, b]).unwrap(), want, "split at {split}");
        }
    }

    #[test]
    fn non_mp4_bytes_are_refused() {
        let e = run(&[b"\x00\x00\x00\x10GARBAGE!bytes..."]).unwrap_err();
        assert!(matches!(e, Error::NotFmp4(_)), "{e}");
    }

    #[test]
    fn mdat_without_moof_is_dropped_and_counted() {
        let (all, _) = stream();
        let mut a = Assembler::new(1 << 20);
        let init_len = 8 + 16 + 8 + 28;
        a.feed(&all[..init_len]);
        a.feed(&mkbox(b"mdat", b"orphan"));
        a.feed(&all[init_len..]);
        let mut n = 0;
        while let Some(_c) = a.next_chunk().unwrap() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(a.stats().dropped_boxes, 1);
    }

    #[test]
    fn fragment_over_the_limit_is_an_error() {
        let (all, _) = stream();
        let mut a = Assembler::new(40);
        a.feed(&all);
        let mut err = None;
        loop {
            match a.next_chunk() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(err.is_some());
    }

    #[test]
    fn init_growing_with_free_boxes_is_stopped_at_the_limit() {
        // A server that sends `ftyp`, then `free` boxes and never a `moov`.
        let max = 64 * 1024;
        let mut a = Assembler::new(max);
        a.feed(&mkbox(b"ftyp", b"iso5\0\0\x02\0iso6mp41"));
        let free = mkbox(b"free", &[0; 4096]);
        let mut err = None;
        for _ in 0..100 {
            a.feed(&free);
            match a.next_chunk() {
                Ok(None) => {}
                Ok(Some(c)) => panic!("unexpected chunk {c:?}"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let e = err.expect("the init segment was never refused");
        assert!(
            matches!(e, Error::InitOversized { len, max: m, .. } if len > max && m == max),
            "{e}"
        );
        assert!(e.to_string().contains("over the 65536-byte limit"), "{e}");
        // Nothing past the limit was kept.
        assert!(a.init.is_none());
    }

    #[test]
    fn moov_that_takes_the_init_over_the_limit_is_an_error() {
        let mut a = Assembler::new(100);
        a.feed(&mkbox(b"ftyp", &[0; 50]));
        a.feed(&mkbox(b"moov", &[0; 50]));
        let e = a.next_chunk().unwrap_err();
        assert!(matches!(e, Error::InitOversized { .. }), "{e}");
    }
}
