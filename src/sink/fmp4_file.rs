//! Records a clean fMP4 chunk stream to a file exactly as received: the init
//! segment, then every fragment in order. A fragmented MP4 is a complete MP4
//! after every fragment, so whatever was written before a fault plays.
//!
//! The file is written under a temporary name ([`PendingFile`]) and takes
//! the output's name only once it holds a fragment, so a run that fails
//! before any video leaves an earlier recording at that path as it was, and
//! no init-only file either.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::packet::{Arrived, Chunk, Items, SourceError};
use crate::proto::bmff::{self, InitInfo};

/// Why a recording of fMP4 chunks stopped short. `Display` is the one-line
/// message `record` shows; the file holds what came before.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Creating, writing or renaming the file failed (a full disk, no
    /// permission); a failed write was cut back to the last whole fragment.
    #[error("{path}: {source}")]
    Io {
        /// The output path.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// A second, different init segment came after fragments were written:
    /// one MP4 file cannot change its tracks' parameters.
    #[error(
        "the stream sent a different init segment (its parameters changed); \
         {path} holds everything before it"
    )]
    InitChanged {
        /// The output path.
        path: PathBuf,
    },
    /// A fragment, or bytes that are not fMP4, came before any init segment.
    #[error("a fragment arrived before the init segment")]
    NoInit,
    /// The init segment has tracks, none of them video; nothing was written.
    #[error("the input has no video stream (its init segment holds {tracks})")]
    NoVideo {
        /// The tracks' handler types, comma-separated (`soun, meta`).
        tracks: String,
    },
    /// A fragment started earlier than the one before it (the camera
    /// restarted its clock): it cannot follow in the same file.
    #[error(
        "the stream restarted (its timestamps went back from {from:.3} s to {to:.3} s); \
         {path} holds everything before it"
    )]
    Restarted {
        /// The output path.
        path: PathBuf,
        /// The previous fragment's start, seconds.
        from: f64,
        /// The refused fragment's start, seconds.
        to: f64,
    },
}

/// A file written under a temporary name in the output's folder,
/// `.NAME.camflow-tmp`, and renamed over the output by [`PendingFile::place`]
/// once it holds video. Until then the output is left as it was; dropped
/// unplaced, the temporary file is removed.
///
/// An output that exists and is not a regular file (`/dev/null`, a FIFO) is
/// written in place: there is nothing there to keep, and a rename would
/// replace the device. A symbolic link to a file keeps pointing at it: the
/// file it points to is the one replaced.
#[derive(Debug)]
pub struct PendingFile {
    /// The name the file ends up with.
    target: PathBuf,
    /// Where it is written until placed; `None` once placed (or when
    /// written in place).
    tmp: Option<PathBuf>,
    /// An existing output's permissions, which the new file takes over.
    permissions: Option<Permissions>,
}

impl PendingFile {
    /// Plans a file that is to end up at `path`. Nothing is created yet:
    /// [`PendingFile::create`] (or a muxer given [`PendingFile::path`])
    /// does that.
    pub fn new(path: &Path) -> PendingFile {
        let existing = std::fs::metadata(path).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            return PendingFile {
                target: path.to_path_buf(),
                tmp: None,
                permissions: None,
            };
        }
        let target = match &existing {
            Some(_) => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            None => path.to_path_buf(),
        };
        let mut name = std::ffi::OsString::from(".");
        name.push(target.file_name().unwrap_or(target.as_os_str()));
        name.push(".camflow-tmp");
        PendingFile {
            tmp: Some(target.with_file_name(name)),
            target,
            permissions: existing.map(|m| m.permissions()),
        }
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.target)
    }

    /// Creates (or truncates) the file at [`PendingFile::path`].
    pub fn create(&self) -> io::Result<File> {
        File::create(self.path())
    }

    /// Renames the file over the output (once; later calls do nothing). An
    /// open handle on it goes on writing to it under its new name.
    pub fn place(&mut self) -> io::Result<()> {
        let Some(tmp) = &self.tmp else {
            return Ok(());
        };
        if let Some(p) = &self.permissions {
            std::fs::set_permissions(tmp, p.clone())?;
        }
        std::fs::rename(tmp, &self.target)?;
        self.tmp = None;
        Ok(())
    }

    /// Whether the file has its final name (or had it from the start).
    pub fn is_placed(&self) -> bool {
        self.tmp.is_none()
    }

    /// Removes the file unless it was placed; the output stays as it was.
    pub fn discard(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Writes one recording of fMP4 chunks: in, the init segment and fragments
/// ([`Fmp4FileWriter::init`], [`Fmp4FileWriter::fragment`]); out, an MP4 at
/// the output path once it holds a fragment, and counts for progress.
pub struct Fmp4FileWriter {
    path: PathBuf,
    file: Option<File>,
    /// After `file`, so the file is closed before an unplaced one is removed.
    out: PendingFile,
    init: Option<(Bytes, InitInfo)>,
    /// Bytes known to be whole: the file is cut back to this on a failed write.
    good_len: u64,
    first_time: Option<f64>,
    /// Where the next fragment starts when it carries no `tfdt`: the end of
    /// the previous one (its start plus its sample durations).
    next_time: Option<f64>,
    last_start: Option<f64>,
    /// Fragments written.
    pub fragments: u64,
    /// Video samples in the fragments written: the frames a player (and
    /// `ffprobe -count_frames`) reads from the file.
    pub frames: u64,
    /// Stream time covered so far, seconds.
    pub seconds: f64,
}

impl Fmp4FileWriter {
    /// A writer for a recording at `path`; nothing is written until the
    /// init segment arrives.
    pub fn new(path: &Path) -> Self {
        Fmp4FileWriter {
            path: path.to_path_buf(),
            out: PendingFile::new(path),
            file: None,
            init: None,
            good_len: 0,
            first_time: None,
            next_time: None,
            last_start: None,
            fragments: 0,
            frames: 0,
            seconds: 0.0,
        }
    }

    fn io(&self) -> impl FnOnce(io::Error) -> RecordError + '_ {
        |source| RecordError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes all of `data` or, on failure, cuts the file back so that it
    /// ends after the last whole fragment.
    fn append(&mut self, data: &[u8]) -> Result<(), RecordError> {
        let Some(file) = self.file.as_mut() else {
            return Err(RecordError::NoInit);
        };
        match file.write_all(data) {
            Ok(()) => {
                self.good_len += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = file.set_len(self.good_len);
                Err(self.io()(e))
            }
        }
    }

    /// The file is created, under its temporary name, when the init segment
    /// arrives; it replaces the output with the first fragment.
    pub fn init(&mut self, init: Bytes) -> Result<(), RecordError> {
        if let Some((cur, _)) = &self.init {
            if *cur == init {
                return Ok(());
            }
            // Before any fragment nothing is lost: a reconnect's new init
            // segment simply takes the old one's place.
            if self.fragments > 0 {
                return Err(RecordError::InitChanged {
                    path: self.path.clone(),
                });
            }
        }
        let info = bmff::parse_init(&init).unwrap_or_default();
        // An init segment that parses, without a video track (an audio-only
        // stream): refused before anything is written, as decode refuses
        // it, instead of replacing the output with a file of no video.
        if !info.tracks.is_empty() && !info.tracks.iter().any(bmff::TrackInfo::is_video) {
            let tracks = info
                .tracks
                .iter()
                .map(|t| t.handler.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RecordError::NoVideo { tracks });
        }
        self.file = Some(self.out.create().map_err(self.io())?);
        self.good_len = 0;
        self.append(&init)?;
        self.init = Some((init, info));
        self.next_time = Some(0.0);
        Ok(())
    }

    /// Start time and length of a fragment's video in seconds: the start
    /// from `tfdt`, or else where the previous fragment ended.
    pub fn fragment_time(&self, frag: &[u8]) -> Option<(f64, Option<f64>)> {
        let (_, info) = self.init.as_ref()?;
        let f = bmff::parse_fragment_with_init(frag, info).ok()?;
        f.trafs.iter().find_map(|t| {
            let track = info.track(t.track_id)?;
            if !track.is_video() || track.timescale == 0 {
                return None;
            }
            let scale = f64::from(track.timescale);
            let start = match t.base_media_decode_time {
                Some(b) => b as f64 / scale,
                None => self.next_time?,
            };
            Some((start, t.duration.map(|d| d as f64 / scale)))
        })
    }

    /// Video samples in a fragment (0 for one that does not parse, which
    /// is written all the same).
    fn video_samples(&self, frag: &[u8]) -> u64 {
        let Some((_, info)) = self.init.as_ref() else {
            return 0;
        };
        bmff::parse_fragment_with_init(frag, info)
            .map(|f| video_samples(&f, info))
            .unwrap_or(0)
    }

    /// Appends a fragment unless it starts at or past `duration` seconds of
    /// stream time; returns false then (the recording is complete).
    pub fn fragment(&mut self, frag: &[u8], duration: Option<f64>) -> Result<bool, RecordError> {
        if let Some((t, len)) = self.fragment_time(frag) {
            // Fragments going back in time cannot follow in one MP4 file.
            if let Some(prev) = self.last_start.filter(|p| t < *p) {
                return Err(RecordError::Restarted {
                    path: self.path.clone(),
                    from: prev,
                    to: t,
                });
            }
            self.last_start = Some(t);
            let first = *self.first_time.get_or_insert(t);
            if duration.is_some_and(|d| t - first >= d) {
                return Ok(false);
            }
            self.seconds = t - first + len.unwrap_or(0.0);
            self.next_time = len.map(|l| t + l);
        }
        let samples = self.video_samples(frag);
        self.append(frag)?;
        // The file now plays: it takes the output's name.
        self.out.place().map_err(self.io())?;
        self.fragments += 1;
        self.frames += samples;
        Ok(true)
    }

    /// Flushes the recording. Without a fragment there is none: the
    /// temporary file is removed and the output left as it was.
    pub fn finish(&mut self) -> Result<(), RecordError> {
        if !self.has_output() {
            self.file = None;
            self.out.discard();
            return Ok(());
        }
        if let Some(f) = self.file.as_mut() {
            f.flush().map_err(|source| RecordError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether this run has written video to the output.
    pub fn has_output(&self) -> bool {
        self.fragments > 0
    }
}

/// How [`record`] ended, when nothing failed to be written.
#[derive(Debug)]
pub enum RecordEnd {
    /// The stream ended, `--duration` was reached, or Ctrl-C.
    Done,
    /// The receiver failed; the file holds what arrived before.
    Source(SourceError),
}

/// Writes a receiver's clean fMP4 chunks into `w` exactly as received,
/// until the stream ends, `duration` seconds are written, or the receiver
/// fails. `on_chunk` sees the writer after each chunk (progress). A write
/// that fails ends it with the writer's error; the file was cut back to its
/// last whole fragment. The caller finishes the writer.
pub fn record(
    rx: &mut Items<Arrived>,
    w: &mut Fmp4FileWriter,
    duration: Option<f64>,
    on_chunk: &mut dyn FnMut(&Fmp4FileWriter),
) -> Result<RecordEnd, RecordError> {
    let end = loop {
        let Some(item) = rx.blocking_recv() else {
            break RecordEnd::Done;
        };
        let more = match item {
            Ok(Arrived {
                chunk: Chunk::Init(b),
                ..
            }) => w.init(b).map(|_| true)?,
            Ok(Arrived {
                chunk: Chunk::Fragment(b),
                ..
            }) => w.fragment(&b, duration)?,
            // fMP4 receivers send no unparsed bytes.
            Ok(Arrived {
                chunk: Chunk::Data(_),
                ..
            }) => return Err(RecordError::NoInit),
            Err(e) => break RecordEnd::Source(e),
        };
        on_chunk(w);
        if !more {
            break RecordEnd::Done;
        }
    };
    rx.close();
    Ok(end)
}

/// What a fragmented MP4 holds up to its last whole fragment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WholeFragments {
    /// Bytes up to the end of the last whole box.
    pub len: u64,
    /// Whole fragments (a `moof` with all of its `mdat`).
    pub fragments: u64,
    /// Samples of the video track(s) in those fragments: the frames a
    /// player (and `ffprobe -count_frames`) reads from the file.
    pub video_samples: u64,
}

/// Cuts a fragmented MP4 back to its last whole box (a write that failed
/// part-way, on a full disk, leaves part of a fragment at the end) and
/// counts what is left. A `moof` counts only with the whole `mdat` after
/// it. Reads the box headers and the `moov`/`moof` boxes, seeking past
/// media data.
pub fn cut_to_whole_fragments(path: &Path) -> io::Result<WholeFragments> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let file_len = file.metadata()?.len();
    let whole = whole_fragments(&file, file_len)?;
    if whole.len < file_len {
        file.set_len(whole.len)?;
    }
    Ok(whole)
}

/// What [`cut_to_whole_fragments`] would leave, without cutting: for a
/// file still being written, whether it holds a whole fragment yet.
pub fn count_whole_fragments(path: &Path) -> io::Result<WholeFragments> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    whole_fragments(&file, file_len)
}

/// The whole boxes of a fragmented MP4 among its first `file_len` bytes.
fn whole_fragments(mut file: &File, file_len: u64) -> io::Result<WholeFragments> {
    use std::io::{Read, Seek, SeekFrom};
    let mut whole = WholeFragments::default();
    let mut init = InitInfo::default();
    let mut init_bytes: Vec<u8> = Vec::new();
    // A `moof` waiting for its `mdat`, and its video samples.
    let mut moof_samples: Option<u64> = None;
    let mut pos = 0u64;
    loop {
        let mut head = [0u8; 16];
        let avail = (file_len - pos).min(16) as usize;
        if avail < 8 {
            break;
        }
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut head[..avail])?;
        let Ok(Some(h)) = bmff::parse_header(&head[..avail]) else {
            break;
        };
        let Some(end) = pos.checked_add(h.size).filter(|e| *e <= file_len) else {
            break;
        };
        // Boxes read whole are small (headers, sample tables); anything
        // larger than this in a moov or moof is not one camflow wrote.
        const READ_LIMIT: u64 = 64 << 20;
        let mut read_whole = || -> io::Result<Vec<u8>> {
            let mut b = vec![0u8; usize::try_from(h.size.min(READ_LIMIT)).unwrap_or(0)];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut b)?;
            Ok(b)
        };
        match &h.kind {
            b"ftyp" | b"moov" => {
                init_bytes.extend_from_slice(&read_whole()?);
                if h.kind == *b"moov" {
                    init = bmff::parse_init(&init_bytes).unwrap_or_default();
                }
                whole.len = end;
            }
            b"moof" => {
                let moof = read_whole()?;
                let samples = bmff::parse_fragment_with_init(&moof, &init)
                    .map(|f| video_samples(&f, &init))
                    .unwrap_or(0);
                moof_samples = Some(samples);
            }
            b"mdat" => {
                if let Some(n) = moof_samples.take() {
                    whole.fragments += 1;
                    whole.video_samples += n;
                }
                whole.len = end;
            }
            // styp, sidx, mfra...: whole boxes between fragments.
            _ if moof_samples.is_none() => whole.len = end,
            _ => {}
        }
        pos = end;
    }
    Ok(whole)
}

/// Samples of the video track(s) in a fragment.
fn video_samples(f: &bmff::FragmentInfo, init: &InitInfo) -> u64 {
    f.trafs
        .iter()
        .filter(|t| init.track(t.track_id).is_some_and(|t| t.is_video()))
        .map(|t| t.sample_count)
        .sum()
}
