//! Consumer group offsets of generations: the change topics' end offsets (the mark a new
//! generation's group starts from), committing offsets for a group without joining it,
//! a group's lag, and deleting a retired generation's group.
//!
//! librdkafka calls block, so they run in `spawn_blocking`, and the clients are created
//! and dropped there too (dropping a consumer with a `group.id` closes it, which blocks).

use crate::KafkaError;
use crate::client::client_config;
use mee_core::config::KafkaConfig;
use mee_core::generation::PartitionOffset;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How far a consumer group is behind the end of its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// Messages not yet consumed, over every partition.
    pub total: u64,
    /// `(topic, partition, committed offset or -1 when none, end offset)`.
    pub partitions: Vec<(String, i32, i64, i64)>,
}

/// One partition's low and high watermarks.
struct Watermarks {
    topic: String,
    partition: i32,
    low: i64,
    high: i64,
}

/// The high watermark (the offset the next message will get) of every partition of
/// every topic in `topics`, in the order given, partitions ascending. A missing topic
/// is an error naming it.
pub async fn end_offsets(
    cfg: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionOffset>, KafkaError> {
    let marks = watermarks(cfg, topics, timeout).await?;
    Ok(marks
        .into_iter()
        .map(|w| PartitionOffset {
            topic: w.topic,
            partition: w.partition,
            offset: w.high,
        })
        .collect())
}

/// Commit `offsets` for `group` without joining it, then read them back and fail
/// unless the group holds exactly those offsets. The group must have no active members
/// (a group with members refuses commits from outside).
pub async fn commit_group_offsets(
    cfg: &KafkaConfig,
    group: &str,
    offsets: &[PartitionOffset],
    timeout: Duration,
) -> Result<(), KafkaError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let brokers = brokers(cfg);
    let config = group_config(cfg, group);
    let (group, offsets) = (group.to_string(), offsets.to_vec());
    let what = format!("commit offsets of group {group}");
    let work = tokio::task::spawn_blocking({
        let (brokers, what) = (brokers.clone(), what.clone());
        move || {
            let consumer: BaseConsumer = config.create().map_err(client_error("commit"))?;
            let request = request(&brokers);
            let mut tpl = TopicPartitionList::new();
            for o in &offsets {
                tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))
                    .map_err(|e| request(format!("{what}: {}/{}", o.topic, o.partition), e))?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| request(what.clone(), e))?;
            let back = consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| request(format!("read back committed offsets of group {group}"), e))?;
            let differ: Vec<String> = offsets
                .iter()
                .filter_map(|o| {
                    let got = back
                        .find_partition(&o.topic, o.partition)
                        .map(|e| offset_value(e.offset()));
                    (got != Some(o.offset)).then(|| {
                        format!(
                            "{}/{}: wanted {}, group has {}",
                            o.topic,
                            o.partition,
                            o.offset,
                            got.map_or("nothing".to_string(), |g| g.to_string())
                        )
                    })
                })
                .collect();
            if differ.is_empty() {
                Ok(())
            } else {
                Err(KafkaError::CommitMismatch {
                    brokers: brokers.clone(),
                    group,
                    detail: differ.join("; "),
                })
            }
        }
    });
    // A synchronous commit has no timeout of its own: waiting for the group
    // coordinator can take as long as the cluster is away.
    match tokio::time::timeout(timeout * 2, work).await {
        Ok(done) => done.expect("commit task does not panic"),
        Err(_) => Err(KafkaError::TimedOut {
            brokers,
            what,
            after: timeout * 2,
        }),
    }
}

/// How far `group` is behind the end of `topics`. A partition the group has committed
/// nothing for counts its whole retained range (end − low watermark).
pub async fn group_lag(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<GroupLag, KafkaError> {
    let brokers = brokers(cfg);
    let config = group_config(cfg, group);
    let (group, topics) = (group.to_string(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(client_error("lag"))?;
        lag_with(&consumer, &brokers, &group, &topics, timeout)
    })
    .await
    .expect("lag task does not panic")
}

/// [`group_lag`] asked through `consumer`, a client with `group`'s `group.id` (a
/// member's own consumer, say): no new client, no new connections. Blocks.
pub fn lag_with<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    brokers: &str,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<GroupLag, KafkaError> {
    let marks = watermarks_with(consumer, brokers, topics, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for w in &marks {
        tpl.add_partition(&w.topic, w.partition);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| request(brokers)(format!("committed offsets of group {group}"), e))?;
    let mut lag = GroupLag {
        total: 0,
        partitions: Vec::with_capacity(marks.len()),
    };
    for w in marks {
        let c = committed
            .find_partition(&w.topic, w.partition)
            .map_or(-1, |e| offset_value(e.offset()));
        let from = if c >= 0 { c } else { w.low };
        lag.total += u64::try_from(w.high - from).unwrap_or(0);
        lag.partitions.push((w.topic, w.partition, c, w.high));
    }
    Ok(lag)
}

/// Delete consumer group `group` (a retired generation's). A group that does not exist
/// is fine; a group with active members is refused by the cluster.
pub async fn delete_group(
    cfg: &KafkaConfig,
    group: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg).create().map_err(client_error("admin"))?;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .delete_groups(&[group], &opts)
        .await
        .map_err(|e| request(&brokers(cfg))(format!("delete group {group}"), e))?;
    match results.into_iter().next() {
        None | Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) => Ok(()),
        Some(Err((group, code))) => Err(KafkaError::DeleteGroup {
            brokers: brokers(cfg),
            group,
            code,
        }),
    }
}

/// Commit the low watermarks of every partition of `topics` for `group`, so it reads
/// everything the topics still hold again. Returns the offsets committed.
pub async fn reset_group_to_start(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionOffset>, KafkaError> {
    let start: Vec<PartitionOffset> = watermarks(cfg, topics, timeout)
        .await?
        .into_iter()
        .map(|w| PartitionOffset {
            topic: w.topic,
            partition: w.partition,
            offset: w.low,
        })
        .collect();
    commit_group_offsets(cfg, group, &start, timeout).await?;
    Ok(start)
}

/// Low and high watermarks of every partition of `topics`.
async fn watermarks(
    cfg: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Watermarks>, KafkaError> {
    let config = client_config(cfg);
    let brokers = brokers(cfg);
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(client_error("metadata"))?;
        watermarks_with(&consumer, &brokers, &topics, timeout)
    })
    .await
    .expect("watermarks task does not panic")
}

/// [`watermarks`] asked through `consumer`. Blocks.
fn watermarks_with<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    brokers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Watermarks>, KafkaError> {
    let request = request(brokers);
    let mut out = Vec::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| request(format!("metadata of topic {topic}"), e))?;
        let t = md.topics().iter().find(|t| t.name() == topic);
        let mut partitions: Vec<i32> = match t {
            Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
            _ => Vec::new(),
        };
        if partitions.is_empty() {
            return Err(KafkaError::MissingTopic {
                brokers: brokers.to_string(),
                topic: topic.clone(),
            });
        }
        partitions.sort_unstable();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| request(format!("watermarks of {topic}/{partition}"), e))?;
            out.push(Watermarks {
                topic: topic.clone(),
                partition,
                low,
                high,
            });
        }
    }
    Ok(out)
}

/// Settings of a client that reads or commits a group's offsets without joining it.
fn group_config(cfg: &KafkaConfig, group: &str) -> rdkafka::ClientConfig {
    let mut c = client_config(cfg);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

fn brokers(cfg: &KafkaConfig) -> String {
    cfg.brokers.join(",")
}

fn client_error(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    move |source| KafkaError::Client {
        what,
        source: Box::new(source),
    }
}

fn request(brokers: &str) -> impl Fn(String, rdkafka::error::KafkaError) -> KafkaError + '_ {
    move |what, source| KafkaError::Request {
        brokers: brokers.to_string(),
        what,
        source: Box::new(source),
    }
}

/// An offset as a number; -1 when there is none (nothing committed).
fn offset_value(o: Offset) -> i64 {
    match o {
        Offset::Offset(n) => n,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_without_a_number_are_minus_one() {
        assert_eq!(offset_value(Offset::Offset(7)), 7);
        assert_eq!(offset_value(Offset::Invalid), -1);
        assert_eq!(offset_value(Offset::End), -1);
    }

    #[test]
    fn which_offset_errors_are_worth_a_retry() {
        use mee_core::Transient;
        let b = || "k:9092".to_string();
        let missing = KafkaError::MissingTopic {
            brokers: b(),
            topic: "mee.shop".into(),
        };
        assert!(!missing.is_transient());
        assert!(missing.to_string().contains("`mee.shop`"), "{missing}");
        let busy = KafkaError::DeleteGroup {
            brokers: b(),
            group: "orders.1".into(),
            code: RDKafkaErrorCode::NonEmptyGroup,
        };
        assert!(
            busy.is_transient(),
            "members leave after their session: {busy}"
        );
        let denied = KafkaError::DeleteGroup {
            brokers: b(),
            group: "orders.1".into(),
            code: RDKafkaErrorCode::GroupAuthorizationFailed,
        };
        assert!(!denied.is_transient());
        let slow = KafkaError::TimedOut {
            brokers: b(),
            what: "commit".into(),
            after: Duration::from_secs(1),
        };
        assert!(slow.is_transient());
    }
}
