//! HTTP cameras (`http://`, `https://`): the one place that owns the
//! connection. A `multipart/x-mixed-replace` (or `multipart/mixed`) answer
//! is split into JPEGs here; any other answer is left to libavformat, which
//! opens the URL itself (a plain file or stream over HTTP).
//!
//! Authentication: Basic or Digest, from the URL's `user:password@` or
//! `--user`/`--password`, answered when the camera asks (HTTP 401).

use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};
use url::Url;

use super::{
    ChunkStream, JpegFrame, JpegStream, SourceError, SourceOptions, SourceStats, JPEG_QUEUE,
};
use crate::packet::{unix_now, Arrived, Chunk};
use crate::proto::{jpeg, multipart};

fn err(msg: impl Into<String>) -> SourceError {
    SourceError(msg.into())
}

/// What the camera answered.
pub enum Opened {
    /// Multipart JPEGs, being received.
    Mjpeg(JpegStream),
    /// Anything else: the body, being received, for libavformat to read
    /// (the same response: single-client servers serve one).
    Other(ChunkStream),
}

/// The URL without credentials, and the credentials (`--user`/`--password`
/// first, then the URL's), percent-decoded.
fn credentials(url: &Url, opts: &SourceOptions) -> (Url, Option<(String, String)>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    let from_url = (!url.username().is_empty() || url.password().is_some()).then(|| {
        (
            decode(url.username()),
            url.password().map(decode).unwrap_or_default(),
        )
    });
    let from_opts = opts
        .user
        .as_ref()
        .map(|u| (u.clone(), opts.password.clone().unwrap_or_default()));
    // Flags given on the command line win over the URL's, as for RTSP.
    (clean, from_opts.or(from_url))
}

fn headers(opts: &SourceOptions) -> Result<HeaderMap, SourceError> {
    let mut h = HeaderMap::new();
    for (name, value) in &opts.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(format!("bad header name {name:?}")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| err(format!("bad value for header {name}")))?;
        h.insert(n, v);
    }
    Ok(h)
}

/// The Authorization header answering a 401's challenge.
fn answer(challenge: &str, url: &Url, user: &str, pass: &str) -> Result<String, SourceError> {
    let scheme = challenge.split_whitespace().next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(format!(
            "Basic {}",
            super::ws::base64_encode(format!("{user}:{pass}").as_bytes())
        ));
    }
    if scheme.eq_ignore_ascii_case("digest") {
        let mut uri = url.path().to_string();
        if let Some(q) = url.query() {
            uri.push('?');
            uri.push_str(q);
        }
        let ctx = digest_auth::AuthContext::new(user, pass, uri.as_str());
        let mut prompt = digest_auth::parse(challenge)
            .map_err(|e| err(format!("cannot read the camera's Digest challenge: {e}")))?;
        let answer = prompt
            .respond(&ctx)
            .map_err(|e| err(format!("cannot answer the camera's Digest challenge: {e}")))?;
        return Ok(answer.to_header_string());
    }
    Err(err(format!(
        "HTTP 401 Unauthorized: the camera asks for {scheme:?} authentication, which camflow does not speak"
    )))
}

/// One camera's HTTP client, URL and credentials, for every (re)connect.
struct Conn {
    client: reqwest::Client,
    url: Url,
    creds: Option<(String, String)>,
}

impl Conn {
    /// GETs the URL, answering a 401 once with the credentials; returns a
    /// successful response.
    async fn request(&self, opts: &SourceOptions) -> Result<reqwest::Response, SourceError> {
        let secs = opts.timeout.as_secs_f64();
        let get = |auth: Option<String>| {
            let mut req = self.client.get(self.url.clone());
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            async move {
                timeout(opts.timeout, req.send())
                    .await
                    .map_err(|_| err(format!("no answer within {secs} s")))?
                    .map_err(|e| err(describe(&e)))
            }
        };
        let mut resp = get(None).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let Some((user, pass)) = &self.creds else {
                return Err(err(
                    "HTTP 401 Unauthorized: the camera wants a user name and password \
                     (--user/--password, or user:password@ in the URL)",
                ));
            };
            let challenge = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                // Digest first when a camera offers both: it does not send the password.
                .max_by_key(|c| c.to_ascii_lowercase().starts_with("digest"))
                .unwrap_or("Basic")
                .to_string();
            resp = get(Some(answer(&challenge, &self.url, user, pass)?)).await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(err(
                    "HTTP 401 Unauthorized: the camera refused the user name or password",
                ));
            }
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string()));
        }
        Ok(resp)
    }
}

/// The multipart boundary of a response, or `None` if it is not multipart.
fn multipart_boundary(resp: &reqwest::Response) -> Option<Result<String, SourceError>> {
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    Some(
        multipart::boundary_from_content_type(&content_type)
            .filter(|b| !b.trim_start_matches('-').is_empty())
            .ok_or_else(|| err(format!("{content_type:?} names no boundary"))),
    )
}

/// Connects, authenticates if asked, and looks at the answer.
pub async fn open(
    url: &Url,
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Opened, SourceError> {
    let (clean, creds) = credentials(url, opts);
    let client = reqwest::Client::builder()
        .connect_timeout(opts.timeout)
        .default_headers(headers(opts)?)
        .build()
        .map_err(|e| err(format!("cannot start an HTTP client: {e}")))?;
    let conn = Conn {
        client,
        url: clean,
        creds,
    };
    let resp = conn.request(opts).await?;
    let Some(boundary) = multipart_boundary(&resp) else {
        // Not MJPEG: the body goes to libavformat as it is.
        let (tx, rx) = mpsc::channel(super::CHUNK_QUEUE);
        let stats = Arc::new(SourceStats::default());
        tokio::spawn(body(resp, opts.clone(), tx, stats.clone(), shutdown));
        return Ok(Opened::Other(ChunkStream { rx, stats }));
    };
    let boundary = boundary?;
    let (tx, rx) = mpsc::channel(JPEG_QUEUE);
    let stats = Arc::new(SourceStats::default());
    tokio::spawn(receive(
        conn,
        (resp, boundary),
        opts.clone(),
        tx,
        stats.clone(),
        shutdown,
    ));
    Ok(Opened::Mjpeg(JpegStream { rx, stats }))
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's own text repeats the URL; the chain below it says why.
    let mut why = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        why = s.to_string();
        src = s.source();
    }
    if e.is_connect() {
        format!("cannot connect: {why}")
    } else if why.is_empty() {
        e.to_string()
    } else {
        why
    }
}

type Tx = mpsc::Sender<Result<JpegFrame, SourceError>>;

/// Passes a response body on in the pieces it arrives in, until it ends,
/// stalls for `--timeout`, or the consumer or shutdown stops it.
async fn body(
    resp: reqwest::Response,
    opts: SourceOptions,
    tx: mpsc::Sender<Result<Arrived, SourceError>>,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let secs = opts.timeout.as_secs_f64();
    let pass_on = async {
        let mut stream = resp.bytes_stream();
        loop {
            let piece = match timeout(opts.timeout, stream.next()).await {
                Err(_) => return Err(err(format!("no data for {secs} s"))),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(err(format!("the connection failed: {}", describe(&e))))
                }
                Ok(Some(Ok(b))) => b,
            };
            stats.add_bytes(piece.len());
            let item = Arrived {
                chunk: Chunk::Data(piece),
                at_unix: unix_now(),
            };
            if tx.send(Ok(item)).await.is_err() {
                return Ok(());
            }
        }
    };
    let result = tokio::select! {
        r = pass_on => r,
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
        _ = tx.closed() => Ok(()),
    };
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

async fn receive(
    conn: Conn,
    first: (reqwest::Response, String),
    opts: SourceOptions,
    tx: Tx,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The first answer was already read by `open`; reconnects ask again.
    let first = std::sync::Mutex::new(Some(first));
    let sessions = super::supervised(&opts, shutdown.clone(), |_, streamed| {
        let taken = first.lock().ok().and_then(|mut f| f.take());
        let (conn, opts, tx, stats) = (&conn, &opts, &tx, &stats);
        async move {
            let (resp, boundary) = match taken {
                Some(f) => f,
                None => {
                    let resp = conn.request(opts).await?;
                    let boundary = multipart_boundary(&resp).ok_or_else(|| {
                        err("the camera no longer answers with multipart MJPEG")
                    })??;
                    (resp, boundary)
                }
            };
            parts(resp, &boundary, opts, tx, stats, streamed).await
        }
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

async fn parts(
    resp: reqwest::Response,
    boundary: &str,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), SourceError> {
    let secs = opts.timeout.as_secs_f64();
    let mut splitter = multipart::Splitter::new(boundary, opts.max_frame);
    let mut body = resp.bytes_stream();
    // Only a whole JPEG resets the deadline.
    let mut deadline = Instant::now() + opts.timeout;
    loop {
        let chunk = match timeout_at(deadline, body.next()).await {
            Err(_) => return Err(err(format!("no JPEG for {secs} s"))),
            Ok(None) => {
                // Cameras that send no Content-Length and close after the
                // last part (or a single one) write no delimiter after it:
                // the splitter hands it over if it is a whole JPEG.
                let at_unix = unix_now();
                while let Some(part) = splitter.end_of_stream().map_err(closed_early)? {
                    deliver(part, at_unix, opts, tx, &streamed).await;
                }
                return Ok(());
            }
            Ok(Some(Err(e))) => {
                let mid = if splitter.in_part() {
                    " (in the middle of a JPEG)"
                } else {
                    ""
                };
                return Err(err(format!("the connection failed: {}{mid}", describe(&e))));
            }
            Ok(Some(Ok(c))) => c,
        };
        stats.add_bytes(chunk.len());
        splitter.feed(&chunk);
        let at_unix = unix_now();
        while let Some(part) = splitter.next_part().map_err(|e| err(e.to_string()))? {
            if deliver(part, at_unix, opts, tx, &streamed).await {
                deadline = Instant::now() + opts.timeout;
            }
        }
        if splitter.is_finished() {
            return Ok(());
        }
    }
}

/// The splitter's error when the connection closed, in the words of the
/// other sources (a part cut short is a JPEG cut short).
fn closed_early(e: multipart::Error) -> SourceError {
    match e {
        multipart::Error::Truncated { pos } => err(format!(
            "the connection was closed in the middle of a JPEG (its multipart part began at byte {pos})"
        )),
        e => err(e.to_string()),
    }
}

/// Sends a part on if it is a whole JPEG; true if it was.
async fn deliver(
    part: multipart::Part,
    at_unix: f64,
    opts: &SourceOptions,
    tx: &Tx,
    streamed: &std::sync::atomic::AtomicBool,
) -> bool {
    // Only whole JPEGs go on: cameras interleave other parts (text status)
    // now and then, and a part cut short is no picture.
    let mut check = jpeg::Splitter::new(opts.max_frame);
    check.feed(&part.body);
    let Ok(Some(data)) = check.next_frame() else {
        return false;
    };
    let frame = JpegFrame {
        data,
        at_unix,
        pts: part.timestamp,
    };
    if tx.send(Ok(frame)).await.is_err() {
        // The consumer is gone; the caller's select ends this task.
        std::future::pending::<()>().await;
    }
    streamed.store(true, std::sync::atomic::Ordering::Relaxed);
    true
}
