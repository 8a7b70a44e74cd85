//! camflow: get video out of network cameras.
//!
//! Data flows one way: `source` (receivers that own sockets and emit a clean
//! stream) → `pipeline` (the only code that touches libav, on OS threads) →
//! `sink` (npy frames, MP4 files, ...). `proto` holds the pure, sans-IO
//! parsers the receivers use.

pub mod camera;
pub mod cli;
pub mod cmd;
pub mod package;
pub mod packet;
pub mod pipeline;
pub mod progress;
pub mod proto;
pub mod redact;
pub mod service;
pub mod shutdown;
pub mod sink;
pub mod source;
