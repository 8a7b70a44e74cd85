//! camflow: get video out of network cameras.
//!
//! Data flows one way: [`source`] (receivers that own sockets and emit a
//! clean stream) → [`packet`] (the types that cross, and the frame limits)
//! → [`pipeline`] (the only code that touches libav, on OS threads) →
//! [`sink`] (npy frames, MP4 files, ...). [`proto`] holds the pure, sans-IO
//! parsers and writers the receivers and the simulated [`camera`] use.
//! Beside that flow, [`package`] packages a file as encrypted MPEG-DASH and
//! [`service`] does it for uploads over HTTP; [`shutdown`] carries Ctrl-C to
//! every stage and [`redact`] keeps passwords out of what is shown. A
//! caller runs [`init`] once per process. The CLI ([`cli`], [`cmd`]) is one
//! caller of this library:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use camflow::{pipeline::decode, shutdown::Shutdown, source};
//! camflow::init()?;
//! let opts = source::SourceOptions::new(source::SourceSpec::parse("clip.mp4").map_err(anyhow::Error::msg)?);
//! let runtime = tokio::runtime::Runtime::new()?;
//! let shutdown = Shutdown::new();
//! let opened = runtime.block_on(source::open(&opts, &shutdown))?;
//! let frames = decode::frames(opened.input, Default::default(), shutdown.flag())?;
//! for frame in frames {
//!     println!("{} {}x{}", frame.index, frame.width, frame.height);
//! }
//! # Ok(())
//! # }
//! ```

pub mod camera;
pub mod cli;
pub mod cmd;
pub mod package;
#[warn(missing_docs)]
pub mod packet;
#[warn(missing_docs)]
pub mod pipeline;
pub mod proto;
pub mod redact;
pub mod service;
pub mod shutdown;
#[warn(missing_docs)]
pub mod sink;
#[warn(missing_docs)]
pub mod source;

/// What a library caller does once per process, before opening a source:
/// installs the TLS crypto provider https:// and wss:// use (ring; a
/// provider already installed is kept) and sets libav up, quiet unless
/// `CAMFLOW_AV_LOG` asks for its log.
pub fn init() -> Result<(), pipeline::InitError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    pipeline::init()
}
