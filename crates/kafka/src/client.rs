use crate::KafkaError;
use mee_core::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

fn client_error(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    move |source| KafkaError::Client {
        what,
        source: Box::new(source),
    }
}

/// librdkafka settings from the app config: brokers, then every
/// `kafka.librdkafka_options` entry (TLS, SASL, tuning) as given.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    for (k, v) in &cfg.librdkafka_options.0 {
        c.set(k, v);
    }
    c
}

/// An idempotent producer (`acks=all`) with compression.
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4");
    // User options last, so an operator can override our defaults.
    for (k, v) in client_config(cfg).config_map() {
        c.set(k, v);
    }
    c.create().map_err(client_error("producer"))
}

/// A consumer in `group` that never commits on its own: offsets are committed
/// explicitly, after the work they cover is done.
pub fn consumer(cfg: &KafkaConfig, group: &str) -> Result<StreamConsumer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in client_config(cfg).config_map() {
        c.set(k, v);
    }
    c.create().map_err(client_error("consumer"))
}

/// What the cluster answered to a metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub brokers: usize,
    pub topics: usize,
}

/// Ask the cluster for its metadata: proves the brokers answer the Kafka protocol.
pub async fn cluster_info(cfg: &KafkaConfig, timeout: Duration) -> Result<ClusterInfo, KafkaError> {
    let consumer: BaseConsumer = client_config(cfg)
        .create()
        .map_err(client_error("metadata"))?;
    let brokers = cfg.brokers.join(",");
    let md = tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(None, timeout).map(|m| ClusterInfo {
            brokers: m.brokers().len(),
            topics: m.topics().len(),
        })
    })
    .await
    .expect("metadata task does not panic");
    md.map_err(|source| KafkaError::Request {
        brokers,
        what: "fetch metadata".into(),
        source: Box::new(source),
    })
}

/// Create `topic` with the configured partitions and replication unless it exists.
/// Returns whether it was created.
pub async fn ensure_topic(cfg: &KafkaConfig, topic: &str) -> Result<bool, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg).create().map_err(client_error("admin"))?;
    let new = NewTopic::new(
        topic,
        cfg.topic_partitions,
        TopicReplication::Fixed(cfg.topic_replication_factor),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        admin
            .create_topics([&new], &opts)
            .await
            .map_err(|source| KafkaError::Request {
                brokers: cfg.brokers.join(","),
                what: format!("create topic {topic}"),
                source: Box::new(source),
            })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((topic, code))) => Err(KafkaError::CreateTopic { topic, code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mee_core::config::LibrdkafkaOptions;
    use std::collections::BTreeMap;

    #[test]
    fn user_options_pass_through() {
        let cfg = KafkaConfig {
            brokers: vec!["a:1".into(), "b:2".into()],
            topic_pattern: "mee.{database}".into(),
            topic_partitions: 3,
            topic_replication_factor: 1,
            librdkafka_options: LibrdkafkaOptions(BTreeMap::from([(
                "security.protocol".to_string(),
                "ssl".to_string(),
            )])),
        };
        let c = client_config(&cfg);
        assert_eq!(c.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(c.get("security.protocol"), Some("ssl"));
    }
}
