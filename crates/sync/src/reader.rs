//! The reader: takes messages off the generation's consumer and cuts them into
//! batches at a count, a byte size or a time.

use crate::Shared;
use crate::message::RawMessage;
use futures_util::{FutureExt, StreamExt};
use mee_kafka::rdkafka::consumer::stream_consumer::MessageStream;
use mee_kafka::rdkafka::consumer::{DefaultConsumerContext, StreamConsumer};
use mee_kafka::rdkafka::message::Message as _;
use mee_telemetry::CancellationToken;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Read batches until `stop` fires, sending each (an empty one when nothing came
/// within the flush interval), then the last partial one, then close the channel.
pub(crate) async fn read_batches(
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
