//! Raw-MJPEG receiver (`tcp://`, `vbc://`): the one place that owns the
//! socket. For a Canon VB camera it sends the hello first; whatever the
//! camera answers ("100") is skipped by the JPEG splitter along with any
//! other bytes before a JPEG's start. Whole JPEGs go to the consumer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use url::Url;

use super::deadline::{within, ItemDeadline};
use super::error::connect_failed;
use super::{JpegFrame, SourceError, SourceOptions, SourceStats};
use crate::packet::unix_now;
use crate::proto::jpeg;

/// The Canon VB-C10's streaming port.
pub const VBC_PORT: u16 = 65310;

type Tx = mpsc::Sender<Result<JpegFrame, SourceError>>;

/// Runs until the camera closes the connection, an error, the consumer
/// hanging up, or shutdown. An error is sent down the channel last.
pub async fn run(
    url: Url,
    hello: Option<Vec<u8>>,
    opts: SourceOptions,
    tx: Tx,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Broken JPEGs the splitter drops are counted in the progress line and
    // the summary, as for HTTP cameras.
    stats.counts_jpegs.store(true, Ordering::Relaxed);
    let sessions = super::supervised(&opts, shutdown.clone(), |_, streamed| {
        session(&url, hello.as_deref(), &opts, &tx, &stats, streamed)
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

async fn session(
    url: &Url,
    hello: Option<&[u8]>,
    opts: &SourceOptions,
    tx: &Tx,
    stats: &SourceStats,
    streamed: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let port = url.port().unwrap_or(VBC_PORT);
    let secs = opts.timeout.as_secs_f64();
    // `host_str` keeps an IPv6 address's brackets; the parsed host does not.
    let target = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Domain(d)) => d.to_string(),
        None => return Err(SourceError::Settings("the URL has no host".into())),
    };
    let mut sock = within(
        opts.timeout,
        TcpStream::connect((target.as_str(), port)),
        || format!("no answer within {secs} s while connecting"),
    )
    .await?
    .map_err(|e| connect_failed(&e, format!("cannot connect: {e}")))?;
    let _ = sock.set_nodelay(true);
    if let Some(h) = hello {
        sock.write_all(h)
            .await
            .map_err(|e| SourceError::Ended(format!("sending the hello: {e}")))?;
    }

    let mut splitter = jpeg::Splitter::new(opts.max_frame);
    // The splitter's count of dropped images already added to `stats`.
    let mut counted = 0;
    let mut buf = vec![0u8; 64 * 1024];
    // Only a whole JPEG resets the deadline: a camera that sends bytes but
    // no pictures (junk, a stuck encoder) must still time out.
    let mut deadline = ItemDeadline::new(opts.timeout);
    loop {
        let read = deadline.read(sock.read(&mut buf), || {
            if splitter.in_frame() {
                format!("no whole JPEG for {secs} s (in the middle of one)")
            } else {
                format!("no JPEG for {secs} s")
            }
        });
        let n = match read.await? {
            Err(e) => {
                let mid = if splitter.in_frame() {
                    " (in the middle of a JPEG)"
                } else {
                    ""
                };
                return Err(SourceError::Ended(format!(
                    "the connection failed: {e}{mid}"
                )));
            }
            Ok(n) => n,
        };
        if n == 0 {
            // The camera closed the connection: a clean end, unless it cut
            // a picture short.
            if splitter.in_frame() {
                return Err(SourceError::Ended(
                    "the connection was closed in the middle of a JPEG".into(),
                ));
            }
            return Ok(());
        }
        stats.add_bytes(n);
        splitter.feed(buf.get(..n).unwrap_or_default());
        let at_unix = unix_now();
        while let Some(data) = next_frame(&mut splitter, stats, &mut counted)? {
            if tx
                .send(Ok(JpegFrame {
                    data,
                    at_unix,
                    pts: None,
                }))
                .await
                .is_err()
            {
                // The consumer has all it wants; `run` sees the channel close.
                std::future::pending::<()>().await;
            }
            streamed.store(true, Ordering::Relaxed);
            deadline.reset();
        }
    }
}

/// The splitter's next whole JPEG; the images it dropped on the way (cut
/// short, corrupt) are added to `stats`' broken count.
fn next_frame(
    splitter: &mut jpeg::Splitter,
    stats: &SourceStats,
    counted: &mut u64,
) -> Result<Option<bytes::Bytes>, SourceError> {
    let next = splitter.next_frame().map_err(SourceError::from);
    let bad = splitter.stats().bad_frames;
    if bad > *counted {
        stats
            .broken_jpegs
            .fetch_add(bad - *counted, Ordering::Relaxed);
        *counted = bad;
    }
    next
}
