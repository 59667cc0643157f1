//! `sync -n <task>`: changes to Elasticsearch.
//!
//! Current state: loads and validates the app config, connects to Kafka,
//! Elasticsearch, Redis and every configured MySQL database (retrying while they are
//! unreachable), serves `/metrics` and `/healthz`, and exits cleanly on SIGTERM or
//! Ctrl-C. Consuming change events and writing documents are not implemented yet.

use clap::Parser;
use mee_core::AppConfig;
use mee_telemetry::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "sync",
    version,
    about = "Mee sync: applies change events of one task to Elasticsearch",
    long_about = "Mee sync: applies change events of one task to Elasticsearch.\n\n\
        NOT YET IMPLEMENTED: consuming change events and writing documents.\n\
        This version checks the app configuration, connects to Kafka, Elasticsearch, \
        Redis and MySQL, serves /metrics and /healthz, and exits cleanly on SIGTERM or Ctrl-C."
)]
pub struct Cli {
    /// Task name, as given to `update -n`.
    #[arg(short = 'n', long)]
    pub task: String,
    /// App config file (TOML); MEE__<SECTION>__<KEY> environment variables override it.
    #[arg(long, env = "MEE_CONFIG", default_value = "conf/app.toml")]
    pub config: PathBuf,
    /// Address for /metrics and /healthz [default: telemetry.metrics_listen, else 127.0.0.1:9103].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

const DEFAULT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9103);

pub async fn run(cli: Cli, cfg: AppConfig) -> anyhow::Result<()> {
    let svc = Service::start("sync", &cfg.telemetry, cli.metrics_listen, DEFAULT_METRICS).await?;

    if svc
        .connect("kafka", || {
            mee_kafka::cluster_info(&cfg.kafka, Duration::from_secs(10))
        })
        .await?
        .is_none()
    {
        return stopped(svc).await;
    }
    let es = mee_es::client(&cfg.elasticsearch)?;
    if svc
        .connect("elasticsearch", || mee_es::cluster_info(&es))
        .await?
        .is_none()
    {
        return stopped(svc).await;
    }
    if svc
        .connect("redis", || mee_redis::connect(&cfg.redis))
        .await?
        .is_none()
    {
        return stopped(svc).await;
    }
    for (name, mysql_cfg) in &cfg.mysql {
        let Some(conn) = svc
            .connect("mysql", || mee_mysql::connect(name, mysql_cfg))
            .await?
        else {
            return stopped(svc).await;
        };
        conn.disconnect().await.ok();
    }

    svc.health.set_healthy();
    tracing::warn!(task = %cli.task, "syncing is not implemented yet; idling until SIGTERM or Ctrl-C");
    svc.shutdown.cancelled().await;
    stopped(svc).await
}

async fn stopped(svc: Service) -> anyhow::Result<()> {
    svc.stop().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        assert_eq!(Cli::parse_from(["sync", "-n", "orders"]).task, "orders");
        assert!(Cli::try_parse_from(["sync"]).is_err());
    }
}
