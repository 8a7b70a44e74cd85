//! When and how soon a live source is reconnected: the policy a user picks,
//! and the backoff between attempts. The supervisor that runs sessions
//! under them is `supervise`; receivers themselves never retry, they fail
//! with a good error (moonfire-nvr's `run` over `run_once`).

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// First wait after a failure; it doubles on each failure in a row.
pub const INITIAL_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A session that streamed this long resets the backoff.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

/// When a live source is reconnected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReconnectPolicy {
    /// After errors (a dropped connection, a stalled stream); a clean end
    /// of stream ends the command.
    #[default]
    OnError,
    /// Also after a clean end: cameras that close the stream every few
    /// minutes and expect the client to come back.
    Always,
    /// Never: the first end, clean or not, ends the command.
    Never,
}

impl fmt::Display for ReconnectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReconnectPolicy::OnError => "on-error",
            ReconnectPolicy::Always => "always",
            ReconnectPolicy::Never => "never",
        })
    }
}

impl FromStr for ReconnectPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-error" => Ok(ReconnectPolicy::OnError),
            "always" => Ok(ReconnectPolicy::Always),
            "never" => Ok(ReconnectPolicy::Never),
            _ => Err(format!(
                "unknown reconnect policy {s:?} (expected on-error, always or never)"
            )),
        }
    }
}

/// Exponential backoff with jitter: 0.5 s doubling to 30 s, each wait
/// drawn from [¾, 1] of the step so that many clients of one camera do not
/// reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    step: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(seed: u64) -> Self {
        Backoff {
            step: INITIAL_DELAY,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The wait before the next attempt; the step after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.step.mul_f64(0.75 + 0.25 * self.rng.f64());
        self.step = (self.step * 2).min(MAX_DELAY);
        d
    }

    /// A session streamed for `d`: long enough, and the next failure starts
    /// from the first step again.
    pub fn streamed_for(&mut self, d: Duration) {
        if d >= RESET_AFTER {
            self.step = INITIAL_DELAY;
        }
    }
}

/// How one session of a live source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd<E> {
    /// The server ended the stream normally.
    Clean,
    /// Shutdown was asked for (Ctrl-C) or the consumer has all it wants.
    Stopped,
    /// A failure after the source had streamed: retried under the policy.
    Failed(E),
    /// A failure that retrying cannot mend: the source never delivered a
    /// frame (wrong address, refused credentials, not a video stream).
    Fatal(E),
}

/// Runs sessions under `policy` until a clean end (unless `Always`), a
/// stop, or a failure that is not retried. `session(n)` runs attempt `n`
/// (from 0); `log` gets one line per reconnect attempt. Returns the last
/// error when the policy gives up (only `Never` does).
pub async fn supervise<E, F, Fut>(
    policy: ReconnectPolicy,
    mut backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
    mut session: F,
    mut log: impl FnMut(String),
) -> Result<(), E>
where
    E: fmt::Display,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = SessionEnd<E>>,
{
    let mut attempt = 0u64;
    loop {
        let started = Instant::now();
        let end = session(attempt).await;
        backoff.streamed_for(started.elapsed());
        let why = match end {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Fatal(e) => return Err(e),
            SessionEnd::Clean if policy != ReconnectPolicy::Always => return Ok(()),
            SessionEnd::Failed(e) if policy == ReconnectPolicy::Never => return Err(e),
            SessionEnd::Clean => "the stream ended".to_string(),
            SessionEnd::Failed(e) => e.to_string(),
        };
        attempt += 1;
        let wait = backoff.next_delay();
        log(format!(
            "{why}; reconnecting in {:.1} s (attempt {attempt})",
            wait.as_secs_f64()
        ));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_with_jitter() {
        let mut b = Backoff::new(7);
        let mut step = 0.5f64;
        for _ in 0..12 {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= 0.75 * step - 1e-9 && d <= step + 1e-9,
                "{d} for step {step}"
            );
            step = (step * 2.0).min(30.0);
        }
    }

    #[test]
    fn a_minute_of_good_streaming_resets_the_backoff() {
        let mut b = Backoff::new(1);
        for _ in 0..6 {
            b.next_delay();
        }
        b.streamed_for(Duration::from_secs(59));
        assert!(b.next_delay() > Duration::from_secs(10));
        b.streamed_for(RESET_AFTER);
        assert!(b.next_delay() <= INITIAL_DELAY);
    }

    #[test]
    fn policies_parse_and_print() {
        for p in [
            ReconnectPolicy::OnError,
            ReconnectPolicy::Always,
            ReconnectPolicy::Never,
        ] {
            assert_eq!(p.to_string().parse::<ReconnectPolicy>(), Ok(p));
        }
        assert!("sometimes".parse::<ReconnectPolicy>().is_err());
    }

    /// Sessions that fail at once, `fails` times, then end cleanly; returns
    /// the virtual time each attempt started and the log lines.
    async fn run_script(
        policy: ReconnectPolicy,
        fails: u64,
    ) -> (Result<(), String>, Vec<f64>, Vec<String>) {
        let (_tx, rx) = watch::channel(false);
        let t0 = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let s2 = starts.clone();
        let l2 = lines.clone();
        let r = supervise(
            policy,
            Backoff::new(3),
            rx,
            move |n| {
                s2.lock().unwrap().push(t0.elapsed().as_secs_f64());
                async move {
                    if n < fails {
                        SessionEnd::Failed(format!("connection refused ({n})"))
                    } else {
                        SessionEnd::Clean
                    }
                }
            },
            move |l| l2.lock().unwrap().push(l),
        )
        .await;
        let starts = starts.lock().unwrap().clone();
        let lines = lines.lock().unwrap().clone();
        (r, starts, lines)
    }

    #[tokio::test(start_paused = true)]
    async fn on_error_retries_with_growing_waits_then_ends_on_a_clean_end() {
        let (r, starts, lines) = run_script(ReconnectPolicy::OnError, 4).await;
        assert_eq!(r, Ok(()));
        assert_eq!(starts.len(), 5);
        assert_eq!(lines.len(), 4, "one line per attempt");
        assert!(lines[0].starts_with("connection refused (0); reconnecting in"));
        let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, step) in gaps.iter().zip([0.5, 1.0, 2.0, 4.0]) {
            assert!(
                *gap >= 0.75 * step - 1e-3 && *gap <= step + 1e-3,
                "{gaps:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_end_is_never_retried() {
        let (_tx, rx) = watch::channel(false);
        let mut n = 0;
        let r = supervise(
            ReconnectPolicy::Always,
            Backoff::new(1),
            rx,
            |_| {
                n += 1;
                async { SessionEnd::Fatal("HTTP 401".to_string()) }
            },
            |_| {},
        )
        .await;
        assert_eq!(r, Err("HTTP 401".to_string()));
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn never_gives_up_at_the_first_error() {
        let (r, starts, lines) = run_script(ReconnectPolicy::Never, 3).await;
        assert_eq!(r, Err("connection refused (0)".to_string()));
        assert_eq!(starts.len(), 1);
        assert!(lines.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn always_comes_back_after_a_clean_end_until_shutdown() {
        let (tx, rx) = watch::channel(false);
        let count = Arc::new(Mutex::new(0u64));
        let c2 = count.clone();
        let sup = tokio::spawn(supervise(
            ReconnectPolicy::Always,
            Backoff::new(5),
            rx,
            move |_| {
                *c2.lock().unwrap() += 1;
                async { SessionEnd::<String>::Clean }
            },
            |_| {},
        ));
        tokio::time::sleep(Duration::from_secs(120)).await;
        tx.send_replace(true);
        assert_eq!(sup.await.unwrap(), Ok(()));
        // 0.5 + 1 + 2 + 4 + 8 + 16 + 30 + 30 + ... within two minutes.
        let n = *count.lock().unwrap();
        assert!((8..=12).contains(&n), "{n} sessions");
    }
}
