//! The display matrix: how a player turns a stream's pictures (phones store
//! portrait video sideways and say so in the track header's matrix,
//! ISO/IEC 14496-12 §8.3.2; libav hands it on as `AV_PKT_DATA_DISPLAYMATRIX`
//! stream side data, or per frame from an H.264 SEI).
//!
//! In: a stream's or a frame's side data. Out: the [`Turn`] `decode` gives
//! its BGR frames (what the ffmpeg CLI's autorotate does), the matrix copied
//! into `record` and `hls` outputs, and the angle `probe` prints.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ffmpeg::ffi;
use ffmpeg::util::frame::Video;
use ffmpeg_next as ffmpeg;

use crate::proto::bmff;

/// libav's display matrix: 3x3, row-major, 16.16 fixed point except the
/// last column (2.30), as in the track header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayMatrix(pub [i32; 9]);

/// Bytes of a display matrix in side data.
const MATRIX_BYTES: usize = 9 * 4;

impl DisplayMatrix {
    fn from_side_data(data: *const u8, size: usize) -> Option<Self> {
        if data.is_null() || size < MATRIX_BYTES {
            return None;
        }
        let mut m = [0i32; 9];
        // SAFETY: libav's side data buffer holds at least `size` bytes;
        // read unaligned, as its alignment is libav's business.
        for (i, v) in m.iter_mut().enumerate() {
            *v = unsafe { std::ptr::read_unaligned((data as *const i32).add(i)) };
        }
        Some(DisplayMatrix(m))
    }

    /// The matrix a demuxer found for `stream`, if any.
    pub fn of_stream(stream: &ffmpeg::format::stream::Stream) -> Option<Self> {
        let mut size = 0usize;
        // SAFETY: a lookup in the stream's own side data.
        let data = unsafe {
            ffi::av_stream_get_side_data(
                stream.as_ptr(),
                ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                &mut size,
            )
        };
        Self::from_side_data(data, size)
    }

    /// The matrix a decoder attached to `frame` (an H.264 display
    /// orientation SEI, a JPEG's EXIF orientation), if any.
    pub fn of_frame(frame: &Video) -> Option<Self> {
        // SAFETY: a lookup in the frame's own side data.
        unsafe {
            let sd = ffi::av_frame_get_side_data(
                frame.as_ptr(),
                ffi::AVFrameSideDataType::AV_FRAME_DATA_DISPLAYMATRIX,
            );
            if sd.is_null() {
                return None;
            }
            Self::from_side_data((*sd).data, (*sd).size)
        }
    }

    /// Degrees the picture is turned clockwise for display, in [0, 360),
    /// rounded as the ffmpeg CLI rounds it (fftools' `get_rotation`);
    /// `None` for a matrix that is no rotation at all (a zero scale).
    pub fn rotation(&self) -> Option<f64> {
        // SAFETY: reads the nine values of our own array.
        let ccw = unsafe { ffi::av_display_rotation_get(self.0.as_ptr()) };
        if !ccw.is_finite() {
            return None;
        }
        let theta = -ccw.round();
        Some(theta - 360.0 * (theta / 360.0 + 0.9 / 360.0).floor())
    }

    /// Whether the matrix mirrors the picture as well as turning it.
    pub fn mirrored(&self) -> bool {
        let m = &self.0;
        // A negative determinant of the 2x2 part: a reflection.
        i64::from(m[0]) * i64::from(m[4]) - i64::from(m[1]) * i64::from(m[3]) < 0
    }

    /// The turn the ffmpeg CLI's autorotate gives these pictures
    /// (fftools/ffmpeg_filter.c, FFmpeg 5.1: `transpose` for 90° and 270°,
    /// `hflip`/`vflip` for 180° and a mirrored 0°). `None`: an angle that
    /// is not a quarter turn, which ffmpeg fills out with black corners
    /// (its `rotate` filter); camflow keeps such pictures as stored.
    pub fn turn(&self) -> Option<Turn> {
        let Some(theta) = self.rotation() else {
            return Some(Turn::default());
        };
        let m = &self.0;
        let near = |a: f64| (theta - a).abs() < 1.0;
        // transpose=DIR: bit 0 reads the source rows bottom-up (flip_x of
        // the transposed picture), bit 1 writes the rows bottom-up.
        let transpose = |dir: u8| Turn {
            transpose: true,
            flip_x: dir & 1 != 0,
            flip_y: dir & 2 != 0,
        };
        if near(90.0) {
            // cclock_flip (0) or clock (1)
            Some(transpose(if m[3] > 0 { 0 } else { 1 }))
        } else if near(180.0) {
            Some(Turn {
                transpose: false,
                flip_x: m[0] < 0,
                flip_y: m[4] < 0,
            })
        } else if near(270.0) {
            // clock_flip (3) or cclock (2)
            Some(transpose(if m[3] < 0 { 3 } else { 2 }))
        } else if theta.abs() > 1.0 {
            None
        } else {
            Some(Turn {
                transpose: false,
                flip_x: false,
                flip_y: m[4] < 0,
            })
        }
    }

    /// Adds the matrix to an output stream's side data, where the MP4
    /// muxer reads it for the track header (as `ffmpeg -c copy` does).
    ///
    /// # Safety
    /// `st` must be a live stream of an output whose header is not written.
    pub unsafe fn add_to(&self, st: *mut ffi::AVStream) -> Result<(), ffmpeg::Error> {
        let data = ffi::av_stream_new_side_data(
            st,
            ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            MATRIX_BYTES,
        );
        if data.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::util::error::ENOMEM,
            });
        }
        std::ptr::copy_nonoverlapping(self.0.as_ptr() as *const u8, data, MATRIX_BYTES);
        Ok(())
    }

    /// The matrix as a track header holds it (big-endian).
    fn tkhd_bytes(&self) -> [u8; MATRIX_BYTES] {
        let mut out = [0u8; MATRIX_BYTES];
        for (chunk, v) in out.chunks_exact_mut(4).zip(self.0) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// Writes the matrix into the video track's header of the MP4 init
    /// segment at `path`: those 36 bytes only, in place, so that a full
    /// disk cannot leave the file shorter. `Ok(false)`: no video track.
    pub fn patch_init_file(&self, path: &Path) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        let init = std::fs::read(path)?;
        let Some(at) = video_tkhd_matrix_offset(&init) else {
            return Ok(false);
        };
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all_at(&self.tkhd_bytes(), at as u64)?;
        Ok(true)
    }
}

/// Where the matrix of the video track's `tkhd` starts in an init segment.
fn video_tkhd_matrix_offset(init: &[u8]) -> Option<usize> {
    let fourcc = |b: &bmff::BoxRef<'_>| b.header.kind;
    let moov = bmff::boxes(init)
        .filter_map(Result::ok)
        .find(|b| &fourcc(b) == b"moov")?;
    for trak in moov.children().filter_map(Result::ok) {
        if &fourcc(&trak) != b"trak" {
            continue;
        }
        let is_video = trak
            .children()
            .filter_map(Result::ok)
            .filter(|b| &fourcc(b) == b"mdia")
            .flat_map(|mdia| {
                mdia.children()
                    .filter_map(Result::ok)
                    .filter(|b| &fourcc(b) == b"hdlr")
                    .map(|h| h.body.get(8..12) == Some(b"vide"))
                    .collect::<Vec<_>>()
            })
            .any(|v| v);
        if !is_video {
            continue;
        }
        let tkhd = trak
            .children()
            .filter_map(Result::ok)
            .find(|b| &fourcc(b) == b"tkhd")?;
        // Version 0 has 32-bit times, 1 has 64-bit ones; the matrix
        // follows the reserved, layer, group and volume fields.
        let skip = match tkhd.body.first()? {
            0 => 40,
            1 => 52,
            _ => return None,
        };
        if tkhd.body.len() < skip + MATRIX_BYTES {
            return None;
        }
        let body_at = usize::try_from(tkhd.offset).ok()? + tkhd.header.header_len;
        return Some(body_at + skip);
    }
    None
}

/// How to turn a picture for display: transpose first (rows become
/// columns), then mirror the result's columns and/or rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn {
    /// Swap rows and columns (a quarter turn, with a flip).
    pub transpose: bool,
    /// Mirror left to right, after any transpose.
    pub flip_x: bool,
    /// Mirror top to bottom, after any transpose.
    pub flip_y: bool,
}

impl Turn {
    /// Whether the picture stays as it is, so the copy can be skipped.
    pub fn is_identity(&self) -> bool {
        *self == Turn::default()
    }

    /// The size of a `width` x `height` picture once turned.
    pub fn size(&self, width: u32, height: u32) -> (u32, u32) {
        if self.transpose {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Turns packed BGR `src` (`w` x `h`, rows of `w * 3` bytes) into
    /// `dst` (the turned size, packed).
    pub fn apply(&self, src: &[u8], w: usize, h: usize, dst: &mut [u8]) {
        let (ow, _) = if self.transpose { (h, w) } else { (w, h) };
        self.apply_samples::<3>(src, w * 3, (w, h), dst, ow * 3);
    }

    /// Turns a picture of `N`-byte samples (`w` x `h` stored, rows
    /// `src_stride` bytes apart) into `dst` (the turned size, rows
    /// `dst_stride` apart): BGR pixels (`N` = 3) or one plane of a YUV
    /// picture (`N` = 1). In tiles, so that a transpose reads and writes
    /// within the cache. Nothing is written if a buffer is too small.
    pub fn apply_samples<const N: usize>(
        &self,
        src: &[u8],
        src_stride: usize,
        (w, h): (usize, usize),
        dst: &mut [u8],
        dst_stride: usize,
    ) {
        const TILE: usize = 32;
        let (ow, oh) = if self.transpose { (h, w) } else { (w, h) };
        let fits = |len: usize, stride: usize, cols: usize, rows: usize| {
            stride >= cols * N && len >= (rows - 1) * stride + cols * N
        };
        if w == 0
            || h == 0
            || !fits(src.len(), src_stride, w, h)
            || !fits(dst.len(), dst_stride, ow, oh)
        {
            return;
        }
        // A turn is linear: output (x, y) shows the stored sample at byte
        // `first + x * step_x + y * step_y`. Transposed, the output's x
        // walks down the stored rows; a flip walks backwards from the end.
        let (n, stride) = (N as isize, src_stride as isize);
        let (owi, ohi) = (ow as isize, oh as isize);
        let (along_x, along_y) = if self.transpose {
            (stride, n)
        } else {
            (n, stride)
        };
        let (x0, dir_x) = if self.flip_x { (owi - 1, -1) } else { (0, 1) };
        let (y0, dir_y) = if self.flip_y { (ohi - 1, -1) } else { (0, 1) };
        let first = x0 * along_x + y0 * along_y;
        let (step_x, step_y) = (dir_x * along_x, dir_y * along_y);
        for ty in (0..oh).step_by(TILE) {
            for tx in (0..ow).step_by(TILE) {
                let x_end = (tx + TILE).min(ow);
                for y in ty..(ty + TILE).min(oh) {
                    let mut s = first + tx as isize * step_x + y as isize * step_y;
                    let row = &mut dst[y * dst_stride + tx * N..y * dst_stride + x_end * N];
                    // Whole samples: one copy of N bytes each.
                    let (row, _) = row.as_chunks_mut::<N>();
                    for px in row {
                        let at = s as usize;
                        px.copy_from_slice(&src[at..at + N]);
                        s += step_x;
                    }
                }
            }
        }
    }
}

/// Gives an HLS output's `init.mp4` a display matrix. FFmpeg 5.1's HLS
/// muxer does not hand stream side data to the MP4 muxer it writes the
/// init segment with (`ffmpeg -c copy -f hls` loses the rotation too), so
/// the matrix is written into the file when the muxer closes it: through
/// the output's `io_open`/`io_close2` hooks, before the muxer goes on to the
/// segment and the playlist that a player reads first.
pub struct InitPatch {
    matrix: DisplayMatrix,
    /// The init segment's path, and while it is open, its AVIOContext and
    /// the name it was opened under (with `temp_file`, a `.tmp` one).
    init: PathBuf,
    open: Mutex<Option<(usize, PathBuf)>>,
    default_open: Option<IoOpen>,
    default_close: Option<IoClose>,
}

type IoOpen = unsafe extern "C" fn(
    *mut ffi::AVFormatContext,
    *mut *mut ffi::AVIOContext,
    *const std::ffi::c_char,
    std::ffi::c_int,
    *mut *mut ffi::AVDictionary,
) -> std::ffi::c_int;
type IoClose =
    unsafe extern "C" fn(*mut ffi::AVFormatContext, *mut ffi::AVIOContext) -> std::ffi::c_int;

impl InitPatch {
    /// Hooks `ctx`'s file opening and closing. The patch must outlive the
    /// context: keep the box until after the context is freed.
    ///
    /// # Safety
    /// `ctx` must be a live output context whose header is not written,
    /// and `opaque` not otherwise used.
    pub unsafe fn install(
        ctx: *mut ffi::AVFormatContext,
        init: &Path,
        matrix: DisplayMatrix,
    ) -> Box<InitPatch> {
        let patch = Box::new(InitPatch {
            matrix,
            init: init.to_path_buf(),
            open: Mutex::new(None),
            default_open: (*ctx).io_open,
            default_close: (*ctx).io_close2,
        });
        (*ctx).opaque = &*patch as *const InitPatch as *mut std::ffi::c_void;
        (*ctx).io_open = Some(hook_open);
        (*ctx).io_close2 = Some(hook_close);
        patch
    }

    /// The file `url` names, if it is the init segment.
    fn init_file(&self, url: &str) -> Option<PathBuf> {
        let name = url.strip_prefix("file:").unwrap_or(url);
        // With `temp_file`, a file is written under a `.tmp` name first.
        let plain = name.strip_suffix(".tmp").unwrap_or(name);
        (Path::new(plain) == self.init).then(|| PathBuf::from(name))
    }
}

unsafe extern "C" fn hook_open(
    s: *mut ffi::AVFormatContext,
    pb: *mut *mut ffi::AVIOContext,
    url: *const std::ffi::c_char,
    flags: std::ffi::c_int,
    options: *mut *mut ffi::AVDictionary,
) -> std::ffi::c_int {
    // SAFETY: `opaque` is the boxed patch `install` set, alive as long as
    // the context (see `install`); a context the muxer made itself and
    // gave our hooks but not `opaque` opens files as libav would.
    let Some(patch) = (unsafe { ((*s).opaque as *const InitPatch).as_ref() }) else {
        // SAFETY: libav's own arguments.
        return unsafe { ffi::avio_open2(pb, url, flags, &(*s).interrupt_callback, options) };
    };
    let Some(open) = patch.default_open else {
        return ffi::AVERROR(libc::ENOSYS);
    };
    // SAFETY: libav's own arguments, passed on unchanged.
    let r = unsafe { open(s, pb, url, flags, options) };
    if r >= 0 && !url.is_null() {
        // SAFETY: a NUL-terminated URL from libav.
        let name = unsafe { std::ffi::CStr::from_ptr(url) }.to_string_lossy();
        if let Some(file) = patch.init_file(&name) {
            if let Ok(mut open) = patch.open.lock() {
                // SAFETY: `pb` was just set by the default opener.
                *open = Some((unsafe { *pb } as usize, file));
            }
        }
    }
    r
}

unsafe extern "C" fn hook_close(
    s: *mut ffi::AVFormatContext,
    pb: *mut ffi::AVIOContext,
) -> std::ffi::c_int {
    // SAFETY: as in `hook_open`.
    let Some(patch) = (unsafe { ((*s).opaque as *const InitPatch).as_ref() }) else {
        let mut pb = pb;
        // SAFETY: libav's own context, closed as libav would.
        return unsafe { ffi::avio_closep(&mut pb) };
    };
    let init = patch
        .open
        .lock()
        .ok()
        .and_then(|mut o| o.take_if(|(p, _)| *p == pb as usize))
        .map(|(_, file)| file);
    let r = match patch.default_close {
        // SAFETY: libav's own arguments, passed on unchanged.
        Some(close) => unsafe { close(s, pb) },
        None => 0,
    };
    if let (Some(file), true) = (init, r >= 0) {
        // The file is complete and closed (the muxer renames a `.tmp` one
        // next, and only then writes the playlist).
        if let Err(e) = patch.matrix.patch_init_file(&file) {
            return ffi::AVERROR(e.raw_os_error().unwrap_or(libc::EIO));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(angle_ccw: f64) -> DisplayMatrix {
        let mut m = [0i32; 9];
        // SAFETY: writes nine values into our own array.
        unsafe { ffi::av_display_rotation_set(m.as_mut_ptr(), -angle_ccw) };
        DisplayMatrix(m)
    }

    #[test]
    fn quarter_turns_map_to_ffmpegs_transposes() {
        // av_display_rotation_set takes clockwise degrees; a phone's
        // portrait video (ffprobe: rotation=-90) is turned clockwise.
        let phone = matrix(-90.0);
        assert_eq!(phone.rotation(), Some(90.0));
        assert_eq!(
            phone.turn(),
            Some(Turn {
                transpose: true,
                flip_x: true,
                flip_y: false
            })
        );
        let ccw = matrix(90.0);
        assert_eq!(ccw.rotation(), Some(270.0));
        assert_eq!(
            ccw.turn(),
            Some(Turn {
                transpose: true,
                flip_x: false,
                flip_y: true
            })
        );
        let half = matrix(180.0);
        assert_eq!(
            half.turn(),
            Some(Turn {
                transpose: false,
                flip_x: true,
                flip_y: true
            })
        );
        assert_eq!(matrix(0.0).turn(), Some(Turn::default()));
        assert_eq!(matrix(30.0).turn(), None);
        assert_eq!(DisplayMatrix([0; 9]).turn(), Some(Turn::default()));
    }

    #[test]
    fn turning_a_picture_clockwise() {
        // 3x2 picture, one byte value per pixel (all three channels).
        let px = |v: u8| [v, v, v];
        let src: Vec<u8> = [1, 2, 3, 4, 5, 6].iter().flat_map(|v| px(*v)).collect();
        let clock = matrix(-90.0).turn().unwrap();
        assert_eq!(clock.size(3, 2), (2, 3));
        let mut dst = vec![0u8; 18];
        clock.apply(&src, 3, 2, &mut dst);
        // 1 2 3      4 1
        // 4 5 6  ->  5 2
        //            6 3
        let want: Vec<u8> = [4, 1, 5, 2, 6, 3].iter().flat_map(|v| px(*v)).collect();
        assert_eq!(dst, want);
    }

    #[test]
    fn turning_a_plane_with_padded_rows() {
        // 3x2 one-byte samples in rows of 4 (as libav pads them), turned
        // counter-clockwise into rows of 3; the padding is never read or
        // written.
        let src = [1, 2, 3, 99, 4, 5, 6, 99];
        let counter = matrix(90.0).turn().unwrap();
        let mut dst = [0u8; 9];
        counter.apply_samples::<1>(&src, 4, (3, 2), &mut dst, 3);
        // 1 2 3      3 6 .
        // 4 5 6  ->  2 5 .
        //            1 4 .
        assert_eq!(dst, [3, 6, 0, 2, 5, 0, 1, 4, 0]);
        // A buffer too small for the stride: nothing written.
        let mut short = [0u8; 5];
        counter.apply_samples::<1>(&src, 4, (3, 2), &mut short, 3);
        assert_eq!(short, [0; 5]);
    }
}
