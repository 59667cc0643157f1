//! One generation's consumer: read its change topics with its consumer group, apply
//! batches in partition order, commit offsets only after a batch is applied.

use crate::apply::Applier;
use crate::lag::watch_lag;
use crate::message::{Message, RawMessage};
use crate::offsets::Offsets;
use crate::reader::read_batches;
use crate::remembered::RememberedWrites;
use crate::report::BatchReport;
use crate::{Shared, SyncError};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use mee_core::Backoff;
use mee_core::event::KeyColumns;
use mee_core::generation::Generation;
use mee_core::handler::Handler;
use mee_core::materialize::{IdInverter, Materializer};
use mee_kafka::rdkafka::TopicPartitionList;
use mee_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use mee_mysql::MySqlSource;
use mee_telemetry::{CancellationToken, retry_transient};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Consume for `generation` until `stop` fires (then finish the batch in hand within
/// the shutdown timeout, commit, and return) or a definite error.
pub async fn run(
    shared: Arc<Shared>,
    generation: Generation,
    stop: CancellationToken,
) -> Result<(), SyncError> {
    let handler =
        Handler::parse(&generation.handler_path, &generation.handler_yaml).map_err(|e| {
            SyncError::Handler {
                generation: generation.id.clone(),
                message: e.to_string(),
            }
        })?;
    let materializer = Materializer::new(&handler);
    let untraceable = materializer.untraceable();
    if !untraceable.is_empty() {
        // Writing only some changes would leave documents silently stale.
        return Err(SyncError::Untraceable {
            generation: generation.id.clone(),
            items: untraceable,
        });
    }
    let searches = materializer.searches();
    let master = handler.master();
    let key_columns =
        (materializer.items_reading(&master.database, &master.table) == 1).then(|| KeyColumns {
            database: master.database.clone(),
            table: master.table.clone(),
            columns: handler.primary_key.clone(),
        });
    let databases: Vec<&str> = handler
        .all_items()
        .iter()
        .map(|i| i.database.as_str())
        .collect();
    let source = MySqlSource::new(&shared.cfg, databases)?;
    let consumer = Arc::new(mee_kafka::consumer(&shared.cfg.kafka, &generation.group)?);
    let topics: Vec<&str> = generation.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| {
        SyncError::Kafka(mee_kafka::KafkaError::Request {
            brokers: shared.cfg.kafka.brokers.join(","),
            what: format!("subscribe to {}", generation.topics.join(", ")),
            source: Box::new(e),
        })
    })?;
    let applier = Applier {
        generation: &generation,
        materializer,
        primary_key: &handler.primary_key,
        source: &source,
        writer: &shared.writer,
        dlq: &shared.dlq,
        es: &shared.es,
        // `untraceable()` above made sure the ids can be inverted when needed.
        inverter: searches.then(|| IdInverter::new(&handler).ok()).flatten(),
        snapshot_database: snapshot_database(&shared.cfg, &handler),
        snapshots: true.into(),
        remembered: RememberedWrites::new(shared.cfg.sync.remembered_writes_max_docs),
        key_columns,
        write_turn: tokio::sync::watch::Sender::new(0),
    };
    // A search sees only what earlier batches have written: one batch at a time.
    let in_flight = if searches {
        tracing::info!(
            generation = %generation.id,
            "some items are found through their `query` in Elasticsearch: batches are applied \
             one at a time"
        );
        1
    } else {
        shared.cfg.sync.batches_in_flight
    };
    let labels = [generation.task.as_str(), generation.id.as_str()];
    tracing::info!(
        generation = %generation.id,
        index = %generation.index,
        group = %generation.group,
        topics = %generation.topics.join(","),
        "consuming"
    );
    let applied_ms = Arc::new(AtomicU64::new(0));
    let lag_task = tokio::spawn(watch_lag(
        shared.clone(),
        consumer.clone(),
        generation.clone(),
        applied_ms.clone(),
        stop.clone(),
    ));
    let result = consume(
        &shared,
        &applier,
        &consumer,
        in_flight,
        &labels,
        &applied_ms,
        &stop,
    )
    .await;
    lag_task.abort();
    // A stopped generation's gauges would otherwise show their last value forever.
    let m = &shared.metrics;
    let _ = m.lag_seconds.remove_label_values(&labels);
    let _ = m.consumer_lag.remove_label_values(&labels);
    // Leave the group now, so its partitions move to another process at once.
    consumer.unsubscribe();
    source.close().await;
    result
}

/// The master's database when every database the handler reads is on one server:
/// then one binlog orders all its changes, and a snapshot's position there can version
/// the writes. `None` with several servers (their binlog positions do not compare).
fn snapshot_database<'h>(cfg: &mee_core::AppConfig, handler: &'h Handler) -> Option<&'h str> {
    let servers: BTreeSet<(&str, u16)> = handler
        .all_items()
        .iter()
        .filter_map(|i| cfg.mysql_for(&i.database).ok())
        .map(|m| (m.host.as_str(), m.port))
        .collect();
    (servers.len() == 1).then_some(handler.master().database.as_str())
}

/// The pipeline: a reader task fills batches while up to `batches_in_flight` earlier
/// ones are applied concurrently (versioned writes make their order irrelevant to
/// Elasticsearch); offsets are committed strictly in read order, each batch's only
/// once it and every batch before it are done.
async fn consume(
    shared: &Arc<Shared>,
    applier: &Applier<'_>,
    consumer: &Arc<StreamConsumer>,
    batches_in_flight: usize,
    labels: &[&str; 2],
    applied_ms: &AtomicU64,
    stop: &CancellationToken,
) -> Result<(), SyncError> {
    let m = &shared.metrics;
    let settings = &shared.cfg.sync;
    let (tx, mut batches) = mpsc::channel(1);
    let reader = tokio::spawn(read_batches(
        consumer.clone(),
        shared.clone(),
        stop.clone(),
        tx,
    ));
    // After a stop request the batches in hand get `shutdown_timeout_ms` to finish;
    // past that they are abandoned uncommitted (and read again by whoever comes next).
    let deadline = CancellationToken::new();
    let guard = {
        let (deadline, stop) = (deadline.clone(), stop.clone());
        let timeout = Duration::from_millis(settings.shutdown_timeout_ms);
        tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::sleep(timeout).await;
            deadline.cancel();
        })
    };
    let mut in_flight: FuturesOrdered<_> = FuturesOrdered::new();
    let mut committed = Offsets::new();
    let mut reading = true;
    let mut read = 0u64;
    let result = loop {
        tokio::select! {
            // Finished batches first: they free a slot and their offsets move on.
            biased;
            Some(done) = in_flight.next() => {
                let (batch, applied, done_at): Applied = done;
                let report = match applied {
                    None => {
                        tracing::warn!(
                            events = batch.len(),
                            "shutdown timeout: batch abandoned, not committed"
                        );
                        break Ok(());
                    }
                    Some(Err(e)) => break Err(e),
                    Some(Ok(r)) => r,
                };
                // Only this batch's partitions: one revoked earlier may have moved on
                // under another consumer.
                let touched = committed.advance(&batch);
                let offsets = committed.list(|t, p| touched.contains(&(t, p)));
                commit(shared, consumer, offsets, CommitMode::Async);
                let mut report = report;
                report.stages.push(("wait", done_at.elapsed()));
                shared.metrics.record(labels, batch.len(), &report);
                if let Some(ts) = report.newest_commit_ms {
                    applied_ms.fetch_max(ts, Ordering::Relaxed);
                }
            }
            received = batches.recv(), if reading && in_flight.len() < batches_in_flight => {
                match received {
                    Some(batch) if batch.is_empty() => {
                        if in_flight.is_empty() {
                            m.lag_seconds.with_label_values(labels).set(0.0);
                        }
                    }
                    Some(batch) => {
                        in_flight.push_back(read_and_apply(applier, batch, read, &deadline, shared, labels));
                        read += 1;
                    }
                    None => reading = false,
                }
            }
            else => break Ok(()),
        }
    };
    guard.abort();
    reader.abort();
    // Asynchronous commits may still be queued: make the last ones certain, for the
    // partitions still assigned.
    let assigned = consumer.assignment().unwrap_or_default();
    let offsets = committed.list(|t, p| assigned.find_partition(t, p).is_some());
    if offsets.count() > 0 {
        let (shared, consumer) = (shared.clone(), consumer.clone());
        tokio::task::spawn_blocking(move || commit(&shared, &consumer, offsets, CommitMode::Sync))
            .await
            .expect("commit does not panic");
    }
    result
}

type Applied = (
    Vec<Message>,
    Option<Result<BatchReport, SyncError>>,
    Instant,
);

/// Read the events of `raw` on a blocking thread, then apply them. The reader task
/// only copies payloads out of librdkafka: reading the JSON (most of the work per
/// message when a catch-up skips most changes) runs beside it, and beside the batches
/// being applied.
async fn read_and_apply(
    applier: &Applier<'_>,
    raw: Vec<RawMessage>,
    seq: u64,
    deadline: &CancellationToken,
    shared: &Shared,
    labels: &[&str; 2],
) -> Applied {
    let keys = applier.key_columns.clone();
    let batch = tokio::task::spawn_blocking(move || {
        raw.into_iter()
            .map(|m| Message::read(m, keys.as_ref()))
            .collect()
    })
    .await
    .expect("reading events does not panic");
    apply_with_retry(applier, batch, seq, deadline, shared, labels).await
}

/// Apply `batch`, retrying transient failures until `deadline`. Returns the batch, the
/// outcome (`None`: abandoned at the deadline) and when it was done.
async fn apply_with_retry(
    applier: &Applier<'_>,
    batch: Vec<Message>,
    seq: u64,
    deadline: &CancellationToken,
    shared: &Shared,
    labels: &[&str; 2],
) -> Applied {
    let mut attempts = 0u32;
    let applied = retry_transient("apply a batch", Backoff::default(), deadline, || {
        attempts += 1;
        if attempts > 1 {
            shared
                .metrics
                .batch_failures
                .with_label_values(labels)
                .inc();
        }
        let batch = &batch;
        async move {
            let result = applier.apply(batch, seq).await;
            match &result {
                Err(e) if e.is_mysql_outage() => shared.mysql_up.set(0),
                // Documents were built, so MySQL answered.
                Ok(r) if r.indexed + r.deleted + r.conflicts > 0 => shared.mysql_up.set(1),
                _ => {}
            }
            result
        }
    })
    .await;
    (batch, applied, Instant::now())
}

/// Commit `offsets`. Asynchronous commits return at once (librdkafka sends them in
/// order); their failures are logged by the consumer and harmless: the events are
/// applied again (by version, a no-op) by whoever reads them next.
fn commit(
    shared: &Shared,
    consumer: &StreamConsumer,
    offsets: TopicPartitionList,
    mode: CommitMode,
) {
    if let Err(e) = consumer.commit(&offsets, mode) {
        // A rebalance took the partitions: whoever has them now reads from the last
        // committed offset and applies those events again (harmless, by version).
        tracing::warn!(error = %e, brokers = %shared.cfg.kafka.brokers.join(","), "commit failed; the events will be applied again");
    }
}
