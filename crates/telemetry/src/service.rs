use crate::{Health, MetricsServer, TelemetryError, retry_transient, serve, shutdown_on_signal};
use mee_core::config::TelemetryConfig;
use mee_core::{Backoff, Transient};
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// The lifecycle every service shares: a metrics registry, `/metrics` + `/healthz`,
/// the shutdown token, and gauges saying which dependencies are connected.
#[derive(Debug)]
pub struct Service {
    pub name: &'static str,
    pub registry: Registry,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub server: MetricsServer,
    dependency_up: IntGaugeVec,
}

impl Service {
    /// Serve metrics on `addr` (else `telemetry.metrics_listen`, else `default_addr`)
    /// and arm the shutdown signal.
    pub async fn start(
        name: &'static str,
        cfg: &TelemetryConfig,
        addr: Option<SocketAddr>,
        default_addr: SocketAddr,
    ) -> Result<Self, TelemetryError> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "mee_build_info",
                "Always 1; labels say which service and version",
            ),
            &["service", "version"],
        )?;
        build_info
            .with_label_values(&[name, env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "mee_dependency_up",
                "1 while the service's last exchange with the dependency succeeded, 0 while it fails",
            ),
            &["service", "dependency"],
        )?;
        registry.register(Box::new(dependency_up.clone()))?;
        let health = Health::default();
        let shutdown = shutdown_on_signal();
        let addr = addr.or(cfg.metrics_listen).unwrap_or(default_addr);
        let server = serve(addr, registry.clone(), health.clone(), shutdown.clone()).await?;
        tracing::info!(service = name, addr = %server.addr, "serving /metrics and /healthz");
        Ok(Self {
            name,
            registry,
            health,
            shutdown,
            server,
            dependency_up,
        })
    }

    /// Connect to a dependency, retrying transient failures with capped backoff until
    /// it answers. `Ok(None)` means shutdown was requested meanwhile; a definite error
    /// (bad credentials, say) is returned at once.
    pub async fn connect<T, E, F, Fut>(&self, dependency: &str, op: F) -> Result<Option<T>, E>
    where
        E: Transient + Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.health
            .set_unhealthy(format!("connecting to {dependency}"));
        match retry_transient(dependency, Backoff::default(), &self.shutdown, op).await {
            None => Ok(None),
            Some(Ok(v)) => {
                self.dependency_up(dependency).set(1);
                Ok(Some(v))
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// This service's `mee_dependency_up` gauge for `dependency`: [`Self::connect`] sets
    /// it to 1; the service sets it to 0 while the dependency fails and back to 1 once
    /// it answers again.
    pub fn dependency_up(&self, dependency: &str) -> IntGauge {
        self.dependency_up
            .with_label_values(&[self.name, dependency])
    }

    /// Stop serving metrics and wait for the endpoint to close.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Ok(Err(e)) = self.server.task.await {
            tracing::warn!(error = %e, "metrics endpoint ended with an error");
        }
    }
}
