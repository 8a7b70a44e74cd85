//! Opening any source. In: its [`SourceOptions`] and the shutdown. The
//! receiver the source needs is started, and what flows out of it is handed
//! back as the [`packet::Input`](crate::packet::Input) the pipeline reads,
//! with the receiver's counters beside it.

use std::sync::Arc;

use super::{file, http, rtsp, SourceError, SourceOptions, SourceSpec, SourceStats};
use crate::packet::Input;
use crate::shutdown::Shutdown;

/// An opened source.
pub struct Opened {
    /// What the source delivers, for the pipeline.
    pub input: Input,
    /// What a network receiver has seen (bytes, losses, what the camera
    /// offers); `None` for files and stdin, which libavformat reads.
    pub stats: Option<Arc<SourceStats>>,
}

/// Starts the receiver `opts` needs and returns once the source answered
/// (HTTP first looks at the answer, RTSP at the camera's SDP). Receivers
/// run on the current tokio runtime until their stream ends, they fail,
/// the consumer drops the input, or `shutdown` is triggered; triggering it
/// while connecting ends the open with [`SourceError::Stopped`].
pub async fn open(opts: &SourceOptions, shutdown: &Shutdown) -> Result<Opened, SourceError> {
    let mut stop = shutdown.subscribe();
    tokio::select! {
        r = open_inner(opts, shutdown) => r,
        _ = stop.wait_for(|s| *s) => Err(SourceError::Stopped),
    }
}

async fn open_inner(opts: &SourceOptions, shutdown: &Shutdown) -> Result<Opened, SourceError> {
    let net = |input, stats| Opened {
        input,
        stats: Some(stats),
    };
    let local = |input| Opened { input, stats: None };
    if let Some(j) = super::spawn_jpeg_receiver(opts, shutdown.subscribe()) {
        return Ok(net(Input::Jpegs(j.rx), j.stats));
    }
    if let Some(c) = super::spawn_receiver(opts, shutdown.subscribe()) {
        return Ok(net(Input::Fmp4(c.rx), c.stats));
    }
    Ok(match &opts.spec {
        SourceSpec::Http(url) => match http::open(url, opts, shutdown.subscribe()).await? {
            http::Opened::Mjpeg(j) => net(Input::Jpegs(j.rx), j.stats),
            // libavformat reads the body; the pipeline counts its bytes.
            http::Opened::Other(body) => local(Input::Bytes(body.rx)),
        },
        SourceSpec::Rtsp(url) => match rtsp::open(url, opts, shutdown.subscribe()).await? {
            rtsp::Opened::Jpegs(j) => net(Input::Jpegs(j.rx), j.stats),
            rtsp::Opened::Packets(p) => net(Input::Packets(p.rx), p.stats),
        },
        SourceSpec::Stdin => local(Input::Stdin),
        // JPEGs back to back (an MJPEG camera's dump) take the MJPEG path.
        SourceSpec::File(p) if file::is_jpeg_stream(p) => {
            let j = file::spawn_jpeg_file(p.clone(), opts, shutdown.subscribe());
            net(Input::Jpegs(j.rx), j.stats)
        }
        SourceSpec::File(p) => local(Input::Path(p.clone())),
        SourceSpec::WebSocket(_) | SourceSpec::Tcp(_) | SourceSpec::Vbc(_) => {
            return Err(SourceError::Local("no receiver for this source".into()))
        }
    })
}
