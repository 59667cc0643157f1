//! `update -c <handler.yml> -n <task>`: the full rebuild.
//!
//! Current state: `--check` validates a handler and preflights it against MySQL and
//! Elasticsearch. Without `--check` it loads the app config, checks the handler file
//! can be read, connects to every configured MySQL database, Elasticsearch, Kafka and
//! Redis (retrying while they are unreachable), serves `/metrics` and `/healthz`, and
//! exits cleanly on SIGTERM or Ctrl-C. Rebuilding is not implemented yet.

mod check;

use anyhow::Context;
use clap::Parser;
use mee_core::AppConfig;
use mee_telemetry::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "update",
    version,
    about = "Mee update: full rebuild of one task's index",
    long_about = "Mee update: full rebuild of one task's index.\n\n\
        With --check: validates the handler (every problem with file:line:col and key \
        path), then, when the servers answer, prepares every statement on MySQL and asks \
        Elasticsearch to accept the index settings and mappings. Nothing is written.\n\n\
        NOT YET IMPLEMENTED: rebuilding the index. Without --check this version checks the \
        app configuration, connects to MySQL, Elasticsearch, Kafka and Redis, serves \
        /metrics and /healthz, and exits cleanly on SIGTERM or Ctrl-C."
)]
pub struct Cli {
    /// Handler YAML describing the index (Mee's format).
    #[arg(short = 'c', long)]
    pub handler: PathBuf,
    /// Task name: the unit whose generations (index, consumer group) are rebuilt.
    #[arg(short = 'n', long, required_unless_present = "check")]
    pub task: Option<String>,
    /// Validate the handler and preflight it against the servers; write nothing.
    /// Exits 0 when valid, 1 with the list of problems otherwise.
    #[arg(long)]
    pub check: bool,
    /// App config file (TOML); MEE__<SECTION>__<KEY> environment variables override it.
    #[arg(long, env = "MEE_CONFIG", default_value = "conf/app.toml")]
    pub config: PathBuf,
    /// Address for /metrics and /healthz [default: telemetry.metrics_listen, else 127.0.0.1:9102].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

const DEFAULT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9102);

pub async fn run(cli: Cli, cfg: AppConfig) -> anyhow::Result<()> {
    if cli.check {
        for line in check::check(&cli.handler, &cfg).await? {
            println!("{line}");
        }
        return Ok(());
    }
    let task = cli.task.clone().unwrap_or_default();
    std::fs::read_to_string(&cli.handler)
        .with_context(|| format!("cannot read handler {}", cli.handler.display()))?;
    let svc = Service::start(
        "update",
        &cfg.telemetry,
        cli.metrics_listen,
        DEFAULT_METRICS,
    )
    .await?;

    for (name, mysql_cfg) in &cfg.mysql {
        let Some(conn) = svc
            .connect("mysql", || mee_mysql::connect(name, mysql_cfg))
            .await?
        else {
            return stopped(svc).await;
        };
        conn.disconnect().await.ok();
    }
    let es = mee_es::client(&cfg.elasticsearch)?;
    let Some(info) = svc
        .connect("elasticsearch", || mee_es::cluster_info(&es))
        .await?
    else {
        return stopped(svc).await;
    };
    tracing::info!(distribution = %info.distribution, version = %info.version, "connected to Elasticsearch");
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
    tracing::warn!(task = %task, "rebuilding is not implemented yet; idling until SIGTERM or Ctrl-C");
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
        let cli = Cli::parse_from(["update", "-c", "conf/handlers/orders.yml", "-n", "orders"]);
        assert_eq!(cli.task.as_deref(), Some("orders"));
        assert_eq!(cli.handler, PathBuf::from("conf/handlers/orders.yml"));
    }

    #[test]
    fn handler_and_task_are_required() {
        assert!(Cli::try_parse_from(["update", "-n", "orders"]).is_err());
        assert!(Cli::try_parse_from(["update", "-c", "h.yml"]).is_err());
        assert!(Cli::try_parse_from(["update", "-c", "h.yml", "--check"]).is_ok());
    }
}
