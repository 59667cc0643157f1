//! One generation's consumer: read its change topics with its consumer group, apply
//! batches in partition order, commit offsets only after a batch is applied.

use crate::apply::{Applier, BatchReport, Message, RawMessage, now_ms};
use crate::remembered::RememberedWrites;
use crate::{Shared, SyncError};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use mee_core::Backoff;
use mee_core::event::KeyColumns;
use mee_core::generation::Generation;
use mee_core::handler::Handler;
use mee_core::materialize::{IdInverter, Materializer};
use mee_kafka::rdkafka::consumer::stream_consumer::MessageStream;
use mee_kafka::rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use mee_kafka::rdkafka::message::Message as _;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use mee_mysql::MySqlSource;
use mee_telemetry::{CancellationToken, retry_transient};
use std::collections::{BTreeMap, BTreeSet};
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
                record(shared, labels, batch.len(), &report);
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

/// Read batches until `stop` fires, sending each (an empty one when nothing came
/// within the flush interval), then the last partial one, then close the channel.
async fn read_batches(
    consumer: Arc<StreamConsumer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tx: mpsc::Sender<Vec<RawMessage>>,
) {
    // One stream for the reader's life: each `recv()` would set up (and tear down)
    // a stream of its own.
    let mut messages = consumer.stream();
    let mut topics = TopicNames::default();
    loop {
        let batch = next_batch(&mut messages, &mut topics, &shared, &stop).await;
        if (stop.is_cancelled() && batch.is_empty()) || tx.send(batch).await.is_err() {
            return;
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Messages until `flush_max_events`, `flush_max_bytes`, or `flush_interval_ms` after
/// the first one; empty when nothing came within the interval or `stop` fired.
async fn next_batch(
    messages: &mut MessageStream<'_, DefaultConsumerContext>,
    topics: &mut TopicNames,
    shared: &Shared,
    stop: &CancellationToken,
) -> Vec<RawMessage> {
    let settings = &shared.cfg.sync;
    let interval = Duration::from_millis(settings.flush_interval_ms);
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut deadline = Instant::now() + interval;
    let flush = tokio::time::sleep_until(deadline.into());
    tokio::pin!(flush);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut failures = 0u32;
    while batch.len() < settings.flush_max_events
        && bytes < settings.flush_max_bytes
        && !stop.is_cancelled()
        && Instant::now() < deadline
    {
        // A message already waiting is taken at once: racing each one against the
        // flush timer and the stop signal costs more than reading it.
        let received = match messages.next().now_or_never() {
            Some(r) => r,
            None => tokio::select! {
                r = messages.next() => r,
                () = &mut flush => break,
                () = &mut stopped => break,
            },
        };
        match received.expect("Kafka message streams never end") {
            Ok(msg) => {
                if batch.is_empty() {
                    deadline = Instant::now() + interval;
                    flush.as_mut().reset(deadline.into());
                }
                bytes += msg.payload().map_or(0, <[u8]>::len);
                batch.push(RawMessage {
                    topic: topics.get(msg.topic()),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    payload: msg.payload().map(Box::from),
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

/// The topic names messages carry, each allocated once.
#[derive(Debug, Default)]
struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.0.iter().find(|t| &***t == topic) {
            return t.clone();
        }
        let t: Arc<str> = topic.into();
        self.0.push(t.clone());
        t
    }
}

/// The next offset to commit per partition: after the last message of every batch
/// applied so far.
#[derive(Debug, Default)]
struct Offsets(BTreeMap<(Arc<str>, i32), i64>);

impl Offsets {
    fn new() -> Self {
        Self::default()
    }

    /// Move past `batch`; the partitions it touched.
    fn advance<'b>(&mut self, batch: &'b [Message]) -> BTreeSet<(&'b str, i32)> {
        let mut touched = BTreeSet::new();
        for m in batch {
            let e = self.0.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
            touched.insert((&*m.topic, m.partition));
        }
        touched
    }

    /// The offsets of the partitions `keep` selects.
    fn list(&self, keep: impl Fn(&str, i32) -> bool) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.0 {
            if !keep(topic, *partition) {
                continue;
            }
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("a valid offset");
        }
        tpl
    }
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

fn record(shared: &Shared, labels: &[&str; 2], events: usize, r: &BatchReport) {
    let m = &shared.metrics;
    let [task, generation] = *labels;
    for (table, kind, n) in &r.consumed {
        m.events_consumed
            .with_label_values(&[task, generation, table, kind])
            .inc_by(*n);
    }
    for (reason, n) in &r.skipped {
        m.events_skipped
            .with_label_values(&[task, generation, reason])
            .inc_by(*n);
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
        ("covered", r.covered),
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
    for (stage, d) in &r.stages {
        m.stage_seconds
            .with_label_values(&[task, generation, stage])
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

/// Keep the consumer-lag gauge current (committed offsets against the topics' ends,
/// asked through the generation's own consumer), and the replication lag true while
/// batches are stuck: with messages waiting it is now minus the commit time of the
/// last applied event, with none it is 0.
async fn watch_lag(
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer>,
    generation: Generation,
    applied_ms: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let labels = [generation.task.as_str(), generation.id.as_str()];
    let m = &shared.metrics;
    loop {
        let asked = {
            let (consumer, brokers) = (consumer.clone(), shared.cfg.kafka.brokers.join(","));
            let (group, topics) = (generation.group.clone(), generation.topics.clone());
            tokio::task::spawn_blocking(move || {
                mee_kafka::lag_with(
                    &*consumer,
                    &brokers,
                    &group,
                    &topics,
                    Duration::from_secs(10),
                )
            })
        };
        match asked.await.expect("the lag query does not panic") {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, partition: i32, offset: i64) -> Message {
        let raw = RawMessage {
            topic: topic.into(),
            partition,
            offset,
            payload: None,
        };
        Message::read(raw, None)
    }

    #[test]
    fn offsets_move_past_each_batch_and_list_only_the_chosen_partitions() {
        let mut offsets = Offsets::new();
        let batch = [msg("t", 0, 5), msg("t", 1, 9), msg("t", 0, 7)];
        let touched = offsets.advance(&batch);
        assert_eq!(touched, BTreeSet::from([("t", 0), ("t", 1)]));
        let batch = [msg("t", 0, 8)];
        let touched = offsets.advance(&batch);
        let list = offsets.list(|t, p| touched.contains(&(t, p)));
        assert_eq!(list.count(), 1);
        assert_eq!(
            list.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(9))
        );
        let all = offsets.list(|_, _| true);
        assert_eq!(
            all.find_partition("t", 1).map(|e| e.offset()),
            Some(Offset::Offset(10))
        );
    }
}
