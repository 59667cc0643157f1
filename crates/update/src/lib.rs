//! `update -c <handler.yml> -n <task>`: the full rebuild.
//!
//! Builds a new generation of the task's index from MySQL while the old one keeps
//! serving: a new index `<alias>_<timestamp>` and consumer group `<task>.<generation>`
//! (committed at the change topics' ends before the first row is read), recorded in
//! Redis for `sync`. After the load it waits until `sync` has applied the changes made
//! meanwhile, moves the alias in one request, and retires the old generation.
//! `--check` only validates and preflights the handler; `--verify [--repair]` compares
//! the live index with MySQL (and rewrites the documents that drifted).

mod check;
mod load;
mod metrics;
mod progress;
mod rebuild;
mod retry;
mod verify;

pub use load::REBUILD_VERSION;
pub use rebuild::Options;
pub use verify::VerifyOptions;

use anyhow::Context;
use clap::Parser;
use mee_core::AppConfig;
use mee_core::handler::Handler;
use mee_redis::GenerationStore;
use mee_telemetry::Service;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "update",
    version,
    about = "Mee update: full rebuild of one task's index",
    long_about = "Mee update: full rebuild of one task's index.\n\n\
        Builds a new index `<alias>_<timestamp>` (a generation) from MySQL while the old one \
        keeps serving, waits until `sync -n <task>` has applied the changes made meanwhile, \
        then moves the alias to it in one request and retires the old generation. Documents \
        Elasticsearch refuses go to the Kafka topic `<task>.dlq` with the reason.\n\n\
        A killed run leaves an unfinished generation: run again with --resume to finish it \
        or --drop-unfinished to delete it. Only one update per task runs at a time.\n\n\
        With --check: validates the handler (every problem with file:line:col and key \
        path), then, when the servers answer, prepares every statement on MySQL and asks \
        Elasticsearch to accept the index settings and mappings. Nothing is written.\n\n\
        With --verify: compares the task's live index with what the handler builds from \
        MySQL now, page by page in primary-key order (memory stays bounded): documents \
        missing from the index, documents that differ (the first few with a field-level \
        diff), and documents without a master row (extra; found by inverting the \
        `document_id` template, which works when it is made of primary-key columns with \
        text between them, e.g. `%id` or `user_%id`). A difference is re-checked after \
        waiting for the current lag (listen's position, then the generation's consumer \
        group), so changes still in flight are not reported. Prints the totals; exits 0 \
        when nothing drifted, 1 otherwise. Writes nothing, and runs beside `sync` and \
        `update`.\n\n\
        With --verify --repair: also writes the drifted documents again (the materialized \
        document, or a delete for an extra one), versioned with MySQL's current binlog \
        position so any newer change still wins. This also recovers dead-lettered \
        documents once what Elasticsearch refused (e.g. the index mapping) is fixed. Exits \
        0 when every drifted document was written (or a newer write was already there)."
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
    /// Finish the task's unfinished generation (left by a killed or timed-out run).
    #[arg(long, conflicts_with = "drop_unfinished")]
    pub resume: bool,
    /// Delete the task's unfinished generation (index, consumer group, record), then
    /// build a new one.
    #[arg(long)]
    pub drop_unfinished: bool,
    /// Swap the alias right after the load, without waiting for `sync` to catch up.
    #[arg(long)]
    pub no_wait: bool,
    /// Build (and let `sync` keep current) without moving the alias; `--resume` swaps later.
    #[arg(long)]
    pub no_swap: bool,
    /// Compare the live index with what the handler builds from MySQL now; report
    /// missing, extra and different documents. Exits 1 when documents drifted.
    #[arg(
        long,
        conflicts_with_all = ["check", "resume", "drop_unfinished", "no_wait", "no_swap"]
    )]
    pub verify: bool,
    /// With --verify: write the drifted documents again (versioned by MySQL's binlog
    /// position now, so newer changes still win).
    #[arg(long, requires = "verify")]
    pub repair: bool,
    /// With --verify: how long to wait for `listen` and `sync` to apply changes in flight
    /// before re-checking the documents that differed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub recheck_timeout: u64,
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
    if cli.verify {
        let opts = VerifyOptions {
            repair: cli.repair,
            recheck_timeout: Duration::from_secs(cli.recheck_timeout),
        };
        return verify::run(&cli.handler, &task, &cfg, opts).await;
    }
    // The same checks as --check; unreachable servers are waited for below.
    for line in check::check(&cli.handler, &cfg).await? {
        tracing::info!("{line}");
    }
    let text = std::fs::read_to_string(&cli.handler)
        .with_context(|| format!("cannot read handler {}", cli.handler.display()))?;
    let handler = Handler::parse(&cli.handler.display().to_string(), &text)?;
    let svc = Service::start(
        "update",
        &cfg.telemetry,
        cli.metrics_listen,
        DEFAULT_METRICS,
    )
    .await?;
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
    let Some(redis) = svc
        .connect("redis", || mee_redis::connect(&cfg.redis))
        .await?
    else {
        return stopped(svc).await;
    };
    let mut store = GenerationStore::new(redis, mee_redis::Keys::new(&cfg.redis.key_prefix));
    let Some(lock) = store.acquire_lock(&task, cfg.update.lock_ttl_ms).await? else {
        svc.stop().await;
        anyhow::bail!(
            "another `update` for task `{task}` is running (it holds the lock in Redis). Wait for \
             it to finish; if it was killed, its lock expires within {} s",
            cfg.update.lock_ttl_ms / 1000
        );
    };
    let renewer = renew_lock(store.clone(), &task, &lock, cfg.update.lock_ttl_ms);
    let metrics = metrics::Metrics::register(&svc.registry, &task)?;
    svc.health.set_healthy();
    let mut rebuild = rebuild::Rebuild {
        cfg: &cfg,
        handler: &handler,
        handler_path: cli.handler.display().to_string(),
        task: &task,
        es: &es,
        store: &mut store,
        metrics: &metrics,
        shutdown: &svc.shutdown,
        options: Options {
            resume: cli.resume,
            drop_unfinished: cli.drop_unfinished,
            no_wait: cli.no_wait,
            no_swap: cli.no_swap,
        },
    };
    let result = tokio::select! {
        r = rebuild.run() => r,
        () = renewer => unreachable!("renewing the lock never ends"),
    };
    if let Err(e) = store.release_lock(&task, lock).await {
        tracing::warn!(error = %e, "could not release the lock; it expires by itself");
    }
    svc.stop().await;
    let g = result?;
    println!(
        "task `{task}`: generation {} ({}) is {}; {} masters, {} documents, {} dead-lettered",
        g.id,
        g.index,
        g.state,
        g.counters.masters_read,
        g.counters.documents_written,
        g.counters.documents_rejected
    );
    Ok(())
}

/// Renew the task's lock every third of its lifetime, for as long as `update` runs.
async fn renew_lock(
    mut store: GenerationStore,
    task: &str,
    lock: &mee_redis::LockToken,
    ttl_ms: u64,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(ttl_ms / 3)).await;
        match store.renew_lock(task, lock, ttl_ms).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("lost the task lock (expired while Redis was unreachable?)");
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the task lock; retrying"),
        }
    }
}

/// The databases a handler reads (its items' `database`), each once, sorted.
fn handler_databases(handler: &Handler) -> BTreeSet<&str> {
    handler
        .all_items()
        .iter()
        .map(|i| i.database.as_str())
        .collect()
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

    #[test]
    fn repair_needs_verify_and_verify_needs_a_task() {
        let base = ["update", "-c", "h.yml", "-n", "t"];
        let with = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        assert!(with(&["--verify", "--repair"]).is_ok());
        assert!(with(&["--repair"]).is_err());
        assert!(with(&["--verify", "--resume"]).is_err());
        assert!(with(&["--verify", "--check"]).is_err());
        assert!(Cli::try_parse_from(["update", "-c", "h.yml", "--verify"]).is_err());
        let cli = with(&["--verify", "--recheck-timeout", "5"]).expect("valid");
        assert!(cli.verify && !cli.repair && cli.recheck_timeout == 5);
    }
}
