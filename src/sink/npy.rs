//! Frames as numpy `.npy` files plus a CSV index.
//!
//! Each frame is written as `.frame_NNNNNN.npy.tmp` and renamed into place,
//! so a script polling the folder for `*.npy` never sees half a file; its
//! CSV row is written (and flushed) only after the rename, so every row
//! names a complete file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ndarray::ArrayView3;
use ndarray_npy::WriteNpyExt;

use crate::packet::BgrFrame;

/// The index's file name in the frames folder.
pub const CSV_NAME: &str = "frames.csv";
/// The index's first line; scripts read columns by these names.
pub const CSV_HEADER: &str = "frame,file,pts_seconds,received_unix_seconds,width,height,keyframe";

/// One row of frames.csv.
#[derive(Debug, Clone)]
pub struct Row {
    /// The frame's number from 0, also in its file name.
    pub index: u64,
    /// Presentation time from the stream's start; `None` (an empty cell)
    /// when the source gives none.
    pub pts_seconds: Option<f64>,
    /// When the frame arrived, in Unix seconds.
    pub received_unix: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the frame decodes on its own (written as 1 or 0).
    pub keyframe: bool,
}

/// Writes frames into one folder, each file complete before its index row
/// names it; see the module docs.
pub struct NpyDirWriter {
    dir: PathBuf,
    /// The index and how many of its bytes are whole rows. Opened with the
    /// first frame, so a run that fails before any frame leaves an earlier
    /// run's frames and index alone.
    csv: Option<(File, u64)>,
    /// The folders `create` made (the deepest first): a run that writes
    /// nothing takes them away again.
    made: Vec<PathBuf>,
}

/// A run that never began writing takes away the folders it made (while
/// they are empty), so a failed first run leaves no trace.
impl Drop for NpyDirWriter {
    fn drop(&mut self) {
        if self.csv.is_none() {
            for d in &self.made {
                if fs::remove_dir(d).is_err() {
                    break;
                }
            }
        }
    }
}

/// Errors name the file they concern.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct SinkError {
    /// The file or folder that could not be written.
    pub path: PathBuf,
    /// What the system said.
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> SinkError + '_ {
    move |source| SinkError {
        path: path.to_path_buf(),
        source,
    }
}

impl NpyDirWriter {
    /// Creates the folder if needed and checks that files can be made in
    /// it, so that a bad `--frames-dir` fails before connecting.
    pub fn create(dir: &Path) -> Result<Self, SinkError> {
        let made: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| !a.exists())
            .map(Path::to_path_buf)
            .collect();
        let writer = NpyDirWriter {
            dir: dir.to_path_buf(),
            csv: None,
            made,
        };
        // create_dir_all on a file says "File exists (os error 17)", or
        // "Not a directory" for one further up: name the file instead.
        if let Some(file) = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .find(|a| a.exists())
            .filter(|a| !a.is_dir())
        {
            return Err(SinkError {
                path: file.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "is a file, not a folder: --frames-dir needs a folder",
                ),
            });
        }
        let checked = fs::create_dir_all(dir).and_then(|()| {
            let probe = dir.join(".camflow-write-test.tmp");
            File::create(&probe)?;
            fs::remove_file(&probe)
        });
        checked.map_err(at(dir))?;
        Ok(writer)
    }

    /// The name frame `index` is written under (`frame_000012.npy`).
    pub fn file_name(index: u64) -> String {
        format!("frame_{index:06}.npy")
    }

    /// Replaces an earlier run's frames and starts a new index.
    fn start(&mut self) -> Result<(), SinkError> {
        if self.csv.is_some() {
            return Ok(());
        }
        remove_earlier_frames(&self.dir)?;
        let csv_path = self.dir.join(CSV_NAME);
        let mut file = File::create(&csv_path).map_err(at(&csv_path))?;
        let header = format!("{CSV_HEADER}\n");
        file.write_all(header.as_bytes()).map_err(at(&csv_path))?;
        self.csv = Some((file, header.len() as u64));
        Ok(())
    }

    /// Ends a run that completed: a run with no frames still leaves an
    /// (empty) index, unless it was `stopped` (Ctrl-C) before its first
    /// frame: then, as for a run that failed (a writer dropped unfinished),
    /// an earlier run's frames and index stay as they were. Says whether
    /// the folder now holds this run's index.
    pub fn finish(&mut self, stopped: bool) -> Result<bool, SinkError> {
        if stopped && self.csv.is_none() {
            return Ok(false);
        }
        self.start()?;
        Ok(true)
    }

    /// Writes one frame and its index row. On error nothing partial is left:
    /// the temporary file is removed and no row is written.
    pub fn write(&mut self, f: &BgrFrame) -> Result<(), SinkError> {
        let row = Row {
            index: f.index,
            pts_seconds: f.pts_seconds,
            received_unix: f.received_unix,
            width: f.width,
            height: f.height,
            keyframe: f.keyframe,
        };
        self.commit(Self::file_name(f.index), &row, |path| write_npy(path, f))
    }

    /// Writes one JPEG exactly as received (`frame_NNNNNN.jpg`) and its row.
    pub fn write_jpeg(&mut self, row: &Row, jpeg: &[u8]) -> Result<(), SinkError> {
        let name = format!("frame_{:06}.jpg", row.index);
        self.commit(name, row, |path| fs::write(path, jpeg))
    }

    /// Writes a frame file under a temporary name, renames it into place,
    /// then appends its row.
    fn commit(
        &mut self,
        name: String,
        r: &Row,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), SinkError> {
        self.start()?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let dst = self.dir.join(&name);
        if let Err(e) = write(&tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(SinkError {
                path: dst,
                source: e,
            });
        }
        if let Err(e) = fs::rename(&tmp, &dst) {
            let _ = fs::remove_file(&tmp);
            return Err(SinkError {
                path: dst,
                source: e,
            });
        }
        let pts = r.pts_seconds.map(|p| format!("{p:.6}")).unwrap_or_default();
        let row = format!(
            "{},{},{},{:.6},{},{},{}\n",
            r.index,
            name,
            pts,
            r.received_unix,
            r.width,
            r.height,
            u8::from(r.keyframe)
        );
        let csv_path = self.dir.join(CSV_NAME);
        let Some((csv, good)) = self.csv.as_mut() else {
            return Ok(());
        };
        // One unbuffered write per row: the index on disk is always whole
        // rows, and nothing is left in a buffer to be flushed later.
        match csv.write_all(row.as_bytes()) {
            Ok(()) => {
                *good += row.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut back a partly written row, and take the frame back: a
                // file without its row would be picked up by folder pollers.
                let _ = csv.set_len(*good);
                let _ = fs::remove_file(&dst);
                Err(at(&csv_path)(e))
            }
        }
    }
}

/// A new run replaces the frames of an earlier one in the same folder, so
/// that a script polling for `*.npy` never mixes two runs. Only camflow's
/// own names are touched: `frame_<digits>.npy` / `.jpg` and their
/// `.frame_<digits>.npy.tmp` / `.jpg.tmp` temporaries.
fn remove_earlier_frames(dir: &Path) -> Result<(), SinkError> {
    super::remove_own(dir, |name| {
        let base = name.strip_suffix(".tmp").and_then(|n| n.strip_prefix('.'));
        base.unwrap_or(name)
            .strip_prefix("frame_")
            .and_then(|n| n.strip_suffix(".npy").or_else(|| n.strip_suffix(".jpg")))
            .is_some_and(super::is_number)
    })
    .map_err(|(path, source)| SinkError { path, source })
}

fn write_npy(path: &Path, f: &BgrFrame) -> io::Result<()> {
    let shape = (f.height as usize, f.width as usize, 3);
    let len = shape.0 * shape.1 * 3;
    let data = f
        .data
        .get(..len)
        .ok_or_else(|| io::Error::other("frame buffer shorter than its size"))?;
    let view = ArrayView3::from_shape(shape, data).map_err(io::Error::other)?;
    // No BufWriter: ndarray-npy writes the header, then the whole C-order
    // slice in one call, which is what we want for multi-megabyte frames.
    let file = File::create(path)?;
    preallocate(&file, len as u64 + NPY_HEADER_MAX);
    view.write_npy(&file).map_err(|e| match e {
        ndarray_npy::WriteNpyError::Io(io) => io,
        other => io::Error::other(other),
    })?;
    Ok(())
}

/// Room for the .npy header (a few dozen bytes, padded to 64 or 128).
const NPY_HEADER_MAX: u64 = 256;

/// Reserves the file's blocks in one call before the write, instead of
/// ext4 allocating them block by block as the data arrives (measured here:
/// a third less system time writing 1080p frames). Keeps the file's size,
/// so the few spare bytes are never seen. A filesystem that cannot do it
/// simply allocates as it goes.
fn preallocate(file: &File, len: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    // SAFETY: fallocate(2) on a file descriptor we own; it only reserves
    // space (KEEP_SIZE) and its failure is harmless.
    unsafe {
        libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len);
    }
}
