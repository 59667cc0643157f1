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
    // murmur2_random: the Java client's partitioner, so every client agrees where a key goes.
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
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
        .set("auto.offset.reset", "earliest")
        // A consumer that dies (kill -9, a lost node) gives its partitions up after
        // 10 s instead of librdkafka's 45 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000");
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

/// The `version` of the last event on each partition of `topic` (partitions whose last
/// message is not a change event are skipped). Tells a restarted `listen` which of
/// the events it publishes again are duplicates.
pub async fn last_versions(
    cfg: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<u64>, KafkaError> {
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let mut c = client_config(cfg);
    c.set("group.id", "mee-listen-probe")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().map_err(client_error("probe"))?;
    let brokers = cfg.brokers.join(",");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let request = |what: &str, source| KafkaError::Request {
            brokers: brokers.clone(),
            what: what.to_string(),
            source: Box::new(source),
        };
        let md = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| request("fetch metadata", e))?;
        let mut tpl = TopicPartitionList::new();
        let mut wanted = 0;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p.id(), timeout)
                .map_err(|e| request("fetch watermarks", e))?;
            if high > low {
                tpl.add_partition_offset(&topic, p.id(), Offset::Offset(high - 1))
                    .map_err(|e| request("assign", e))?;
                wanted += 1;
            }
        }
        let mut versions = Vec::new();
        if wanted == 0 {
            return Ok(versions);
        }
        consumer.assign(&tpl).map_err(|e| request("assign", e))?;
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = 0;
        while seen < wanted && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    seen += 1;
                    if let Some(e) = m
                        .payload()
                        .and_then(|p| mee_core::event::ChangeEvent::from_json(p).ok())
                    {
                        versions.push(e.version);
                    }
                }
                Some(Err(e)) => return Err(request("read the last messages", e)),
                None => {}
            }
        }
        Ok(versions)
    })
    .await
    .expect("probe task does not panic")
}

/// The number of partitions `topic` has.
pub async fn partition_count(
    cfg: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let consumer: BaseConsumer = client_config(cfg)
        .create()
        .map_err(client_error("metadata"))?;
    let brokers = cfg.brokers.join(",");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let md = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|source| KafkaError::Request {
                brokers: brokers.clone(),
                what: format!("metadata of {topic}"),
                source: Box::new(source),
            })?;
        Ok(md
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32))
    })
    .await
    .expect("metadata task does not panic")
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
