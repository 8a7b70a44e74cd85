//! `camflow camera`: a simulated network camera, the fixture for protocols
//! that have no real peer to test against.
//!
//! In: [`CameraSettings`] (the stream to make, the [`CameraProtocol`] to
//! speak, the [`CameraFault`] to put on) and a bound listener. Out: every
//! client gets its own stream from frame 0, made by `pipeline::synth` on an
//! OS thread of its own and paced at the stream's frame rate:
//!
//! - `evostream-ws` ([`serve`]): the init segment in a MOOV message, then per
//!   frame the seven messages of a fragment, in the order the forum thread in
//!   the seeds observed, as `proto::evostream` writes them;
//! - `fmp4-ws` ([`serve`]): one binary message per init segment or fragment;
//! - `tcp-mjpeg` and `vbc` ([`serve_tcp`]): raw JPEGs back to back, after
//!   vbc's hello and reply;
//! - `mjpeg-http` ([`serve_http`]): `multipart/x-mixed-replace` parts as
//!   `proto::multipart` writes them, behind Basic or Digest auth if asked.
//!
//! It logs through the `log` facade: a line when a WebSocket client
//! connects, and one when any client's stream ends (how many frames it got,
//! or why it failed).

mod policy;

pub use policy::{CameraFault, CameraProtocol, UnknownValue};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::packet::Chunk;
use crate::pipeline::synth::{self, SynthSettings, Timed};
use crate::proto::{evostream, multipart};

/// The path the camera serves; anything else gets 404, as a real server would.
pub const PATH: &str = "/live";

#[derive(Debug)]
pub struct CameraSettings {
    pub synth: SynthSettings,
    pub exif_thumbnail: bool,
    /// mjpeg-http: the `user:password` Basic auth must carry.
    pub auth: Option<String>,
    /// Ask for Digest instead of Basic, with this nonce.
    pub digest_nonce: Option<String>,
    pub protocol: CameraProtocol,
    pub fault: Option<CameraFault>,
    pub fault_after: u64,
    pub fault_once: bool,
    /// Clients served so far (for `fault_once`).
    pub clients: std::sync::atomic::AtomicU64,
    pub require_header: Option<(String, String)>,
    pub expect_text: Option<String>,
}

impl CameraSettings {
    /// The fault the next client gets: none after the first with `fault_once`.
    fn fault_for_next_client(&self) -> Option<CameraFault> {
        let n = self
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.fault_once && n > 0 {
            None
        } else {
            self.fault
        }
    }
}

/// EvoStream (or plain fMP4) over WebSocket.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<CameraSettings>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, settings, shutdown, |stream, peer, s| {
        client(stream, peer, s)
    })
    .await;
}

/// Accepts clients until shutdown; each runs `handle` on a task of its own
/// and ends with one log line.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    settings: Arc<CameraSettings>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<CameraSettings>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let session = handle(stream, peer, settings.clone());
                tokio::spawn(async move {
                    match session.await {
                        Ok(n) => log::info!("{peer}: sent {n} frames"),
                        Err(e) => log::warn!("{peer}: {e}"),
                    }
                });
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn client(
    stream: TcpStream,
    peer: SocketAddr,
    s: Arc<CameraSettings>,
) -> anyhow::Result<u64> {
    let _ = stream.set_nodelay(true);
    // The callback's signature is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != PATH {
            let mut r = ErrorResponse::new(Some(format!("no stream at {}\n", req.uri().path())));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return Err(r);
        }
        if let Some((name, value)) = &s.require_header {
            let got = req
                .headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok());
            if got != Some(value.as_str()) {
                let mut r = ErrorResponse::new(Some(format!("{name} not allowed\n")));
                *r.status_mut() = StatusCode::FORBIDDEN;
                return Err(r);
            }
        }
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, check_path).await?;
    log::info!("{peer}: connected");
    let fault = s.fault_for_next_client();

    if let Some(want) = &s.expect_text {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == want => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("closed before sending {want:?}"),
            }
        }
    }

    if fault == Some(CameraFault::Garbage) {
        ws.send(Message::binary(
            b"<html>this is not a video stream</html>".to_vec(),
        ))
        .await?;
        ws.close(None).await?;
        return Ok(0);
    }

    let mut frags = 0u64;
    let mut restarted = false;
    'runs: loop {
        let (mut rx, worker, _stop_guard) = start_synth(&s.synth)?;
        let start = Instant::now();
        while let Some(Timed { chunk, at }) = rx.recv().await {
            let faulty = frags == s.fault_after && matches!(chunk, Chunk::Fragment(_));
            if faulty && fault == Some(CameraFault::Restart) && !restarted {
                // A server restarting its stream: a new init segment, and
                // timestamps from zero again.
                restarted = true;
                drop(rx);
                let _ = tokio::task::spawn_blocking(move || worker.join()).await;
                continue 'runs;
            }
            if faulty && fault == Some(CameraFault::Stall) {
                // The camera stops; the server keeps the connection alive.
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    ws.send(Message::Ping(Vec::new().into())).await?;
                }
            }
            if s.protocol == CameraProtocol::Fmp4Ws {
                if let Chunk::Fragment(_) = chunk {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(at.max(0.0))).await;
                    frags += 1;
                }
                ws.send(Message::binary(chunk.bytes().clone())).await?;
                continue;
            }
            match chunk {
                Chunk::Init(init) => {
                    ws.send(Message::binary(evostream::init_message(&init)?))
                        .await?;
                }
                // The synth makes fMP4 only.
                Chunk::Data(_) => {}
                Chunk::Fragment(frag) => {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(at.max(0.0))).await;
                    let msgs = evostream::fragment_messages(&frag)
                        .map_err(|_| anyhow::anyhow!("muxer produced a fragment without mdat"))?;
                    match fault {
                        Some(CameraFault::DropMidFragment) if faulty => {
                            for m in msgs.into_iter().take(2) {
                                ws.send(Message::binary(m)).await?;
                            }
                            // Drop the TCP connection: no close frame.
                            drop(ws);
                            return Ok(frags);
                        }
                        Some(CameraFault::Truncated) if faulty => {
                            let m = &msgs[1];
                            ws.send(Message::binary(m[..m.len() / 2].to_vec())).await?;
                            ws.close(None).await?;
                            return Ok(frags);
                        }
                        Some(CameraFault::Oversized) if faulty => {
                            // A video header declaring the largest body, and
                            // 4 bytes of it.
                            let lying = vec![evostream::TAG_VIDEO, 0xff, 0xff, 0xff, 0, 0, 0, 0];
                            ws.send(Message::binary(lying)).await?;
                            ws.close(None).await?;
                            return Ok(frags);
                        }
                        Some(CameraFault::OutOfOrder) if faulty => {
                            // The begin tag last: the fragment cannot be rebuilt.
                            let mut msgs = msgs;
                            msgs.rotate_left(1);
                            for m in msgs {
                                ws.send(Message::binary(m)).await?;
                            }
                        }
                        _ => {
                            for m in msgs {
                                ws.send(Message::binary(m)).await?;
                            }
                        }
                    }
                    frags += 1;
                }
            }
        }
        match tokio::task::spawn_blocking(move || worker.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => anyhow::bail!("{e}"),
            _ => anyhow::bail!("encoder thread failed"),
        }
        break;
    }
    ws.close(None).await?;
    // Let the close handshake finish so the client sees a clean end.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(frags)
}

/// Stops a synth thread however its client ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type SynthWorker = std::thread::JoinHandle<Result<(), crate::pipeline::PipelineError>>;

/// Starts one stream from frame 0 on its own thread.
fn start_synth(
    settings: &SynthSettings,
) -> anyhow::Result<(mpsc::Receiver<Timed>, SynthWorker, StopOnDrop)> {
    let (tx, rx) = mpsc::channel::<Timed>(8);
    let stop = Arc::new(AtomicBool::new(false));
    let synth_stop = stop.clone();
    let synth_settings = settings.clone();
    let worker = std::thread::Builder::new()
        .name("camflow-synth".into())
        .spawn(move || synth::run(&synth_settings, tx, synth_stop))?;
    Ok((rx, worker, StopOnDrop(stop)))
}

/// The Canon VB-C10's answer to the client's hello: "100" (the seed found
/// it meaningless; clients skip it, as they skip anything before an SOI).
pub const VBC_REPLY: &[u8] = b"100";

/// Raw-JPEG cameras over TCP (`tcp-mjpeg`, and `vbc` with its handshake).
pub async fn serve_tcp(
    listener: TcpListener,
    settings: Arc<CameraSettings>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, settings, shutdown, |stream, _, s| {
        tcp_client(stream, s)
    })
    .await;
}

async fn tcp_client(mut stream: TcpStream, s: Arc<CameraSettings>) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fault = s.fault_for_next_client();
    let _ = stream.set_nodelay(true);
    if s.protocol == CameraProtocol::Vbc {
        let mut hello = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut hello))
            .await
            .map_err(|_| anyhow::anyhow!("no hello within 10 s"))??;
        stream.write_all(VBC_REPLY).await?;
    }
    let (tx, mut rx) = mpsc::channel::<synth::TimedJpeg>(8);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let synth_settings = s.synth.clone();
    let thumb = s.exif_thumbnail;
    let worker = std::thread::Builder::new()
        .name("camflow-synth".into())
        .spawn(move || synth::jpeg_run(&synth_settings, thumb, tx, stop))?;
    let start = Instant::now();
    let mut sent = 0u64;
    while let Some(synth::TimedJpeg { jpeg, at }) = rx.recv().await {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at.max(0.0))).await;
        if sent == s.fault_after {
            match fault {
                Some(CameraFault::DropMidFragment) => {
                    stream
                        .write_all(jpeg.get(..jpeg.len() / 2).unwrap_or_default())
                        .await?;
                    stream.flush().await?;
                    return Ok(sent);
                }
                Some(CameraFault::Stall) => {
                    // Connected, silent.
                    std::future::pending::<()>().await;
                }
                Some(CameraFault::Garbage) => loop {
                    // Bytes, but never a JPEG.
                    stream.write_all(&[0x42; 4096]).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                },
                _ => {}
            }
        }
        stream.write_all(&jpeg).await?;
        sent += 1;
    }
    match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => anyhow::bail!("{e}"),
        _ => anyhow::bail!("encoder thread failed"),
    }
    stream.shutdown().await?;
    Ok(sent)
}

/// The path of the MJPEG-over-HTTP stream.
pub const MJPEG_PATH: &str = "/mjpeg";
const BOUNDARY: &str = "camflowboundary";

/// MJPEG over HTTP (multipart/x-mixed-replace), served with axum.
pub async fn serve_http(
    listener: TcpListener,
    settings: Arc<CameraSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route(MJPEG_PATH, axum::routing::get(mjpeg_http))
        .with_state(settings);
    let stopped = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        log::warn!("{e}");
    }
}

async fn mjpeg_http(
    axum::extract::State(s): axum::extract::State<Arc<CameraSettings>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{header, StatusCode as Status};
    use axum::response::IntoResponse;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    if let Some(auth) = &s.auth {
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (ok, challenge) = match &s.digest_nonce {
            None => (
                got == format!("Basic {}", STANDARD.encode(auth.as_bytes())),
                "Basic realm=\"camflow\"".to_string(),
            ),
            Some(nonce) => (
                digest_ok(got, auth, nonce),
                format!(
                    "Digest realm=\"{DIGEST_REALM}\", qop=\"auth\", nonce=\"{nonce}\", algorithm=MD5"
                ),
            ),
        };
        if !ok {
            return (
                Status::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "wrong user or password\n",
            )
                .into_response();
        }
    }
    let fault = s.fault_for_next_client();
    let (tx, rx) = mpsc::channel::<synth::TimedJpeg>(8);
    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(stop.clone());
    let synth_settings = s.synth.clone();
    let thumb = s.exif_thumbnail;
    if let Err(e) = std::thread::Builder::new()
        .name("camflow-synth".into())
        .spawn(move || synth::jpeg_run(&synth_settings, thumb, tx, stop))
    {
        return (Status::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let start = Instant::now();
    let epoch = crate::packet::unix_now();
    // State: the frames, how many were sent, the synth's stop guard, and
    // whether the connection is to break on the next poll.
    let parts = futures_util::stream::unfold(
        (rx, 0u64, guard, false),
        move |(mut rx, sent, guard, breaking)| {
            let s = s.clone();
            async move {
                if breaking {
                    // Let the half JPEG reach the client, then break.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let e: Result<bytes::Bytes, std::io::Error> =
                        Err(std::io::Error::other("dropped"));
                    return Some((vec![e], (rx, sent, guard, false)));
                }
                let synth::TimedJpeg { jpeg, at } = rx.recv().await?;
                tokio::time::sleep_until(start + Duration::from_secs_f64(at.max(0.0))).await;
                let stamp = format!("{:.6}", epoch + at);
                let headers = [("X-Timestamp", stamp.as_str())];
                if fault == Some(CameraFault::DropMidFragment) && sent == s.fault_after {
                    let mut part =
                        multipart::write_part_head(BOUNDARY, "image/jpeg", jpeg.len(), &headers);
                    part.extend_from_slice(jpeg.get(..jpeg.len() / 2).unwrap_or_default());
                    return Some((vec![Ok(part.into())], (rx, sent, guard, true)));
                }
                let part = multipart::write_part(BOUNDARY, "image/jpeg", &headers, &jpeg);
                Some((vec![Ok(part.into())], (rx, sent + 1, guard, false)))
            }
        },
    )
    .flat_map(futures_util::stream::iter);
    (
        [(
            header::CONTENT_TYPE,
            multipart::content_type_with_boundary(BOUNDARY),
        )],
        axum::body::Body::from_stream(parts),
    )
        .into_response()
}

const DIGEST_REALM: &str = "camflow";

/// Checks an `Authorization: Digest ...` header against `user:password`
/// (RFC 7616, MD5, qop=auth or none).
fn digest_ok(header: &str, auth: &str, nonce: &str) -> bool {
    use md5::{Digest, Md5};
    let hex = |s: &str| {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let Some(params) = header.strip_prefix("Digest ") else {
        return false;
    };
    let field = |name: &str| digest_param(params, name);
    let (Some((user, pass)), Some(got_user), Some(uri), Some(response)) = (
        auth.split_once(':'),
        field("username"),
        field("uri"),
        field("response"),
    ) else {
        return false;
    };
    if got_user != user || field("nonce").as_deref() != Some(nonce) {
        return false;
    }
    let ha1 = hex(&format!("{user}:{DIGEST_REALM}:{pass}"));
    let ha2 = hex(&format!("GET:{uri}"));
    let want = match (field("qop"), field("nc"), field("cnonce")) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        _ => hex(&format!("{ha1}:{nonce}:{ha2}")),
    };
    response.eq_ignore_ascii_case(&want)
}

/// One `name=value` or `name="value"` parameter of a Digest header.
fn digest_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', ',']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (q.get(..end)?, q.get(end + 1..)?)
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after.get(..end)?, after.get(end..)?)
            }
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}
