//! Sinks: where frames and streams end up.

pub mod fmp4_file;
pub mod npy;
