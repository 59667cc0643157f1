//! One generation's consumer: read its change topics with its consumer group, apply
//! batches in partition order, commit offsets only after a batch is applied.

use crate::apply::{Applier, BatchReport, Message, now_ms};
use crate::{Shared, SyncError};
use mee_core::Backoff;
use mee_core::generation::Generation;
use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use mee_kafka::rdkafka::message::Message as _;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use mee_mysql::MySqlSource;
use mee_telemetry::{CancellationToken, retry_transient};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        generation.clone(),
        applied_ms.clone(),
        stop.clone(),
    ));
    let result = consume(&shared, &applier, &consumer, &labels, &applied_ms, &stop).await;
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

async fn consume(
    shared: &Shared,
    applier: &Applier<'_>,
    consumer: &Arc<StreamConsumer>,
    labels: &[&str; 2],
    applied_ms: &AtomicU64,
    stop: &CancellationToken,
) -> Result<(), SyncError> {
    let m = &shared.metrics;
    let settings = &shared.cfg.sync;
    loop {
        let batch = next_batch(consumer, shared, stop).await;
        if batch.is_empty() {
            if stop.is_cancelled() {
                return Ok(());
            }
            m.lag_seconds.with_label_values(labels).set(0.0);
            continue;
        }
        // After a stop request the batch in hand gets `shutdown_timeout_ms` to finish;
        // past that it is abandoned uncommitted (and read again by whoever comes next).
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
        let mut attempts = 0u32;
        let applied = retry_transient("apply a batch", Backoff::default(), &deadline, || {
            attempts += 1;
            if attempts > 1 {
                m.batch_failures.with_label_values(labels).inc();
            }
            applier.apply(&batch)
        })
        .await;
        guard.abort();
        let report = match applied {
            None => {
                tracing::warn!(
                    events = batch.len(),
                    "shutdown timeout: batch abandoned, not committed"
                );
                return Ok(());
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(r)) => r,
        };
        commit(shared, consumer, &batch).await?;
        record(shared, labels, batch.len(), &report);
        if let Some(ts) = report.newest_commit_ms {
            applied_ms.fetch_max(ts, Ordering::Relaxed);
        }
    }
}

/// Messages until `flush_max_events`, `flush_max_bytes`, or `flush_interval_ms` after
/// the first one; empty when nothing came within the interval or `stop` fired.
async fn next_batch(
    consumer: &StreamConsumer,
    shared: &Shared,
    stop: &CancellationToken,
) -> Vec<Message> {
    let settings = &shared.cfg.sync;
    let interval = Duration::from_millis(settings.flush_interval_ms);
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut deadline = Instant::now() + interval;
    let mut failures = 0u32;
    while batch.len() < settings.flush_max_events && bytes < settings.flush_max_bytes {
        let received = tokio::select! {
            r = consumer.recv() => r,
            _ = tokio::time::sleep_until(deadline.into()) => break,
            _ = stop.cancelled() => break,
        };
        match received {
            Ok(msg) => {
                if batch.is_empty() {
                    deadline = Instant::now() + interval;
                }
                let payload = msg.payload().map(<[u8]>::to_vec);
                bytes += payload.as_ref().map_or(0, Vec::len);
                batch.push(Message {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    payload,
                });
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "reading the change topics failed; retrying");
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    batch
}

/// Commit, per partition, the offset after the last message of the batch.
async fn commit(
    shared: &Shared,
    consumer: &Arc<StreamConsumer>,
    batch: &[Message],
) -> Result<(), SyncError> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next.entry((&m.topic, m.partition)).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a valid offset");
    }
    let consumer = consumer.clone();
    let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
        .await
        .expect("commit does not panic");
    if let Err(e) = result {
        // A rebalance took the partitions: whoever has them now reads from the last
        // committed offset and applies those events again (harmless, by version).
        tracing::warn!(error = %e, brokers = %shared.cfg.kafka.brokers.join(","), "commit failed; the events will be applied again");
    }
    Ok(())
}

fn record(shared: &Shared, labels: &[&str; 2], events: usize, r: &BatchReport) {
    let m = &shared.metrics;
    let [task, generation] = *labels;
    for (table, kind) in &r.consumed {
        m.events_consumed
            .with_label_values(&[task, generation, table, kind])
            .inc();
    }
    for reason in &r.skipped {
        m.events_skipped
            .with_label_values(&[task, generation, reason])
            .inc();
    }
    for (table, kind) in &r.rebuild_needed {
        m.rebuild_needed
            .with_label_values(&[task, generation, table, kind])
            .inc();
    }
    for (outcome, n) in [
        ("indexed", r.indexed),
        ("deleted", r.deleted),
        ("conflict", r.conflicts),
        ("dead_lettered", r.dead_lettered),
    ] {
        m.documents
            .with_label_values(&[task, generation, outcome])
            .inc_by(n);
    }
    for d in &r.bulk_latencies {
        m.bulk_seconds
            .with_label_values(labels)
            .observe(d.as_secs_f64());
    }
    m.batch_events
        .with_label_values(labels)
        .observe(events as f64);
    if let Some(ts) = r.newest_commit_ms {
        let lag = now_ms().saturating_sub(ts) as f64 / 1000.0;
        m.lag_seconds.with_label_values(labels).set(lag);
    }
}

/// Keep the consumer-lag gauge current (committed offsets against the topics' ends),
/// and the replication lag true while batches are stuck: with messages waiting it is
/// now minus the commit time of the last applied event, with none it is 0.
async fn watch_lag(
    shared: Arc<Shared>,
    generation: Generation,
    applied_ms: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let labels = [generation.task.as_str(), generation.id.as_str()];
    let m = &shared.metrics;
    loop {
        match mee_kafka::group_lag(
            &shared.cfg.kafka,
            &generation.group,
            &generation.topics,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(lag) => {
                m.consumer_lag
                    .with_label_values(&labels)
                    .set(lag.total as i64);
                let applied = applied_ms.load(Ordering::Relaxed);
                if lag.total == 0 {
                    m.lag_seconds.with_label_values(&labels).set(0.0);
                } else if applied > 0 {
                    let secs = now_ms().saturating_sub(applied) as f64 / 1000.0;
                    m.lag_seconds.with_label_values(&labels).set(secs);
                }
            }
            Err(e) => tracing::debug!(error = %e, "consumer lag not available"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
