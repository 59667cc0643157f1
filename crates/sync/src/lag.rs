//! The lag gauges of a generation, kept current while its batches are applied.

use crate::Shared;
use crate::apply::now_ms;
use mee_core::generation::Generation;
use mee_kafka::rdkafka::consumer::StreamConsumer;
use mee_telemetry::CancellationToken;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keep the consumer-lag gauge current (committed offsets against the topics' ends,
/// asked through the generation's own consumer), and the replication lag true while
/// batches are stuck: with messages waiting it is now minus the commit time of the
/// last applied event, with none it is 0.
pub(crate) async fn watch_lag(
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
