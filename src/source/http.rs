//! HTTP cameras (`http://`, `https://`): the one place that owns the
//! connection. How the answer is read depends on what it is, judged by its
//! `Content-Type` and its first bytes:
//! - multipart (`multipart/x-mixed-replace` or `multipart/mixed`, or any
//!   body that begins like one whatever its `Content-Type`: ffmpeg's and
//!   VLC's `mpjpeg` output says `application/octet-stream`) is split into
//!   JPEGs here, on the boundary the body uses (cameras that declare another
//!   boundary, or none, are common);
//! - a single `image/jpeg` (a snapshot camera, go2rtc's `frame.jpeg`) is
//!   asked for again and again (`snapshots`);
//! - anything else goes to libavformat as it arrives (a plain file or
//!   stream over HTTP), the bytes already looked at first.
//!
//! Authentication: Basic or Digest, from the URL's `user:password@` or
//! `--user`/`--password`, answered when the camera asks (HTTP 401). TLS:
//! the trust of [`super::tls`] (`--insecure`, `--ca-cert`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use url::Url;

use super::deadline::{within, ItemDeadline};
use super::error::{connect_failed, find_io};
use super::{
    ChunkStream, JpegFrame, JpegStream, SourceError, SourceOptions, SourceStats, JPEG_QUEUE,
};
use crate::packet::{unix_now, Arrived, Chunk};
use crate::proto::{jpeg, multipart};

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

/// One `-H` header, checked (for HTTP and WebSocket requests).
pub(crate) fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), SourceError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| SourceError::Settings(format!("bad header name {name:?}")))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| SourceError::Settings(format!("bad value for header {name}")))?;
    Ok((n, v))
}

fn headers(opts: &SourceOptions) -> Result<HeaderMap, SourceError> {
    let mut h = HeaderMap::new();
    for (name, value) in &opts.headers {
        let (n, v) = header(name, value)?;
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
        let digest = |e: digest_auth::Error, verb: &str| {
            SourceError::protocol(
                "HTTP Digest challenge",
                None,
                format!("cannot {verb} the camera's Digest challenge: {e}"),
            )
        };
        let mut prompt = digest_auth::parse(challenge).map_err(|e| digest(e, "read"))?;
        let answer = prompt.respond(&ctx).map_err(|e| digest(e, "answer"))?;
        return Ok(answer.to_header_string());
    }
    Err(SourceError::AuthWanted(format!(
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
                within(opts.timeout, req.send(), || {
                    format!("no answer within {secs} s")
                })
                .await?
                .map_err(|e| failure(&e))
            }
        };
        let mut resp = get(None).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let Some((user, pass)) = &self.creds else {
                return Err(SourceError::AuthWanted(
                    "HTTP 401 Unauthorized: the camera wants a user name and password \
                     (--user/--password, or user:password@ in the URL)"
                        .into(),
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
                return Err(SourceError::AuthRefused(
                    "HTTP 401 Unauthorized: the camera refused the user name or password".into(),
                ));
            }
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(SourceError::Refused(
                format!(
                    "HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_string(),
            ));
        }
        Ok(resp)
    }
}

type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A response body, with the bytes already looked at in front of the rest.
struct Body {
    head: Option<Bytes>,
    rest: BodyStream,
    done: bool,
}

impl Body {
    fn new(resp: reqwest::Response) -> Body {
        Body {
            head: None,
            rest: Box::pin(resp.bytes_stream()),
            done: false,
        }
    }

    async fn next(&mut self) -> Option<reqwest::Result<Bytes>> {
        if let Some(head) = self.head.take() {
            return Some(Ok(head));
        }
        if self.done {
            return None;
        }
        let item = self.rest.next().await;
        self.done = item.is_none();
        item
    }
}

/// How an answer is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Multipart JPEGs, split on this boundary (as [`multipart::Splitter`]
    /// takes it).
    Multipart { boundary: String },
    /// One JPEG: the camera is asked again for each picture.
    Snapshot,
    /// Anything else, for libavformat.
    Other,
}

/// An answer, looked at.
struct Answer {
    kind: Kind,
    body: Body,
    /// What differs from what the camera declares, said once.
    note: Option<String>,
    /// How the pictures come, as `probe` shows it.
    framing: String,
}

/// `image/jpeg` (and the spellings cameras use for it).
fn is_jpeg_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(media.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg")
}

/// Reads the start of the body, as far as [`multipart::sniff`] needs, and
/// decides how the answer is read.
async fn look(resp: reqwest::Response, opts: &SourceOptions) -> Result<Answer, SourceError> {
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut body = Body::new(resp);
    if is_jpeg_type(&content_type) {
        return Ok(Answer {
            kind: Kind::Snapshot,
            body,
            note: None,
            framing: "one JPEG per request (polled)".into(),
        });
    }
    // The declared boundary: None for a type that is not multipart,
    // Some(None) for a multipart type that names none.
    let declared = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/")
        .then(|| {
            multipart::boundary_from_content_type(&content_type)
                .filter(|b| !b.trim_start_matches('-').is_empty())
        });
    let secs = opts.timeout.as_secs_f64();
    // One deadline for the whole look: the first bytes are one item.
    let deadline = ItemDeadline::new(opts.timeout);
    let mut seen = BytesMut::new();
    let sniffed = loop {
        match multipart::sniff(&seen, false) {
            multipart::Sniff::NeedMore => {}
            decided => break decided,
        }
        let read = deadline.read(body.next(), || format!("no data for {secs} s"));
        match read.await? {
            None => break multipart::sniff(&seen, true),
            Some(Err(e)) => return Err(connection_failed(&e, "")),
            Some(Ok(piece)) => seen.extend_from_slice(&piece),
        }
    };
    if !seen.is_empty() {
        body.head = Some(seen.freeze());
    }
    let same = |a: &str, b: &str| a.trim().trim_start_matches('-') == b.trim_start_matches('-');
    let (kind, note) = match (sniffed, declared) {
        (multipart::Sniff::Multipart { boundary }, Some(Some(d))) => {
            let note = (!same(&d, &boundary)).then(|| {
                format!(
                    "the camera declares the multipart boundary {d:?} but its body uses \
                     {boundary:?}; splitting on the body's"
                )
            });
            (Kind::Multipart { boundary }, note)
        }
        (multipart::Sniff::Multipart { boundary }, Some(None)) => {
            let note = format!(
                "the camera's Content-Type {content_type:?} names no boundary; \
                 splitting on its body's first delimiter, {boundary:?}"
            );
            (Kind::Multipart { boundary }, Some(note))
        }
        (multipart::Sniff::Multipart { boundary }, None) => {
            let shown = if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type {content_type:?}")
            };
            let note = format!(
                "the camera answers with {shown} but sends multipart JPEGs \
                 (boundary {boundary:?}); reading them as such"
            );
            (Kind::Multipart { boundary }, Some(note))
        }
        // A preamble may come before the first delimiter: the declared
        // boundary is all there is to go on.
        (_, Some(Some(d))) => (Kind::Multipart { boundary: d }, None),
        (_, Some(None)) => {
            return Err(SourceError::protocol(
                "multipart",
                None,
                format!("{content_type:?} names no boundary, and the body does not begin with one"),
            ))
        }
        (_, None) => (Kind::Other, None),
    };
    let framing = match &kind {
        Kind::Multipart { boundary } => {
            let media = content_type.split(';').next().unwrap_or_default().trim();
            let media = if media.to_ascii_lowercase().starts_with("multipart/") {
                media.to_string()
            } else {
                format!("multipart, sent as {media:?}")
            };
            format!("{media}, boundary {boundary:?}")
        }
        _ => content_type,
    };
    Ok(Answer {
        kind,
        body,
        note,
        framing,
    })
}

/// The HTTP client for `opts`: its timeout, headers and TLS trust.
fn client(opts: &SourceOptions) -> Result<reqwest::Client, SourceError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(opts.timeout)
        .default_headers(headers(opts)?);
    if let Some(config) = super::tls::client_config(&opts.tls)? {
        builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&config));
    }
    builder
        .build()
        .map_err(|e| SourceError::Local(format!("cannot start an HTTP client: {e}")))
}

/// Connects, authenticates if asked, and looks at the answer.
pub async fn open(
    url: &Url,
    opts: &SourceOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Opened, SourceError> {
    let (clean, creds) = credentials(url, opts);
    let conn = Conn {
        client: client(opts)?,
        url: clean,
        creds,
    };
    let resp = conn.request(opts).await?;
    let answer = look(resp, opts).await?;
    let stats = Arc::new(SourceStats::default());
    if answer.kind == Kind::Other {
        // Not MJPEG: the body goes to libavformat as it is.
        let (tx, rx) = mpsc::channel(super::CHUNK_QUEUE);
        tokio::spawn(body(answer.body, opts.clone(), tx, stats.clone(), shutdown));
        return Ok(Opened::Other(ChunkStream { rx, stats }));
    }
    if let Some(note) = &answer.note {
        opts.say(note);
    }
    stats.counts_jpegs.store(true, Ordering::Relaxed);
    if let Ok(mut f) = stats.http_framing.lock() {
        *f = Some(answer.framing.clone());
    }
    let (tx, rx) = mpsc::channel(JPEG_QUEUE);
    tokio::spawn(receive(
        conn,
        answer,
        opts.clone(),
        tx,
        stats.clone(),
        shutdown,
    ));
    Ok(Opened::Mjpeg(JpegStream { rx, stats }))
}

/// A failed request as a kind: a refused certificate, a connect that
/// failed, or a connection lost on the way.
fn failure(e: &reqwest::Error) -> SourceError {
    if super::tls::describe(e).is_some() {
        return SourceError::Untrusted(describe(e));
    }
    if e.is_connect() {
        return match find_io(e) {
            Some(io) => connect_failed(io, describe(e)),
            None => SourceError::Unreachable(describe(e)),
        };
    }
    SourceError::Ended(describe(e))
}

/// A body that failed while being read: the connection was lost (`mid`
/// says what it was in the middle of).
fn connection_failed(e: &reqwest::Error, mid: &str) -> SourceError {
    SourceError::Ended(format!("the connection failed: {}{mid}", describe(e)))
}

fn describe(e: &reqwest::Error) -> String {
    // A refused certificate in words, with what to do about it.
    if let Some(tls) = super::tls::describe(e) {
        return tls;
    }
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
    mut body: Body,
    opts: SourceOptions,
    tx: mpsc::Sender<Result<Arrived, SourceError>>,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let secs = opts.timeout.as_secs_f64();
    let pass_on = async {
        // Any piece of a body camflow does not look into is a whole item.
        let mut deadline = ItemDeadline::new(opts.timeout);
        loop {
            let read = deadline.read(body.next(), || format!("no data for {secs} s"));
            let piece = match read.await? {
                None => return Ok(()),
                Some(Err(e)) => return Err(connection_failed(&e, "")),
                Some(Ok(b)) => b,
            };
            stats.add_bytes(piece.len());
            let item = Arrived {
                chunk: Chunk::Data(piece),
                at_unix: unix_now(),
            };
            if tx.send(Ok(item)).await.is_err() {
                return Ok(());
            }
            // From when the piece was handed on: a slow consumer is not
            // held against the server.
            deadline.reset();
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
    first: Answer,
    opts: SourceOptions,
    tx: Tx,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The first answer was already read by `open`; reconnects ask again.
    let first = std::sync::Mutex::new(Some(first));
    let said = Said::default();
    let sessions = super::supervised(&opts, shutdown.clone(), |_, streamed| {
        let taken = first.lock().ok().and_then(|mut f| f.take());
        let (conn, opts, tx, stats, said) = (&conn, &opts, &tx, &stats, &said);
        async move {
            let answer = match taken {
                Some(a) => a,
                None => look(conn.request(opts).await?, opts).await?,
            };
            match answer.kind {
                Kind::Multipart { boundary } => {
                    parts(answer.body, &boundary, opts, tx, stats, streamed, said).await
                }
                Kind::Snapshot => {
                    snapshots(conn, answer.body, opts, tx, stats, streamed, said).await
                }
                Kind::Other => Err(SourceError::NotVideo(
                    "the camera no longer answers with MJPEG (multipart or a JPEG)".into(),
                )),
            }
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

/// What has been said once already, across reconnects.
#[derive(Default)]
struct Said {
    oversized: AtomicBool,
    polling: AtomicBool,
}

impl Said {
    /// True the first time only.
    fn first(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// Counts and says (once) the parts the splitter skipped for their size.
fn count_skipped(
    splitter: &multipart::Splitter,
    counted: &mut u64,
    opts: &SourceOptions,
    stats: &SourceStats,
    said: &Said,
) {
    let skipped = splitter.skipped_parts();
    if skipped > *counted {
        stats
            .oversized_jpegs
            .fetch_add(skipped - *counted, Ordering::Relaxed);
        *counted = skipped;
        if Said::first(&said.oversized) {
            opts.say(&format!(
                "a picture over --max-frame-bytes ({}) is skipped; the stream goes on",
                opts.max_frame
            ));
        }
    }
}

async fn parts(
    mut body: Body,
    boundary: &str,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: Arc<AtomicBool>,
    said: &Said,
) -> Result<(), SourceError> {
    let secs = opts.timeout.as_secs_f64();
    let mut splitter = multipart::Splitter::new(boundary, opts.max_frame);
    let mut skipped = 0;
    // Only a whole JPEG resets the deadline.
    let mut deadline = ItemDeadline::new(opts.timeout);
    loop {
        let read = deadline.read(body.next(), || format!("no JPEG for {secs} s"));
        let chunk = match read.await? {
            None => {
                // Cameras that send no Content-Length and close after the
                // last part (or a single one) write no delimiter after it:
                // the splitter hands it over if it is a whole JPEG.
                let at_unix = unix_now();
                while let Some(part) = splitter.end_of_stream().map_err(closed_early)? {
                    deliver(part, at_unix, opts, tx, stats, &streamed).await;
                }
                return Ok(());
            }
            Some(Err(e)) => {
                let mid = if splitter.in_part() {
                    " (in the middle of a JPEG)"
                } else {
                    ""
                };
                return Err(connection_failed(&e, mid));
            }
            Some(Ok(c)) => c,
        };
        stats.add_bytes(chunk.len());
        splitter.feed(&chunk);
        let at_unix = unix_now();
        while let Some(part) = splitter.next_part()? {
            if deliver(part, at_unix, opts, tx, stats, &streamed).await {
                deadline.reset();
            }
        }
        count_skipped(&splitter, &mut skipped, opts, stats, said);
        if splitter.is_finished() {
            return Ok(());
        }
    }
}

/// A snapshot camera: one JPEG per request, asked for again as soon as the
/// last has arrived, but at most once a second, or at `--fps`
/// ([`SourceOptions::poll_fps`]). Each picture is stamped on arrival, but
/// never closer to the last than the interval (a fast answer after a slow
/// one is stamped a little late), so that the same `--fps` kept downstream
/// keeps every one. Ends only by an error: `--reconnect` decides what
/// follows.
async fn snapshots(
    conn: &Conn,
    first: Body,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: Arc<AtomicBool>,
    said: &Said,
) -> Result<(), SourceError> {
    let every = opts
        .poll_fps
        .map_or(Duration::from_secs(1), |f| Duration::from_secs_f64(1.0 / f));
    if Said::first(&said.polling) {
        let pace = match opts.poll_fps {
            Some(f) => format!("{f} times a second (--fps)"),
            None => "as fast as it answers, at most once a second (--fps sets the rate)".into(),
        };
        opts.say(&format!(
            "the camera answers with a single JPEG; asking for a picture {pace}"
        ));
    }
    let mut body = Some(first);
    let mut asked = Instant::now();
    let mut last_stamp: Option<f64> = None;
    loop {
        let b = match body.take() {
            Some(b) => b,
            None => {
                let answer = look(conn.request(opts).await?, opts).await?;
                if answer.kind != Kind::Snapshot {
                    return Err(SourceError::NotVideo(
                        "the camera no longer answers with a single JPEG".into(),
                    ));
                }
                answer.body
            }
        };
        let deadline = ItemDeadline::since(asked, opts.timeout);
        let picture = read_picture(b, &deadline, opts, stats).await?;
        let at_unix = unix_now();
        match picture {
            None => {
                stats.oversized_jpegs.fetch_add(1, Ordering::Relaxed);
                if Said::first(&said.oversized) {
                    opts.say(&format!(
                        "a picture over --max-frame-bytes ({}) is skipped",
                        opts.max_frame
                    ));
                }
            }
            Some(data) => {
                // 0.1 ms more than the interval, so that rounding never puts
                // two pictures in one --fps slot.
                let stamp = match last_stamp {
                    Some(last) => at_unix.max(last + every.as_secs_f64() + 1e-4),
                    None => at_unix,
                };
                let part = multipart::Part {
                    headers: Vec::new(),
                    body: data,
                    content_type: Some("image/jpeg".into()),
                    timestamp: Some(stamp),
                };
                if deliver(part, at_unix, opts, tx, stats, &streamed).await {
                    last_stamp = Some(stamp);
                }
            }
        }
        // The next request: one interval after this one was due, or now
        // if the answer took longer than that (no burst to catch up).
        asked = (asked + every).max(Instant::now());
        tokio::time::sleep_until(asked).await;
    }
}

/// A snapshot's body, whole, by `deadline`; `None` if it is over
/// `--max-frame-bytes` (read to its end and dropped, so the size is known
/// and the next request can reuse the connection).
async fn read_picture(
    mut body: Body,
    deadline: &ItemDeadline,
    opts: &SourceOptions,
    stats: &SourceStats,
) -> Result<Option<Bytes>, SourceError> {
    let secs = deadline.secs();
    let mut buf = BytesMut::new();
    let mut over = false;
    loop {
        let read = deadline.read(body.next(), || {
            format!("no whole JPEG within {secs} s of asking")
        });
        match read.await? {
            None => break,
            Some(Err(e)) => return Err(connection_failed(&e, " (in the middle of a JPEG)")),
            Some(Ok(piece)) => {
                stats.add_bytes(piece.len());
                if over || buf.len() + piece.len() > opts.max_frame {
                    over = true;
                    buf = BytesMut::new();
                } else {
                    buf.extend_from_slice(&piece);
                }
            }
        }
    }
    Ok((!over).then(|| buf.freeze()))
}

/// The splitter's error when the connection closed, in the words of the
/// other sources (a part cut short is a JPEG cut short).
fn closed_early(e: multipart::Error) -> SourceError {
    match e {
        multipart::Error::Truncated { pos } => SourceError::Ended(format!(
            "the connection was closed in the middle of a JPEG (its multipart part began at byte {pos})"
        )),
        e => e.into(),
    }
}

/// Sends a part on if it is a whole JPEG; true if it was. A part that
/// should have been one (an image type, or no type) and is not a whole
/// JPEG is counted as broken; others (cameras interleave text parts now and
/// then) are passed over.
async fn deliver(
    part: multipart::Part,
    at_unix: f64,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: &AtomicBool,
) -> bool {
    let mut check = jpeg::Splitter::new(opts.max_frame);
    check.feed(&part.body);
    let Ok(Some(data)) = check.next_frame() else {
        let image = part
            .content_type
            .as_deref()
            .is_none_or(|t| t.trim().to_ascii_lowercase().starts_with("image/"));
        if image {
            stats.broken_jpegs.fetch_add(1, Ordering::Relaxed);
        }
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
    streamed.store(true, Ordering::Relaxed);
    true
}
