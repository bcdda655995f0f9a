//! Log output: human-readable or JSON lines, filtered by `RUST_LOG` or the `log_level` key.
//!
//! Lines are formatted where they are logged but written to stderr by a thread of their own
//! (`tracing_appender::non_blocking`): an HTTP worker never waits on a slow terminal, pipe or
//! log shipper, and never makes a `write` system call per request. If that thread falls
//! 128,000 lines behind, newer lines are dropped rather than stalling requests. Colours only
//! go to a terminal, never into a file or a log collector.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the subscriber. Keep the guard until the process ends: dropping it writes out the
/// lines still queued.
#[must_use = "dropping the guard stops log output"]
pub fn init(config: &Config) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // `try_init`: a second call (tests, embedding) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// Lines the writer's thread fell too far behind to take (first subscriber's writer only).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped since start because stderr could not keep up (`keyway_log_lines_dropped_total`).
pub fn log_lines_dropped() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}
