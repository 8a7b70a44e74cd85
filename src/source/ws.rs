//! WebSocket receiver (`ws://`, `wss://`): the one place that owns the
//! socket. Binary messages go through the EvoStream de-framer or the raw fMP4
//! assembler (both sans-IO, in `proto`), and clean chunks go to the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::Connector;
use url::Url;

use super::deadline::{within, ItemDeadline};
use super::error::connect_failed;
use super::{SourceError, SourceOptions, SourceStats, WsFraming};
use crate::packet::{unix_now, Arrived, Chunk};
use crate::proto::{bmff, evostream, fmp4};

type Tx = mpsc::Sender<Result<Arrived, SourceError>>;

/// Runs until the server ends the stream, an error, the consumer hanging up,
/// or shutdown. Errors are sent down the channel as the last item.
pub async fn run(
    url: Url,
    opts: SourceOptions,
    tx: Tx,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sessions = super::supervised(&opts, shutdown.clone(), |_, streamed| {
        session(&url, &opts, &tx, &stats, streamed)
    });
    let result = tokio::select! {
        r = sessions => r,
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
        _ = tx.closed() => Ok(()),
    };
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

/// Where a connection was when tungstenite failed.
#[derive(Clone, Copy)]
struct Stage {
    /// wss://: I/O errors may be TLS failures.
    tls: bool,
    /// Credentials were sent: a 401 refuses them.
    creds: bool,
    /// The upgrade succeeded: an I/O error is a lost connection.
    connected: bool,
}

/// A tungstenite error as a kind, in words that do not repeat the URL.
fn failure(e: &tungstenite::Error, at: Stage) -> SourceError {
    use std::io::ErrorKind;
    use tungstenite::error::ProtocolError;
    use tungstenite::Error as E;
    match e {
        // A refused certificate, in words and with what to do about it.
        E::Io(io) if at.tls && super::tls::describe(io).is_some() => {
            SourceError::Untrusted(super::tls::describe(io).unwrap_or_default())
        }
        E::Tls(t) if super::tls::describe(t).is_some() => {
            SourceError::Untrusted(super::tls::describe(t).unwrap_or_default())
        }
        // tokio-rustls reports handshake failures as I/O errors.
        E::Io(io)
            if at.tls && matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            SourceError::Unreachable(format!("TLS failure: {io}"))
        }
        E::Io(io) if at.connected => SourceError::Ended(format!("cannot connect: {io}")),
        E::Io(io) => connect_failed(io, format!("cannot connect: {io}")),
        E::Tls(t) => SourceError::Unreachable(format!("TLS failure: {t}")),
        E::Http(resp) => {
            let status = resp.status();
            let text = format!(
                "the server refused the WebSocket upgrade: HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string();
            match status.as_u16() {
                401 if at.creds => SourceError::AuthRefused(text),
                401 => SourceError::AuthWanted(text),
                _ => SourceError::Refused(text),
            }
        }
        E::Url(u) => SourceError::Settings(format!("bad WebSocket URL: {u}")),
        E::Capacity(c) => SourceError::TooLarge(format!("message too large: {c}")),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            SourceError::Ended("the connection was dropped without a WebSocket close".into())
        }
        other => SourceError::protocol("WebSocket", None, other.to_string()),
    }
}

fn build_request(
    url: &Url,
    opts: &SourceOptions,
) -> Result<tungstenite::handshake::client::Request, SourceError> {
    // Credentials in the URL become Basic auth; the URL sent carries none.
    let mut clean = url.clone();
    // The URL keeps them percent-encoded; the header wants the real bytes.
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut user = decode(url.username());
    let mut pass = url.password().map(decode);
    // Flags given on the command line win over the URL's (as for HTTP and
    // RTSP).
    if let Some(u) = &opts.user {
        user = u.clone();
        pass = Some(opts.password.clone().unwrap_or_default());
    }
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    let at = Stage {
        tls: url.scheme() == "wss",
        creds: false,
        connected: false,
    };
    let mut req = clean
        .as_str()
        .into_client_request()
        .map_err(|e| failure(&e, at))?;
    if !user.is_empty() || pass.is_some() {
        let token = base64_encode(format!("{user}:{}", pass.unwrap_or_default()).as_bytes());
        let v = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| SourceError::Settings("credentials cannot be sent in a header".into()))?;
        req.headers_mut().insert("authorization", v);
    }
    for (name, value) in &opts.headers {
        let (n, v) = super::http::header(name, value)?;
        req.headers_mut().insert(n, v);
    }
    Ok(req)
}

/// What the de-framing side of one connection holds.
enum Framer {
    Undecided,
    Evo(evostream::Deframer),
    Raw(fmp4::Assembler),
}

impl Framer {
    fn in_fragment(&self) -> bool {
        match self {
            Framer::Undecided => false,
            Framer::Evo(d) => d.in_fragment() || !d.is_clean(),
            Framer::Raw(a) => a.in_fragment(),
        }
    }
}

fn hex_prefix(data: &[u8]) -> String {
    data.iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn session(
    url: &Url,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let req = build_request(url, opts)?;
    // tungstenite's own limits sit above ours so that the de-framer, which
    // knows what the bytes are, reports the problem in its own words.
    let limit = opts.max_message.saturating_add(64 * 1024);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let secs = opts.timeout.as_secs_f64();
    // `--insecure` / `--ca-cert`; without them tungstenite's own WebPKI roots.
    let connector = super::tls::client_config(&opts.tls)?.map(Connector::Rustls);
    // Credentials from the URL, the flags or a header: a 401 refuses them.
    let mut at = Stage {
        tls: url.scheme() == "wss",
        creds: req.headers().contains_key("authorization"),
        connected: false,
    };
    let (mut ws, _resp) = within(
        opts.timeout,
        tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, connector),
        || format!("no answer within {secs} s while connecting"),
    )
    .await?
    .map_err(|e| failure(&e, at))?;
    at.connected = true;

    for text in &opts.ws_send {
        ws.send(Message::text(text.as_str()))
            .await
            .map_err(|e| failure(&e, at))?;
    }

    let mut framer = match opts.ws_framing {
        WsFraming::Auto => Framer::Undecided,
        WsFraming::Evostream => Framer::Evo(evostream::Deframer::new(opts.max_message)),
        WsFraming::Raw => Framer::Raw(fmp4::Assembler::new(opts.max_message)),
    };
    if opts.ws_framing != WsFraming::Auto {
        set_framing(stats, opts.ws_framing);
    }

    // Only video resets the deadline: a server that keeps the connection
    // alive with pings or text while its camera is off must still time out.
    let mut deadline = ItemDeadline::new(opts.timeout);
    loop {
        let mid = |framer: &Framer| {
            if framer.in_fragment() {
                " (in the middle of a fragment)"
            } else {
                ""
            }
        };
        let read = deadline.read(ws.next(), || {
            format!("no video data for {secs} s{}", mid(&framer))
        });
        let msg = match read.await? {
            None => {
                return Err(SourceError::Ended(
                    if framer.in_fragment() {
                        "the connection was dropped in the middle of a fragment"
                    } else {
                        "the connection was dropped without a WebSocket close"
                    }
                    .into(),
                ));
            }
            Some(Err(e)) => return Err(failure(&e, at).with_suffix(mid(&framer))),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Binary(data) => {
                stats.add_bytes(data.len());
                if matches!(framer, Framer::Undecided) {
                    framer = if evostream::looks_like_evostream(&data) {
                        set_framing(stats, WsFraming::Evostream);
                        Framer::Evo(evostream::Deframer::new(opts.max_message))
                    } else if bmff::looks_like_bmff(&data) {
                        set_framing(stats, WsFraming::Raw);
                        Framer::Raw(fmp4::Assembler::new(opts.max_message))
                    } else {
                        return Err(SourceError::NotVideo(format!(
                            "the stream is neither EvoStream-framed nor fMP4 (first bytes: {})",
                            hex_prefix(&data)
                        )));
                    };
                }
                // Whether this message completed a fragment: only that
                // resets the deadline (not an init, an unknown tag, or
                // pieces of a fragment that is then dropped).
                let mut video = false;
                match &mut framer {
                    Framer::Evo(d) => {
                        d.feed(&data);
                        loop {
                            let item = d.next_item();
                            if !matches!(item, Ok(Some(_))) {
                                // Once per WebSocket message is often enough.
                                if let Ok(mut slot) = stats.evostream.lock() {
                                    *slot = Some(d.stats().clone());
                                }
                            }
                            match item? {
                                Some(evostream::Item::Init(b)) => send(tx, Chunk::Init(b)).await?,
                                Some(evostream::Item::Fragment(b)) => {
                                    send(tx, Chunk::Fragment(b)).await?;
                                    streamed.store(true, Ordering::Relaxed);
                                    video = true;
                                }
                                None => break,
                            }
                        }
                        d.end_of_message()?;
                    }
                    Framer::Raw(a) => {
                        a.feed(&data);
                        while let Some(c) = a.next_chunk()? {
                            if matches!(c, Chunk::Fragment(_)) {
                                streamed.store(true, Ordering::Relaxed);
                                video = true;
                            }
                            send(tx, c).await?;
                        }
                    }
                    Framer::Undecided => {}
                }
                // Counted from when the video was handed on, so time spent
                // waiting for a slow consumer is not held against the server.
                if video {
                    deadline.reset();
                }
            }
            Message::Close(_) => {
                // A clean end. A fragment cut short by it is dropped: it
                // cannot be decoded, and everything before it was whole.
                return Ok(());
            }
            // Text is for the site's player (the thread's server answers
            // "ping"); pings are answered by tungstenite itself.
            Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

fn set_framing(stats: &SourceStats, f: WsFraming) {
    if let Ok(mut slot) = stats.framing.lock() {
        *slot = Some(f);
    }
}

async fn send(tx: &Tx, chunk: Chunk) -> Result<(), SourceError> {
    // A closed channel means the consumer has all it wants; `run` notices
    // through `tx.closed()` and ends quietly.
    let item = Arrived {
        chunk,
        at_unix: unix_now(),
    };
    if tx.send(Ok(item)).await.is_err() {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Standard base64 (RFC 4648 §4) for one Basic auth header; too small a
/// need to add a crate for.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }
}
