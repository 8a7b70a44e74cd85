//! Progress on stderr: a live line when stderr is a terminal, a plain log
//! line every few seconds otherwise, nothing with `-q`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);
const DRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    bar: Option<ProgressBar>,
    log: bool,
    start: Instant,
    last: Instant,
    unit: &'static str,
    source: Option<std::sync::Arc<crate::source::SourceStats>>,
}

impl Progress {
    /// `unit` names what is counted ("frames", "fragments").
    pub fn new(quiet: bool, unit: &'static str) -> Self {
        let now = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            log: !quiet && !tty,
            start: now,
            last: now,
            unit,
            source: None,
        }
    }

    /// Shows the source's losses (RTP packets lost, frames dropped) too.
    pub fn with_source(
        mut self,
        stats: Option<std::sync::Arc<crate::source::SourceStats>>,
    ) -> Self {
        self.source = stats;
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn line(&self, count: u64, bytes: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        let loss = match self.source.as_ref().and_then(|s| s.loss_text()) {
            Some(l) => format!(", {l}"),
            None => String::new(),
        };
        format!(
            "{count} {}, {rate:.1}/s, {:.2} MB received{loss}, {secs:.1} s elapsed",
            self.unit,
            bytes as f64 / 1e6
        )
    }

    /// Cheap to call per frame: draws at most a few times a second.
    pub fn update(&mut self, count: u64, bytes: u64) {
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            if now.duration_since(self.last) >= DRAW_EVERY {
                self.last = now;
                bar.set_message(self.line(count, bytes));
                bar.tick();
            }
        } else if self.log && now.duration_since(self.last) >= LOG_EVERY {
            self.last = now;
            eprintln!("camflow: {}", self.line(count, bytes));
        }
    }

    /// Clears the live line. The command prints the outcome itself: a
    /// summary on success, or its one-line error.
    /// Shows `text()` (built only when it will be shown), at the same pace
    /// as [`Progress::update`].
    pub fn show(&mut self, text: impl FnOnce() -> String) {
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            if now.duration_since(self.last) >= DRAW_EVERY {
                self.last = now;
                bar.set_message(text());
                bar.tick();
            }
        } else if self.log && now.duration_since(self.last) >= LOG_EVERY {
            self.last = now;
            eprintln!("camflow: {}", text());
        }
    }

    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// A summary line on success (unless quiet).
    pub fn summary(quiet: bool, text: &str) {
        if !quiet {
            eprintln!("camflow: {text}");
        }
    }
}

/// `1 frame`, `2 frames`: a count and its noun, for summaries and errors.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
