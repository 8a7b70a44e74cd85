//! Opening an input for libavformat. In: an [`InputSource`]: a path it
//! reads itself, stdin, or a receiver's [`Chunk`]s through a custom AVIO
//! reader (never a temp file or a subprocess). Out: a demuxer context
//! ([`open`]), packets read one at a time ([`read_packet`]), and, for
//! chunks, each byte position's arrival time and why the feed ended
//! ([`ChunkFeed`]).
//!
//! Memory while reading is bounded by design, whatever the input's length:
//! a receiver's chunks wait in the bounded channel it sends on, the feed
//! remembers the arrival times of `ARRIVALS_KEPT` chunks, libav's AVIO
//! buffer is `AVIO_BUFFER` bytes, and every demuxing loop holds one packet
//! at a time. What still grows is libavformat's own: the mov demuxer
//! indexes every sample of a fragmented stream (about 32 bytes a picture,
//! 3 MB an hour at 25 fps), as the ffmpeg CLI does.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use ffmpeg::format::context::{Input, StreamIo};
use ffmpeg_next as ffmpeg;

use crate::packet::{Arrived, Chunk};
use crate::packet::{Items, SourceError};

/// What the libav thread reads from.
pub enum InputSource {
    /// A file libavformat opens itself, with every demuxer it has (the
    /// user's own file).
    Path(PathBuf),
    /// A file from someone else (an upload to the packaging service): only
    /// the plain containers in [`UNTRUSTED_DEMUXERS`] are opened. Playlists
    /// and manifests (HLS, DASH, concat), which libavformat would pick for
    /// a file that merely starts like an MP4 box, make it read other files,
    /// or loop on a live manifest whose segments never come.
    Untrusted(PathBuf),
    /// Standard input, read on a thread of its own so that `stop` can
    /// abort a read that waits.
    Stdin,
    /// A network receiver's chunks, read through custom AVIO.
    Chunks(ChunkFeed),
}

/// The receiving end of a network receiver, shared between the AVIO reader
/// (which libav owns) and the pipeline (which needs to know why it ended and
/// whether a new init segment is waiting).
#[derive(Clone)]
pub struct ChunkFeed {
    inner: Arc<Mutex<FeedState>>,
    kind: FeedKind,
}

struct FeedState {
    rx: Items<Arrived>,
    cur: Bytes,
    /// Bytes handed to libav in this session: libav's packet positions.
    offset: u64,
    /// (start, end, arrival time) of the session's recent chunks.
    arrivals: VecDeque<(u64, u64, f64)>,
    /// An init segment that arrived after media: it starts the next session.
    next_init: Option<(Bytes, f64)>,
    session_has_data: bool,
    ended: bool,
    error: Option<SourceError>,
}

/// What a feed carries, for libavformat's probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedKind {
    /// fMP4 from a receiver that checked it.
    Fmp4,
    /// Bytes of a format libavformat has to find.
    Unknown,
}

impl ChunkFeed {
    /// A feed of fMP4 chunks.
    pub fn new(rx: Items<Arrived>) -> Self {
        Self::with_kind(rx, FeedKind::Fmp4)
    }

    /// A feed of bytes in a format libavformat has to find.
    pub fn opaque(rx: Items<Arrived>) -> Self {
        Self::with_kind(rx, FeedKind::Unknown)
    }

    fn with_kind(rx: Items<Arrived>, kind: FeedKind) -> Self {
        ChunkFeed {
            kind,
            inner: Arc::new(Mutex::new(FeedState {
                rx,
                cur: Bytes::new(),
                offset: 0,
                arrivals: VecDeque::new(),
                next_init: None,
                session_has_data: false,
                ended: false,
                error: None,
            })),
        }
    }

    /// The receiver's error, if it ended with one.
    pub fn error(&self) -> Option<SourceError> {
        self.inner.lock().ok().and_then(|s| s.error.clone())
    }

    /// Moves to the next session (a new init segment) if one is waiting.
    pub fn next_session(&self) -> bool {
        let Ok(mut s) = self.inner.lock() else {
            return false;
        };
        match s.next_init.take() {
            Some((init, at)) => {
                s.offset = 0;
                s.arrivals.clear();
                s.push(init, at);
                s.session_has_data = true;
                true
            }
            None => false,
        }
    }

    /// Stops reading: the receiver sees its channel close and hangs up.
    pub fn close(&self) {
        if let Ok(mut s) = self.inner.lock() {
            s.rx.close();
            s.ended = true;
            s.cur = Bytes::new();
        }
    }

    /// When the bytes at `pos` (a libav packet position in the current
    /// session) arrived, if that is still known.
    pub fn arrival(&self, pos: u64) -> Option<f64> {
        let s = self.inner.lock().ok()?;
        s.arrivals
            .iter()
            .rev()
            .find(|(start, end, _)| (*start..*end).contains(&pos))
            .map(|(_, _, at)| *at)
    }

    fn reader(&self) -> ChunkReader {
        ChunkReader { feed: self.clone() }
    }
}

/// Chunks whose arrival times are kept: far more than libav reads ahead.
const ARRIVALS_KEPT: usize = 1024;

impl FeedState {
    fn push(&mut self, b: Bytes, at: f64) {
        let end = self.offset + b.len() as u64;
        self.arrivals.push_back((self.offset, end, at));
        if self.arrivals.len() > ARRIVALS_KEPT {
            self.arrivals.pop_front();
        }
        self.offset = end;
        self.cur = b;
    }
}

/// `Read` over a [`ChunkFeed`]: blocks the libav thread (never a tokio
/// worker) until the receiver has bytes. Returns end-of-file at the end of
/// the stream and also where a new init segment begins, so that each
/// session gets a fresh demuxer.
struct ChunkReader {
    feed: ChunkFeed,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(mut s) = self.feed.inner.lock() else {
            return Err(io::Error::other("input state poisoned"));
        };
        loop {
            if !s.cur.is_empty() {
                let n = buf.len().min(s.cur.len());
                buf[..n].copy_from_slice(&s.cur[..n]);
                s.cur.advance(n);
                return Ok(n);
            }
            if s.ended || s.next_init.is_some() {
                return Ok(0);
            }
            match s.rx.blocking_recv() {
                None => {
                    s.ended = true;
                    return Ok(0);
                }
                Some(Err(e)) => {
                    let msg = e.to_string();
                    s.error = Some(e);
                    s.ended = true;
                    return Err(io::Error::other(msg));
                }
                Some(Ok(Arrived {
                    chunk: Chunk::Init(b),
                    at_unix,
                })) => {
                    if s.session_has_data {
                        s.next_init = Some((b, at_unix));
                        return Ok(0);
                    }
                    s.session_has_data = true;
                    s.push(b, at_unix);
                }
                Some(Ok(Arrived {
                    chunk: Chunk::Fragment(b) | Chunk::Data(b),
                    at_unix,
                })) => {
                    s.session_has_data = true;
                    s.push(b, at_unix);
                }
            }
        }
    }
}

/// Stdin, read on a thread of its own so that Ctrl-C ends a read that
/// would otherwise block until the writer on the other end sends more.
/// Counts the bytes (progress).
struct StdinReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
}

impl StdinReader {
    fn spawn(stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("camflow-stdin".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                loop {
                    let mut buf = vec![0u8; AVIO_BUFFER];
                    let r = stdin.read(&mut buf).map(|n| {
                        buf.truncate(n);
                        buf
                    });
                    let end = !matches!(&r, Ok(b) if !b.is_empty());
                    if tx.send(r).is_err() || end {
                        return;
                    }
                }
            })?;
        Ok(StdinReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            stop,
            count,
        })
    }
}

impl Read for StdinReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::sync::mpsc::RecvTimeoutError;
        loop {
            if self.pos < self.cur.len() {
                let n = buf.len().min(self.cur.len() - self.pos);
                buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                self.count.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            match self.rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(Ok(v)) if v.is_empty() => return Ok(0),
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
    }
}

/// The demuxers an untrusted file may be opened with (libavformat's names):
/// MP4/MOV, Matroska/WebM, MPEG-TS, FLV, AVI and raw H.264.
pub const UNTRUSTED_DEMUXERS: &str = "mov,matroska,mpegts,flv,avi,h264";

/// Reads the next packet of `ictx` into `pkt`, releasing what `pkt` held
/// first. `av_read_frame` overwrites the packet it is given without
/// unreferencing its buffer, so a packet reused across reads leaked every
/// packet's data: memory grew by the input's byte rate (0.9 GB an hour at
/// 2 Mbit/s). With this, the demuxing loops hold one packet at a time.
pub fn read_packet(ictx: &mut Input, pkt: &mut ffmpeg::Packet) -> Result<(), ffmpeg::Error> {
    // Dropping the old packet unreferences its buffer.
    *pkt = ffmpeg::Packet::empty();
    pkt.read(ictx)
}

/// Whether an MP4/MOV file is cut short: its last top-level box declares
/// more bytes than the file has (a copy or a recording that stopped
/// part-way). libavformat then reads the pictures before the cut and ends
/// as at a clean end of file; the ffmpeg CLI warns "partial file". Returns
/// what is missing, for that warning. Reads only the box headers.
pub fn partial_file(path: &std::path::Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut pos = 0u64;
    let mut first = true;
    while len - pos >= 8 {
        let mut head = [0u8; 16];
        let n = usize::try_from((len - pos).min(16)).ok()?;
        file.seek(SeekFrom::Start(pos)).ok()?;
        file.read_exact(&mut head[..n]).ok()?;
        let h = crate::proto::bmff::parse_header(&head[..n]).ok()??;
        // Only files that are MP4 from their first box.
        if first && !matches!(&h.kind, b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide") {
            return None;
        }
        first = false;
        let end = pos.checked_add(h.size)?;
        if end > len {
            return Some(format!(
                "the file is cut short: its {} box ends {} bytes past the end of the file \
                 (partial file); what came before the cut was read",
                h.fourcc(),
                end - len
            ));
        }
        pos = end;
    }
    None
}

/// Whether `pkt`, read from a file, is the sample a cut-short file ends
/// in the middle of. libavformat hands it over short, with only the bytes
/// the file has, and flags it corrupt; copied, it is a picture no decoder
/// can read ("Invalid NAL unit size"), and counted, a picture too many.
/// Only files: a network stream's corrupt packets (lost RTP, a broken
/// TS packet) still hold what can be shown, and are copied as the ffmpeg
/// CLI copies them.
pub fn cut_off(src: &InputSource, pkt: &ffmpeg::Packet) -> bool {
    let (InputSource::Path(p) | InputSource::Untrusted(p)) = src else {
        return false;
    };
    if !pkt.is_corrupt() {
        return false;
    }
    let Ok(pos) = u64::try_from(pkt.position()) else {
        return false;
    };
    std::fs::metadata(p).is_ok_and(|m| pos + pkt.size() as u64 >= m.len())
}

/// AVIO buffer: large enough for few callbacks per 1080p frame.
const AVIO_BUFFER: usize = 256 * 1024;

/// Opens the input and reads stream info. `stop` aborts a stalled open.
pub fn open(
    src: &InputSource,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
) -> Result<Input, ffmpeg::Error> {
    match src {
        InputSource::Path(p) => ffmpeg::format::input(p),
        InputSource::Untrusted(p) => {
            let mut opts = ffmpeg::Dictionary::new();
            opts.set("format_whitelist", UNTRUSTED_DEMUXERS);
            opts.set("protocol_whitelist", "file");
            ffmpeg::format::input_with_dictionary(p, opts)
        }
        InputSource::Stdin => {
            let reader =
                StdinReader::spawn(stop.clone(), bytes_read).map_err(|e| ffmpeg::Error::Other {
                    errno: e.raw_os_error().unwrap_or(ffmpeg::util::error::EIO),
                })?;
            let io = StreamIo::from_read_with_capacity(reader, AVIO_BUFFER)?;
            ffmpeg::format::input_from_stream_with_interrupt(io, None, None, move || {
                stop.load(Ordering::Relaxed)
            })
        }
        InputSource::Chunks(feed) if feed.kind == FeedKind::Unknown => {
            let io = StreamIo::from_read_with_capacity(feed.reader(), AVIO_BUFFER)?;
            ffmpeg::format::input_from_stream_with_interrupt(io, None, None, move || {
                stop.load(Ordering::Relaxed)
            })
        }
        InputSource::Chunks(feed) => {
            let io = StreamIo::from_read_with_capacity(feed.reader(), AVIO_BUFFER)?;
            // The receiver only hands over fMP4, so say so: probing a live
            // stream for its format would only add latency.
            let mut opts = ffmpeg::Dictionary::new();
            opts.set("probesize", "1048576");
            opts.set("analyzeduration", "1000000");
            ffmpeg::format::input_from_stream_with_interrupt(
                io,
                Some("stream.mp4"),
                Some(opts),
                move || stop.load(Ordering::Relaxed),
            )
        }
    }
}
