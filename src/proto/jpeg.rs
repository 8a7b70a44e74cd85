//! JPEG frame splitter: cuts a byte stream of back-to-back JPEG images into
//! whole images.
//!
//! In: the bytes of a TCP connection, in pieces of any size ([`Splitter::feed`]);
//! cameras such as the Canon VB-C10 (port 65310) and cheap "tcp://host:port"
//! encoders send one JPEG after another, sometimes with other bytes between
//! them (a handshake reply before the first image, padding). Out: each image,
//! SOI through EOI, byte-identical to what was sent ([`Splitter::next_frame`]).
//!
//! Images are found by walking their marker structure (ITU-T T.81 annex B),
//! never by searching for EOI (FF D9): an EXIF APP1 segment usually carries a
//! thumbnail with its own SOI..EOI, which the walk skips by the segment's
//! length, and entropy-coded data holds FF bytes of its own. The walk keeps
//! its place between calls, so bytes are looked at once however the stream is
//! cut, and entropy-coded data (almost all of an image) is searched for FF a
//! block at a time.
//!
//! An image whose structure breaks is dropped and the splitter hunts for the
//! next SOI; only an image growing past the size limit is an error, because
//! then the stream is not what it should be and buffering more is unsafe.

use bytes::{Buf, Bytes, BytesMut};

/// A limit well above any camera's JPEG (a 4K image at high quality is a few
/// megabytes) that still bounds the memory a bad stream can take.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Why splitting stopped. `pos` is the stream offset of the image's SOI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The image grew (or a segment length said it would grow) past the limit
    /// before its EOI.
    #[error("jpeg at byte {pos} is over the {max}-byte limit")]
    TooLarge { pos: u64, max: usize },
}

/// Why the last dropped image was dropped, for the I/O layer to report.
/// `pos` is the stream offset of its SOI, `at` of the byte where its
/// structure broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken jpeg at byte {pos}: {what} at byte {at}")]
pub struct Broken {
    pub pos: u64,
    pub at: u64,
    pub what: &'static str,
}

/// Counters since the splitter was made. Every byte fed ends up in exactly
/// one place: a returned frame, `skipped_bytes`, or [`Splitter::buffered`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Images returned by [`Splitter::next_frame`].
    pub frames: u64,
    /// Bytes not returned in any image: junk before and between images, and
    /// the bytes of dropped images.
    pub skipped_bytes: u64,
    /// Images dropped because their structure broke.
    pub bad_frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between images: looking for SOI. At most a trailing FF stays buffered.
    Hunt,
    /// In an image, where a marker (possibly after fill bytes) must be.
    Marker,
    /// In an image's entropy-coded data, after an SOS header.
    Entropy,
}

/// What one step of the walk found.
enum Step {
    /// The walk moved on; take another step.
    Continue,
    /// More bytes are needed.
    More,
    /// The image ends here (EOI included): `buf[..end]`.
    End(usize),
    /// The image is broken at `buf[at]`.
    Broken { at: usize, what: &'static str },
}

/// Splits a byte stream, fed in pieces of any size, into whole JPEG images.
///
/// An image is dropped (counted in [`Stats::bad_frames`], explained by
/// [`Splitter::last_broken`]) where a byte other than FF stands where a marker
/// must be; where the marker is FF 00, an SOI, an RSTn outside a scan, or a
/// reserved code (02-BF); at a segment length under 2; at an SOS before any
/// SOFn; at an EOI before any SOS. JPEG-LS is not supported: its scans let
/// FF be followed by 01-7F, which ends the scan here.
///
/// An image larger than `max_frame` is an error as soon as the walk proves it
/// (a segment length that reaches past the limit is enough), so a bad stream
/// cannot make the splitter buffer without limit. The error is sticky: every
/// later call repeats it.
#[derive(Debug)]
pub struct Splitter {
    buf: BytesMut,
    /// Stream offset of `buf[0]`; in an image, of its SOI.
    base: u64,
    state: State,
    /// In an image: index in `buf` of the next byte the walk looks at. Past
    /// the end of `buf` while a segment body has not all arrived.
    pos: usize,
    /// A frame header (SOFn) has been seen in this image.
    seen_sof: bool,
    /// A scan (SOS) has been seen in this image.
    seen_sos: bool,
    max_frame: usize,
    stats: Stats,
    last_broken: Option<Broken>,
    failed: Option<Error>,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Splitter {
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            base: 0,
            state: State::Hunt,
            pos: 0,
            seen_sof: false,
            seen_sos: false,
            max_frame,
            stats: Stats::default(),
            last_broken: None,
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

    /// The next whole image, SOI through EOI exactly as sent; `Ok(None)` if
    /// more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        loop {
            let step = match self.state {
                State::Hunt => {
                    if self.hunt() {
                        continue;
                    }
                    return Ok(None);
                }
                State::Marker => self.marker(),
                State::Entropy => self.entropy(),
            };
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::More) => return Ok(None),
                Ok(Step::End(end)) => {
                    // `end` is just past an EOI read out of `buf`.
                    let frame = self.buf.split_to(end).freeze();
                    self.base += end as u64;
                    self.stats.frames += 1;
                    self.state = State::Hunt;
                    return Ok(Some(frame));
                }
                Ok(Step::Broken { at, what }) => self.drop_image(at, what),
                Err(err) => {
                    self.failed = Some(err.clone());
                    self.buf = BytesMut::new();
                    self.state = State::Hunt;
                    return Err(err);
                }
            }
        }
    }

    /// An image is partly received (a caller closing the stream now drops it).
    pub fn in_frame(&self) -> bool {
        self.state != State::Hunt
    }

    /// Bytes fed but not yet returned in an image or skipped.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream bytes consumed so far (returned in images or skipped): the
    /// stream offset of the first buffered byte.
    pub fn position(&self) -> u64 {
        self.base
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Why the most recently dropped image was dropped.
    pub fn last_broken(&self) -> Option<&Broken> {
        self.last_broken.as_ref()
    }

    /// Drops bytes up to the next SOI. True if an image now starts at
    /// `buf[0]` (and the walk is set up for it).
    fn hunt(&mut self) -> bool {
        let mut from = 0;
        let (drop, found) = loop {
            let Some(ff) = self.buf.get(from..).and_then(find_ff) else {
                break (self.buf.len(), false);
            };
            let ff = from + ff;
            match self.buf.get(ff + 1) {
                Some(0xD8) => break (ff, true),
                Some(_) => from = ff + 1,
                // Keep a trailing FF: the next piece may start with D8.
                None => break (ff, false),
            }
        };
        self.buf.advance(drop);
        self.base += drop as u64;
        self.stats.skipped_bytes += drop as u64;
        if found {
            self.state = State::Marker;
            self.pos = 2;
            self.seen_sof = false;
            self.seen_sos = false;
        }
        found
    }

    /// Abandons the image at `buf[0]`, which broke at `buf[at]`; the hunt
    /// for the next SOI starts there. Every byte before `at` was walked as
    /// part of this image, so an SOI among them (an EXIF thumbnail's) is not
    /// a new image. The price: an image cut off inside a header segment hides
    /// the start of the next image in that segment's body, and both are lost.
    fn drop_image(&mut self, at: usize, what: &'static str) {
        // The first two bytes are the SOI, which is never where an image
        // breaks; stepping past them at least guarantees progress.
        let at = at.max(2).min(self.buf.len());
        self.last_broken = Some(Broken {
            pos: self.base,
            at: self.base + at as u64,
            what,
        });
        self.buf.advance(at);
        self.base += at as u64;
        self.stats.skipped_bytes += at as u64;
        self.stats.bad_frames += 1;
        self.state = State::Hunt;
    }

    /// Errors if the image is proven to hold more than `max_frame` bytes:
    /// `len` of them are known to belong to it and it has not ended.
    fn check_len(&self, len: usize) -> Result<(), Error> {
        if len > self.max_frame {
            return Err(Error::TooLarge {
                pos: self.base,
                max: self.max_frame,
            });
        }
        Ok(())
    }

    /// One marker, or marker segment, at `pos` (T.81 B.1.1.2-B.1.1.4).
    fn marker(&mut self) -> Result<Step, Error> {
        let buf = &self.buf[..];
        let Some(&first) = buf.get(self.pos) else {
            return Ok(Step::More);
        };
        if first != 0xFF {
            return Ok(Step::Broken {
                at: self.pos,
                what: "no marker where one must be",
            });
        }
        // Any number of fill bytes (FF) may precede a marker (T.81 B.1.1.2);
        // move to the last FF so a long run is never walked twice.
        let after = buf.get(self.pos + 1..).unwrap_or_default();
        let Some((fill, code)) = skip_fill(after) else {
            self.pos += after.len();
            self.check_len(self.pos)?;
            return Ok(Step::More);
        };
        self.pos += fill;
        self.check_len(self.pos)?;
        let at = self.pos;
        let broken = |what| Ok(Step::Broken { at, what });
        match code {
            0xD9 => {
                self.check_len(at + 2)?;
                if !self.seen_sos {
                    return broken("end of image before any scan");
                }
                Ok(Step::End(at + 2))
            }
            // TEM: a marker without a length.
            0x01 => {
                self.pos = at + 2;
                self.check_len(self.pos)?;
                Ok(Step::Continue)
            }
            0xD8 => broken("start of image inside an image"),
            0xD0..=0xD7 => broken("restart marker outside a scan"),
            0x00 => broken("stuffed zero where a marker must be"),
            0x02..=0xBF => broken("reserved marker"),
            _ => {
                let Some(&[hi, lo]) = buf.get(at + 2..at + 4) else {
                    return Ok(Step::More);
                };
                // The length counts itself but not the marker (T.81 B.1.1.4).
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len < 2 {
                    return broken("segment length under 2");
                }
                let end = at + 2 + len;
                // Before the body arrives: the limit bounds what is buffered.
                self.check_len(end)?;
                match code {
                    // SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC).
                    0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => self.seen_sof = true,
                    0xDA => {
                        if !self.seen_sof {
                            return broken("scan before a frame header");
                        }
                        self.seen_sos = true;
                        self.state = State::Entropy;
                    }
                    _ => {}
                }
                self.pos = end;
                Ok(Step::Continue)
            }
        }
    }

    /// Entropy-coded data from `pos` (T.81 B.1.1.5) up to the marker that
    /// ends the scan.
    fn entropy(&mut self) -> Result<Step, Error> {
        let buf = &self.buf[..];
        let mut pos = self.pos;
        let step = loop {
            let Some(ff) = buf.get(pos..).and_then(find_ff) else {
                pos = pos.max(buf.len());
                break Step::More;
            };
            let ff = pos + ff;
            // FF 00 is a data byte FF; FF D0-D7 a restart marker, part of the
            // scan; any other marker ends it. Fill bytes may precede either
            // marker (B.1.1.2), and decoders take FF..FF 00 as one data FF.
            let after = buf.get(ff + 1..).unwrap_or_default();
            let Some((fill, code)) = skip_fill(after) else {
                // Wait at the last FF: what follows the run decides.
                pos = ff + after.len();
                break Step::More;
            };
            match code {
                0x00 | 0xD0..=0xD7 => pos = ff + fill + 2,
                _ => {
                    pos = ff;
                    self.state = State::Marker;
                    break Step::Continue;
                }
            }
        };
        self.pos = pos;
        self.check_len(pos)?;
        Ok(step)
    }
}

/// The first byte of `data` that is not FF, and its index.
fn skip_fill(data: &[u8]) -> Option<(usize, u8)> {
    data.iter()
        .enumerate()
        .find(|&(_, &b)| b != 0xFF)
        .map(|(i, &b)| (i, b))
}

/// Index of the first FF in `data`.
fn find_ff(data: &[u8]) -> Option<usize> {
    // Whole blocks first: a fixed-size block without an early exit compiles
    // to a few vector compares, several times faster than a byte loop on
    // entropy-coded data, where FF is about one byte in 256.
    const BLOCK: usize = 32;
    let mut blocks = data.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | (b == 0xFF)) {
            return block.iter().position(|&b| b == 0xFF).map(|i| base + i);
        }
        base += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| b == 0xFF)
        .map(|i| base + i)
}

/// Width and height from a whole JPEG's frame header (SOFn), found by
/// walking the marker segments from SOI; `None` if there is none before the
/// first scan or the structure is broken.
pub fn dimensions(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2usize;
    loop {
        // Fill bytes may precede a marker.
        while *jpeg.get(i)? == 0xFF && *jpeg.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *jpeg.get(i)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        match marker {
            // SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC): length,
            // precision, height, width.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let h = u16::from_be_bytes([*jpeg.get(i + 5)?, *jpeg.get(i + 6)?]);
                let w = u16::from_be_bytes([*jpeg.get(i + 7)?, *jpeg.get(i + 8)?]);
                return Some((w, h));
            }
            0xDA | 0xD9 => return None,
            _ if len < 2 => return None,
            _ => i = i.checked_add(2 + len)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // testdata/jpeg/*.jpg: see testdata/README.md.
    const SMALL: &[u8] = include_bytes!("../../testdata/jpeg/small.jpg");
    const RESTART: &[u8] = include_bytes!("../../testdata/jpeg/restart.jpg");
    const THUMB: &[u8] = include_bytes!("../../testdata/jpeg/thumb.jpg");

    const SOI: &[u8] = &[0xFF, 0xD8];
    const EOI: &[u8] = &[0xFF, 0xD9];

    /// A marker segment: FF, `code`, the length, `body`.
    fn seg(code: u8, body: &[u8]) -> Vec<u8> {
        let len = u16::try_from(body.len() + 2).expect("test segment fits");
        let mut out = vec![0xFF, code];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Everything the splitter gives until it needs more bytes or fails.
    fn drain(s: &mut Splitter, frames: &mut Vec<Bytes>) -> Option<Error> {
        loop {
            match s.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return None,
                Err(err) => return Some(err),
            }
        }
    }

    /// Feeds `pieces` one after another, draining after each.
    fn split_pieces<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
        max: usize,
    ) -> (Vec<Bytes>, Option<Error>, Splitter) {
        let mut s = Splitter::new(max);
        let mut frames = Vec::new();
        let mut err = None;
        for piece in pieces {
            s.feed(piece);
            err = drain(&mut s, &mut frames);
        }
        (frames, err, s)
    }

    fn split(data: &[u8], max: usize) -> (Vec<Bytes>, Option<Error>, Splitter) {
        split_pieces([data], max)
    }

    /// Index of the first `needle` in `data`.
    fn find(data: &[u8], needle: &[u8]) -> usize {
        data.windows(needle.len())
            .position(|w| w == needle)
            .expect("needle in test data")
    }

    /// `outer` with an EXIF APP1 segment right after its SOI, where cameras
    /// put it, holding `thumb` as the thumbnail: a TIFF header, an empty
    /// IFD0, and an IFD1 whose JPEGInterchangeFormat points at `thumb`.
    fn with_exif_thumbnail(outer: &[u8], thumb: &[u8]) -> Vec<u8> {
        let entry = |tag: u16, kind: u16, value: u32| {
            let mut e = tag.to_be_bytes().to_vec();
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&1u32.to_be_bytes());
            match kind {
                3 => e.extend_from_slice(&[(value >> 8) as u8, value as u8, 0, 0]),
                _ => e.extend_from_slice(&value.to_be_bytes()),
            }
            e
        };
        let thumb_at = 8 + 6 + 2 + 3 * 12 + 4;
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 14]); // IFD0: no entries, IFD1 at 14
        tiff.extend_from_slice(&[0, 3]);
        tiff.extend(entry(0x0103, 3, 6)); // Compression: JPEG
        tiff.extend(entry(0x0201, 4, thumb_at)); // JPEGInterchangeFormat
        tiff.extend(entry(0x0202, 4, thumb.len() as u32)); // ...Length
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(tiff.len(), thumb_at as usize);
        tiff.extend_from_slice(thumb);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        [SOI, &seg(0xE1, &app1), &outer[2..]].concat()
    }

    /// A progressive JPEG's structure: tables between two scans, a
    /// restart interval, FF 00 and RST in the entropy-coded data. Not
    /// decodable; the splitter only walks the structure.
    fn progressive() -> Vec<u8> {
        let mut dht_dc = vec![0x00, 1];
        dht_dc.extend_from_slice(&[0; 15]);
        dht_dc.push(0); // one 1-bit code, for category 0
        let mut dht_ac = dht_dc.clone();
        dht_ac[0] = 0x10;
        [
            SOI,
            &seg(0xDB, &[0; 65]),
            &seg(0xC2, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]),
            &seg(0xDD, &[0, 1]),
            &seg(0xC4, &dht_dc),
            // DC first scan of component 1, successive approximation Al=1.
            &seg(0xDA, &[1, 1, 0x00, 0, 0, 0x01]),
            &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0x00],
            &seg(0xC4, &dht_ac),
            // AC scan, coefficients 1-63.
            &seg(0xDA, &[1, 1, 0x00, 1, 63, 0x00]),
            &[0xAB, 0xFF, 0x00, 0xFF, 0xD1, 0xCD],
            EOI,
        ]
        .concat()
    }

    /// Junk as it appears before and between images: text, a lone FF,
    /// fill-like FF runs, and an EOI with no image.
    const JUNK: &[u8] = b"camera says hi\r\n\xFF\x00\xFF\xFF\xFF\xD9\xFF";

    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let images = vec![
            THUMB.to_vec(),
            with_exif_thumbnail(SMALL, THUMB),
            progressive(),
            RESTART.to_vec(),
        ];
        let data = [
            JUNK, &images[0], &images[1], JUNK, &images[2], &[0; 7], &images[3], JUNK,
        ]
        .concat();
        (data, images)
    }

    fn assert_one_frame(data: &[u8]) {
        let (frames, err, s) = split(data, DEFAULT_MAX_FRAME);
        assert_eq!(err, None);
        assert_eq!(frames, vec![Bytes::copy_from_slice(data)]);
        assert_eq!(
            s.stats(),
            &Stats {
                frames: 1,
                skipped_bytes: 0,
                bad_frames: 0
            }
        );
        assert_eq!(s.position(), data.len() as u64);
        assert_eq!(s.buffered(), 0);
        assert!(!s.in_frame());
    }

    #[test]
    fn ffmpeg_jpeg_with_stuffed_ff_in_entropy_data() {
        // The quirk is there: FF bytes in the scan, escaped as FF 00.
        let scan = find(SMALL, &[0xFF, 0xDA]);
        assert!(SMALL[scan..].windows(2).any(|w| w == [0xFF, 0x00]));
        assert_one_frame(SMALL);
        assert_one_frame(THUMB);
    }

    #[test]
    fn restart_markers_in_entropy_data() {
        // ffmpeg's slice-threaded MJPEG encoder: DRI, then RST0-RST6.
        let scan = find(RESTART, &[0xFF, 0xDA]);
        for rst in 0xD0..=0xD6 {
            assert!(RESTART[scan..].windows(2).any(|w| w == [0xFF, rst]));
        }
        assert_one_frame(RESTART);
    }

    #[test]
    fn exif_thumbnail_with_its_own_eoi() {
        let image = with_exif_thumbnail(SMALL, THUMB);
        // A search for FF D9 would end the image at the thumbnail's EOI.
        assert!(find(&image, EOI) < image.len() - 2);
        assert_one_frame(&image);
    }

    #[test]
    fn progressive_two_scans_with_tables_between() {
        assert_one_frame(&progressive());
    }

    #[test]
    fn fill_bytes_before_markers() {
        // FF FF before a segment, before a restart marker inside the scan,
        // and before the EOI that ends the scan (T.81 B.1.1.2).
        let dqt = find(RESTART, &[0xFF, 0xDB]);
        let rst = find(RESTART, &[0xFF, 0xD0]);
        let end = RESTART.len() - 2;
        let image = [
            &RESTART[..dqt],
            &[0xFF, 0xFF],
            &RESTART[dqt..rst],
            &[0xFF, 0xFF, 0xFF],
            &RESTART[rst..end],
            &[0xFF],
            &RESTART[end..],
        ]
        .concat();
        assert_one_frame(&image);
    }

    #[test]
    fn junk_before_and_between_images() {
        let (data, images) = stream();
        let (frames, err, s) = split(&data, DEFAULT_MAX_FRAME);
        assert_eq!(err, None);
        assert_eq!(frames, images);
        let image_bytes: usize = images.iter().map(Vec::len).sum();
        assert_eq!(
            s.stats(),
            &Stats {
                frames: 4,
                // The last junk's trailing FF stays buffered: it could start
                // an SOI.
                skipped_bytes: (data.len() - image_bytes - 1) as u64,
                bad_frames: 0,
            }
        );
        assert_eq!(s.buffered(), 1);
        assert_eq!(s.position(), data.len() as u64 - 1);
        assert!(!s.in_frame());
        assert_eq!(s.last_broken(), None);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let (data, images) = stream();
        let (_, _, whole) = split(&data, DEFAULT_MAX_FRAME);
        for at in 0..=data.len() {
            let (a, b) = data.split_at(at);
            let (frames, err, s) = split_pieces([a, b], DEFAULT_MAX_FRAME);
            assert_eq!(err, None, "split at {at}");
            assert_eq!(frames, images, "split at {at}");
            assert_eq!(s.stats(), whole.stats(), "split at {at}");
            assert_eq!(s.buffered(), whole.buffered(), "split at {at}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let (data, images) = stream();
        let (frames, err, s) = split_pieces(data.chunks(1), DEFAULT_MAX_FRAME);
        assert_eq!(err, None);
        assert_eq!(frames, images);
        let (_, _, whole) = split(&data, DEFAULT_MAX_FRAME);
        assert_eq!(s.stats(), whole.stats());
    }

    #[test]
    fn partly_received_image() {
        let mut s = Splitter::new(DEFAULT_MAX_FRAME);
        s.feed(JUNK);
        s.feed(&SMALL[..100]);
        assert_eq!(s.next_frame(), Ok(None));
        assert!(s.in_frame());
        assert_eq!(s.buffered(), 100);
        assert_eq!(s.position(), JUNK.len() as u64);
        s.feed(&SMALL[100..]);
        assert_eq!(s.next_frame(), Ok(Some(Bytes::from_static(SMALL))));
        assert!(!s.in_frame());
        assert_eq!(s.position(), (JUNK.len() + SMALL.len()) as u64);
    }

    #[test]
    fn camera_cut_an_image_short_mid_stream() {
        // The rest of the stream goes on with the next image's SOI, which
        // shows up in the cut image's entropy-coded data.
        let cut = 2000;
        assert!(cut > find(RESTART, &[0xFF, 0xDA]));
        let data = [SMALL, &RESTART[..cut], THUMB].concat();
        let (frames, err, s) = split(&data, DEFAULT_MAX_FRAME);
        assert_eq!(err, None);
        assert_eq!(frames, [SMALL, THUMB]);
        assert_eq!(
            s.stats(),
            &Stats {
                frames: 2,
                skipped_bytes: cut as u64,
                bad_frames: 1,
            }
        );
        let broken = s.last_broken().expect("a broken image");
        assert_eq!(
            broken.to_string(),
            format!(
                "broken jpeg at byte {}: start of image inside an image at byte {}",
                SMALL.len(),
                SMALL.len() + cut
            )
        );
    }

    #[test]
    fn structure_errors_drop_the_image_and_resync() {
        let sof = seg(0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
        let sos = seg(0xDA, &[1, 1, 0, 0, 63, 0]);
        let cases: [(&str, Vec<u8>); 8] = [
            (
                "segment length under 2",
                [SOI, &[0xFF, 0xE0, 0, 1]].concat(),
            ),
            ("reserved marker", [SOI, &[0xFF, 0x02, 0, 4, 0, 0]].concat()),
            ("end of image before any scan", [SOI, &sof, EOI].concat()),
            (
                "scan before a frame header",
                [SOI, &sos, &[1, 2], EOI].concat(),
            ),
            ("no marker where one must be", [SOI, &sof, b"x"].concat()),
            (
                "restart marker outside a scan",
                [SOI, &sof, &[0xFF, 0xD0]].concat(),
            ),
            (
                "stuffed zero where a marker must be",
                [SOI, &[0xFF, 0x00]].concat(),
            ),
            (
                "start of image inside an image",
                [SOI, &seg(0xFE, b"hi")].concat(),
            ),
        ];
        for (what, broken) in cases {
            let data = [&broken, THUMB, &broken, SMALL].concat();
            let (frames, err, s) = split(&data, DEFAULT_MAX_FRAME);
            assert_eq!(err, None, "{what}");
            assert_eq!(frames, [THUMB, SMALL], "{what}");
            assert_eq!(s.stats().bad_frames, 2, "{what}");
            assert_eq!(s.stats().skipped_bytes, 2 * broken.len() as u64, "{what}");
            assert_eq!(s.last_broken().map(|b| b.what), Some(what));
        }
    }

    #[test]
    fn image_cut_inside_a_header_segment_hides_the_next_soi() {
        // SMALL's APP0 segment is bytes 2..20. Cut at 10, its length swallows
        // RESTART's first 10 bytes; the walk breaks inside RESTART's APP0,
        // past RESTART's SOI, so RESTART is lost too. Resuming the hunt
        // inside the walked bytes would instead find EXIF thumbnails.
        let data = [&SMALL[..10], RESTART, THUMB].concat();
        let (frames, err, s) = split(&data, DEFAULT_MAX_FRAME);
        assert_eq!(err, None);
        assert_eq!(frames, [THUMB]);
        assert_eq!(s.stats().bad_frames, 1);
        assert_eq!(s.stats().skipped_bytes, (10 + RESTART.len()) as u64);
    }

    #[test]
    fn too_large_is_fatal_and_sticky() {
        assert!(RESTART.len() < SMALL.len());
        let data = [JUNK, RESTART, SMALL, THUMB].concat();
        let max = RESTART.len();
        let (frames, err, mut s) = split(&data, max);
        // An image of exactly the limit is fine.
        assert_eq!(frames, [RESTART]);
        let pos = (JUNK.len() + RESTART.len()) as u64;
        let want = Error::TooLarge { pos, max };
        assert_eq!(err, Some(want.clone()));
        assert_eq!(
            want.to_string(),
            format!("jpeg at byte {pos} is over the {max}-byte limit")
        );
        s.feed(THUMB);
        assert_eq!(s.next_frame(), Err(want.clone()));
        assert_eq!(s.next_frame(), Err(want));
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn too_large_known_from_a_segment_length_before_its_body() {
        let mut s = Splitter::new(1000);
        s.feed(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF]);
        assert_eq!(s.next_frame(), Err(Error::TooLarge { pos: 0, max: 1000 }));
    }

    #[test]
    fn too_large_in_entropy_data() {
        let max = SMALL.len() - 3;
        let (frames, err, _) = split_pieces(SMALL.chunks(100), max);
        assert_eq!(frames, Vec::<Bytes>::new());
        assert_eq!(err, Some(Error::TooLarge { pos: 0, max }));
    }

    #[test]
    fn dimensions_come_from_the_frame_header_past_an_exif_thumbnail() {
        let small = include_bytes!("../../testdata/jpeg/small.jpg");
        assert_eq!(dimensions(small), Some((160, 120)));
        let thumb = include_bytes!("../../testdata/jpeg/thumb.jpg");
        // An APP1 segment holding a whole other JPEG comes first.
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_thumb.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        with_thumb.extend_from_slice(thumb);
        with_thumb.extend_from_slice(&small[2..]);
        assert_eq!(dimensions(&with_thumb), Some((160, 120)));
        assert_eq!(dimensions(b"not a jpeg"), None);
        assert_eq!(dimensions(&small[..20]), None);
    }
}
