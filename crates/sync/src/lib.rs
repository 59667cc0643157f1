//! `sync -n <task>`: changes to Elasticsearch.
//!
//! Follows the task's generations in Redis (written by `update`): one consumer per
//! generation that is building, catching up or live, each with that generation's
//! consumer group, handler copy and index. A batch of change events becomes the set of
//! documents it affects, rebuilt from MySQL and written whole with the newest event's
//! version (`version_type=external`); offsets are committed only after the writes (or
//! their dead letters) are confirmed.

mod apply;
mod error;
mod lag;
mod message;
mod metrics;
mod offsets;
mod plan;
mod reader;
mod remembered;
mod report;
mod worker;

pub use error::SyncError;
pub use metrics::Metrics;

use clap::Parser;
use mee_core::AppConfig;
use mee_core::handler::Handler;
use mee_telemetry::{CancellationToken, Service};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, Parser)]
#[command(
    name = "sync",
    version,
    about = "Mee sync: applies change events of one task to Elasticsearch",
    long_about = "Mee sync: applies change events of one task to Elasticsearch.\n\n\
        Reads the task's generations from Redis (run `update -n <task>` first) and keeps \
        each non-retired generation's index in step with the change topics `listen` \
        writes. New generations are picked up within seconds, retired ones stopped. \
        Several processes for one task share the partitions through Kafka consumer groups.\n\n\
        Serves /metrics and /healthz; on SIGTERM it finishes the batch in hand \
        (sync.shutdown_timeout_ms), commits and exits 0."
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
    let Some(redis) = svc
        .connect("redis", || mee_redis::connect(&cfg.redis))
        .await?
    else {
        return stopped(svc).await;
    };
    let mut store =
        mee_redis::GenerationStore::new(redis, mee_redis::Keys::new(&cfg.redis.key_prefix));
    // Only the databases this task reads: another one being down does not concern it.
    let used = databases_read(&mut store, &cli.task).await;
    for (name, mysql_cfg) in &cfg.mysql {
        if used.as_ref().is_some_and(|used| !used.contains(name)) {
            continue;
        }
        let Some(conn) = svc
            .connect("mysql", || mee_mysql::connect(name, mysql_cfg))
            .await?
        else {
            return stopped(svc).await;
        };
        conn.disconnect().await.ok();
    }

    let metrics = Metrics::register(&svc.registry)?;
    let Some(dlq) = svc
        .connect("kafka", || {
            mee_kafka::DeadLetterQueue::open(&cfg.kafka, &cli.task)
        })
        .await?
    else {
        return stopped(svc).await;
    };
    let shared = Arc::new(Shared {
        mysql_up: svc.dependency_up("mysql"),
        writer: mee_es::BulkWriter::new(es.clone(), cfg.elasticsearch.bulk.clone()),
        es,
        cfg,
        metrics,
        dlq,
    });
    let result = supervise(&svc, shared, store, &cli.task).await;
    svc.stop().await;
    tracing::info!("stopped");
    result.map_err(Into::into)
}

/// The logical databases the task's active generations read; `None` when Redis or a
/// handler copy cannot tell (then every configured one is checked).
async fn databases_read(
    store: &mut mee_redis::GenerationStore,
    task: &str,
) -> Option<BTreeSet<String>> {
    let mut used = BTreeSet::new();
    for g in store.list(task).await.ok()? {
        if g.state.is_active() {
            let handler = Handler::parse(&g.handler_path, &g.handler_yaml).ok()?;
            used.extend(handler.all_items().iter().map(|i| i.database.clone()));
        }
    }
    Some(used)
}

/// What every generation's consumer shares.
pub(crate) struct Shared {
    pub cfg: AppConfig,
    pub writer: mee_es::BulkWriter,
    pub es: mee_es::elasticsearch::Elasticsearch,
    pub metrics: Metrics,
    pub dlq: mee_kafka::DeadLetterQueue,
    /// `mee_dependency_up{dependency="mysql"}`: 0 while applying fails on MySQL.
    pub mysql_up: prometheus::IntGauge,
}

/// How long a generation whose consumer failed definitely waits before a new attempt.
const RESTART_AFTER: Duration = Duration::from_secs(30);

/// Run one consumer per active generation of `task`, following Redis until shutdown.
async fn supervise(
    svc: &Service,
    shared: Arc<Shared>,
    mut store: mee_redis::GenerationStore,
    task: &str,
) -> Result<(), SyncError> {
    let poll = Duration::from_millis(shared.cfg.sync.generations_poll_ms);
    let mut running: HashMap<String, (CancellationToken, JoinHandle<Result<(), SyncError>>)> =
        HashMap::new();
    // Generations whose consumer stopped on a definite error, and when: restarted
    // after RESTART_AFTER, not at every poll.
    let mut failed: HashMap<String, std::time::Instant> = HashMap::new();
    let mut first = true;
    let mut redis_down = false;
    let (redis_up, es_up) = (
        svc.dependency_up("redis"),
        svc.dependency_up("elasticsearch"),
    );
    loop {
        es_up.set(i64::from(!shared.writer.failing()));
        let listed = store.list(task).await;
        redis_up.set(i64::from(listed.is_ok()));
        match listed {
            Ok(gens) => {
                if redis_down {
                    tracing::info!("redis answers again");
                    redis_down = false;
                }
                if first && gens.is_empty() {
                    return Err(SyncError::NoGeneration {
                        task: task.to_string(),
                    });
                }
                first = false;
                // A generation without its offsets mark is still being set up by
                // `update` (its consumer group is not committed yet): not ours yet.
                let active: Vec<_> = gens
                    .into_iter()
                    .filter(|g| g.state.is_active() && !g.offsets_mark.is_empty())
                    .collect();
                running.retain(|id, (stop, _)| {
                    if active.iter().any(|g| &g.id == id) {
                        return true;
                    }
                    tracing::info!(generation = %id, "generation retired or removed: stopping its consumer");
                    stop.cancel();
                    // The consumer finishes its batch, commits and ends on its own.
                    false
                });
                for g in active {
                    if running.contains_key(&g.id)
                        || failed
                            .get(&g.id)
                            .is_some_and(|t| t.elapsed() < RESTART_AFTER)
                    {
                        continue;
                    }
                    let stop = svc.shutdown.child_token();
                    let id = g.id.clone();
                    let handle = tokio::spawn(worker::run(shared.clone(), g, stop.clone()));
                    running.insert(id, (stop, handle));
                }
                svc.health.set_healthy();
            }
            Err(e) => {
                if !redis_down {
                    tracing::warn!(error = %e, "cannot read the generations from redis; consumers keep running");
                }
                redis_down = true;
            }
        }
        // Consumers that ended on their own: a definite error. Log it; the next poll
        // starts the generation again (after `poll`), so a fixed cause heals itself.
        let ended: Vec<String> = running
            .iter()
            .filter(|(_, (_, h))| h.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some((_, handle)) = running.remove(&id) {
                match handle.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(
                            generation = %id,
                            error = %e,
                            "consumer stopped; restarting it in {} s",
                            RESTART_AFTER.as_secs()
                        );
                        svc.health.set_unhealthy(format!("generation {id}: {e}"));
                        failed.insert(id, std::time::Instant::now());
                    }
                    Err(e) => tracing::error!(generation = %id, error = %e, "consumer panicked"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = svc.shutdown.cancelled() => break,
        }
    }
    for (id, (stop, handle)) in running {
        stop.cancel();
        match handle.await {
            Ok(Err(e)) => {
                tracing::error!(generation = %id, error = %e, "consumer ended with an error")
            }
            Err(e) => tracing::error!(generation = %id, error = %e, "consumer panicked"),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
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
