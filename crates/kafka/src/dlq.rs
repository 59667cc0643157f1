//! The dead-letter topic of a task (`<task>.dlq`): documents Elasticsearch refused and
//! messages that could not be read, each with its reason.

use crate::{KafkaError, ensure_topic, producer};
use mee_core::config::KafkaConfig;
use mee_core::dead_letter::{DeadLetter, dead_letter_topic};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// A producer for one task's dead letters. [`DeadLetterQueue::send`] returns only once
/// Kafka confirmed the letter, so whatever it replaces can be acknowledged.
#[derive(Clone)]
pub struct DeadLetterQueue {
    producer: FutureProducer,
    topic: String,
    brokers: String,
}

impl std::fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("topic", &self.topic)
            .finish()
    }
}

impl DeadLetterQueue {
    /// Create the task's dead-letter topic if missing, and a producer for it.
    pub async fn open(cfg: &KafkaConfig, task: &str) -> Result<Self, KafkaError> {
        let topic = dead_letter_topic(task);
        ensure_topic(cfg, &topic).await?;
        Ok(Self {
            producer: producer(cfg)?,
            topic,
            brokers: cfg.brokers.join(","),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publish a letter, keyed by its document id when it has one, and wait for Kafka.
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), KafkaError> {
        let payload = letter.to_json();
        let key = letter.document_id.clone().unwrap_or_default();
        let record = FutureRecord::to(&self.topic).payload(&payload).key(&key);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| KafkaError::Request {
                brokers: self.brokers.clone(),
                what: format!("publish a dead letter to {}", self.topic),
                source: Box::new(source),
            })
    }
}
