//! When and how soon a live source is reconnected: the policy a user picks,
//! and the backoff between attempts. The supervisor that runs sessions
//! under them is `supervise`; receivers themselves never retry, they fail
//! with a good error (moonfire-nvr's `run` over `run_once`).
//!
//! Sessions come through an [`Opener`] (moonfire-nvr's seam of that name):
//! a receiver's session closure in the program, a scripted fake in tests,
//! so the decisions below run on paused time without sockets. In: the
//! policy, the sessions' ends; out: when to reconnect, one log line per
//! attempt, and the error the source finally fails with.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::SourceError;

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
    /// A backoff at its first step; `seed` drives the jitter (the process
    /// id and the time in the program, a constant in tests).
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
    /// frame (wrong address, refused credentials, not a video stream), or
    /// the error's kind says so ([`SourceError::is_fatal`]).
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

/// Opens and runs one session of a source to its end (moonfire-nvr's
/// `Opener`): what the supervisor runs sessions through. `attempt` counts
/// from 0; the session sets `streamed` once it has delivered something
/// (the flag is shared by all sessions of a source).
pub trait Opener {
    /// One session, running.
    type Session: Future<Output = Result<(), SourceError>>;
    /// Starts session number `attempt`; it ends with the error the source
    /// failed with, or `Ok` at a clean end of the stream.
    fn session(&mut self, attempt: u64, streamed: Arc<AtomicBool>) -> Self::Session;
}

/// A receiver's session closure is its opener.
impl<F, Fut> Opener for F
where
    F: FnMut(u64, Arc<AtomicBool>) -> Fut,
    Fut: Future<Output = Result<(), SourceError>>,
{
    type Session = Fut;
    fn session(&mut self, attempt: u64, streamed: Arc<AtomicBool>) -> Fut {
        self(attempt, streamed)
    }
}

/// How a session's result counts, given whether the source ever streamed.
/// A source that never delivered anything is not retried, whatever the
/// error: it never worked (a wrong address, refused credentials), and
/// retrying would only hide why. After it has streamed, the error's kind
/// decides ([`SourceError::is_fatal`]).
pub fn session_end(result: Result<(), SourceError>, streamed: bool) -> SessionEnd<SourceError> {
    match result {
        Err(SourceError::Stopped) => SessionEnd::Stopped,
        // A source that ends before it ever sent video did not work: say
        // so, and do not come back for more of it.
        Ok(()) if !streamed => SessionEnd::Fatal(SourceError::Ended(
            "the stream ended before any video arrived".into(),
        )),
        Ok(()) => SessionEnd::Clean,
        Err(e) if streamed && !e.is_fatal() => SessionEnd::Failed(e),
        Err(e) => SessionEnd::Fatal(e),
    }
}

/// Runs `opener`'s sessions under `policy` ([`supervise`]), each session's
/// end judged by [`session_end`].
pub async fn run_sessions(
    policy: ReconnectPolicy,
    backoff: Backoff,
    shutdown: watch::Receiver<bool>,
    mut opener: impl Opener,
    log: impl FnMut(String),
) -> Result<(), SourceError> {
    let streamed = Arc::new(AtomicBool::new(false));
    supervise(
        policy,
        backoff,
        shutdown,
        |attempt| {
            let session = opener.session(attempt, streamed.clone());
            let streamed = streamed.clone();
            async move { session_end(session.await, streamed.load(Ordering::Relaxed)) }
        },
        log,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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

    // The supervisor through the `Opener` seam: a scripted fake source.

    use std::collections::VecDeque;
    use std::pin::Pin;

    /// One scripted session: it streams (delivers something, then goes on
    /// for `streams_for`) or not, then ends with `end`.
    struct Step {
        streams_for: Option<Duration>,
        end: Result<(), SourceError>,
    }

    fn fails(e: SourceError) -> Step {
        Step {
            streams_for: None,
            end: Err(e),
        }
    }

    fn streams_then(d: Duration, end: Result<(), SourceError>) -> Step {
        Step {
            streams_for: Some(d),
            end,
        }
    }

    /// A source that plays its steps in order, and then hangs (until the
    /// test's shutdown); it notes when each session started.
    struct Script {
        steps: VecDeque<Step>,
        starts: Arc<Mutex<Vec<Duration>>>,
        t0: Instant,
    }

    impl Opener for Script {
        type Session = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;
        fn session(&mut self, _attempt: u64, streamed: Arc<AtomicBool>) -> Self::Session {
            if let Ok(mut s) = self.starts.lock() {
                s.push(self.t0.elapsed());
            }
            let step = self.steps.pop_front();
            Box::pin(async move {
                let Some(step) = step else {
                    return std::future::pending().await;
                };
                if let Some(d) = step.streams_for {
                    streamed.store(true, Ordering::Relaxed);
                    tokio::time::sleep(d).await;
                }
                step.end
            })
        }
    }

    struct Run {
        result: Result<(), SourceError>,
        /// When each session started, from the supervisor's start.
        starts: Vec<Duration>,
        lines: Vec<String>,
    }

    async fn run(policy: ReconnectPolicy, steps: Vec<Step>) -> Run {
        let (_tx, rx) = watch::channel(false);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut lines = Vec::new();
        let script = Script {
            steps: steps.into(),
            starts: starts.clone(),
            t0: Instant::now(),
        };
        let result = run_sessions(policy, Backoff::new(11), rx, script, |l| lines.push(l)).await;
        let starts = starts.lock().unwrap().clone();
        Run {
            result,
            starts,
            lines,
        }
    }

    /// One error of every kind, and whether a source that has streamed
    /// gives up on it.
    fn every_kind() -> Vec<(SourceError, bool)> {
        let m = |t: &str| t.to_string();
        vec![
            (
                SourceError::Unreachable(m("cannot connect: no route")),
                false,
            ),
            (
                SourceError::Refused(m("HTTP 503 Service Unavailable")),
                false,
            ),
            (
                SourceError::AuthWanted(m("HTTP 401 Unauthorized: wants")),
                true,
            ),
            (
                SourceError::AuthRefused(m("HTTP 401 Unauthorized: refused")),
                true,
            ),
            (SourceError::Untrusted(m("certificate not trusted")), true),
            (SourceError::Timeout(m("no JPEG for 5 s")), false),
            (
                SourceError::NotVideo(m("the answer is text/html, not video")),
                false,
            ),
            (SourceError::TooLarge(m("over the 1024-byte limit")), false),
            (
                SourceError::protocol("JPEG", Some(4), "corrupt at byte 4"),
                false,
            ),
            (SourceError::Ended(m("the connection was dropped")), false),
            (SourceError::Settings(m("bad header name")), true),
            (SourceError::Local(m("cannot start a reader thread")), true),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn any_error_before_anything_streamed_is_final_even_under_always() {
        for (e, _) in every_kind() {
            let r = run(ReconnectPolicy::Always, vec![fails(e.clone())]).await;
            assert_eq!(r.result, Err(e.clone()), "{e}");
            assert_eq!(r.starts.len(), 1, "{e}: not retried");
            assert!(r.lines.is_empty(), "{e}: {:?}", r.lines);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_streaming_the_kind_decides() {
        let second = Duration::from_secs(1);
        for (e, fatal) in every_kind() {
            assert_eq!(e.is_fatal(), fatal, "{e}");
            // Streams, fails with `e`, then (if retried) streams and ends.
            let steps = vec![
                streams_then(second, Err(e.clone())),
                streams_then(second, Ok(())),
            ];
            let r = run(ReconnectPolicy::OnError, steps).await;
            if fatal {
                assert_eq!(r.result, Err(e.clone()), "{e}");
                assert_eq!(r.starts.len(), 1, "{e}: given up");
                assert!(r.lines.is_empty(), "{e}: {:?}", r.lines);
            } else {
                assert_eq!(r.result, Ok(()), "{e}");
                assert_eq!(r.starts.len(), 2, "{e}: retried");
                assert_eq!(r.lines.len(), 1, "{e}");
                assert!(
                    r.lines[0].starts_with(&format!("{e}; reconnecting in ")),
                    "{}",
                    r.lines[0]
                );
                assert!(r.lines[0].ends_with("(attempt 1)"), "{}", r.lines[0]);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_session_after_one_that_streamed_is_retried() {
        // The source worked once: a later session that fails before it
        // delivers anything (the camera rebooting) is retried.
        let gone = SourceError::Refused("cannot connect: Connection refused".into());
        let steps = vec![
            streams_then(
                Duration::from_secs(1),
                Err(SourceError::Ended("dropped".into())),
            ),
            fails(gone.clone()),
            fails(gone),
            streams_then(Duration::from_secs(1), Ok(())),
        ];
        let r = run(ReconnectPolicy::OnError, steps).await;
        assert_eq!(r.result, Ok(()));
        assert_eq!(r.starts.len(), 4);
        assert_eq!(r.lines.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_before_any_video_did_not_work() {
        let r = run(ReconnectPolicy::Always, vec![fails_ok()]).await;
        assert_eq!(
            r.result.map_err(|e| e.to_string()),
            Err("the stream ended before any video arrived".to_string())
        );
        assert_eq!(r.starts.len(), 1);
    }

    fn fails_ok() -> Step {
        Step {
            streams_for: None,
            end: Ok(()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_stopped_ends_the_source_quietly() {
        let r = run(ReconnectPolicy::Always, vec![fails(SourceError::Stopped)]).await;
        assert_eq!(r.result, Ok(()));
        assert!(r.lines.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_thirty_seconds_and_a_minute_of_streaming_resets_it() {
        let ended = || Err(SourceError::Ended("dropped".into()));
        let timeout = || SourceError::Timeout("no video for 5 s".into());
        let mut steps = vec![streams_then(Duration::from_millis(10), ended())];
        // Eight failures in a row: waits of 0.5, 1, 2, 4, 8, 16, 30, 30 s.
        steps.extend((0..8).map(|_| fails(timeout())));
        // A session that streams for a minute, then fails: the next wait
        // is the first step again.
        steps.push(streams_then(RESET_AFTER, ended()));
        steps.push(streams_then(Duration::from_secs(1), Ok(())));
        let r = run(ReconnectPolicy::OnError, steps).await;
        assert_eq!(r.result, Ok(()));
        assert_eq!(r.starts.len(), 11);
        // Session n + 1 starts when the wait after session n ends.
        let mut waits: Vec<f64> = r
            .starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        waits[0] -= 0.010;
        waits[9] -= RESET_AFTER.as_secs_f64();
        let steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 0.5];
        for (i, (wait, step)) in waits.iter().zip(steps).enumerate() {
            assert!(
                *wait >= 0.75 * step - 1e-6 && *wait <= step + 1e-6,
                "wait {i}: {wait} s for a step of {step} s ({waits:?})"
            );
        }
        // The jitter draws: not all waits sit on their step.
        assert!(waits.iter().zip(steps).any(|(w, s)| (w - s).abs() > 1e-3));
        // The log says the wait it is about to make.
        for (line, wait) in r.lines.iter().zip(&waits) {
            assert!(
                line.contains(&format!("reconnecting in {wait:.1} s")),
                "{line} {wait}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn policies_decide_what_follows_an_error_and_a_clean_end() {
        let second = Duration::from_secs(1);
        let dropped = SourceError::Ended("dropped".into());
        let script = || {
            vec![
                streams_then(second, Err(dropped.clone())),
                streams_then(second, Ok(())),
                streams_then(second, Err(SourceError::AuthRefused("refused".into()))),
            ]
        };
        // never: the first error ends it.
        let r = run(ReconnectPolicy::Never, script()).await;
        assert_eq!(r.result, Err(dropped.clone()));
        assert_eq!(r.starts.len(), 1);
        // on-error: retried after the error, ends with the clean end.
        let r = run(ReconnectPolicy::OnError, script()).await;
        assert_eq!(r.result, Ok(()));
        assert_eq!(r.starts.len(), 2);
        // always: also comes back after the clean end, until a fatal error.
        let r = run(ReconnectPolicy::Always, script()).await;
        assert_eq!(r.result, Err(SourceError::AuthRefused("refused".into())));
        assert_eq!(r.starts.len(), 3);
        assert!(r.lines[1].starts_with("the stream ended; reconnecting in"));
        // never also ends at a clean end.
        let r = run(ReconnectPolicy::Never, vec![streams_then(second, Ok(()))]).await;
        assert_eq!((r.result, r.starts.len()), (Ok(()), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_backoff_wait_ends_at_once() {
        let (tx, rx) = watch::channel(false);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let script = Script {
            steps: vec![
                streams_then(
                    Duration::from_secs(1),
                    Err(SourceError::Ended("dropped".into())),
                ),
                // Seven failures in a row: the wait after the last is 30 s.
                fails(SourceError::Refused("refused".into())),
                fails(SourceError::Refused("refused".into())),
                fails(SourceError::Refused("refused".into())),
                fails(SourceError::Refused("refused".into())),
                fails(SourceError::Refused("refused".into())),
                fails(SourceError::Refused("refused".into())),
            ]
            .into(),
            starts: starts.clone(),
            t0,
        };
        let sup = tokio::spawn(run_sessions(
            ReconnectPolicy::Always,
            Backoff::new(2),
            rx,
            script,
            |_| {},
        ));
        // 1 s of streaming and 0.5 + 1 + 2 + 4 + 8 + 16 s of waits at most:
        // at 40 s the supervisor is in its last, 22.5-30 s wait.
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert_eq!(starts.lock().unwrap().len(), 7);
        tx.send_replace(true);
        assert_eq!(sup.await.unwrap(), Ok(()));
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(40),
            "no wait after the stop"
        );
        assert_eq!(starts.lock().unwrap().len(), 7);
    }
}
