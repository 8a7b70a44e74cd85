//! Pure parsers: no I/O, no tokio, no libav, no logging.

pub mod bmff;
pub mod cenc;
pub mod cenc_mp4;
pub mod evostream;
pub mod fmp4;
pub mod h264;
pub mod hevc;
pub mod jpeg;
pub mod multipart;
pub mod rtp_h264;
pub mod rtp_h265;
pub mod rtp_jpeg;
pub mod rtp_seq;
pub mod sdp;
