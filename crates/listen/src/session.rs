//! One replication session: binlog → Kafka, pipelined, with the confirmed position
//! advancing only past transactions whose every event Kafka acknowledged.

use crate::ListenError;
use crate::metrics::Metrics;
use crate::reader::{Item, Reader};
use mee_core::BinlogPosition;
use mee_core::config::MySqlConfig;
use mee_core::event::ChangeKind;
use mee_kafka::rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use mee_kafka::rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use prometheus::IntGauge;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Events sent but not yet acknowledged, at most; reading pauses beyond it.
const IN_FLIGHT: usize = 50_000;
/// Waiting this long for one confirmation means Kafka is down or stuck: say so once.
const STALLED_AFTER: Duration = Duration::from_secs(5);

/// The last position every event before which Kafka confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub position: BinlogPosition,
    pub commit_ts_ms: u64,
}

enum Pending {
    Sent {
        delivery: DeliveryFuture,
        table: String,
        kind: ChangeKind,
        bytes: usize,
        position: BinlogPosition,
    },
    Commit {
        next: BinlogPosition,
        commit_ts_ms: u64,
    },
}

#[allow(missing_debug_implementations)] // FutureProducer has no Debug
pub struct Session<'a> {
    pub database: &'a str,
    pub mysql: &'a MySqlConfig,
    pub server_id: u32,
    pub topic: &'a str,
    /// Partitions of the topic: DDL and TRUNCATE events go to every one of them, so
    /// each partition's consumer sees them in order with its rows.
    pub partitions: i32,
    pub producer: &'a FutureProducer,
    pub metrics: &'a Metrics,
    /// Versions up to this were published before this process started.
    pub published_before: Option<u64>,
    /// Stop after the transaction that ends at or beyond this position (benchmarks).
    pub stop_at: Option<BinlogPosition>,
}

impl Session<'_> {
    /// Read from `from` until `shutdown` (then drain and return `Ok`) or an error.
    pub async fn run(
        &self,
        from: &BinlogPosition,
        confirmed: &watch::Sender<Confirmed>,
        shutdown: &CancellationToken,
    ) -> Result<(), ListenError> {
        let mut reader = Reader::open(self.database, self.mysql, self.server_id, from).await?;
        self.metrics.mysql_up.set(1);
        tracing::info!(database = self.database, from = %from, topic = self.topic, "reading the binlog");
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        // Cancelled by the acknowledger when a delivery fails, so reading stops at once.
        let failed = CancellationToken::new();
        let acker = tokio::spawn(acknowledge(
            rx,
            confirmed.clone(),
            self.metrics.clone(),
            failed.clone(),
        ));
        let result = self.pump(&mut reader, &tx, shutdown, &failed).await;
        drop(tx);
        reader.close().await;
        // Wait for what was sent: the confirmed position then covers it.
        let acked = acker.await.unwrap_or_else(|e| {
            Err(ListenError::Delivery {
                position: from.to_string(),
                message: format!("acknowledger failed: {e}"),
            })
        });
        result.and(acked)
    }

    async fn pump(
        &self,
        reader: &mut Reader,
        tx: &mpsc::Sender<Pending>,
        shutdown: &CancellationToken,
        failed: &CancellationToken,
    ) -> Result<(), ListenError> {
        loop {
            let item = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = failed.cancelled() => return Ok(()),
                item = reader.next() => item?,
            };
            match item {
                Item::Event(e) => {
                    let kind_label = label(e.kind);
                    self.metrics
                        .events_read
                        .with_label_values(&[&e.table, kind_label])
                        .inc();
                    if self.published_before.is_some_and(|v| e.version <= v) {
                        self.metrics.duplicates.inc();
                    }
                    let key = e.message_key();
                    let payload = e.to_json();
                    let targets: Vec<Option<i32>> = match e.kind {
                        ChangeKind::Ddl | ChangeKind::Truncate => {
                            (0..self.partitions).map(Some).collect()
                        }
                        _ => vec![None],
                    };
                    for partition in targets {
                        let delivery = self.send(&key, &payload, partition, shutdown).await?;
                        let pending = Pending::Sent {
                            delivery,
                            table: e.table.clone(),
                            kind: e.kind,
                            bytes: payload.len(),
                            position: e.position.clone(),
                        };
                        if tx.send(pending).await.is_err() {
                            // The acknowledger stopped on an error; it reports it.
                            return Ok(());
                        }
                    }
                }
                Item::Commit { next, commit_ts_ms } => {
                    let done = self
                        .stop_at
                        .as_ref()
                        .is_some_and(|s| next.binlog_cmp(s).is_some_and(|o| o.is_ge()));
                    if tx
                        .send(Pending::Commit { next, commit_ts_ms })
                        .await
                        .is_err()
                        || done
                    {
                        return Ok(());
                    }
                }
                Item::Heartbeat => {
                    if tx.capacity() == tx.max_capacity() {
                        self.metrics.lag_seconds.set(0.0);
                    }
                }
            }
        }
    }

    /// Hand one message to the producer without waiting for its delivery.
    async fn send(
        &self,
        key: &str,
        payload: &[u8],
        partition: Option<i32>,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryFuture, ListenError> {
        loop {
            let mut record = FutureRecord::to(self.topic).key(key).payload(payload);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        _ = shutdown.cancelled() => return Err(ListenError::Delivery {
                            position: key.to_string(),
                            message: "shutdown while the producer queue was full".into(),
                        }),
                    }
                }
                Err((e, _)) => {
                    self.metrics.publish_errors.inc();
                    return Err(ListenError::Delivery {
                        position: key.to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Await deliveries in order; advance the confirmed position at each commit.
async fn acknowledge(
    mut rx: mpsc::Receiver<Pending>,
    confirmed: watch::Sender<Confirmed>,
    metrics: Metrics,
    failed: CancellationToken,
) -> Result<(), ListenError> {
    let result = acknowledge_all(&mut rx, &confirmed, &metrics).await;
    if result.is_err() {
        failed.cancel();
    }
    result
}

async fn acknowledge_all(
    rx: &mut mpsc::Receiver<Pending>,
    confirmed: &watch::Sender<Confirmed>,
    metrics: &Metrics,
) -> Result<(), ListenError> {
    let mut stall = Stall::default();
    while let Some(p) = rx.recv().await {
        match p {
            Pending::Sent {
                delivery,
                table,
                kind,
                bytes,
                position,
            } => match stall.wait(delivery, confirmed, &metrics.kafka_up).await {
                Ok(Ok(_)) => {
                    metrics
                        .events_published
                        .with_label_values(&[&table, label(kind)])
                        .inc();
                    metrics.bytes_published.inc_by(bytes as u64);
                }
                Ok(Err((e, _))) => {
                    metrics.publish_errors.inc();
                    return Err(ListenError::Delivery {
                        position: position.to_string(),
                        message: e.to_string(),
                    });
                }
                Err(_) => {
                    metrics.publish_errors.inc();
                    return Err(ListenError::Delivery {
                        position: position.to_string(),
                        message: "the producer dropped the message".into(),
                    });
                }
            },
            Pending::Commit { next, commit_ts_ms } => {
                if let Ok(n) = next.file_number() {
                    metrics.position_file.set(n as i64);
                }
                metrics.position_offset.set(next.offset as i64);
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                metrics
                    .lag_seconds
                    .set(now_ms.saturating_sub(commit_ts_ms) as f64 / 1000.0);
                confirmed.send_replace(Confirmed {
                    position: next,
                    commit_ts_ms,
                });
            }
        }
    }
    Ok(())
}

/// Kafka not confirming: a warning when it starts, a note when it ends, nothing in
/// between (librdkafka reconnects and resends by itself, in order; the saved position
/// stays where Kafka confirmed everything before it).
#[derive(Debug, Default)]
struct Stall {
    since: Option<Instant>,
}

impl Stall {
    async fn wait(
        &mut self,
        delivery: DeliveryFuture,
        confirmed: &watch::Sender<Confirmed>,
        kafka_up: &IntGauge,
    ) -> <DeliveryFuture as std::future::IntoFuture>::Output {
        tokio::pin!(delivery);
        loop {
            match tokio::time::timeout(STALLED_AFTER, &mut delivery).await {
                Ok(result) => {
                    if matches!(result, Ok(Ok(_))) {
                        kafka_up.set(1);
                        if let Some(since) = self.since.take() {
                            tracing::info!(after = ?since.elapsed(), "Kafka confirms events again");
                        }
                    } else {
                        kafka_up.set(0);
                    }
                    return result;
                }
                Err(_) if self.since.is_none() => {
                    kafka_up.set(0);
                    self.since = Instant::now()
                        .checked_sub(STALLED_AFTER)
                        .or(Some(Instant::now()));
                    tracing::warn!(
                        waited = ?STALLED_AFTER,
                        confirmed = %confirmed.borrow().position,
                        "Kafka has not confirmed an event for a while; waiting for it (the \
                         producer reconnects and resends by itself) and keeping the saved \
                         position where Kafka has everything before it"
                    );
                }
                Err(_) => {}
            }
        }
    }
}

fn label(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Insert => "insert",
        ChangeKind::Update => "update",
        ChangeKind::Delete => "delete",
        ChangeKind::Truncate => "truncate",
        ChangeKind::Ddl => "ddl",
    }
}
