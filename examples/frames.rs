//! camflow as a library: a source's options set in code, the source
//! opened, and its first 10 frames decoded to BGR.
//!
//! `cargo run --release --example frames -- SOURCE` (a file, a URL, `-`)

use std::time::Duration;

use camflow::packet::Limits;
use camflow::pipeline::decode::{self, DecodeSettings};
use camflow::shutdown::Shutdown;
use camflow::source::{self, SourceOptions, SourceSpec};

fn main() -> anyhow::Result<()> {
    camflow::init()?;
    let arg = std::env::args().nth(1).unwrap_or_else(|| "-".into());
    let mut opts = SourceOptions::new(SourceSpec::parse(&arg).map_err(anyhow::Error::msg)?);
    opts.timeout = Duration::from_secs(5);
    let name = opts.spec.display_name();

    // Receivers run on a tokio runtime; the decode on an OS thread.
    let runtime = tokio::runtime::Runtime::new()?;
    let shutdown = Shutdown::new();
    let opened = runtime
        .block_on(source::open(&opts, &shutdown))
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let settings = DecodeSettings {
        limits: Limits {
            max_frames: Some(10),
            ..Limits::default()
        },
        name: name.clone(),
        ..DecodeSettings::default()
    };
    let mut frames = decode::frames(opened.input, settings, shutdown.flag())?;
    while let Some(f) = frames.next() {
        let pts = f.pts_seconds.map_or("-".into(), |t| format!("{t:.3}"));
        println!(
            "frame {} pts {pts} shape ({}, {}, 3)",
            f.index, f.height, f.width
        );
        frames.recycle(f.data);
    }
    frames
        .finish()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(())
}
