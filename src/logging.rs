//! Log lines in the original SIPban's format, `[YYYY-MM-DD HH:MM:SS] BLOCK
//! => 1.2.3.4 (Invalid Password)`, so existing log watchers keep working.
//! Warnings and errors carry a `WARNING:`/`ERROR:` prefix.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

#[derive(Debug, Error)]
pub enum LogError {
    #[error("cannot open log file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("logging already initialised")]
    AlreadySet,
}

thread_local! {
    /// The last second's stamp, as written (each logging thread has one).
    static STAMP: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// The `[date] MESSAGE` line format.
pub struct OriginalFormat;

impl<S, N> FormatEvent<S, N> for OriginalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        STAMP.with(|cell| {
            let mut cached = cell.borrow_mut();
            let now = chrono::Local::now();
            let second = now.timestamp();
            if cached.0 != second {
                // Formatted once a second: a storm writes 100k lines in one.
                *cached = (second, now.format("[%Y-%m-%d %H:%M:%S] ").to_string());
            }
            writer.write_str(&cached.1)
        })?;
        match *event.metadata().level() {
            Level::ERROR => writer.write_str("ERROR: ")?,
            Level::WARN => writer.write_str("WARNING: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Keeps the background log writer alive; drop it last (flushes).
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

/// Logs to `file` (appending) and, if `stderr`, to standard error too.
pub fn init(file: Option<&Path>, stderr: bool, verbose: bool) -> Result<LogGuard, LogError> {
    let level = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let targets = Targets::new().with_target("sipban", level);
    let mut guards = Vec::new();
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(path) = file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // Block rather than drop lines when the writer falls behind: the log
        // is the audit trail of every ban.
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(4096)
            .finish(f);
        guards.push(guard);
        layers.push(
            tracing_subscriber::fmt::layer()
                .event_format(OriginalFormat)
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(targets.clone())
                .boxed(),
        );
    }
    if stderr {
        layers.push(
            tracing_subscriber::fmt::layer()
                .event_format(OriginalFormat)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(targets)
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    Ok(LogGuard { _guards: guards })
}
