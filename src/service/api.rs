//! The service's HTTP side: the JSON API, the packaged files under
//! `/content/<id>/`, the page at `/` and its player script. Only the
//! packaged files carry `Access-Control-Allow-Origin: *` (and only their
//! preflights are answered), so that a player on another origin can fetch
//! them; the page (which holds the keys) and the JSON API get no CORS
//! headers, so a script on another origin cannot read them (the page calls
//! nothing but its own origin). Every error is JSON, `{"error": "..."}`,
//! one line, that never quotes a key.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /input_content` (multipart, field `file`) | 201 the input and its tracks; 413 too large; 415 no H.264 video |
//! | `GET /input_content`, `GET /input_content/{id}` | the inputs (array), one input |
//! | `POST /packaged_content` `{input_content_id, key, kid, scheme?}` | 202 `{packaged_content_id}`; 400 bad key, KID or scheme; 404 unknown input |
//! | `GET /packaged_content`, `GET /packaged_content/{id}` | the jobs (array), one job; `url` is set when Ready |
//! | `GET /content/{id}/{file}` | a packaged file (MPD, segments, HLS playlists) |
//! | `GET /` | the page: every item, and a player for the Ready ones |
//!
//! `url` is relative to the service (`/content/<id>/stream.mpd`): it stays
//! right behind a proxy or a port forward, where the Host the service saw
//! may not be the one the client can reach.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use super::db::{Input, Packaged, Status};
use super::{page, Service, DEFAULT_SHAKA_JS};
use crate::pipeline::input::InputSource;
use crate::proto::cenc;

/// An error answer: status and a one-line reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn err(status: StatusCode, text: impl Into<String>) -> ApiError {
    ApiError(status, text.into())
}

fn internal(e: anyhow::Error) -> ApiError {
    log::error!("{e:#}");
    err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

type Answer = Result<Response, ApiError>;

/// Runs database work off the tokio workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(internal),
        Err(e) => Err(internal(anyhow::anyhow!("a worker task failed: {e}"))),
    }
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/static/shaka-player.compiled.js", get(shaka_js))
        .route(
            "/input_content",
            // The upload is limited by --max-upload as it streams, not by
            // axum's default body limit.
            get(list_inputs)
                .post(upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/input_content/{id}", get(one_input))
        .route(
            "/packaged_content",
            get(list_packaged).post(create_packaged),
        )
        .route("/packaged_content/{id}", get(one_packaged))
        // The preflight (OPTIONS) is answered by `cors` itself; it needs a
        // route of its own so that it is not taken for a wrong method.
        .route(
            "/content/{id}/{file}",
            get(content_file)
                .options(not_found)
                .layer(middleware::from_fn(cors)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(
            service.clone(),
            whole_bodies,
        ))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            loopback_names,
        ))
        .with_state(service)
}

/// The largest body of a request other than an upload (the JSON of
/// `POST /packaged_content` is a few hundred bytes); axum's own default.
const BODY_LIMIT: usize = 2 << 20;

/// A POST other than an upload (which streams, and waits `upload_idle` for
/// each piece) is read whole before its handler runs, and given
/// `upload_idle` in all to arrive: a client that announces a body and then
/// stops sending is answered 408 and its connection dropped, rather than
/// holding it (and a task) forever. A larger body than [`BODY_LIMIT`]
/// gets 413. Other methods' bodies are never read (no handler wants one).
async fn whole_bodies(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || req.uri().path() == "/input_content" {
        return next.run(req).await;
    }
    let idle = svc.settings.upload_idle;
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(idle, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("the request body broke off: {e}"),
                )
            }
            .into_response();
        }
        Err(_) => {
            let text = format!(
                "the request stalled: its body was not whole after {} s",
                idle.as_secs_f64()
            );
            log::warn!("{text}; dropped");
            return err(StatusCode::REQUEST_TIMEOUT, text).into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Uploads and packaging requests from a page on another web site are
/// refused. A browser lets any page send a form POST (multipart, or text
/// that the API would read as JSON) without asking, and always says where
/// it came from in `Origin`; scripts and tools such as curl send none.
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let header_text = |name| {
            req.headers()
                .get(name)
                .and_then(|h: &HeaderValue| h.to_str().ok())
        };
        if let Some(origin) = header_text(header::ORIGIN) {
            let from = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            let host = header_text(header::HOST).unwrap_or("");
            if !from.eq_ignore_ascii_case(host) {
                return err(
                    StatusCode::FORBIDDEN,
                    format!("requests from another web site ({origin}) are refused"),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// On a loopback address, only requests addressed to a loopback name are
/// answered: otherwise a web site could point its own domain name at
/// 127.0.0.1 (DNS rebinding) and read the page, keys and all, as its own
/// origin. (On another address the operator chose to be reached by
/// whatever name the network gives it.)
async fn loopback_names(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    if svc.settings.listen.ip().is_loopback() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_name(host) {
            return err(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this service answers to localhost, 127.0.0.1 or [::1] only, not {host:?}"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// `localhost`, a loopback IP, `[::1]`, each with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// CORS for the packaged files only, for players on other origins:
/// preflights are answered here, every other answer gets
/// `Access-Control-Allow-Origin: *`. The files are encrypted and nothing
/// depends on cookies, so `*` is safe there; it must never be on `/`,
/// whose HTML carries the keys.
async fn cors(req: Request, next: Next) -> Response {
    let star = HeaderValue::from_static("*");
    if req.method() == Method::OPTIONS {
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("Content-Type, Range"));
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, star);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return r;
    }
    let mut r = next.run(req).await;
    r.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, star);
    r
}

async fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "no such resource")
}

/// A path that exists, asked with a method it does not take: JSON like
/// every other error (axum's own answer has an empty body).
async fn wrong_method(method: Method) -> ApiError {
    err(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not taken here"),
    )
}

/// A record id from the path: a positive integer, else nothing is there.
fn parse_id(s: &str, what: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no {what} '{s}'")))
}

// ---- inputs ----

fn input_json(i: &Input) -> Value {
    let mut v = json!({
        "input_content_id": i.id,
        "original_name": i.original_name,
        "size": i.size,
        "status": i.status,
        "created": i.created,
    });
    if let (Some(o), Some(p)) = (v.as_object_mut(), i.probe.as_object()) {
        for (k, x) in p {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

async fn list_inputs(State(svc): State<Arc<Service>>) -> Answer {
    let inputs = blocking(move || svc.db.inputs()).await?;
    Ok(Json(inputs.iter().map(input_json).collect::<Vec<_>>()).into_response())
}

async fn one_input(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id, "input")?;
    match blocking(move || svc.db.input(id)).await? {
        Some(i) => Ok(Json(input_json(&i)).into_response()),
        None => Err(err(StatusCode::NOT_FOUND, format!("no input {id}"))),
    }
}

/// How far past --max-upload a refused upload is still read (and thrown
/// away) so that the client, still sending, gets the 413 instead of a reset
/// connection. Larger bodies announced by Content-Length are refused before
/// any of them is read.
const DRAIN_LIMIT: u64 = 16 << 20;

/// A generated name for an upload under `uploads/`: 24 lower-case hex
/// digits.
fn upload_name() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

fn is_upload_name(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// At start, before any upload can be under way: removes what a forced
/// stop left in `uploads/`, the temporaries (`.<name>.part`) and stored
/// uploads that no input records (the process died while probing them).
/// Files not named like the service's own are left alone.
pub fn clean_uploads(uploads: &FsPath, recorded: &HashSet<String>) {
    let entries = match std::fs::read_dir(uploads) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("cannot list {}: {e}", uploads.display());
            return;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let temporary = name.starts_with('.') && name.contains(".part");
        let orphan = is_upload_name(name) && !recorded.contains(name);
        if !(temporary || orphan) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
        }
    }
    if removed > 0 {
        log::info!("removed {removed} unfinished upload(s) left by an earlier run");
    }
}

/// An upload's file, removed when dropped unless kept: whatever ends an
/// upload early (a broken or stalled client, a later field that fails, a
/// refusal, the handler dropped at shutdown or when the client leaves)
/// leaves nothing behind, first under its temporary name, then under its
/// stored one until an input record holds it.
struct PartFile {
    path: PathBuf,
    keep: bool,
}

impl PartFile {
    fn new(path: PathBuf) -> PartFile {
        PartFile { path, keep: false }
    }

    /// Moves the file to `to`; the guard moves with it.
    async fn rename_to(mut self, to: &FsPath) -> std::io::Result<PartFile> {
        tokio::fs::rename(&self.path, to).await?;
        self.keep = true;
        Ok(PartFile::new(to.to_path_buf()))
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The next step of reading an upload (a field, a chunk), given at most
/// `idle` to arrive: a client that stops sending is answered 408 and its
/// connection dropped, rather than holding both (and a partial file)
/// forever.
async fn within_idle<T>(
    idle: Duration,
    next: impl Future<Output = Result<T, MultipartError>>,
    broken: impl FnOnce(MultipartError) -> ApiError,
) -> Result<T, ApiError> {
    match tokio::time::timeout(idle, next).await {
        Ok(r) => r.map_err(broken),
        Err(_) => {
            let text = format!("the upload stalled: no data for {} s", idle.as_secs_f64());
            log::warn!("{text}; dropped");
            Err(err(StatusCode::REQUEST_TIMEOUT, text))
        }
    }
}

/// A multipart upload, streamed to `uploads/.<id>.part` and renamed to
/// `uploads/<id>` when whole, then probed. Each read waits at most
/// `upload_idle` for data.
async fn upload(State(svc): State<Arc<Service>>, req: Request) -> Answer {
    let max = svc.settings.max_upload;
    let idle = svc.settings.upload_idle;
    let too_large = || {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the service's limit of {max} bytes"),
        )
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max.saturating_add(DRAIN_LIMIT)) {
        return Err(too_large());
    }
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("expected a multipart/form-data upload: {}", e.body_text()),
        )
    })?;
    let bad_body = |e: MultipartError| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the upload is not valid multipart: {}", e.body_text()),
        )
    };
    let uploads = svc.uploads();
    let mut total: u64 = 0;
    let mut over = false;
    let mut stored: Option<(PartFile, String, String, u64)> = None;
    while let Some(mut field) = within_idle(idle, mp.next_field(), bad_body).await? {
        let is_file = !over && stored.is_none() && field.name() == Some("file");
        if !is_file {
            // Other fields (and the rest of a refused upload) are read and
            // dropped; they count towards the limit.
            while let Some(c) = within_idle(idle, field.chunk(), bad_body).await? {
                total += c.len() as u64;
                over |= total > max;
                if total > max.saturating_add(DRAIN_LIMIT) {
                    return Err(too_large());
                }
            }
            continue;
        }
        let original = display_name(field.file_name().unwrap_or("upload"));
        let name = upload_name();
        let part = PartFile::new(uploads.join(format!(".{name}.part")));
        let written = write_field(&mut field, &part.path, &mut total, max, idle).await;
        match written {
            Ok(size) => match part.rename_to(&uploads.join(&name)).await {
                Ok(file) => stored = Some((file, name, original, size)),
                Err(e) => {
                    return Err(internal(anyhow::anyhow!(
                        "cannot store the upload in {}: {e}",
                        uploads.display()
                    )))
                }
            },
            Err(e) => {
                drop(part);
                if e.0 != StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(e);
                }
                over = true;
                while let Some(c) = within_idle(idle, field.chunk(), bad_body).await? {
                    total += c.len() as u64;
                    if total > max.saturating_add(DRAIN_LIMIT) {
                        return Err(too_large());
                    }
                }
            }
        }
    }
    if over {
        return Err(too_large());
    }
    let Some((file, name, original, size)) = stored else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "the upload has no field named 'file'",
        ));
    };
    let path = uploads.join(&name);
    let probed = tokio::task::spawn_blocking({
        let path = path.clone();
        move || probe(path)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the probe failed: {e}")));
    let probe = match probed {
        Ok(p) => p,
        Err(reason) => {
            log::warn!("upload '{original}' refused: {reason}");
            return Err(err(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason));
        }
    };
    // Kept from here: should the handler be dropped while the record is
    // written, a file without a record is removed at the next start, while
    // a record without its file would fail every job made from it.
    file.keep();
    let input = blocking(move || {
        let id = svc.db.add_input(&original, &name, size, &probe)?;
        svc.db
            .input(id)?
            .ok_or_else(|| anyhow::anyhow!("input {id} vanished"))
    })
    .await
    .inspect_err(|_| {
        let _ = std::fs::remove_file(&path);
    })?;
    log::info!(
        "input {} ingested ('{}', {} bytes)",
        input.id,
        input.original_name,
        input.size
    );
    Ok((StatusCode::CREATED, Json(input_json(&input))).into_response())
}

/// Streams one multipart field into a new file, counting towards `max`,
/// waiting at most `idle` for each chunk.
async fn write_field(
    field: &mut Field<'_>,
    path: &FsPath,
    total: &mut u64,
    max: u64,
    idle: Duration,
) -> Result<u64, ApiError> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| internal(anyhow::anyhow!("cannot write the upload: {e}"));
    let broke_off = |e: MultipartError| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the upload broke off: {}", e.body_text()),
        )
    };
    let mut f = tokio::fs::File::create(path).await.map_err(io)?;
    let mut size = 0u64;
    while let Some(c) = within_idle(idle, field.chunk(), broke_off).await? {
        size += c.len() as u64;
        *total += c.len() as u64;
        if *total > max {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "too large"));
        }
        f.write_all(&c).await.map_err(io)?;
    }
    f.flush().await.map_err(io)?;
    f.sync_all().await.map_err(io)?;
    Ok(size)
}

/// The client's file name, kept as text only: its last path component,
/// without control characters, at most 200 characters.
fn display_name(s: &str) -> String {
    let last = s.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// What libavformat finds in an upload: the JSON kept with the input, or
/// why it cannot be packaged. Runs on a blocking thread.
fn probe(path: PathBuf) -> Result<Value, String> {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| format!("cannot read the upload: {e}"))?;
    if sniff(&head[..n]).is_none() {
        return Err("not a container camflow packages (MP4/MOV, Matroska/WebM, \
                    MPEG-TS, FLV, AVI or raw H.264)"
            .into());
    }
    let report = crate::pipeline::probe::run(
        &InputSource::Untrusted(path),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    )
    .map_err(|e| format!("not a media file camflow can read ({e})"))?;
    let video = report
        .streams
        .iter()
        .find(|s| s.kind == "video")
        .ok_or("the file has no video track")?;
    if video.codec != "h264" {
        return Err(format!(
            "the video track is {}; packaging takes H.264",
            video.codec
        ));
    }
    let audio: Vec<Value> = report
        .streams
        .iter()
        .filter(|s| s.kind == "audio")
        .map(|s| json!({"index": s.index, "codec": s.codec, "sample_rate": s.sample_rate}))
        .collect();
    Ok(json!({
        "container": report.container,
        "duration_seconds": report.duration_seconds,
        "video_track": {
            "index": video.index,
            "codec": video.codec,
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
        },
        "audio_tracks": audio,
    }))
}

/// The container an upload starts like, from its first bytes, before
/// libavformat sees it: libavformat also opens playlists (HLS, concat) that
/// make it read other files and URLs, which an uploaded file must never do.
fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |i: usize, m: &[u8]| head.get(i..i + m.len()) == Some(m);
    let mp4_box = [
        b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"styp", b"pnot",
    ];
    if mp4_box.iter().any(|b| at(4, *b)) {
        Some("mp4")
    } else if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        Some("matroska")
    } else if at(0, b"FLV") {
        Some("flv")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Some("avi")
    } else if at(0, &[0x47]) {
        // MPEG-TS: sync bytes every 188 (checked again by libavformat).
        Some("mpegts")
    } else if at(0, &[0, 0, 0, 1]) || at(0, &[0, 0, 1]) {
        Some("h264")
    } else {
        None
    }
}

// ---- packaging jobs ----

/// The MPD's URL, relative to the service (see the module doc).
pub fn mpd_url(id: i64) -> String {
    format!("/content/{id}/{}", crate::pipeline::dash::MPD)
}

/// A job as the API shows it: never the key.
fn packaged_json(p: &Packaged) -> Value {
    json!({
        "packaged_content_id": p.id,
        "input_content_id": p.input_id,
        "status": p.status,
        "scheme": p.scheme,
        "kid": p.kid_hex,
        "url": (p.status == Status::Ready).then(|| mpd_url(p.id)),
        "error": p.error,
        "created": p.created,
    })
}

async fn list_packaged(State(svc): State<Arc<Service>>) -> Answer {
    let all = blocking(move || svc.db.all_packaged()).await?;
    Ok(Json(all.iter().map(packaged_json).collect::<Vec<_>>()).into_response())
}

async fn one_packaged(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id, "packaged content")?;
    match blocking(move || svc.db.packaged(id)).await? {
        Some(p) => Ok(Json(packaged_json(&p)).into_response()),
        None => Err(err(
            StatusCode::NOT_FOUND,
            format!("no packaged content {id}"),
        )),
    }
}

/// `{input_content_id, key, kid, scheme?}` → a queued job. The body is
/// parsed here rather than by axum's `Json` so that every mistake gets a
/// JSON answer; key errors never quote the key.
async fn create_packaged(State(svc): State<Arc<Service>>, body: Bytes) -> Answer {
    let bad = |t: &str| err(StatusCode::BAD_REQUEST, t);
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let input_id = v
        .get("input_content_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("input_content_id: expected an integer"))?;
    let key_text = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("key: expected a string"))?;
    let kid_text = v
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("kid: expected a string"))?;
    const FORMS: &str = "22 characters of base64url or 32 hex digits (16 bytes)";
    let key = cenc::parse_key16(key_text).map_err(|_| bad(&format!("key: expected {FORMS}")))?;
    let kid = cenc::parse_key16(kid_text).map_err(|_| bad(&format!("kid: expected {FORMS}")))?;
    let scheme = match v.get("scheme") {
        None | Some(Value::Null) => "cbcs",
        Some(Value::String(s)) if s == "cbcs" => "cbcs",
        Some(Value::String(s)) if s == "cenc" => "cenc",
        Some(_) => return Err(bad("scheme: expected \"cbcs\" or \"cenc\"")),
    };
    let (key_hex, kid_hex) = (cenc::hex(&key), cenc::hex(&kid));
    let svc2 = svc.clone();
    let id = blocking(move || {
        if svc2.db.input(input_id)?.is_none() {
            return Ok(None);
        }
        svc2.db
            .add_packaged(input_id, scheme, &key_hex, &kid_hex)
            .map(Some)
    })
    .await?
    .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no input {input_id}")))?;
    log::info!("job {id} queued (input {input_id}, {scheme})");
    svc.jobs.push(id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/packaged_content/{id}"))],
        Json(json!({ "packaged_content_id": id, "status": Status::Ingested })),
    )
        .into_response())
}

// ---- packaged files, the page ----

/// MIME types of what `package` writes.
fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "m3u8" => "application/vnd.apple.mpegurl",
        _ => "application/octet-stream",
    }
}

/// A packaged file. The id is a number and the name one plain file name
/// (letters, digits, `-`, `_`, `.`, not starting with a dot, which also
/// hides the job's scratch folder), so no request reaches outside
/// `content/<id>/`.
async fn content_file(
    State(svc): State<Arc<Service>>,
    Path((id, file)): Path<(String, String)>,
) -> Answer {
    let gone = || err(StatusCode::NOT_FOUND, "no such file");
    let id = parse_id(&id, "packaged content")?;
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(gone());
    }
    let path = svc.content().join(id.to_string()).join(&file);
    // Missing, or a folder: nothing to serve either way.
    let data = tokio::fs::read(&path).await.map_err(|_| gone())?;
    Ok((
        [
            (header::CONTENT_TYPE, mime(&file)),
            // Files of a package are replaced only by running the job
            // again; players should still check the MPD.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(data),
    )
        .into_response())
}

async fn index(State(svc): State<Arc<Service>>) -> Answer {
    let (inputs, packaged) =
        blocking(move || Ok((svc.db.inputs()?, svc.db.all_packaged()?))).await?;
    Ok(Html(page::render(&inputs, &packaged)).into_response())
}

/// Shaka Player for the page, from `--shaka-js` or the browser tests' copy;
/// never from a CDN (the service must work offline).
async fn shaka_js(State(svc): State<Arc<Service>>) -> Answer {
    let path = svc
        .settings
        .shaka_js
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SHAKA_JS));
    match tokio::fs::read(&path).await {
        Ok(data) => Ok((
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            Body::from(data),
        )
            .into_response()),
        Err(e) => Err(err(
            StatusCode::NOT_FOUND,
            format!(
                "Shaka Player is not available ({}: {e}); start the service with \
                 --shaka-js PATH/shaka-player.compiled.js (npm package shaka-player, dist/)",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniff_takes_containers_and_refuses_playlists() {
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some("mp4"));
        assert_eq!(sniff(&[0x1a, 0x45, 0xdf, 0xa3, 1]), Some("matroska"));
        assert_eq!(sniff(b"\0\0\0\x01\x67"), Some("h264"));
        assert_eq!(sniff(b"#EXTM3U\n#EXT-X-"), None);
        assert_eq!(sniff(b"ffconcat version"), None);
        assert_eq!(sniff(b"just some text\n"), None);
        assert_eq!(sniff(b""), None);
    }
}
