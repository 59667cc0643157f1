//! `listen -d <database>`: the binlog reader.
//!
//! Connects to the source as a replica, reads the ROW binlog of one logical database
//! and publishes one JSON change event per row to Kafka (topic `mee.<database>`,
//! key `<database>.<table>:<primary key>`). The position is saved in Redis only after
//! Kafka confirmed every event before it; a restart resumes there (at-least-once).

mod checks;
mod error;
mod gtid;
mod locate;
mod metrics;
mod reader;
mod session;
mod start;

pub use error::ListenError;
pub use gtid::{GtidError, GtidSet};
pub use start::StartFrom;

use clap::Parser;
use mee_core::secret::redact_url;
use mee_core::{AppConfig, Backoff, BinlogPosition, Transient};
use mee_mysql::mysql_async::prelude::Queryable;
use mee_redis::{Keys, PositionStore};
use mee_telemetry::Service;
use session::{Confirmed, Session};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "listen",
    version,
    about = "Mee listen: binlog of one source database to Kafka",
    long_about = "Mee listen: reads the ROW binlog of one source database as a replica and \
        publishes one JSON change event per row to Kafka (topic from kafka.topic_pattern, \
        key <database>.<table>:<primary key>, so each row's changes stay in order on one \
        partition). The binlog position is saved in Redis only after Kafka confirmed every \
        event before it; a restart resumes there. Checks at startup that the source has \
        log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL and the \
        privileges listen needs, and says what to change when not."
)]
pub struct Cli {
    /// Logical database to read, as named by a [mysql.<database>] section of the app config.
    #[arg(short = 'd', long)]
    pub database: String,
    /// Where to start: now, earliest, <file>:<offset>, or a GTID. Used when no position
    /// is saved; overrides a saved one (with a warning). Default: the saved position, else
    /// now.
    ///
    /// A GTID starts *after* the given transactions, as a replica that has applied them:
    /// MariaDB `domain-server-seq` (e.g. 0-1-57; a comma-separated list, one per domain;
    /// domains left out are read from their beginning); MySQL a GTID set
    /// `<uuid>:<interval>[:<interval>]...[,<uuid>:...]` of the transactions applied (e.g.
    /// <uuid>:1-57 starts after 57; <uuid>:57 alone would ask for 1-56 too). The source
    /// finds where that is; from there listen reads, saves and resumes by file:offset. A
    /// GTID the source does not have is an error.
    #[arg(long, verbatim_doc_comment)]
    pub from: Option<StartFrom>,
    /// App config file (TOML); MEE__<SECTION>__<KEY> environment variables override it.
    #[arg(long, env = "MEE_CONFIG", default_value = "conf/app.toml")]
    pub config: PathBuf,
    /// Address for /metrics and /healthz [default: telemetry.metrics_listen, else 127.0.0.1:9101].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

const DEFAULT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9101);
/// How often the confirmed position is written to Redis.
const SAVE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(cli: Cli, cfg: AppConfig) -> anyhow::Result<()> {
    let db = cli.database.as_str();
    let mysql_cfg = cfg.mysql_for(db).map_err(anyhow::Error::msg)?;
    let schema = mysql_cfg.schema_name(db).to_string();
    let svc = Service::start(
        "listen",
        &cfg.telemetry,
        cli.metrics_listen,
        DEFAULT_METRICS,
    )
    .await?;
    let mut metrics = metrics::Metrics::register(&svc.registry, db)?;
    metrics.kafka_up = svc.dependency_up("kafka");
    metrics.mysql_up = svc.dependency_up("mysql");

    // The source: reachable, configured for row replication, privileges in place.
    let Some(mut conn) = svc
        .connect("mysql", || mee_mysql::connect(db, mysql_cfg))
        .await?
    else {
        return stopped(svc).await;
    };
    let info = mee_mysql::server_info(&mut conn, db).await?;
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| ListenError::mysql(db, "SHOW GRANTS", e))?;
    let problems = checks::problems(&info, &grants, mysql_cfg.server_id, &schema);
    if !problems.is_empty() {
        return Err(ListenError::Source(problems).into());
    }
    let server_id = mysql_cfg.server_id.expect("checked above");
    tracing::info!(database = db, version = %info.version, "source checked: ROW binlog, full images, column names");

    let topic = cfg.kafka.topic_for(db);
    let Some(created) = svc
        .connect("kafka", || mee_kafka::ensure_topic(&cfg.kafka, &topic))
        .await?
    else {
        return stopped(svc).await;
    };
    if created {
        tracing::info!(
            topic,
            partitions = cfg.kafka.topic_partitions,
            "created the change topic"
        );
    }
    let producer = mee_kafka::producer(&cfg.kafka)?;
    let partitions =
        mee_kafka::partition_count(&cfg.kafka, &topic, Duration::from_secs(10)).await?;
    let published_before = mee_kafka::last_versions(&cfg.kafka, &topic, Duration::from_secs(10))
        .await?
        .into_iter()
        .max();

    let Some(redis) = svc
        .connect("redis", || mee_redis::connect(&cfg.redis))
        .await?
    else {
        return stopped(svc).await;
    };
    let mut store = PositionStore::new(
        redis,
        &Keys::new(&cfg.redis.key_prefix),
        db,
        &redact_url(cfg.redis.url.expose()),
    );
    let saved = store.load().await?;
    let source = locate::Source {
        database: db,
        cfg: mysql_cfg,
        server_id,
        is_mariadb: info.is_mariadb,
    };
    let start = start_position(&mut conn, &svc, source, saved.as_ref(), cli.from.as_ref()).await;
    conn.disconnect().await.ok();
    let Some(start) = start? else {
        return stopped(svc).await;
    };
    // Persist the start at once: a crash before the first periodic save must resume
    // here, not at "now" (which would skip what happened in between).
    if saved.as_ref() != Some(&start) {
        store.save(&start).await?;
    }

    let (confirmed_tx, confirmed_rx) = watch::channel(Confirmed {
        position: start.clone(),
        commit_ts_ms: 0,
    });
    // Its own stop signal: the last save must come after the session drained.
    let saver_stop = mee_telemetry::CancellationToken::new();
    let saver = tokio::spawn(save_positions(store, confirmed_rx, saver_stop.clone()));
    svc.health.set_healthy();

    let session = Session {
        database: db,
        mysql: mysql_cfg,
        server_id,
        topic: &topic,
        partitions,
        producer: &producer,
        metrics: &metrics,
        published_before,
        stop_at: None,
    };
    let mut backoff = Backoff::default();
    let result = loop {
        let from = confirmed_tx.borrow().position.clone();
        match session.run(&from, &confirmed_tx, &svc.shutdown).await {
            Ok(()) if svc.shutdown.is_cancelled() => break Ok(()),
            Ok(()) => {}
            Err(e) if e.is_transient() && !svc.shutdown.is_cancelled() => {
                if e.is_source_outage() {
                    metrics.mysql_up.set(0);
                }
                // A session that got somewhere was a recovery: start the backoff over.
                if confirmed_tx.borrow().position != from {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                svc.health.set_unhealthy(format!("reconnecting: {e}"));
                tracing::warn!(error = %e, ?delay, "lost the source or Kafka; resuming from the last confirmed position");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = svc.shutdown.cancelled() => break Ok(()),
                }
                svc.health.set_healthy();
            }
            Err(e) => break Err(e),
        }
    };
    // Flush what is in flight; the saver then writes the final confirmed position.
    let _ = tokio::task::spawn_blocking(move || {
        use mee_kafka::rdkafka::producer::Producer;
        producer.flush(Duration::from_secs(10))
    })
    .await;
    saver_stop.cancel();
    if let Ok(Err(e)) = saver.await {
        tracing::error!(error = %e, "could not save the final position");
    }
    svc.stop().await;
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// The position to start from, refusing one the source no longer has; `None` when
/// shut down meanwhile.
async fn start_position(
    conn: &mut mee_mysql::mysql_async::Conn,
    svc: &Service,
    source: locate::Source<'_>,
    saved: Option<&BinlogPosition>,
    from: Option<&StartFrom>,
) -> Result<Option<BinlogPosition>, ListenError> {
    let db = source.database;
    let files = binary_logs(conn, db).await?;
    let oldest = files.first().cloned().unwrap_or_default();
    let position = match choose(saved, from) {
        StartFrom::Now => mee_mysql::binlog_position(conn, db).await?,
        StartFrom::Earliest => BinlogPosition::new(oldest.clone(), 4),
        StartFrom::Position(p) => p,
        StartFrom::Gtid(gtid) => {
            let newest = files.last().cloned().unwrap_or_default();
            let located = svc
                .connect("mysql", || locate::locate(source, &gtid, &newest))
                .await?;
            let Some(position) = located else {
                return Ok(None);
            };
            warn_if_behind(&position, saved);
            position
        }
    };
    if !files.contains(&position.file) {
        return Err(ListenError::Purged {
            position: position.to_string(),
            oldest,
        });
    }
    tracing::info!(start = %position, "start position");
    Ok(Some(position))
}

/// `--from` if given (it overrides a saved position), else the saved position, else now.
fn choose(saved: Option<&BinlogPosition>, from: Option<&StartFrom>) -> StartFrom {
    match (saved, from) {
        (Some(saved), Some(from)) => {
            tracing::warn!(saved = %saved, from = %from, "--from overrides the saved position");
            from.clone()
        }
        (Some(saved), None) => StartFrom::Position(saved.clone()),
        (None, Some(from)) => from.clone(),
        (None, None) => StartFrom::Now,
    }
}

/// The names of the binlog files the source has, oldest first.
async fn binary_logs(
    conn: &mut mee_mysql::mysql_async::Conn,
    db: &str,
) -> Result<Vec<String>, ListenError> {
    conn.query_map("SHOW BINARY LOGS", |row: mee_mysql::mysql_async::Row| {
        row.get::<String, _>(0).unwrap_or_default()
    })
    .await
    .map_err(|e| ListenError::mysql(db, "SHOW BINARY LOGS", e))
}

/// Versions are file number << 32 | offset: a GTID that starts before the saved
/// position makes them go backwards. On the same server that only publishes events
/// again (harmless); on another one (a failover), Elasticsearch would take the new
/// changes for old ones and ignore them.
fn warn_if_behind(start: &BinlogPosition, saved: Option<&BinlogPosition>) {
    if is_behind(start, saved) {
        tracing::warn!(
            start = %start,
            saved = ?saved.map(ToString::to_string),
            "the GTID starts before the saved position, so versions (file number, offset) go \
             backwards: if this is another server than before, Elasticsearch will ignore changes \
             as older than what it has; run `update` for every task on this database"
        );
    }
}

fn is_behind(start: &BinlogPosition, saved: Option<&BinlogPosition>) -> bool {
    saved.is_some_and(|s| start.binlog_cmp(s) == Some(std::cmp::Ordering::Less))
}

/// Write the confirmed position to Redis every second while it moves, and once more
/// at the end.
async fn save_positions(
    mut store: PositionStore,
    mut confirmed: watch::Receiver<Confirmed>,
    shutdown: mee_telemetry::CancellationToken,
) -> Result<(), ListenError> {
    let mut saved: Option<BinlogPosition> = None;
    let mut failures = 0u32;
    loop {
        let done = tokio::select! {
            _ = tokio::time::sleep(SAVE_EVERY) => false,
            _ = shutdown.cancelled() => true,
        };
        let current = confirmed.borrow_and_update().position.clone();
        if saved.as_ref() != Some(&current) {
            match store.save(&current).await {
                Ok(()) => {
                    saved = Some(current);
                    failures = 0;
                }
                Err(e) if done => return Err(e.into()),
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "cannot save the position; retrying");
                    }
                    failures += 1;
                }
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// Publish the changes between two positions and return how many events Kafka
/// confirmed: the `listen` pipeline without the service around it (for benchmarks).
pub async fn publish_range(
    cfg: &AppConfig,
    database: &str,
    from: &BinlogPosition,
    until: &BinlogPosition,
) -> Result<u64, ListenError> {
    let mysql = cfg
        .mysql_for(database)
        .map_err(|m| ListenError::Source(vec![m]))?;
    let topic = cfg.kafka.topic_for(database);
    mee_kafka::ensure_topic(&cfg.kafka, &topic).await?;
    let partitions =
        mee_kafka::partition_count(&cfg.kafka, &topic, Duration::from_secs(10)).await?;
    let producer = mee_kafka::producer(&cfg.kafka)?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::register(&registry, database)
        .expect("a fresh registry takes the metrics");
    let session = Session {
        database,
        mysql,
        server_id: mysql.server_id.unwrap_or(9999),
        topic: &topic,
        partitions,
        producer: &producer,
        metrics: &metrics,
        published_before: None,
        stop_at: Some(until.clone()),
    };
    let (confirmed, _) = watch::channel(Confirmed {
        position: from.clone(),
        commit_ts_ms: 0,
    });
    session
        .run(from, &confirmed, &mee_telemetry::CancellationToken::new())
        .await?;
    Ok(count(&metrics))
}

/// Read and decode the changes between two positions, serializing each event as it
/// would be published, without Kafka; returns (events, bytes). A benchmark baseline.
pub async fn read_range(
    cfg: &AppConfig,
    database: &str,
    from: &BinlogPosition,
    until: &BinlogPosition,
) -> Result<(u64, u64), ListenError> {
    let mysql = cfg
        .mysql_for(database)
        .map_err(|m| ListenError::Source(vec![m]))?;
    let mut reader =
        reader::Reader::open(database, mysql, mysql.server_id.unwrap_or(9999), from).await?;
    let (mut events, mut bytes) = (0u64, 0u64);
    loop {
        match reader.next().await? {
            reader::Item::Event(e) => {
                events += 1;
                bytes += e.to_json().len() as u64 + e.message_key().len() as u64;
            }
            reader::Item::Commit { next, .. } => {
                if next.binlog_cmp(until).is_some_and(|o| o.is_ge()) {
                    break;
                }
            }
            reader::Item::Heartbeat => {}
        }
    }
    reader.close().await;
    Ok((events, bytes))
}

fn count(m: &metrics::Metrics) -> u64 {
    use prometheus::core::Collector;
    m.events_published
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|x| x.get_counter().get_value() as u64)
        .sum()
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
        let cli = Cli::parse_from(["listen", "-d", "shop", "--from", "earliest"]);
        assert_eq!(cli.database, "shop");
        assert_eq!(cli.from, Some(StartFrom::Earliest));
        assert_eq!(cli.config, PathBuf::from("conf/app.toml"));
    }

    #[test]
    fn a_gtid_start_before_the_saved_position_is_behind() {
        let saved = BinlogPosition::new("mariadb-bin.000007", 400);
        let at = |file: &str, offset| BinlogPosition::new(file, offset);
        assert!(is_behind(&at("mariadb-bin.000007", 399), Some(&saved)));
        assert!(is_behind(&at("mariadb-bin.000002", 9000), Some(&saved)));
        assert!(!is_behind(&at("mariadb-bin.000007", 400), Some(&saved)));
        assert!(!is_behind(&at("mariadb-bin.000008", 4), Some(&saved)));
        assert!(!is_behind(&at("mariadb-bin.000001", 4), None));
    }

    #[test]
    fn from_overrides_the_saved_position() {
        let saved = BinlogPosition::new("mariadb-bin.000007", 400);
        let gtid = StartFrom::Gtid("0-1-5".parse().expect("gtid"));
        assert_eq!(choose(Some(&saved), Some(&gtid)), gtid);
        assert_eq!(
            choose(Some(&saved), None),
            StartFrom::Position(saved.clone())
        );
        assert_eq!(choose(None, None), StartFrom::Now);
    }

    #[test]
    fn database_is_required_and_from_is_checked() {
        assert!(Cli::try_parse_from(["listen"]).is_err());
        assert!(Cli::try_parse_from(["listen", "-d", "x", "--from", "yesterday"]).is_err());
    }
}
