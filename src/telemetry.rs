//! Logging: `tracing` to standard error, filtered by `RUST_LOG`, as text or
//! as JSON lines (`--log-format json`, for a log pipeline). JSON lines carry
//! the current span and its parents, so every line about an operation names
//! its `op` and `step`. The sandbox defaults to warnings only, so its
//! transcript stays readable.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(default_level: &str) {
    init_with(default_level, LogFormat::Text);
}

pub fn init_with(default_level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
