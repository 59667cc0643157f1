//! `listen -d <database>`: the binlog reader.
//!
//! Current state: loads and validates the app config, connects to the source database,
//! Kafka and Redis (retrying while they are unreachable), serves `/metrics` and
//! `/healthz`, and exits cleanly on SIGTERM or Ctrl-C. Reading the binlog and
//! publishing change events is not implemented yet.

use clap::Parser;
use mee_core::AppConfig;
use mee_telemetry::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "listen",
    version,
    about = "Mee listen: the binlog reader for one source database",
    long_about = "Mee listen: the binlog reader for one source database.\n\n\
        NOT YET IMPLEMENTED: reading the binlog and publishing change events to Kafka.\n\
        This version checks the configuration, connects to the database's MySQL server, \
        Kafka and Redis, serves /metrics and /healthz, and exits cleanly on SIGTERM or Ctrl-C."
)]
pub struct Cli {
    /// Logical database to read, as named by a [mysql.<database>] section of the app config.
    #[arg(short = 'd', long)]
    pub database: String,
    /// App config file (TOML); MEE__<SECTION>__<KEY> environment variables override it.
    #[arg(long, env = "MEE_CONFIG", default_value = "conf/app.toml")]
    pub config: PathBuf,
    /// Address for /metrics and /healthz [default: telemetry.metrics_listen, else 127.0.0.1:9101].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

const DEFAULT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9101);

pub async fn run(cli: Cli, cfg: AppConfig) -> anyhow::Result<()> {
    let mysql_cfg = cfg.mysql_for(&cli.database).map_err(anyhow::Error::msg)?;
    let svc = Service::start(
        "listen",
        &cfg.telemetry,
        cli.metrics_listen,
        DEFAULT_METRICS,
    )
    .await?;

    let Some(mut conn) = svc
        .connect("mysql", || mee_mysql::connect(&cli.database, mysql_cfg))
        .await?
    else {
        return stopped(svc).await;
    };
    let info = mee_mysql::server_info(&mut conn, &cli.database).await?;
    tracing::info!(
        database = %cli.database,
        version = %info.version,
        binlog_format = %info.binlog_format,
        "connected to MySQL"
    );
    conn.disconnect().await.ok();
    if svc
        .connect("kafka", || {
            mee_kafka::cluster_info(&cfg.kafka, Duration::from_secs(10))
        })
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

    svc.health.set_healthy();
    tracing::warn!("binlog reading is not implemented yet; idling until SIGTERM or Ctrl-C");
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
        let cli = Cli::parse_from(["listen", "-d", "shop"]);
        assert_eq!(cli.database, "shop");
        assert_eq!(cli.config, PathBuf::from("conf/app.toml"));
    }

    #[test]
    fn database_is_required() {
        assert!(Cli::try_parse_from(["listen"]).is_err());
    }
}
