//! Telemetry and process lifecycle shared by the three services: tracing init,
//! the Prometheus registry, the `/metrics` + `/healthz` endpoint, the shutdown
//! signal, and a retry loop that gives up on definite errors and on shutdown.

mod health;
mod logging;
mod report;
mod retry;
mod server;
mod service;
mod shutdown;

pub use health::Health;
pub use logging::init_tracing;
pub use report::{describe, exit_code};
pub use retry::retry_transient;
pub use server::{MetricsServer, serve};
pub use service::Service;
pub use shutdown::shutdown_on_signal;
pub use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_level `{filter}` is not a valid tracing filter: {message}")]
    LogFilter { filter: String, message: String },
    #[error(
        "cannot serve /metrics on {addr}: {source} (set telemetry.metrics_listen or --metrics-listen to a free address)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register metric: {0}")]
    Metric(#[from] prometheus::Error),
}
