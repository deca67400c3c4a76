//! Logging: one JSON line per event, carrying the run's invocation id.
//!
//! The Functions host turns each stdout line into an Information trace and each stderr line into
//! an Error (or Warning, when the line contains "warn"), so warnings and errors go to stderr and
//! everything else to stdout.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Default filter: run summaries and problems, not per-call chatter (ops pay per ingested line).
/// `LOG_LEVEL` takes an `EnvFilter` directive such as `debug` or `teams_presence=debug`.
pub const DEFAULT_FILTER: &str =
    "info,azure_core=warn,azure_identity=warn,azure_data_cosmos=warn,hyper=warn,reqwest=warn";

pub fn init() {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let writer = std::io::stderr.with_max_level(tracing::Level::WARN).or_else(std::io::stdout);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}
