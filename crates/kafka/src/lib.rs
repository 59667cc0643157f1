//! Kafka adapter: clients built from the app config (brokers plus any librdkafka
//! options), cluster checks and change-topic creation.

mod client;
mod error;

pub use client::{
    ClusterInfo, client_config, cluster_info, consumer, ensure_topic, last_versions,
    partition_count, producer,
};
pub use error::KafkaError;

pub use rdkafka;
