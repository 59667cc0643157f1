//! Kafka adapter: clients built from the app config (brokers plus any librdkafka
//! options), cluster checks, change-topic creation, and consumer group offsets
//! (end offsets, commits from outside a group, lag, group deletion).

mod client;
mod dlq;
mod error;
mod offsets;

pub use client::{
    ClusterInfo, client_config, cluster_info, consumer, ensure_topic, last_versions,
    partition_count, producer,
};
pub use dlq::DeadLetterQueue;
pub use error::KafkaError;
pub use offsets::{
    GroupLag, commit_group_offsets, delete_group, end_offsets, group_lag, lag_with,
    reset_group_to_start,
};

pub use rdkafka;
