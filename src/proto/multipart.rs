//! Splits an HTTP `multipart/x-mixed-replace` (or `multipart/mixed`) body
//! into its parts: the way MJPEG-over-HTTP cameras send one JPEG after
//! another (RFC 2046 §5.1, as cameras actually implement it).
//!
//! In: the response body, in pieces of any size (TCP segments split it
//! anywhere), and the boundary from the response's `Content-Type`
//! ([`boundary_from_content_type`]). Out: [`Part`]s, each with its headers and
//! its body exactly as the camera sent it (not copied: bodies share the
//! receive buffer).
//!
//! Cameras are sloppy, so [`Splitter`] accepts:
//! - a boundary declared with or without the `--` that starts its delimiter
//!   lines (some declare `boundary=--XYZ` and send `--XYZ`, others declare
//!   `XYZ` and send `--XYZ`);
//! - parts with `Content-Length` (read exactly that many bytes, then skip
//!   whatever precedes the next delimiter) or without it (the part ends at
//!   the next line that starts with the delimiter);
//! - a part over the limit, by its `Content-Length` or, without one, by the
//!   bytes before its delimiter: its bytes are dropped as they arrive and
//!   the stream goes on with the next part ([`Splitter::skipped_parts`]
//!   counts them), so one oversized picture costs neither memory nor the
//!   connection;
//! - CRLF or bare LF line ends, in headers and around delimiters;
//! - a preamble before the first delimiter, and trailing spaces on delimiter
//!   lines;
//! - a body that ends by the connection closing, without a closing delimiter
//!   ([`Splitter::end_of_stream`]): a last part without `Content-Length` is
//!   whole if it is exactly one whole JPEG, as walked by [`jpeg`] (some
//!   cameras and scripts close after the last part, or after a single one).
//!
//! [`sniff`] tells a multipart body from others by its first bytes, and
//! finds its boundary there: servers that declare another `Content-Type`
//! (ffmpeg's and VLC's `mpjpeg` say `application/octet-stream`), another
//! boundary, or none at all.
//!
//! The writer goes the other way, for servers (the simulated camera, a
//! relay): [`write_part`] makes one part, with `Content-Length` so that
//! clients need not search the body for the delimiter, and
//! [`content_type_with_boundary`] the response's `Content-Type`. What they
//! write, [`Splitter`] reads back unchanged.
//!
//! Everything here reads untrusted bytes: part bodies are bounded by the
//! caller's maximum, part headers by [`MAX_HEADER_BYTES`] and
//! [`MAX_HEADER_LINES`], and bytes that will never be returned (preamble,
//! junk between parts) are dropped as soon as they are scanned.

use bytes::{Buf, Bytes, BytesMut};

use super::jpeg;

/// A sensible bound on one part's body: far above any camera's JPEG.
pub const DEFAULT_MAX_PART: usize = 16 << 20;

/// Bound on one part's header block, blank line included. Cameras send a
/// few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Bound on the number of header lines in one part, so that a flood of tiny
/// headers cannot cost more memory than their bytes suggest.
pub const MAX_HEADER_LINES: usize = 256;

/// Longest header value kept in an error message.
const MAX_ERROR_VALUE: usize = 64;

/// One part of the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// All header lines, in order, names and values trimmed and otherwise as
    /// sent (invalid UTF-8 replaced). Lines without a colon are dropped.
    pub headers: Vec<(String, String)>,
    /// Exactly the bytes the camera sent between the header block and the
    /// next delimiter (or the `Content-Length` bytes).
    pub body: Bytes,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `X-Timestamp` header (seconds, e.g. `1700000000.123`) as sent by
    /// mjpg-streamer and cameras modelled on it; `None` if absent or not a
    /// plain decimal number.
    pub timestamp: Option<f64>,
}

impl Part {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why the body could not be split. `pos` is a byte offset in the multipart
/// body (the first byte fed is 0). Errors are fatal: the stream cannot be
/// trusted or would need too much memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A part's `Content-Length` is too large to represent (a part that is
    /// merely over the limit given to [`Splitter::new`] is skipped).
    /// `pos` is where the part's headers begin.
    #[error("multipart part at byte {pos} is larger than the {max}-byte limit")]
    TooLarge { pos: u64, max: usize },
    /// A part's header block is over [`MAX_HEADER_BYTES`] bytes or
    /// [`MAX_HEADER_LINES`] lines (often: the boundary is wrong and a JPEG is
    /// being read as headers). `pos` is where the header block begins.
    #[error("multipart part headers at byte {pos} are over {MAX_HEADER_BYTES} bytes or {MAX_HEADER_LINES} lines")]
    HeadersTooLarge { pos: u64 },
    /// A `Content-Length` header that is not a decimal number, or that
    /// contradicts an earlier one in the same part. `pos` is the header line.
    #[error("multipart part header at byte {pos} has a bad content-length {value:?}")]
    BadContentLength { pos: u64, value: String },
    /// The stream ended ([`Splitter::end_of_stream`]) inside a part: in its
    /// headers, before its `Content-Length` bytes, or, for a part without
    /// `Content-Length`, with a body that is not one whole JPEG. `pos` is
    /// where the part's headers begin.
    #[error("multipart part at byte {pos} was cut off by the end of the stream")]
    Truncated { pos: u64 },
}

/// The boundary parameter of a `Content-Type` header value such as
/// `multipart/x-mixed-replace; boundary="XYZ"`, unquoted but otherwise as
/// declared (a leading `--` is kept; [`Splitter::new`] copes with either).
///
/// The parameter name is matched case-insensitively, among any others, with
/// spaces around `;` and `=` tolerated. An unquoted value runs to the next `;`
/// (trailing spaces dropped), so that an unquoted boundary with a space in it
/// (`--video boundary--`) is not cut short. The media type itself is not
/// checked. `None` if there is no non-empty boundary.
pub fn boundary_from_content_type(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return None;
        }
        // A parameter name, or a bare token such as the media type.
        let name_end = rest
            .find(|c: char| c == '=' || c == ';' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        let after = after.trim_start();
        let Some(after_eq) = after.strip_prefix('=') else {
            rest = after;
            continue;
        };
        let after_eq = after_eq.trim_start();
        let (param, next) = match after_eq.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                let (param, next) = after_eq.split_at(end);
                (param.trim_end().to_owned(), next)
            }
        };
        if name.eq_ignore_ascii_case("boundary") {
            return (!param.is_empty()).then_some(param);
        }
        rest = next;
    }
}

/// Bytes [`sniff`] looks at, at most: a delimiter line and a part's first
/// header line fit in far less.
pub const SNIFF_BYTES: usize = 4096;

/// Longest boundary [`sniff`] accepts: RFC 2046 allows 70 characters;
/// cameras stay well within that, and a long first line is text, not a
/// delimiter.
const MAX_SNIFFED_BOUNDARY: usize = 200;

/// What the first bytes of a body say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// Too few bytes to tell yet: feed more (or call again with `ended`).
    NeedMore,
    /// A multipart body: it begins with a delimiter line and a part's
    /// headers. The boundary as its delimiter spells it, without the `--`
    /// that starts every delimiter line (the form [`Splitter::new`] takes).
    Multipart { boundary: String },
    /// Not a multipart body.
    Other,
}

/// Tells a multipart body from others by how it begins, whatever the
/// response's `Content-Type` says: line ends or spaces (VLC starts with a
/// CRLF), then `--boundary` alone on its line, then a part's first header
/// line (`Name: value`), or a blank line directly followed by a JPEG's SOI.
/// `prefix` is the body so far; `ended` says no more will come.
///
/// A JPEG, MPEG-TS, MP4, FLV or text body cannot begin that way, so this
/// never takes a container libavformat should read for multipart.
pub fn sniff(prefix: &[u8], ended: bool) -> Sniff {
    let undecided = || {
        if ended || prefix.len() >= SNIFF_BYTES {
            Sniff::Other
        } else {
            Sniff::NeedMore
        }
    };
    let start = prefix
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
    let Some(start) = start else {
        return undecided();
    };
    let rest = prefix.get(start..).unwrap_or_default();
    // The delimiter line: `--`, the boundary, optional padding, a line end.
    for (i, want) in b"--".iter().enumerate() {
        match rest.get(i) {
            None => return undecided(),
            Some(b) if b != want => return Sniff::Other,
            Some(_) => {}
        }
    }
    let Some(nl) = find_byte(rest, b'\n') else {
        return if rest.len() > MAX_SNIFFED_BOUNDARY + 4 {
            Sniff::Other
        } else {
            undecided()
        };
    };
    let line = rest.get(2..nl).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let boundary = line.trim_ascii_end();
    let printable = boundary.iter().all(|&b| (0x20..0x7f).contains(&b));
    if boundary.is_empty() || boundary.len() > MAX_SNIFFED_BOUNDARY || !printable {
        return Sniff::Other;
    }
    let multipart = || Sniff::Multipart {
        boundary: String::from_utf8_lossy(boundary).into_owned(),
    };
    // The part's first line: a header, or the blank line before its body.
    let after = rest.get(nl + 1..).unwrap_or_default();
    if after == b"\r" {
        return undecided();
    }
    let blank = after
        .strip_prefix(b"\r\n")
        .or_else(|| after.strip_prefix(b"\n"));
    if let Some(body) = blank {
        return match body.get(..2) {
            Some([0xff, 0xd8]) => multipart(),
            Some(_) => Sniff::Other,
            None if body.len() == 1 && body.first() != Some(&0xff) => Sniff::Other,
            None => undecided(),
        };
    }
    // RFC 9110 §5.6.2 token characters, then a colon.
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let name_len = after.iter().take_while(|&&b| is_tchar(b)).count();
    match after.get(name_len) {
        Some(b':') if name_len > 0 => multipart(),
        Some(_) => Sniff::Other,
        None if name_len >= 256 => Sniff::Other,
        None => undecided(),
    }
}

/// The contents of a quoted string (RFC 9110 §5.6.4) whose opening quote is
/// already consumed, and what follows its closing quote. An unterminated
/// string runs to the end.
fn unquote(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, s.get(i + 1..).unwrap_or_default()),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    out.push(escaped);
                }
            }
            c => out.push(c),
        }
    }
    (out, "")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a delimiter line: before the first part (the preamble),
    /// or after a `Content-Length` body (the line end and any junk).
    Seek,
    /// A delimiter matched; skipping the rest of its line (transport padding).
    DelimiterLine,
    /// Reading the part's header lines.
    Headers,
    /// Reading the part's body: `content_length` bytes, or up to a delimiter.
    Body,
    /// Dropping the body of a part whose `Content-Length` is over the limit:
    /// `skip_left` bytes to go.
    Skip,
    /// Saw the closing delimiter; the rest (the epilogue) is ignored.
    Finished,
    /// The stream ended without a closing delimiter
    /// ([`Splitter::end_of_stream`]); nothing more will come.
    Ended,
}

/// Outcome of matching a delimiter at a line start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// A delimiter of `len` bytes (dashes, boundary and, if `close`, the
    /// closing `--`), followed by the end of its line unless `close`.
    Yes {
        len: usize,
        close: bool,
    },
    No,
    /// The buffer ends before this can be decided.
    NeedMore,
}

/// Outcome of searching the buffer for a delimiter line.
enum Search {
    /// A delimiter starts at `line`, the first byte of its line.
    Found {
        line: usize,
        len: usize,
        close: bool,
    },
    /// None yet; a delimiter may still start at `undecided` (the one line
    /// start the buffer ends too early to judge), or else only after the
    /// buffer's end.
    NotYet { undecided: Option<usize> },
}

enum Step {
    Continue,
    Part(Part),
    NeedMore,
}

/// Cuts a multipart body, fed in arbitrary pieces, into [`Part`]s.
///
/// ```
/// use camflow::proto::multipart::{Splitter, DEFAULT_MAX_PART};
/// let mut s = Splitter::new("XYZ", DEFAULT_MAX_PART);
/// s.feed(b"--XYZ\r\nContent-Type: image/jpeg\r\nContent-Length: 3\r\n\r\nabc\r\n--X");
/// let part = s.next_part().unwrap().unwrap();
/// assert_eq!(&part.body[..], b"abc");
/// assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
/// assert_eq!(s.next_part(), Ok(None));
/// ```
#[derive(Debug)]
pub struct Splitter {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    pos: u64,
    /// The boundary without any leading `--`.
    core: Vec<u8>,
    /// The declared boundary began with `--`: accept `----core` lines (the
    /// RFC reading) as well as `--core` (what such cameras send).
    alt: bool,
    max_part: usize,
    state: State,
    /// Where the search for the next `\n` resumes: everything before it has
    /// been judged already.
    scan: usize,
    /// `buf[0]` starts a line (the start of the stream, just after a
    /// `Content-Length` body or a header block), so a delimiter may sit there.
    at_line_start: bool,
    /// Stream offset of the current part's header block.
    part_pos: u64,
    headers: Vec<(String, String)>,
    header_bytes: usize,
    content_length: Option<usize>,
    /// [`State::Skip`]: bytes of the oversized body still to drop.
    skip_left: usize,
    /// [`State::Body`] without `Content-Length`: the body is over the limit
    /// and dropped as it comes until its delimiter.
    skipping: bool,
    /// Oversized parts dropped whole so far.
    skipped: u64,
    failed: Option<Error>,
    /// [`Self::end_of_stream`] was called: no byte will follow `buf`.
    eof: bool,
}

impl Splitter {
    /// `boundary` as declared in the `Content-Type` header, with or without a
    /// leading `--`. Part bodies over `max_part` bytes are an error.
    pub fn new(boundary: &str, max_part: usize) -> Self {
        let boundary = boundary.trim();
        let (core, alt) = match boundary.strip_prefix("--") {
            Some(core) => (core, true),
            None => (boundary, false),
        };
        Self {
            buf: BytesMut::new(),
            pos: 0,
            core: core.as_bytes().to_vec(),
            alt,
            max_part,
            state: State::Seek,
            scan: 0,
            at_line_start: true,
            part_pos: 0,
            headers: Vec::new(),
            header_bytes: 0,
            content_length: None,
            skip_left: 0,
            skipping: false,
            skipped: 0,
            failed: None,
            eof: false,
        }
    }

    /// Appends received bytes. They are kept until [`Self::next_part`] hands
    /// them out or drops them, so call it after each `feed`.
    pub fn feed(&mut self, data: &[u8]) {
        // After an error or the closing delimiter nothing will be consumed
        // again; keeping the bytes would only grow memory.
        if self.failed.is_none() && self.state != State::Finished && !self.eof {
            let mut data = data;
            if self.state == State::Skip && self.buf.is_empty() {
                // An oversized body is dropped without being copied first.
                let n = self.skip_left.min(data.len());
                self.skip_left -= n;
                self.pos += n as u64;
                data = data.get(n..).unwrap_or_default();
            }
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete part, `Ok(None)` if more bytes are needed or the
    /// body is finished. Errors are sticky: every later call returns the same.
    pub fn next_part(&mut self) -> Result<Option<Part>, Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        loop {
            let step = match self.state {
                State::Seek => Ok(self.seek()),
                State::DelimiterLine => Ok(self.delimiter_line()),
                State::Headers => self.read_headers(),
                State::Body => self.read_body(),
                State::Skip => Ok(self.skip_body()),
                State::Finished | State::Ended => Ok(Step::NeedMore),
            };
            let step = match step {
                Ok(Step::NeedMore) if self.eof => self.at_end(),
                step => step,
            };
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::Part(part)) => return Ok(Some(part)),
                Ok(Step::NeedMore) => return Ok(None),
                Err(err) => {
                    self.failed = Some(err.clone());
                    self.buf = BytesMut::new();
                    self.headers = Vec::new();
                    return Err(err);
                }
            }
        }
    }

    /// The stream has ended (the connection closed): no more bytes will be
    /// fed. Returns the parts still to be returned, one per call, as
    /// [`Self::next_part`] would, then the part the end completes, if any,
    /// then `Ok(None)`; call it until `Ok(None)`.
    ///
    /// A part without `Content-Length` normally ends at the next delimiter;
    /// cameras that close the connection after the last part send none. That
    /// part counts as whole only if its body is exactly one whole JPEG (the
    /// [`jpeg`] walker reaches its EOI, nothing before its SOI), optionally
    /// followed by line ends and the start of a delimiter line the close cut
    /// short; the body returned is the JPEG alone. Anything else left inside a
    /// part (its headers, a `Content-Length` body short of its length, a body
    /// that is not a whole JPEG) is [`Error::Truncated`]. Bytes outside parts
    /// (a delimiter, junk after a `Content-Length` body) end the stream
    /// cleanly, as does a closing delimiter seen before.
    pub fn end_of_stream(&mut self) -> Result<Option<Part>, Error> {
        self.eof = true;
        self.next_part()
    }

    /// True once the closing delimiter (`--boundary--`) has been seen.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// True if a part is partly received: some of its headers or its body,
    /// but not all. A stream that ends here was dropped mid-frame.
    pub fn in_part(&self) -> bool {
        self.failed.is_none()
            && match self.state {
                State::Headers => self.header_bytes > 0 || !self.buf.is_empty(),
                State::Body | State::Skip => true,
                State::Seek | State::DelimiterLine | State::Finished | State::Ended => false,
            }
    }

    /// Parts dropped whole because they are over the limit.
    pub fn skipped_parts(&self) -> u64 {
        self.skipped
    }

    /// Bytes fed but neither returned in a part nor dropped yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the first byte not yet consumed (returned in a part,
    /// parsed as a header or delimiter, or dropped as junk).
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
        self.pos += n as u64;
    }

    /// Preamble, or what follows a `Content-Length` body: drop everything up
    /// to the next delimiter line.
    fn seek(&mut self) -> Step {
        match self.search() {
            Search::Found { line, len, close } => {
                self.consume(line);
                self.on_delimiter(len, close);
                Step::Continue
            }
            Search::NotYet { undecided } => {
                // Keep only what a delimiter may still begin with.
                let junk = undecided.unwrap_or(self.buf.len());
                self.consume(junk);
                self.scan = 0;
                self.at_line_start = undecided.is_some();
                Step::NeedMore
            }
        }
    }

    /// `buf` starts with a delimiter of `len` bytes.
    fn on_delimiter(&mut self, len: usize, close: bool) {
        self.consume(len);
        self.scan = 0;
        if close {
            self.state = State::Finished;
            self.buf = BytesMut::new();
        } else {
            self.state = State::DelimiterLine;
        }
    }

    fn delimiter_line(&mut self) -> Step {
        let Some(nl) = self.find_newline() else {
            // Padding or junk after the boundary; nothing to keep.
            self.consume(self.buf.len());
            self.scan = 0;
            return Step::NeedMore;
        };
        self.consume(nl + 1);
        self.scan = 0;
        self.state = State::Headers;
        self.part_pos = self.pos;
        self.headers.clear();
        self.header_bytes = 0;
        self.content_length = None;
        Step::Continue
    }

    fn read_headers(&mut self) -> Result<Step, Error> {
        let too_large = Error::HeadersTooLarge { pos: self.part_pos };
        let Some(nl) = self.find_newline() else {
            self.scan = self.buf.len();
            if self.header_bytes.saturating_add(self.buf.len()) > MAX_HEADER_BYTES {
                return Err(too_large);
            }
            return Ok(Step::NeedMore);
        };
        let line_len = nl + 1;
        self.header_bytes = self.header_bytes.saturating_add(line_len);
        if self.header_bytes > MAX_HEADER_BYTES {
            return Err(too_large);
        }
        let line_pos = self.pos;
        let line = self.buf.split_to(line_len);
        self.pos += line_len as u64;
        self.scan = 0;
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            match self.content_length {
                Some(len) if len > self.max_part => {
                    self.state = State::Skip;
                    self.skip_left = len;
                }
                _ => {
                    self.state = State::Body;
                    self.at_line_start = true;
                }
            }
            return Ok(Step::Continue);
        }
        // RFC 9112 §5: name ":" OWS value OWS. A line without a colon is not
        // a header; skip it rather than give up on the stream.
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Ok(Step::Continue);
        };
        if self.headers.len() >= MAX_HEADER_LINES {
            return Err(too_large);
        }
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        let name = String::from_utf8_lossy(name.trim_ascii()).into_owned();
        let value = String::from_utf8_lossy(value.trim_ascii()).into_owned();
        if name.eq_ignore_ascii_case("content-length") {
            let len = self.parse_content_length(line_pos, &value)?;
            self.content_length = Some(len);
        }
        self.headers.push((name, value));
        Ok(Step::Continue)
    }

    fn parse_content_length(&self, pos: u64, value: &str) -> Result<usize, Error> {
        let bad = || Error::BadContentLength {
            pos,
            value: value.chars().take(MAX_ERROR_VALUE).collect(),
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let too_large = Error::TooLarge {
            pos: self.part_pos,
            max: self.max_part,
        };
        // All digits, so parsing fails only by overflowing: too large.
        let Ok(len) = value.parse::<usize>() else {
            return Err(too_large);
        };
        if self.content_length.is_some_and(|prev| prev != len) {
            return Err(bad());
        }
        // Over the limit is not an error: the body is skipped (State::Skip).
        Ok(len)
    }

    fn read_body(&mut self) -> Result<Step, Error> {
        if let Some(len) = self.content_length {
            if self.buf.len() < len {
                return Ok(Step::NeedMore);
            }
            let body = self.buf.split_to(len).freeze();
            self.pos += len as u64;
            self.scan = 0;
            self.at_line_start = true;
            self.state = State::Seek;
            return Ok(Step::Part(self.finish_part(body)));
        }
        match self.search() {
            Search::Found { line, len, close } => {
                let end = self.body_end(line);
                if self.skipping || end > self.max_part {
                    // Oversized: dropped, delimiter and all, and the
                    // stream goes on with the next part.
                    self.consume(line);
                    self.on_delimiter(len, close);
                    self.skipping = false;
                    self.skipped += 1;
                    self.headers.clear();
                    self.header_bytes = 0;
                    return Ok(Step::Continue);
                }
                let body = self.buf.split_to(end).freeze();
                self.pos += end as u64;
                // The line end before the delimiter belongs to the delimiter
                // (RFC 2046 §5.1.1), not to the body.
                self.consume(line - end);
                self.on_delimiter(len, close);
                Ok(Step::Part(self.finish_part(body)))
            }
            Search::NotYet { undecided } => {
                // The body is at least this long whatever comes next; deciding
                // only then gives the same answer for any split of the input.
                let known = match undecided {
                    Some(line) => self.body_end(line),
                    None => {
                        let cr = self.buf.last() == Some(&b'\r');
                        self.buf.len() - usize::from(cr)
                    }
                };
                if self.skipping || known > self.max_part {
                    // Over the limit: what is surely body is dropped now, and
                    // the search for its delimiter goes on after it, so an
                    // oversized part costs no memory.
                    self.skipping = true;
                    self.consume(known);
                    self.scan = self.scan.saturating_sub(known);
                    if known > 0 {
                        self.at_line_start = false;
                    }
                }
                Ok(Step::NeedMore)
            }
        }
    }

    /// Drops what has arrived of an oversized body; once it is all gone,
    /// looks for the next delimiter as after any `Content-Length` body.
    fn skip_body(&mut self) -> Step {
        let n = self.skip_left.min(self.buf.len());
        self.consume(n);
        self.skip_left -= n;
        if self.skip_left > 0 {
            return Step::NeedMore;
        }
        self.skipped += 1;
        self.headers.clear();
        self.header_bytes = 0;
        self.content_length = None;
        self.scan = 0;
        self.at_line_start = true;
        self.state = State::Seek;
        Step::Continue
    }

    /// Where a body ends if a delimiter starts at `line`: before the `\n`
    /// that precedes it, and before a `\r` preceding that.
    fn body_end(&self, line: usize) -> usize {
        let Some(nl) = line.checked_sub(1) else {
            return 0;
        };
        match nl.checked_sub(1) {
            Some(cr) if self.buf.get(cr) == Some(&b'\r') => cr,
            _ => nl,
        }
    }

    /// The stream has ended and no further part is complete in `buf`: the
    /// part the end completes, an error for a part it cuts short, or nothing.
    fn at_end(&mut self) -> Result<Step, Error> {
        let truncated = Error::Truncated { pos: self.part_pos };
        let step = match self.state {
            State::Seek | State::DelimiterLine | State::Ended => Step::NeedMore,
            // The epilogue is dropped already, and `is_finished` stays true.
            State::Finished => return Ok(Step::NeedMore),
            State::Headers if self.header_bytes == 0 && self.buf.is_empty() => Step::NeedMore,
            State::Headers => return Err(truncated),
            State::Body if self.skipping => return Err(truncated),
            State::Body if self.content_length.is_some() => return Err(truncated),
            State::Skip => return Err(truncated),
            State::Body => {
                // Where the body ends if the bytes after it are the start of
                // a delimiter line that the close cut short.
                let end = match self.search() {
                    Search::NotYet {
                        undecided: Some(line),
                    } => self.body_end(line),
                    // `next_part` returns every part a whole delimiter ends.
                    Search::NotYet { undecided: None } | Search::Found { .. } => self.buf.len(),
                };
                let body = self.buf.get(..end).unwrap_or_default();
                let Some(len) = whole_jpeg(body, self.max_part) else {
                    return Err(truncated);
                };
                let body = self.buf.split_to(len).freeze();
                self.pos += len as u64;
                Step::Part(self.finish_part(body))
            }
        };
        self.consume(self.buf.len());
        self.buf = BytesMut::new();
        self.scan = 0;
        self.state = State::Ended;
        Ok(step)
    }

    fn finish_part(&mut self, body: Bytes) -> Part {
        let headers = std::mem::take(&mut self.headers);
        let content_type = header_value(&headers, "content-type").map(str::to_owned);
        let timestamp = header_value(&headers, "x-timestamp").and_then(parse_timestamp);
        self.header_bytes = 0;
        self.content_length = None;
        Part {
            headers,
            body,
            content_type,
            timestamp,
        }
    }

    fn find_newline(&self) -> Option<usize> {
        let from = self.scan.min(self.buf.len());
        let rest = self.buf.get(from..).unwrap_or_default();
        find_byte(rest, b'\n').map(|i| from + i)
    }

    /// Finds the first delimiter line at or after the search point, and
    /// remembers how far the search got so no byte is judged twice.
    fn search(&mut self) -> Search {
        if self.at_line_start {
            match self.match_at(0) {
                Match::Yes { len, close } => {
                    return Search::Found {
                        line: 0,
                        len,
                        close,
                    }
                }
                Match::NeedMore => return Search::NotYet { undecided: Some(0) },
                Match::No => {
                    self.at_line_start = false;
                    self.scan = 0;
                }
            }
        }
        loop {
            let Some(nl) = self.find_newline() else {
                self.scan = self.buf.len();
                return Search::NotYet { undecided: None };
            };
            let line = nl + 1;
            match self.match_at(line) {
                Match::Yes { len, close } => return Search::Found { line, len, close },
                Match::NeedMore => {
                    self.scan = nl;
                    return Search::NotYet {
                        undecided: Some(line),
                    };
                }
                Match::No => self.scan = line,
            }
        }
    }

    /// Whether a delimiter starts at `at`: `--` and the boundary (or, for a
    /// boundary declared with `--`, also `----` and the boundary), then the
    /// end of the line (possibly after spaces) or the closing `--`.
    fn match_at(&self, at: usize) -> Match {
        let rest = self.buf.get(at..).unwrap_or_default();
        // Fast path: almost every line start inside a JPEG fails here.
        match rest.first() {
            None => return Match::NeedMore,
            Some(&b'-') => {}
            Some(_) => return Match::No,
        }
        let short = match_form(rest, 2, &self.core);
        if !self.alt {
            return short;
        }
        let long = match_form(rest, 4, &self.core);
        match (short, long) {
            // Judge only once both are decided, so the answer does not
            // depend on how much of the line has arrived.
            (Match::NeedMore, _) | (_, Match::NeedMore) => Match::NeedMore,
            (Match::Yes { .. }, _) => short,
            _ => long,
        }
    }
}

/// `rest` starts with `dashes` dashes, `core`, and a delimiter's ending.
fn match_form(rest: &[u8], dashes: usize, core: &[u8]) -> Match {
    let want = std::iter::repeat_n(&b'-', dashes).chain(core);
    let mut have = rest.iter();
    for w in want {
        match have.next() {
            None => return Match::NeedMore,
            Some(h) if h != w => return Match::No,
            Some(_) => {}
        }
    }
    let len = dashes + core.len();
    match (have.next(), have.next()) {
        (None, _) => Match::NeedMore,
        (Some(&b'-'), None) => Match::NeedMore,
        (Some(&b'-'), Some(&b'-')) => Match::Yes {
            len: len + 2,
            close: true,
        },
        (Some(b'\r' | b'\n' | b' ' | b'\t'), _) => Match::Yes { len, close: false },
        // `--XYZabc` is another boundary that merely starts with ours.
        _ => Match::No,
    }
}

/// The length of the JPEG that `body` is, if it is exactly one whole JPEG
/// followed by nothing but line ends (CR, LF): the walker must start at
/// `body[0]` (no junk, no broken image skipped) and reach an EOI. The walk
/// never searches for `FF D9`, so an EXIF thumbnail's EOI does not pass for
/// the end of a cut-off picture. Copies `body`, which is at most `max` bytes
/// plus a line end.
fn whole_jpeg(body: &[u8], max: usize) -> Option<usize> {
    let mut walker = jpeg::Splitter::new(max);
    walker.feed(body);
    let frame = walker.next_frame().ok().flatten()?;
    let rest = body.get(frame.len()..).unwrap_or_default();
    let whole =
        walker.stats().skipped_bytes == 0 && rest.iter().all(|&b| matches!(b, b'\r' | b'\n'));
    whole.then_some(frame.len())
}

/// `X-Timestamp`: digits, optionally a fraction (`1700000000.123`).
fn parse_timestamp(value: &str) -> Option<f64> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    value.parse::<f64>().ok().filter(|t| t.is_finite())
}

/// Index of the first `needle` in `hay`, eight bytes at a time: the delimiter
/// search runs over every byte of a boundary-less body, so it has to keep up
/// with the network by a wide margin.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at(8);
        let a = u64::from_le_bytes(<[u8; 8]>::try_from(a).unwrap_or_default()) ^ pattern;
        let b = u64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or_default()) ^ pattern;
        // A zero byte in a or b is a match (Mycroft's "has zero byte"); the
        // lowest flagged byte is always the first match.
        let za = a.wrapping_sub(LO) & !a & HI;
        let zb = b.wrapping_sub(LO) & !b & HI;
        if za | zb != 0 {
            let at = if za != 0 {
                za.trailing_zeros() / 8
            } else {
                8 + zb.trailing_zeros() / 8
            };
            return Some(base + at as usize);
        }
        base += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// The `Content-Type` of a body written with `boundary`, from which
/// [`boundary_from_content_type`] gets the boundary back.
pub fn content_type_with_boundary(boundary: &str) -> String {
    format!("multipart/x-mixed-replace; boundary={boundary}")
}

/// One part of a `multipart/x-mixed-replace` body: the delimiter line
/// `--boundary`, `Content-Type`, `Content-Length`, then `headers` (such as
/// `X-Timestamp`) in order, a blank line, `body`, and a line end. Bodies are
/// written as they are: with `Content-Length`, a body may even contain the
/// delimiter.
///
/// The boundary, the header names and the values are the caller's own, not
/// a peer's: a line end in one would end the header block early, which
/// debug builds check.
pub fn write_part(
    boundary: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut part = write_part_head(boundary, content_type, body.len(), headers);
    part.reserve(body.len() + 2);
    part.extend_from_slice(body);
    part.extend_from_slice(b"\r\n");
    part
}

/// What [`write_part`] writes before the body, for a body of
/// `content_length` bytes: for a server that sends the body in pieces (or,
/// as the simulated camera's faults do, only some of it).
pub fn write_part_head(
    boundary: &str,
    content_type: &str,
    content_length: usize,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let one_line = |s: &str| !s.contains(['\r', '\n']);
    debug_assert!(
        one_line(boundary)
            && one_line(content_type)
            && headers.iter().all(|(n, v)| one_line(n) && one_line(v)),
        "a line end inside a multipart part's header"
    );
    let mut head = format!(
        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n"
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // testdata/multipart/ffmpeg-mpjpeg.bin: see testdata/README.md.
    const FFMPEG_MPJPEG: &[u8] = include_bytes!("../../testdata/multipart/ffmpeg-mpjpeg.bin");

    /// What a splitter yields for a whole input: parts, the error if any,
    /// whether it saw the closing delimiter, and whether it was left mid-part.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        parts: Vec<Part>,
        err: Option<Error>,
        finished: bool,
        in_part: bool,
        skipped: u64,
    }

    fn drain(s: &mut Splitter, parts: &mut Vec<Part>) -> Option<Error> {
        loop {
            match s.next_part() {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => return None,
                Err(err) => {
                    assert_eq!(s.next_part(), Err(err.clone()), "errors are sticky");
                    return Some(err);
                }
            }
        }
    }

    fn outcome(s: &Splitter, parts: Vec<Part>, err: Option<Error>) -> Outcome {
        Outcome {
            parts,
            err,
            finished: s.is_finished(),
            in_part: s.in_part(),
            skipped: s.skipped_parts(),
        }
    }

    /// Splits `data` fed in pieces of the given lengths (the rest last).
    fn split_pieces(boundary: &str, max: usize, data: &[u8], cuts: &[usize]) -> Outcome {
        let (s, parts, err) = feed_pieces(boundary, max, data, cuts);
        outcome(&s, parts, err)
    }

    /// [`split_pieces`], returning the splitter too.
    fn feed_pieces(
        boundary: &str,
        max: usize,
        data: &[u8],
        cuts: &[usize],
    ) -> (Splitter, Vec<Part>, Option<Error>) {
        let mut s = Splitter::new(boundary, max);
        let mut parts = Vec::new();
        let mut rest = data;
        let mut err = None;
        for &cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let (piece, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            s.feed(piece);
            err = drain(&mut s, &mut parts);
            if err.is_some() {
                break;
            }
        }
        for part in &parts {
            assert!(part.body.len() <= max);
        }
        if err.is_none() {
            let returned: u64 = parts.iter().map(|p| p.body.len() as u64).sum();
            assert!(returned <= s.position());
            if !s.is_finished() {
                assert_eq!(s.position() + s.buffered() as u64, data.len() as u64);
            }
        }
        (s, parts, err)
    }

    /// [`split_pieces`], then the connection closes: the parts
    /// `end_of_stream` still returns, or its error.
    fn end_pieces(boundary: &str, max: usize, data: &[u8], cuts: &[usize]) -> Outcome {
        let (mut s, mut parts, mut err) = feed_pieces(boundary, max, data, cuts);
        while err.is_none() {
            match s.end_of_stream() {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(s.end_of_stream(), Err(e.clone()), "errors are sticky");
                    assert_eq!(s.next_part(), Err(e.clone()), "errors are sticky");
                    assert_eq!(s.buffered(), 0);
                    err = Some(e);
                }
            }
        }
        for part in &parts {
            assert!(part.body.len() <= max);
        }
        if err.is_none() {
            assert_eq!(s.buffered(), 0);
            assert!(!s.in_part());
            if !s.is_finished() {
                assert_eq!(s.position(), data.len() as u64);
            }
            // Nothing comes after the end.
            s.feed(b"\r\n--XYZ\r\n\r\nmore\r\n--XYZ\r\n");
            assert_eq!(s.next_part(), Ok(None));
            assert_eq!(s.end_of_stream(), Ok(None));
            assert_eq!(s.buffered(), 0);
        }
        outcome(&s, parts, err)
    }

    /// [`end_pieces`] fed whole, in two pieces at every split point, and
    /// byte by byte, which must all agree. Returns the outcome of the first.
    fn end_every_way(boundary: &str, max: usize, data: &[u8]) -> Outcome {
        let whole = end_pieces(boundary, max, data, &[]);
        for split in 0..data.len() {
            let two = end_pieces(boundary, max, data, &[split]);
            assert_eq!(two, whole, "split at {split}");
        }
        let bytes = vec![1; data.len()];
        assert_eq!(
            end_pieces(boundary, max, data, &bytes),
            whole,
            "byte by byte"
        );
        whole
    }

    /// Splits `data` fed whole, then in two pieces at every split point, then
    /// byte by byte: TCP fragments anywhere, and the parts must not depend on
    /// where. Returns the outcome of feeding it whole.
    fn split_every_way(boundary: &str, max: usize, data: &[u8]) -> Outcome {
        let whole = split_pieces(boundary, max, data, &[]);
        for split in 0..data.len() {
            let two = split_pieces(boundary, max, data, &[split]);
            assert_eq!(two, whole, "split at {split}");
        }
        let mut s = Splitter::new(boundary, max);
        let mut parts = Vec::new();
        let mut err = None;
        for byte in data.chunks(1) {
            s.feed(byte);
            err = drain(&mut s, &mut parts);
            if err.is_some() {
                break;
            }
        }
        assert_eq!(outcome(&s, parts, err), whole, "byte by byte");
        whole
    }

    fn bodies(outcome: &Outcome) -> Vec<&[u8]> {
        outcome.parts.iter().map(|p| &p.body[..]).collect()
    }

    /// An independent reading of ffmpeg's mpjpeg layout: `--ffmpeg\r\n`,
    /// headers, a blank line, the JPEG, `\r\n`, repeated; a last `--ffmpeg\r\n`.
    fn naive_mpjpeg_bodies(data: &[u8]) -> Vec<&[u8]> {
        let delim = b"--ffmpeg\r\n";
        let mut out = Vec::new();
        let mut rest = data.strip_prefix(delim).expect("starts with a delimiter");
        while !rest.is_empty() {
            let blank = rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("blank line");
            let after = &rest[blank + 4..];
            let next = after
                .windows(delim.len() + 2)
                .position(|w| w[..2] == *b"\r\n" && w[2..] == *delim)
                .expect("next delimiter");
            out.push(&after[..next]);
            rest = &after[next + 2 + delim.len()..];
        }
        out
    }

    #[test]
    fn ffmpeg_mpjpeg_capture_splits_into_its_ten_jpegs() {
        // The MIME type ffmpeg's mpjpeg muxer declares (`ffmpeg -h muxer=mpjpeg`).
        let boundary = boundary_from_content_type("multipart/x-mixed-replace;boundary=ffmpeg");
        assert_eq!(boundary.as_deref(), Some("ffmpeg"));
        let got = split_every_way("ffmpeg", DEFAULT_MAX_PART, FFMPEG_MPJPEG);
        assert_eq!(got.err, None);
        assert_eq!(got.parts.len(), 10);
        for part in &got.parts {
            assert!(part.body.starts_with(&[0xff, 0xd8]));
            assert!(part.body.ends_with(&[0xff, 0xd9]));
            assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
            // ffmpeg spells it "Content-length".
            assert_eq!(
                part.header("CONTENT-LENGTH"),
                Some(part.body.len().to_string().as_str())
            );
            assert_eq!(part.timestamp, None);
        }
        assert_eq!(bodies(&got), naive_mpjpeg_bodies(FFMPEG_MPJPEG));
        // ffmpeg ends with an opening delimiter, not a closing one, and no
        // part after it: not finished, but no frame was cut either.
        assert!(!got.finished);
        assert!(!got.in_part);
    }

    #[test]
    fn ffmpeg_capture_without_content_length_splits_at_the_delimiters() {
        // The same stream as a camera that sends no Content-Length would.
        let mut data = Vec::new();
        for line in FFMPEG_MPJPEG.split_inclusive(|&b| b == b'\n') {
            if !line.starts_with(b"Content-length: ") {
                data.extend_from_slice(line);
            }
        }
        assert!(data.len() < FFMPEG_MPJPEG.len());
        let got = split_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), naive_mpjpeg_bodies(FFMPEG_MPJPEG));
        assert!(got
            .parts
            .iter()
            .all(|p| p.header("content-length").is_none()));
        assert!(!got.in_part);
    }

    #[test]
    fn quoted_boundary() {
        let ct = r#"multipart/x-mixed-replace; boundary="my boundary""#;
        let boundary = boundary_from_content_type(ct).expect("boundary");
        assert_eq!(boundary, "my boundary");
        let data = b"--my boundary\r\n\r\none\r\n--my boundary\r\n\r\ntwo\r\n--my boundary--\r\n";
        let got = split_every_way(&boundary, 64, data);
        assert_eq!(bodies(&got), [&b"one"[..], b"two"]);
        assert!(got.finished);
    }

    #[test]
    fn boundary_declared_with_leading_dashes_matches_lines_with_one_pair() {
        // Declared `boundary=--myboundary`, delimiter lines `--myboundary`.
        let ct = "multipart/x-mixed-replace; boundary=--myboundary";
        let boundary = boundary_from_content_type(ct).expect("boundary");
        assert_eq!(boundary, "--myboundary");
        let data = b"--myboundary\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n\
            --myboundary\r\nContent-Type: image/jpeg\r\n\r\nabc\r\n--myboundary--";
        let got = split_every_way(&boundary, 64, data);
        assert_eq!(bodies(&got), [&b"\xff\xd8\xff\xd9"[..], b"abc"]);
        assert!(got.finished);
    }

    #[test]
    fn boundary_declared_with_leading_dashes_matches_rfc_lines_too() {
        // Read literally, RFC 2046 makes the delimiter `--` + `--myboundary`.
        let data = b"----myboundary\r\n\r\none\r\n----myboundary\r\n\r\ntwo\r\n----myboundary--";
        let got = split_every_way("--myboundary", 64, data);
        assert_eq!(bodies(&got), [&b"one"[..], b"two"]);
        assert!(got.finished);
        // ...but a boundary declared without dashes wants exactly two.
        let got = split_every_way("myboundary", 64, data);
        assert_eq!(got.parts, []);
    }

    #[test]
    fn content_length_parts_are_read_exactly_even_if_they_contain_the_delimiter() {
        let body = b"\xff\xd8\r\n--XYZ\r\nnot a delimiter\xff\xd9";
        let mut data = Vec::new();
        for _ in 0..2 {
            data.extend_from_slice(b"--XYZ\r\nContent-Type: image/jpeg\r\n");
            data.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            data.extend_from_slice(body);
            data.extend_from_slice(b"\r\n");
        }
        let got = split_every_way("XYZ", 1024, &data);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [&body[..], &body[..]]);
        assert!(!got.in_part);
    }

    #[test]
    fn content_length_part_is_returned_before_the_next_delimiter_arrives() {
        // A camera writes the next delimiter only with the next frame; the
        // frame must not wait for it.
        let mut s = Splitter::new("XYZ", 64);
        s.feed(b"--XYZ\r\nContent-Length: 3\r\n\r\nabc");
        let part = s.next_part().expect("ok").expect("a part");
        assert_eq!(&part.body[..], b"abc");
        assert!(!s.in_part());
        assert_eq!(s.position(), 31);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn parts_without_content_length_end_at_the_next_delimiter() {
        // No Content-Length; lines inside that only look like delimiters.
        let data = b"--XYZ\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8a\r\n--XY\r\n--XYZabc\r\nb\n-\xff\xd9\r\n\
            --XYZ\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xd9\r\n--XYZ\r\n";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(got.err, None);
        assert_eq!(
            bodies(&got),
            [
                &b"\xff\xd8a\r\n--XY\r\n--XYZabc\r\nb\n-\xff\xd9"[..],
                b"\xff\xd8\xff\xd9"
            ]
        );
        assert!(!got.in_part);
    }

    #[test]
    fn part_without_content_length_waits_for_the_whole_delimiter() {
        let mut s = Splitter::new("XYZ", 64);
        s.feed(b"--XYZ\r\n\r\nabc\r\n--XYZ");
        assert_eq!(s.next_part(), Ok(None));
        assert!(s.in_part());
        s.feed(b"\r");
        let part = s.next_part().expect("ok").expect("a part");
        assert_eq!(&part.body[..], b"abc");
        assert!(!s.in_part());
    }

    #[test]
    fn bare_lf_everywhere() {
        let data = b"preamble\n--XYZ\nContent-Type: image/jpeg\nContent-Length: 2\n\nab\n\
            --XYZ\nContent-Type: image/jpeg\n\ncd\n--XYZ\n\n\r\n--XYZ--\n";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(got.err, None);
        // A lone CR before LF goes with the delimiter, whatever the rest use.
        assert_eq!(bodies(&got), [&b"ab"[..], b"cd", b""]);
        assert_eq!(got.parts[1].content_type.as_deref(), Some("image/jpeg"));
        assert!(got.finished);
    }

    #[test]
    fn preamble_is_skipped() {
        let data = b"This is a multi-part message.\r\n--XYZabc\r\n-- XYZ\r\n  --XYZ\r\n\
            --XYZ\r\nContent-Length: 2\r\n\r\nok\r\n";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(bodies(&got), [&b"ok"[..]]);
        let first = data
            .windows(7)
            .position(|w| w == b"\n--XYZ\r")
            .expect("delimiter");
        let mut s = Splitter::new("XYZ", 64);
        s.feed(&data[..first + 3]);
        assert_eq!(s.next_part(), Ok(None));
        // The preamble is dropped as it is scanned, not kept.
        assert!(s.buffered() <= 3);
        assert!(!s.in_part());
    }

    #[test]
    fn x_timestamp_is_parsed() {
        let data = b"--XYZ\r\nContent-Type: image/jpeg\r\nContent-Length: 1\r\nX-Timestamp: 1700000000.123\r\n\r\na\r\n\
            --XYZ\r\nx-timestamp:0.000000\r\n\r\nb\r\n\
            --XYZ\r\nX-Timestamp: 12\r\n\r\nc\r\n\
            --XYZ\r\nX-Timestamp: soon\r\n\r\nd\r\n\
            --XYZ\r\nX-Timestamp: 1e9\r\n\r\ne\r\n--XYZ--\r\n";
        let got = split_every_way("XYZ", 64, data);
        let stamps: Vec<_> = got.parts.iter().map(|p| p.timestamp).collect();
        assert_eq!(
            stamps,
            [Some(1_700_000_000.123), Some(0.0), Some(12.0), None, None]
        );
    }

    #[test]
    fn timestamp_spellings() {
        assert_eq!(parse_timestamp("5."), Some(5.0));
        assert_eq!(parse_timestamp(".5"), Some(0.5));
        for bad in ["", ".", "-1", "+1", "1.2.3", "inf", "NaN", "1 2", "0x10"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        // All digits, but too many for an f64: not a time.
        assert_eq!(parse_timestamp(&"9".repeat(400)), None);
    }

    #[test]
    fn extra_headers_are_all_exposed_case_insensitively() {
        let data =
            b"--XYZ\r\ncontent-type: image/jpeg\r\nCONTENT-LENGTH:  2 \r\nX-Frame-Id: 42\r\n\
            X-Resolution: 640x480\r\nnot a header\r\nX-Empty:\r\n\r\nab\r\n";
        let got = split_every_way("XYZ", 64, data);
        let part = &got.parts[0];
        assert_eq!(&part.body[..], b"ab");
        assert_eq!(
            part.headers,
            [
                ("content-type", "image/jpeg"),
                ("CONTENT-LENGTH", "2"),
                ("X-Frame-Id", "42"),
                ("X-Resolution", "640x480"),
                ("X-Empty", ""),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(part.header("x-frame-id"), Some("42"));
        assert_eq!(part.header("X-RESOLUTION"), Some("640x480"));
        assert_eq!(part.header("x-missing"), None);
    }

    #[test]
    fn junk_before_a_delimiter_after_a_content_length_body_is_skipped() {
        // Cameras that count the JPEG short, pad, or skip the line end.
        let data = b"--XYZ\r\nContent-Length: 2\r\n\r\nab\r\n\r\n  garbage \xff\xd9\r\n\
            --XYZ\r\nContent-Length: 2\r\n\r\ncd--XYZ\r\nContent-Length: 2\r\n\r\nef\n  \n--XYZ  \t\r\n\
            Content-Length: 2\r\n\r\ngh";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [&b"ab"[..], b"cd", b"ef", b"gh"]);
        assert!(!got.in_part);
    }

    #[test]
    fn closing_delimiter_ends_the_body() {
        let data = b"--XYZ\r\n\r\nlast\r\n--XYZ--\r\nepilogue\r\n--XYZ\r\n\r\nignored\r\n--XYZ\r\n";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(bodies(&got), [&b"last"[..]]);
        assert!(got.finished);
        assert!(!got.in_part);

        let mut s = Splitter::new("XYZ", 64);
        s.feed(data);
        assert!(s.next_part().expect("ok").is_some());
        assert_eq!(s.next_part(), Ok(None));
        s.feed(b"--XYZ\r\n\r\nmore\r\n--XYZ\r\n");
        assert_eq!(s.next_part(), Ok(None));
        assert_eq!(s.buffered(), 0);
        assert!(s.is_finished());

        // After a Content-Length body, and without a line end.
        let got = split_every_way("XYZ", 64, b"--XYZ\r\nContent-Length: 1\r\n\r\na\r\n--XYZ--");
        assert_eq!(bodies(&got), [&b"a"[..]]);
        assert!(got.finished);
    }

    #[test]
    fn empty_parts_and_parts_without_headers() {
        let data = b"--XYZ\r\n\r\n\r\n--XYZ\r\nContent-Length: 0\r\n\r\n\r\n--XYZ\r\n\r\n--XYZ\r\n\r\nx\r\n--XYZ--";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(bodies(&got), [&b""[..], b"", b"", b"x"]);
        assert!(got
            .parts
            .iter()
            .all(|p| p.headers.is_empty() || p.header("content-length") == Some("0")));
        assert!(got.finished);
    }

    #[test]
    fn oversized_part_with_content_length_is_skipped_and_the_stream_goes_on() {
        // Camera bug report: one picture past --max-frame-bytes dropped the
        // connection, and the camera started its stream again.
        let data = b"--XYZ\r\nContent-Length: 2\r\n\r\nab\r\n\
                     --XYZ\r\nContent-Type: image/jpeg\r\nContent-Length: 11\r\n\r\n\
                     0123456789\n\r\n\
                     --XYZ\r\nContent-Length: 2\r\n\r\ncd\r\n--XYZ--\r\n";
        let got = split_every_way("XYZ", 10, data);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [&b"ab"[..], b"cd"]);
        assert_eq!(got.skipped, 1);
        assert!(got.finished);
        // The skipped body is dropped as it comes, never held.
        let mut s = Splitter::new("XYZ", 100);
        s.feed(b"--XYZ\r\nContent-Length: 1000000\r\n\r\n");
        assert_eq!(s.next_part(), Ok(None));
        for _ in 0..100 {
            s.feed(&[0xff; 1000]);
            assert_eq!(s.next_part(), Ok(None));
            assert_eq!(s.buffered(), 0);
            assert!(s.in_part());
        }
        // A close in the middle of it cuts a part short, as for any part.
        assert_eq!(s.end_of_stream(), Err(Error::Truncated { pos: 7 }));
    }

    #[test]
    fn too_large_content_length_values() {
        let err = Error::TooLarge { pos: 7, max: 100 };
        assert_eq!(
            err.to_string(),
            "multipart part at byte 7 is larger than the 100-byte limit"
        );
        let data = b"--XYZ\r\nContent-Length: 100\r\n\r\n";
        let got = split_every_way("XYZ", 100, data);
        assert_eq!(got.err, None);
        assert!(got.in_part);
        let huge = b"--XYZ\r\nContent-Length: 99999999999999999999999999999\r\n\r\n";
        let got = split_every_way("XYZ", usize::MAX, huge);
        assert_eq!(
            got.err,
            Some(Error::TooLarge {
                pos: 7,
                max: usize::MAX
            })
        );
    }

    #[test]
    fn oversized_part_without_content_length_is_skipped_up_to_its_delimiter() {
        // Exactly the limit is fine, even with the delimiter still arriving.
        let data = b"--XYZ\r\n\r\n0123456789\r\n--XYZ\r\n";
        let got = split_every_way("XYZ", 10, data);
        assert_eq!(bodies(&got), [&b"0123456789"[..]]);
        assert_eq!(got.skipped, 0);
        // One byte more: dropped, and the next part comes as usual, however
        // the stream is cut (also inside the delimiter that ends it).
        let data = b"--XYZ\r\n\r\n0123456789a\r\n--XYZ\r\n\r\nok\r\n--XYZ\r\n\r\n\
                     0123456789abc\n--X\r\n--XYZ--\r\n";
        let got = split_every_way("XYZ", 10, data);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [&b"ok"[..]]);
        assert_eq!(got.skipped, 2);
        assert!(got.finished);

        // Dropped as it comes: nothing of it is held beyond a line end and
        // what may start a delimiter.
        let mut s = Splitter::new("XYZ", 10);
        s.feed(b"--XYZ\r\n\r\n0123456789\r");
        assert_eq!(s.next_part(), Ok(None));
        s.feed(b"\n");
        assert_eq!(s.next_part(), Ok(None));
        s.feed(b"-");
        assert_eq!(s.next_part(), Ok(None));
        s.feed(b"x");
        assert_eq!(s.next_part(), Ok(None));
        for _ in 0..1000 {
            s.feed(&[0xab; 100]);
            assert_eq!(s.next_part(), Ok(None));
            assert!(s.buffered() <= 1, "{}", s.buffered());
            assert!(s.in_part());
        }
        s.feed(b"\r\n--XYZ\r\n\r\nok\r\n--XYZ--");
        assert_eq!(
            s.next_part().map(|p| p.map(|p| p.body)),
            Ok(Some("ok".into()))
        );
        assert_eq!(s.skipped_parts(), 1);
        // The close in the middle of one cuts it short, as any part.
        let mut s = Splitter::new("XYZ", 10);
        s.feed(b"--XYZ\r\n\r\n0123456789abc");
        assert_eq!(s.next_part(), Ok(None));
        assert_eq!(s.end_of_stream(), Err(Error::Truncated { pos: 7 }));
    }

    #[test]
    fn headers_too_large() {
        // A wrong boundary guess makes the splitter read JPEG as headers.
        let mut data = b"--XYZ\r\nX-Long: ".to_vec();
        data.resize(7 + MAX_HEADER_BYTES + 1, b'a');
        let mut s = Splitter::new("XYZ", DEFAULT_MAX_PART);
        s.feed(&data);
        let err = Error::HeadersTooLarge { pos: 7 };
        assert_eq!(s.next_part(), Err(err.clone()));
        assert_eq!(s.next_part(), Err(err.clone()));
        assert!(!err.to_string().contains('\n'));

        // Exactly the limit, blank line included, is fine.
        let mut data = b"--XYZ\r\nX-Long: ".to_vec();
        data.resize(7 + MAX_HEADER_BYTES - 4, b'a');
        data.extend_from_slice(b"\r\n\r\nab\r\n--XYZ\r\n");
        let got = split_pieces("XYZ", 64, &data, &[]);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [&b"ab"[..]]);
        let mut data = b"--XYZ\r\nX-Long: ".to_vec();
        data.resize(7 + MAX_HEADER_BYTES - 3, b'a');
        data.extend_from_slice(b"\r\n\r\nab\r\n--XYZ\r\n");
        let got = split_pieces("XYZ", 64, &data, &[7 + MAX_HEADER_BYTES - 10]);
        assert_eq!(got.err, Some(err.clone()));

        // Many small headers.
        let mut data = b"--XYZ\r\n".to_vec();
        for _ in 0..=MAX_HEADER_LINES {
            data.extend_from_slice(b"a:\r\n");
        }
        data.extend_from_slice(b"\r\nab\r\n--XYZ\r\n");
        let got = split_every_way("XYZ", 64, &data);
        assert_eq!(got.err, Some(err));
    }

    #[test]
    fn bad_content_length() {
        for (value, shown) in [
            ("12a", "12a"),
            ("-1", "-1"),
            ("", ""),
            ("0x10", "0x10"),
            ("1\r2", "1\r2"),
        ] {
            let data =
                format!("--XYZ\r\nContent-Type: image/jpeg\r\nContent-Length: {value}\r\n\r\n");
            let got = split_every_way("XYZ", 64, data.as_bytes());
            let err = got.err.expect("an error");
            assert_eq!(
                err,
                Error::BadContentLength {
                    pos: 33,
                    value: shown.to_owned()
                }
            );
            assert!(!err.to_string().contains(['\n', '\r']), "{err}");
        }
        // Two that disagree: which one is right cannot be known.
        let data = b"--XYZ\r\nContent-Length: 2\r\ncontent-length: 3\r\n\r\nabc\r\n";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(
            got.err,
            Some(Error::BadContentLength {
                pos: 26,
                value: "3".to_owned()
            })
        );
        // Two that agree are harmless.
        let data = b"--XYZ\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab\r\n";
        assert_eq!(bodies(&split_every_way("XYZ", 64, data)), [&b"ab"[..]]);
        // The message keeps a long value short.
        let long = format!("--XYZ\r\nContent-Length: {}\r\n\r\n", "x".repeat(1000));
        let err = split_pieces("XYZ", 64, long.as_bytes(), &[])
            .err
            .expect("an error");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn dropped_mid_frame_is_visible() {
        let data = b"--XYZ\r\nContent-Length: 4\r\n\r\nabcd\r\n--XYZ\r\n";
        let mut s = Splitter::new("XYZ", 64);
        let mut mid = Vec::new();
        for (i, byte) in data.iter().enumerate() {
            s.feed(&[*byte]);
            let _ = s.next_part().expect("ok");
            mid.push((i, s.in_part()));
        }
        // In a part from its first header byte until its last body byte
        // arrives; not on the delimiter lines, nor after the last one.
        let inside: Vec<usize> = mid.iter().filter(|(_, m)| *m).map(|(i, _)| *i).collect();
        assert_eq!(inside, (7..31).collect::<Vec<_>>());
    }

    #[test]
    fn delimiter_line_padding_and_lookalikes() {
        let data = b"--XYZ \t \r\n\r\na\r\n--XYZ-\r\n--XYZ-x\r\n--XYZ\t\r\n\r\nb\r\n--XYZ--";
        let got = split_every_way("XYZ", 64, data);
        assert_eq!(bodies(&got), [&b"a\r\n--XYZ-\r\n--XYZ-x"[..], b"b"]);
        assert!(got.finished);
    }

    #[test]
    fn boundary_from_content_type_spellings() {
        for (value, want) in [
            ("multipart/x-mixed-replace;boundary=ffmpeg", Some("ffmpeg")),
            (
                "multipart/x-mixed-replace; boundary=\"--myboundary\"",
                Some("--myboundary"),
            ),
            ("Multipart/Mixed; charset=x; Boundary=abc", Some("abc")),
            (
                "multipart/x-mixed-replace;boundary=boundarydonotcross",
                Some("boundarydonotcross"),
            ),
            (
                "multipart/x-mixed-replace; BOUNDARY = \"a;b\" ; x=y",
                Some("a;b"),
            ),
            (
                "multipart/x-mixed-replace; boundary=--video boundary--",
                Some("--video boundary--"),
            ),
            (
                "multipart/x-mixed-replace; boundary=abc ; charset=x",
                Some("abc"),
            ),
            (
                "multipart/x-mixed-replace; name=\"x; boundary=no\"; boundary=yes",
                Some("yes"),
            ),
            (
                "multipart/x-mixed-replace; boundary=\"a\\\"b\"",
                Some("a\"b"),
            ),
            (
                "multipart/x-mixed-replace; boundary=\"unterminated",
                Some("unterminated"),
            ),
            (
                "multipart/x-mixed-replace boundary=nosemicolon",
                Some("nosemicolon"),
            ),
            ("multipart/x-mixed-replace", None),
            ("multipart/x-mixed-replace; charset=x", None),
            ("multipart/x-mixed-replace; boundary=", None),
            ("multipart/x-mixed-replace; boundary=\"\"", None),
            ("multipart/x-mixed-replace; myboundary=x", None),
            ("", None),
            (";;; = ; =x; boundary", None),
        ] {
            assert_eq!(
                boundary_from_content_type(value).as_deref(),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn position_counts_consumed_bytes() {
        let data = b"junk\r\n--XYZ\r\nContent-Length: 2\r\n\r\nab\r\n--XYZ\r\n\r\ncd\r\n--XYZ\r\n";
        let mut s = Splitter::new("XYZ", 64);
        s.feed(data);
        let a = s.next_part().expect("ok").expect("part");
        assert_eq!(&a.body[..], b"ab");
        assert_eq!(s.position(), 36);
        let b = s.next_part().expect("ok").expect("part");
        assert_eq!(&b.body[..], b"cd");
        // The line end before the third delimiter, and the delimiter, are
        // consumed with the part; the delimiter's line end on the next call.
        assert_eq!(s.position(), data.len() as u64 - 2);
        assert_eq!(s.buffered(), 2);
        assert_eq!(s.next_part(), Ok(None));
        assert_eq!(s.position(), data.len() as u64);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn find_byte_agrees_with_a_plain_scan() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..40 {
            for needle in [0u8, 10, 37, 74, 128, 250, 255] {
                let hay = &hay[start..];
                assert_eq!(
                    find_byte(hay, needle),
                    hay.iter().position(|&b| b == needle),
                    "{start} {needle}"
                );
            }
        }
        assert_eq!(find_byte(&[0x80, 0x0a], 0x0a), Some(1));
        assert_eq!(find_byte(&[0x0b; 33], 0x0a), None);
    }

    #[test]
    fn errors_are_one_line_and_locate_the_byte() {
        for err in [
            Error::TooLarge { pos: 1, max: 2 },
            Error::HeadersTooLarge { pos: 3 },
            Error::BadContentLength {
                pos: 4,
                value: "a\nb".to_owned(),
            },
            Error::Truncated { pos: 5 },
        ] {
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains("at byte"), "{text}");
            assert_eq!(text, text.to_lowercase(), "{text}");
        }
    }

    /// Real JPEGs: the first `n` of the ffmpeg capture.
    fn capture_jpegs(n: usize) -> Vec<&'static [u8]> {
        let mut jpegs = naive_mpjpeg_bodies(FFMPEG_MPJPEG);
        jpegs.truncate(n);
        jpegs
    }

    /// A body of parts whose bodies are `bodies` (with `Content-Length` if
    /// `with_length`), each but the last followed by the next delimiter line,
    /// the last by `tail` and then the end of the stream, the way cameras
    /// that close instead of writing a closing delimiter send it. Returns it
    /// and the stream offset of the last part's headers.
    fn closed_after_last_part(bodies: &[&[u8]], with_length: bool, tail: &[u8]) -> (Vec<u8>, u64) {
        let mut data = Vec::new();
        let mut last = 0;
        for (i, body) in bodies.iter().enumerate() {
            if i > 0 {
                data.extend_from_slice(b"\r\n");
            }
            data.extend_from_slice(b"--ffmpeg\r\n");
            last = data.len() as u64;
            data.extend_from_slice(b"Content-Type: image/jpeg\r\n");
            if with_length {
                data.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            data.extend_from_slice(b"\r\n");
            data.extend_from_slice(body);
        }
        data.extend_from_slice(tail);
        (data, last)
    }

    #[test]
    fn camera_closing_after_a_last_part_without_content_length_delivers_it() {
        let jpegs = capture_jpegs(2);
        for n in [1, 2] {
            let (data, _) = closed_after_last_part(&jpegs[..n], false, b"");
            // Until the end, the last part waits for a delimiter.
            let open = split_pieces("ffmpeg", DEFAULT_MAX_PART, &data, &[]);
            assert_eq!(open.parts.len(), n - 1);
            assert!(open.in_part);
            let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
            assert_eq!(got.err, None);
            assert_eq!(bodies(&got), jpegs[..n]);
            assert!(got
                .parts
                .iter()
                .all(|p| p.content_type.as_deref() == Some("image/jpeg")));
            assert!(!got.finished);
        }
    }

    #[test]
    fn camera_closing_after_a_last_part_and_its_line_end_delivers_it() {
        let jpegs = capture_jpegs(2);
        // Line ends, and the start of a delimiter line the close cut short.
        for tail in [
            &b"\r\n"[..],
            b"\n",
            b"\r",
            b"\r\n\r\n",
            b"\r\n--ffm",
            b"\r\n--ffmpeg",
            b"\n--",
        ] {
            let (data, _) = closed_after_last_part(&jpegs, false, tail);
            let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
            assert_eq!(got.err, None, "{tail:?}");
            assert_eq!(bodies(&got), jpegs, "{tail:?}");
        }
    }

    #[test]
    fn camera_closing_in_the_middle_of_a_last_part_without_content_length_is_an_error() {
        let jpegs = capture_jpegs(2);
        let jpeg = jpegs[1];
        // The same JPEG behind an EXIF segment carrying a whole thumbnail
        // (with its own EOI): a cut just after that EOI leaves a body ending
        // in FF D9 that is still no whole picture.
        let thumb = jpegs[0];
        let mut exif = vec![0xff, 0xd8, 0xff, 0xe1];
        exif.extend_from_slice(&u16::try_from(8 + thumb.len()).expect("short").to_be_bytes());
        exif.extend_from_slice(b"Exif\0\0");
        exif.extend_from_slice(thumb);
        let after_thumb = exif.len();
        exif.extend_from_slice(&jpeg[2..]);
        let whole = closed_after_last_part(&[jpeg, &exif], false, b"\r\n").0;
        let got = split_pieces("ffmpeg", DEFAULT_MAX_PART, &whole, &[]);
        assert_eq!(got.err, None);
        assert_eq!(
            end_pieces("ffmpeg", DEFAULT_MAX_PART, &whole, &[])
                .parts
                .len(),
            2
        );

        for (what, body, tail) in [
            ("all but the last byte", &jpeg[..jpeg.len() - 1], &b""[..]),
            (
                "all but the last byte, then a line end",
                &jpeg[..jpeg.len() - 1],
                b"\r\n",
            ),
            ("in the entropy-coded data", &jpeg[..jpeg.len() / 2], b""),
            ("in the headers", &jpeg[..40], b"\r\n"),
            (
                "just after the EXIF thumbnail's EOI",
                &exif[..after_thumb],
                b"",
            ),
            ("not a JPEG", b"camera status: ok", b"\r\n"),
            ("nothing", b"", b""),
            ("junk before the JPEG", &[b"x", jpeg].concat(), b""),
            ("junk after the JPEG", &[jpeg, b" "].concat(), b"\r\n"),
            ("two JPEGs", &[jpeg, jpeg].concat(), b""),
        ] {
            let (data, last) = closed_after_last_part(&[jpeg, body], false, tail);
            let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
            assert_eq!(got.err, Some(Error::Truncated { pos: last }), "{what}");
            assert_eq!(bodies(&got), [jpeg], "{what}");
        }

        // Cut inside the last part's headers, or before its blank line.
        let (data, last) = closed_after_last_part(&[jpeg, jpeg], false, b"");
        let headers_end = last as usize + b"Content-Type: image/jpeg\r\n\r\n".len();
        for cut in last as usize + 1..headers_end {
            let got = end_pieces("ffmpeg", DEFAULT_MAX_PART, &data[..cut], &[]);
            assert_eq!(
                got.err,
                Some(Error::Truncated { pos: last }),
                "cut at {cut}"
            );
            assert_eq!(bodies(&got), [jpeg], "cut at {cut}");
        }
        // ...but the end right after a delimiter line cuts no part.
        let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data[..last as usize]);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [jpeg]);
    }

    #[test]
    fn parts_with_content_length_end_as_before() {
        let jpegs = capture_jpegs(2);
        // Whole parts, whatever follows them before the close.
        for tail in [
            &b""[..],
            b"\r\n",
            b"\r\n--ffm",
            b"\r\n--ffmpeg\r\n",
            b"\r\n junk",
        ] {
            let (data, _) = closed_after_last_part(&jpegs, true, tail);
            let open = split_pieces("ffmpeg", DEFAULT_MAX_PART, &data, &[]);
            assert_eq!(bodies(&open), jpegs, "{tail:?}");
            let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
            assert_eq!(got.err, None, "{tail:?}");
            assert_eq!(bodies(&got), jpegs, "{tail:?}");
        }
        // Short of its Content-Length: cut off, even though the bytes that
        // came are a whole JPEG (the length, not the walker, decides).
        let (mut data, last) = closed_after_last_part(&jpegs, true, b"");
        let short = format!("Content-Length: {}\r\n", jpegs[1].len());
        let long = format!("Content-Length: {}\r\n", jpegs[1].len() + 2);
        let at = data.len() - jpegs[1].len() - 2 - short.len();
        data.splice(at..at + short.len(), long.bytes());
        let got = end_every_way("ffmpeg", DEFAULT_MAX_PART, &data);
        assert_eq!(got.err, Some(Error::Truncated { pos: last }));
        assert_eq!(bodies(&got), [jpegs[0]]);

        // The whole capture: ten parts, and its closing opening delimiter.
        let got = end_pieces("ffmpeg", DEFAULT_MAX_PART, FFMPEG_MPJPEG, &[]);
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), naive_mpjpeg_bodies(FFMPEG_MPJPEG));
        // A closing delimiter stays the end it was.
        let got = end_every_way("XYZ", 64, b"--XYZ\r\n\r\nab\r\n--XYZ--\r\nepilogue");
        assert_eq!(bodies(&got), [&b"ab"[..]]);
        assert!(got.finished);
    }

    /// JPEG parts as `write_part` writes them, one after the other, each
    /// with an `X-Timestamp` if it has one.
    fn written(boundary: &str, parts: &[(Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (stamp, body) in parts {
            let headers: Vec<(&str, &str)> = stamp.iter().map(|s| ("X-Timestamp", *s)).collect();
            out.extend(write_part(boundary, "image/jpeg", &headers, body));
        }
        out
    }

    #[test]
    fn written_parts_split_back_at_every_split_point() {
        let content_type = content_type_with_boundary("camflowboundary");
        assert_eq!(
            content_type,
            "multipart/x-mixed-replace; boundary=camflowboundary"
        );
        let boundary = boundary_from_content_type(&content_type).unwrap();
        let jpegs = capture_jpegs(3);
        let stamps = [
            "1700000000.000000",
            "1700000000.040000",
            "1700000000.080000",
        ];
        let parts: Vec<_> = stamps.iter().map(|s| Some(*s)).zip(jpegs.clone()).collect();
        let got = split_every_way(&boundary, DEFAULT_MAX_PART, &written(&boundary, &parts));
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), jpegs);
        for (part, stamp) in got.parts.iter().zip(stamps) {
            assert_eq!(part.content_type.as_deref(), Some("image/jpeg"));
            assert_eq!(
                part.header("content-length"),
                Some(part.body.len().to_string().as_str())
            );
            assert_eq!(part.timestamp, stamp.parse().ok());
        }
    }

    #[test]
    fn written_bodies_holding_the_delimiter_or_nothing_split_back() {
        let tricky: &[u8] = b"\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\n--XYZ--\r\n";
        let parts = [(None, tricky), (None, b""), (None, b"\xff\xd8\xff\xd9")];
        let got = split_every_way("XYZ", DEFAULT_MAX_PART, &written("XYZ", &parts));
        assert_eq!(got.err, None);
        assert_eq!(bodies(&got), [tricky, b"", b"\xff\xd8\xff\xd9"]);
        assert!(!got.finished);
    }

    #[test]
    fn written_part_head_is_the_whole_part_without_body() {
        let headers = [("X-Timestamp", "12.500000"), ("X-Frame", "7")];
        let whole = write_part("b", "image/jpeg", &headers, b"JPEG");
        assert_eq!(
            whole,
            b"--b\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\nX-Timestamp: 12.500000\r\nX-Frame: 7\r\n\r\nJPEG\r\n"
        );
        let head = write_part_head("b", "image/jpeg", 4, &headers);
        assert_eq!(head, whole[..whole.len() - 6]);
    }
}

#[cfg(test)]
mod sniff_tests {
    use super::*;

    const FFMPEG_MPJPEG: &[u8] = include_bytes!("../../testdata/multipart/ffmpeg-mpjpeg.bin");

    /// Sniffs every prefix of `data`: each must say NeedMore or the answer
    /// the whole gives (TCP splits anywhere), and the whole is returned.
    fn sniff_every_prefix(data: &[u8]) -> Sniff {
        let whole = sniff(data, true);
        for cut in 0..data.len() {
            match sniff(&data[..cut], false) {
                Sniff::NeedMore => {}
                early => assert_eq!(early, whole, "cut at {cut}"),
            }
        }
        whole
    }

    fn multipart(b: &str) -> Sniff {
        Sniff::Multipart {
            boundary: b.to_owned(),
        }
    }

    #[test]
    fn ffmpeg_mpjpeg_without_content_type_is_multipart() {
        // ffmpeg's mpjpeg muxer says application/octet-stream unless given
        // -content_type; its body is multipart all the same.
        assert_eq!(
            sniff_every_prefix(&FFMPEG_MPJPEG[..200]),
            multipart("ffmpeg")
        );
    }

    #[test]
    fn vlc_mpjpeg_starting_with_a_line_end_is_multipart() {
        // VLC 3.0's mpjpeg mux writes CRLF before its first delimiter.
        let data = b"\r\n--7b3cc56e5f51db803f790dad720ed50a\r\nContent-Type: image/jpeg\r\n\
                     Content-Length: 12337\r\n\r\n\xff\xd8\xff\xe0";
        assert_eq!(
            sniff_every_prefix(data),
            multipart("7b3cc56e5f51db803f790dad720ed50a")
        );
    }

    #[test]
    fn other_spellings_of_a_first_part() {
        for (data, want) in [
            (
                &b"--myboundary  \r\ncontent-type: image/jpeg\r\n"[..],
                "myboundary",
            ),
            (b"----abc\nX-Timestamp: 1\n", "--abc"),
            (b"--frame\r\n\r\n\xff\xd8\xff", "frame"),
            (b"--frame\n\n\xff\xd8", "frame"),
            (b" \t\r\n\r\n--b\r\nA:\r\n", "b"),
        ] {
            assert_eq!(sniff_every_prefix(data), multipart(want), "{data:?}");
        }
    }

    #[test]
    fn other_bodies_are_not_multipart() {
        let long_line = [b"--".as_slice(), &[b'a'; 300], b"\r\nA: b\r\n"].concat();
        for data in [
            &b"\xff\xd8\xff\xe0\x00\x10JFIF"[..],
            b"\x00\x00\x00\x20ftypisom",
            b"\x47\x40\x00\x10",
            b"FLV\x01",
            b"<html><body>--x</body></html>",
            b"--frame\r\n\r\nhello",
            b"--frame\r\n\r\n\xff\x00",
            b"--frame\r\nnot a header\r\n",
            b"--\r\nA: b\r\n",
            b"--a\x01b\r\nA: b\r\n",
            b"-x",
            b"\r\n\r\n",
            b"",
            &long_line,
        ] {
            assert_eq!(sniff_every_prefix(data), Sniff::Other, "{data:?}");
        }
        // Endless line ends or padding: decided at the limit.
        assert_eq!(sniff(&[b'\n'; SNIFF_BYTES], false), Sniff::Other);
        assert_eq!(sniff(b"--abc", false), Sniff::NeedMore);
        assert_eq!(sniff(b"--abc", true), Sniff::Other);
    }

    #[test]
    fn sniffed_boundary_splits_the_body() {
        let Sniff::Multipart { boundary } = sniff(FFMPEG_MPJPEG, false) else {
            panic!("not multipart");
        };
        let mut s = Splitter::new(&boundary, DEFAULT_MAX_PART);
        s.feed(FFMPEG_MPJPEG);
        let mut n = 0;
        while let Some(part) = s.next_part().expect("ok") {
            assert!(part.body.starts_with(&[0xff, 0xd8]));
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
