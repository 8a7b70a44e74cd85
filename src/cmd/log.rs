//! The CLI's side of the library's logging: camflow's library logs through
//! the `log` facade, and the CLI prints its records on stderr as the lines
//! users know (`camflow: NAME: text`, `camera: …`, `packager: …`). With
//! `-q` nothing is printed; errors reach the user through the command's own
//! one-line error instead.
//!
//! Records from other crates (rustls, retina, hyper) are left out: their
//! wording is not camflow's, and what matters of it reaches the user
//! through camflow's errors. `CAMFLOW_LOG=debug` shows camflow's debug
//! records too.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLog;

/// The prefix of a record's line: the program part the record comes from.
fn prefix(target: &str) -> &'static str {
    if target.starts_with("camflow::service") {
        "packager"
    } else if target.starts_with("camflow::camera") {
        "camera"
    } else {
        "camflow"
    }
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.target().starts_with("camflow")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line, so lines from threads never interleave.
        let line = format!("{}: {}\n", prefix(record.target()), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

/// Installs the CLI's logger; `quiet` (`-q`) silences it. A second call
/// only changes the level.
pub fn install(quiet: bool) {
    let _ = log::set_logger(&LOGGER);
    let level = if quiet {
        LevelFilter::Off
    } else if std::env::var("CAMFLOW_LOG").as_deref() == Ok("debug") {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn lines_keep_the_program_part_they_had() {
        assert_eq!(prefix("camflow::source::http"), "camflow");
        assert_eq!(prefix("camflow::service::jobs"), "packager");
        assert_eq!(prefix("camflow::camera"), "camera");
    }
}
