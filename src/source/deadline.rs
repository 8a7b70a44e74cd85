//! The read deadline every receiver keeps: `--timeout` runs from the last
//! whole item (a JPEG, an fMP4 fragment, an RTP picture), not from the last
//! byte, so a camera that sends bytes but no pictures (junk, keepalives, a
//! stuck encoder) still times out. In: the timeout, each read, and a
//! `reset` when a whole item was handed on; out: the read's result, or a
//! [`SourceError::Timeout`] with the receiver's words.
//!
//! Times are tokio's, so tests run it on paused time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::SourceError;

/// A deadline of `timeout` after the last whole item (or the start).
#[derive(Debug, Clone)]
pub struct ItemDeadline {
    timeout: Duration,
    last_item: Instant,
}

impl ItemDeadline {
    /// A deadline `timeout` from now.
    pub fn new(timeout: Duration) -> Self {
        Self::since(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `start` (a request sent earlier).
    pub fn since(start: Instant, timeout: Duration) -> Self {
        ItemDeadline {
            timeout,
            last_item: start,
        }
    }

    /// A whole item arrived: the deadline moves to `timeout` from now.
    pub fn reset(&mut self) {
        self.last_item = Instant::now();
    }

    /// When the wait ends.
    pub fn at(&self) -> Instant {
        self.last_item + self.timeout
    }

    /// The timeout in seconds, as messages show it.
    pub fn secs(&self) -> f64 {
        self.timeout.as_secs_f64()
    }

    /// `read`'s output, or a timeout error with `message()`'s words if the
    /// deadline passes first. The message is made only then, so it can say
    /// what the receiver was in the middle of.
    pub async fn read<F: Future>(
        &self,
        read: F,
        message: impl FnOnce() -> String,
    ) -> Result<F::Output, SourceError> {
        tokio::time::timeout_at(self.at(), read)
            .await
            .map_err(|_| SourceError::Timeout(message()))
    }
}

/// `fut`'s output, or a timeout error with `message`'s words if it takes
/// longer than `limit` (a connect, a request, an RTSP method).
pub async fn within<F: Future>(
    limit: Duration,
    fut: F,
    message: impl FnOnce() -> String,
) -> Result<F::Output, SourceError> {
    ItemDeadline::new(limit).read(fut, message).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A receiver loop over pieces of items: `true` pieces complete an item.
    /// Returns when the deadline passed, and how many pieces came.
    async fn receive(mut rx: mpsc::Receiver<bool>, timeout: Duration) -> (SourceError, u64) {
        let mut deadline = ItemDeadline::new(timeout);
        let mut pieces = 0;
        loop {
            match deadline
                .read(rx.recv(), || format!("no JPEG for {} s", deadline.secs()))
                .await
            {
                Err(e) => return (e, pieces),
                Ok(None) => std::future::pending::<()>().await,
                Ok(Some(whole)) => {
                    pieces += 1;
                    if whole {
                        deadline.reset();
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_exactly_a_timeout_after_the_last_whole_item_while_bytes_keep_coming() {
        let (tx, rx) = mpsc::channel(4);
        let t0 = Instant::now();
        let feeder = tokio::spawn(async move {
            // Three whole items, one a second; then partial pieces every
            // 100 ms, forever.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send(true).await;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(false).await.is_err() {
                    return;
                }
            }
        });
        let (e, pieces) = receive(rx, Duration::from_secs(5)).await;
        // The last whole item came at 3 s: the deadline is 8 s, not later.
        assert_eq!(t0.elapsed(), Duration::from_secs(8));
        assert_eq!(e, SourceError::Timeout("no JPEG for 5 s".into()));
        assert!(pieces > 40, "{pieces} pieces");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_since_a_request_counts_from_the_request() {
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let d = ItemDeadline::since(asked, Duration::from_secs(3));
        let r = d
            .read(std::future::pending::<()>(), || "late".to_string())
            .await;
        assert_eq!(r, Err(SourceError::Timeout("late".into())));
        assert_eq!(asked.elapsed(), Duration::from_secs(3));
        let quick = within(Duration::from_secs(1), async { 7 }, String::new).await;
        assert_eq!(quick, Ok(7));
    }
}
