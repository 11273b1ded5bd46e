//! Logging setup (text or JSON, filter reloadable at runtime through the admin server) and the
//! per-connection access-log record.

mod access_log;
mod addr;
mod batch;
#[cfg(test)]
pub(crate) mod capture;
mod text;

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

pub use access_log::{AccessLog, Direction};
pub use addr::LogAddr;
pub use batch::{FLUSH_INTERVAL, flush};

/// Filter used when neither the configuration nor `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_DIRECTIVES: &str = "info";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A log filter could not be parsed.
    #[error(
        "invalid log filter {directives:?}: {err} (use a level such as `debug`, or per-target \
         directives such as `ztunnel=debug,hbone=info`)"
    )]
    InvalidFilter {
        /// The rejected filter text.
        directives: String,
        /// Parser error.
        err: tracing_subscriber::filter::ParseError,
    },
    /// The running subscriber is gone, so its filter cannot change.
    #[error("cannot change the log filter: {0} (was the logging subscriber dropped?)")]
    Reload(reload::Error),
    /// A global subscriber was installed already.
    #[error("cannot install the logging subscriber: {0} (was logging initialised twice?)")]
    Init(tracing_subscriber::util::TryInitError),
    /// The thread that writes batched log records could not start.
    #[error("cannot start the log flusher thread: {0}")]
    Flusher(std::io::Error),
}

/// Output format of the logs (and the value of ztunnel's and the waypoint's `--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

type FilterLayer = reload::Layer<EnvFilter, Registry>;
type Filtered = Layered<FilterLayer, Registry>;

/// Reads and changes the running log filter; cheap to clone. Given to the admin server.
#[derive(Clone, Debug)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// The current filter, as directives text (e.g. `info` or `ztunnel=debug,info`).
    pub fn current(&self) -> Result<String, TelemetryError> {
        self.handle
            .with_current(|f| f.to_string())
            .map_err(TelemetryError::Reload)
    }

    /// Replaces the filter with `directives`; on a parse error the old filter stays.
    pub fn set(&self, directives: &str) -> Result<(), TelemetryError> {
        let filter = parse_filter(directives)?;
        self.handle.reload(filter).map_err(TelemetryError::Reload)
    }
}

fn parse_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|err| TelemetryError::InvalidFilter {
            directives: directives.to_owned(),
            err,
        })
}

/// The filter directives from `RUST_LOG`, or [`DEFAULT_LOG_DIRECTIVES`].
pub fn directives_from_env() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LOG_DIRECTIVES.to_owned())
}

/// Builds a subscriber writing to `writer` with a reloadable filter, without installing it
/// (tests use it with `tracing::subscriber::with_default`; [`init_logging`] installs one).
pub fn build_subscriber<W>(
    format: LogFormat,
    directives: &str,
    writer: W,
    ansi: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, LogHandle), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(parse_filter(directives)?);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        // Colours for a terminal; otherwise the same lines from a cheaper formatter.
        LogFormat::Text if ansi => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(true)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .event_format(text::TextFormat)
            .fmt_fields(text::TextFields)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = Registry::default().with(filter).with(output);
    Ok((subscriber, LogHandle { handle }))
}

/// Installs the process-wide logger writing to stdout and returns the handle that changes its
/// filter at runtime. Also routes `log` crate records into it. A terminal gets coloured lines as
/// they happen; anything else (a file, a pipe to the container runtime) gets them in batches
/// (`batch`): written at most [`FLUSH_INTERVAL`] after they happen, and by [`flush`], which the
/// process must call before it exits.
pub fn init_logging(format: LogFormat, directives: &str) -> Result<LogHandle, TelemetryError> {
    let handle = if std::io::stdout().is_terminal() {
        let (subscriber, handle) = build_subscriber(format, directives, std::io::stdout, true)?;
        subscriber.try_init().map_err(TelemetryError::Init)?;
        handle
    } else {
        let batch = batch::Batch::new(Box::new(std::io::stdout()));
        let writer = batch::BatchWriter(batch.clone());
        let (subscriber, handle) = build_subscriber(format, directives, writer, false)?;
        subscriber.try_init().map_err(TelemetryError::Init)?;
        batch::install_stdout(batch).map_err(TelemetryError::Flusher)?;
        handle
    };
    Ok(handle)
}

#[cfg(test)]
mod tests;
