//! Tracing: an `EnvFilter` from `RUST_LOG` (or the `--log-level` default), JSON in the cluster, compact locally.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable single lines.
    Compact,
}

/// Installs the global subscriber. `RUST_LOG` wins over `default_directive` when set.
pub fn init(format: LogFormat, default_directive: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(default_directive)?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true))
            .try_init()?,
        LogFormat::Compact => registry
            .with(fmt::layer().compact().with_target(false))
            .try_init()?,
    }
    Ok(())
}
