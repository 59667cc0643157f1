//! Group offset helpers against the local stack's Kafka API: end offsets, committing a
//! mark for a group that never joins, lag, reset to start, and deleting the group.
//! Every test has its own topic and group names.

use mee_core::generation::PartitionOffset;
use mee_kafka::KafkaError;
use mee_kafka::rdkafka::producer::FutureRecord;
use mee_test_support::{StackEnv, unique_name};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Produce `n` messages with distinct keys (spread over the partitions), numbered from
/// `from`.
async fn produce(cfg: &mee_core::config::KafkaConfig, topic: &str, from: usize, n: usize) {
    let producer = mee_kafka::producer(cfg).expect("producer");
    for i in from..from + n {
        let key = format!("shop.items:{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload("{}"), T)
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

fn total(offsets: &[PartitionOffset]) -> i64 {
    offsets.iter().map(|o| o.offset).sum()
}

#[tokio::test]
async fn mark_lag_reset_and_delete_a_group() {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r")).kafka;
    let topic = unique_name("offsets");
    let topics = vec![topic.clone()];
    assert!(mee_kafka::ensure_topic(&cfg, &topic).await.expect("create"));

    let empty = mee_kafka::end_offsets(&cfg, &topics, T)
        .await
        .expect("end offsets");
    assert_eq!(empty.len(), cfg.topic_partitions as usize, "{empty:?}");
    assert!(empty.iter().all(|o| o.offset == 0 && o.topic == topic));
    let partitions: Vec<i32> = empty.iter().map(|o| o.partition).collect();
    assert_eq!(partitions, (0..cfg.topic_partitions).collect::<Vec<_>>());

    produce(&cfg, &topic, 0, 20).await;
    let mark = mee_kafka::end_offsets(&cfg, &topics, T)
        .await
        .expect("end offsets");
    assert_eq!(total(&mark), 20, "{mark:?}");
    assert!(
        mark.iter().filter(|o| o.offset > 0).count() > 1,
        "keys spread over partitions: {mark:?}"
    );

    // A group with nothing committed lags by everything the topic holds.
    let group = unique_name("group");
    let lag = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert_eq!(lag.total, 20, "{lag:?}");
    assert!(lag.partitions.iter().all(|p| p.2 == -1), "{lag:?}");

    // Commit the mark without joining; later messages are the lag.
    mee_kafka::commit_group_offsets(&cfg, &group, &mark, T)
        .await
        .expect("commit mark");
    produce(&cfg, &topic, 20, 7).await;
    let lag = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert_eq!(lag.total, 7, "{lag:?}");
    let end = mee_kafka::end_offsets(&cfg, &topics, T)
        .await
        .expect("end offsets");
    assert_eq!(total(&end), 27);
    for ((t, p, committed, high), (m, e)) in lag.partitions.iter().zip(mark.iter().zip(&end)) {
        assert_eq!((t, *p), (&m.topic, m.partition));
        assert_eq!(*committed, m.offset, "the mark is committed");
        assert_eq!(*high, e.offset);
    }

    // Committing the end leaves no lag; reset to start brings everything back.
    mee_kafka::commit_group_offsets(&cfg, &group, &end, T)
        .await
        .expect("commit end");
    let lag = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert_eq!(lag.total, 0, "{lag:?}");
    let start = mee_kafka::reset_group_to_start(&cfg, &group, &topics, T)
        .await
        .expect("reset");
    assert!(start.iter().all(|o| o.offset == 0), "{start:?}");
    let lag = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert_eq!(lag.total, 27, "{lag:?}");
    assert!(lag.partitions.iter().all(|p| p.2 == 0), "{lag:?}");

    mee_kafka::delete_group(&cfg, &group, T)
        .await
        .expect("delete group");
    mee_kafka::delete_group(&cfg, &group, T)
        .await
        .expect("deleting a deleted group is fine");
    let lag = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert!(
        lag.partitions.iter().all(|p| p.2 == -1),
        "a deleted group has no offsets: {lag:?}"
    );
}

/// A member asks through its own consumer and gets what `group_lag` says from outside.
#[tokio::test]
async fn a_member_reads_its_group_lag_through_its_own_consumer() {
    use mee_kafka::rdkafka::consumer::{CommitMode, Consumer};
    use mee_kafka::rdkafka::message::Message;
    use mee_kafka::rdkafka::{Offset, TopicPartitionList};
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r")).kafka;
    let topic = unique_name("memberlag");
    let topics = vec![topic.clone()];
    assert!(mee_kafka::ensure_topic(&cfg, &topic).await.expect("create"));
    produce(&cfg, &topic, 0, 12).await;
    let group = unique_name("group");
    let consumer = std::sync::Arc::new(mee_kafka::consumer(&cfg, &group).expect("consumer"));
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    let brokers = cfg.brokers.join(",");
    let ask = |consumer: std::sync::Arc<mee_kafka::rdkafka::consumer::StreamConsumer>| {
        let (brokers, group, topics) = (brokers.clone(), group.clone(), topics.clone());
        tokio::task::spawn_blocking(move || {
            mee_kafka::lag_with(&*consumer, &brokers, &group, &topics, T)
        })
    };

    // Read five and commit past them: seven to go, as seen from inside and outside.
    let mut next = TopicPartitionList::new();
    for _ in 0..5 {
        let m = tokio::time::timeout(T, consumer.recv())
            .await
            .expect("a message within 10 s")
            .expect("message");
        next.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))
            .expect("offset");
    }
    let inside = ask(consumer.clone()).await.expect("join").expect("lag");
    assert_eq!(inside.total, 12, "nothing committed yet: {inside:?}");
    consumer.commit(&next, CommitMode::Sync).expect("commit");
    let inside = ask(consumer.clone()).await.expect("join").expect("lag");
    let outside = mee_kafka::group_lag(&cfg, &group, &topics, T)
        .await
        .expect("lag");
    assert_eq!(inside, outside);
    assert_eq!(inside.total, 7, "{inside:?}");

    let missing = vec![unique_name("missing")];
    let err = tokio::task::spawn_blocking({
        let (consumer, brokers, group) = (consumer.clone(), brokers.clone(), group.clone());
        move || mee_kafka::lag_with(&*consumer, &brokers, &group, &missing, T)
    })
    .await
    .expect("join")
    .expect_err("a missing topic");
    assert!(matches!(err, KafkaError::MissingTopic { .. }), "{err}");
    consumer.unsubscribe();
}

#[tokio::test]
async fn deleting_a_group_that_never_existed_is_fine() {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r")).kafka;
    mee_kafka::delete_group(&cfg, &unique_name("never"), T)
        .await
        .expect("no such group is fine");
}

#[tokio::test]
async fn a_missing_topic_is_named() {
    use mee_core::Transient;
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r")).kafka;
    let topic = unique_name("missing");
    let err = mee_kafka::end_offsets(&cfg, std::slice::from_ref(&topic), T)
        .await
        .expect_err("no such topic");
    assert!(matches!(err, KafkaError::MissingTopic { .. }), "{err:?}");
    assert!(err.to_string().contains(&topic), "{err}");
    assert!(!err.is_transient());
    let err = mee_kafka::group_lag(&cfg, &unique_name("group"), std::slice::from_ref(&topic), T)
        .await
        .expect_err("no such topic");
    assert!(err.to_string().contains(&topic), "{err}");
}
