//! The stages between an opened source and its outputs: the only code that
//! touches libav (ffmpeg-next), with the libjpeg-turbo decoder beside it.
//!
//! In: a [`packet::Input`](crate::packet::Input), which the stages read as a
//! [`Fed`]: a container libavformat demuxes (a path, stdin, or a receiver's
//! chunks through custom I/O, see [`input`]), whole JPEGs, or coded packets.
//! Out: packed BGR frames ([`decode::frames`]), MP4 by stream copy
//! ([`remux`]), H.264 into FLV, RTMP or HLS ([`transcode`], [`encode`],
//! [`mux`]), DASH ([`dash`]), a report of what a source holds ([`probe`]),
//! and the simulated camera's video ([`synth`], [`pattern`]).
//!
//! The work runs on named OS threads ([`spawn`]) that take a receiver's
//! items with blocking receives and hand results on through bounded
//! channels, never on tokio workers. Like `sink`, `pipeline` imports the
//! waist (`packet`) and nothing from `source`.

pub mod dash;
pub mod decode;
pub mod encode;
pub mod input;
pub mod mux;
pub mod pattern;
pub mod probe;
pub mod remux;
pub mod rotation;
pub mod synth;
pub mod transcode;
pub mod turbo;

use crate::packet::{Input, Items, JpegFrame, SourceError, VideoPacket};

/// What the libav stage reads: a container through libavformat, whole
/// JPEGs, or coded packets.
pub enum Fed {
    /// A container, read by libavformat (a file, stdin, or a receiver's
    /// bytes through custom I/O).
    Input(input::InputSource),
    /// Whole JPEGs.
    Jpegs(Items<JpegFrame>),
    /// Coded pictures with their parameters.
    Packets(Items<VideoPacket>),
}

impl From<Input> for Fed {
    /// An opened source as the libav stage reads it: fMP4 and other bytes
    /// become a custom-I/O input; JPEGs and packets are handed on as they
    /// are.
    fn from(input: Input) -> Fed {
        match input {
            Input::Jpegs(j) => Fed::Jpegs(j),
            Input::Packets(p) => Fed::Packets(p),
            Input::Fmp4(c) => Fed::Input(input::InputSource::Chunks(input::ChunkFeed::new(c))),
            Input::Bytes(b) => Fed::Input(input::InputSource::Chunks(input::ChunkFeed::opaque(b))),
            Input::Path(p) => Fed::Input(input::InputSource::Path(p)),
            Input::Stdin => Fed::Input(input::InputSource::Stdin),
        }
    }
}

/// Why a pipeline stage stopped. `Display` is one line, for the command to
/// put a name in front of.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The receiver failed; its message is the one the user needs.
    #[error("{0}")]
    Source(SourceError),
    /// libavformat could not open the input or find its streams (not a
    /// container it knows, a file that cannot be read).
    #[error("cannot open the input: {0}")]
    Open(String),
    /// The input opened but holds no video stream to decode or copy.
    #[error("the input has no video stream")]
    NoVideo,
    /// Decoding or converting pictures failed (no decoder for the codec, a
    /// pixel conversion, a decode thread that stopped).
    #[error("decoder: {0}")]
    Decoder(String),
    /// Demuxing failed part-way through the input.
    #[error("reading the input: {0}")]
    Read(String),
    /// Making or writing the output failed (a file, a muxer, the RTMP
    /// server, the encoder); the message says which.
    #[error("{0}")]
    Output(String),
}

/// libav could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot initialise FFmpeg: {0}")]
pub struct InitError(ffmpeg_next::Error);

/// Sets libav up, with its own logging quiet unless asked for, because
/// camflow reports problems itself, in one line.
pub fn init() -> Result<(), InitError> {
    ffmpeg_next::init().map_err(InitError)?;
    let level = match std::env::var("CAMFLOW_AV_LOG").as_deref() {
        Ok("debug") => ffmpeg_next::util::log::Level::Debug,
        Ok("info") => ffmpeg_next::util::log::Level::Info,
        Ok("warning") => ffmpeg_next::util::log::Level::Warning,
        Ok("error") => ffmpeg_next::util::log::Level::Error,
        _ => ffmpeg_next::util::log::Level::Quiet,
    };
    ffmpeg_next::util::log::set_level(level);
    Ok(())
}

/// The next item from a receiver, for a consumer on a libav thread: `None`
/// at the receiver's end or once `stop` is set (Ctrl-C); a receiver's
/// error goes to `failure` and ends the items too.
pub(crate) fn next_item<T>(
    rx: &mut Items<T>,
    stop: &std::sync::atomic::AtomicBool,
    failure: &mut Option<PipelineError>,
) -> Option<T> {
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    match rx.blocking_recv()? {
        Ok(item) => Some(item),
        Err(e) => {
            *failure = Some(PipelineError::Source(e));
            None
        }
    }
}

/// Spawns a named OS thread for libav or disk work.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

/// Replaces a codec context's or stream's extradata with a padded copy of
/// `data` that libav owns (and frees with the context).
///
/// # Safety
/// `ptr` and `size` must be the `extradata`/`extradata_size` fields of one
/// live `AVCodecContext` or `AVCodecParameters`.
pub(crate) unsafe fn set_extradata(
    ptr: &mut *mut u8,
    size: &mut i32,
    data: &[u8],
) -> Result<(), ffmpeg_next::Error> {
    use ffmpeg_next::ffi;
    if !ptr.is_null() {
        ffi::av_freep((ptr as *mut *mut u8).cast());
    }
    *size = 0;
    if data.is_empty() {
        return Ok(());
    }
    let len = i32::try_from(data.len()).map_err(|_| ffmpeg_next::Error::InvalidData)?;
    let buf = ffi::av_mallocz(data.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize) as *mut u8;
    if buf.is_null() {
        return Err(ffmpeg_next::Error::Other {
            errno: ffmpeg_next::util::error::ENOMEM,
        });
    }
    std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
    *ptr = buf;
    *size = len;
    Ok(())
}

/// libav's codec for packets of this [`VideoCodec`](crate::packet::VideoCodec).
pub(crate) fn codec_id(c: crate::packet::VideoCodec) -> ffmpeg_next::codec::Id {
    match c {
        crate::packet::VideoCodec::H264 => ffmpeg_next::codec::Id::H264,
        crate::packet::VideoCodec::H265 => ffmpeg_next::codec::Id::HEVC,
    }
}

/// The sample entry an MP4 muxer (`record`, fMP4 HLS) gets for a copied
/// stream: `hvc1` for H.265, so that the parameter sets are announced in
/// the `hvcC` record, which Apple's players and browsers require (the mp4
/// muxer would write `hev1`); for anything else 0, and the muxer chooses
/// (a tag from another container can be invalid in MP4).
///
/// # Safety
/// `par` must point to live codec parameters.
pub(crate) unsafe fn set_mp4_tag(par: *mut ffmpeg_next::ffi::AVCodecParameters) {
    (*par).codec_tag = if (*par).codec_id == ffmpeg_next::ffi::AVCodecID::AV_CODEC_ID_HEVC {
        u32::from_le_bytes(*b"hvc1")
    } else {
        0
    };
}
