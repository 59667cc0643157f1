//! Smoke test against the local stack's Kafka API: create a topic, produce, consume
//! with a consumer group, commit, and read the committed offset back.

use mee_kafka::rdkafka::consumer::{CommitMode, Consumer};
use mee_kafka::rdkafka::message::Message;
use mee_kafka::rdkafka::producer::FutureRecord;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use mee_test_support::{StackEnv, unique_name};
use std::time::Duration;

#[tokio::test]
async fn produce_consume_commit() {
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[], &unique_name("r"));
    cfg.kafka.topic_partitions = 1;
    let topic = unique_name("kafka");

    let info = mee_kafka::cluster_info(&cfg.kafka, Duration::from_secs(10))
        .await
        .expect("metadata");
    assert!(info.brokers >= 1, "{info:?}");
    assert!(
        mee_kafka::ensure_topic(&cfg.kafka, &topic)
            .await
            .expect("create")
    );
    assert!(
        !mee_kafka::ensure_topic(&cfg.kafka, &topic)
            .await
            .expect("exists")
    );

    let producer = mee_kafka::producer(&cfg.kafka).expect("producer");
    for i in 0..3 {
        let payload = format!("{{\"n\":{i}}}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("shop.items:1")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }

    let group = unique_name("group");
    let consumer = mee_kafka::consumer(&cfg.kafka, &group).expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 s")
            .expect("message");
        assert_eq!(msg.key(), Some(&b"shop.items:1"[..]));
        seen.push(String::from_utf8(msg.payload().expect("payload").to_vec()).expect("utf8"));
        consumer
            .commit_message(&msg, CommitMode::Sync)
            .expect("commit");
    }
    assert_eq!(
        seen,
        [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#],
        "one partition keeps order"
    );

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed
        .find_partition(&topic, 0)
        .expect("partition 0")
        .offset();
    assert_eq!(
        offset,
        Offset::Offset(3),
        "the next offset to read is committed"
    );
}

#[tokio::test]
async fn unreachable_brokers_are_transient() {
    use mee_core::Transient;
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[], &unique_name("r"));
    cfg.kafka.brokers = vec!["127.0.0.1:1".into()];
    let err = mee_kafka::cluster_info(&cfg.kafka, Duration::from_secs(2))
        .await
        .expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
}
