//! The tap of the steady runs into the sink: a consumer on the change topics from their
//! current end, noting when each change is readable.

use super::stack::Stack;
use super::steady::{ChangeTiming, Receipts, first_after, key_id};
use mee_kafka::rdkafka::Message as _;
use mee_kafka::rdkafka::consumer::Consumer;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A consumer on the change topics from their current end, noting when each change is
/// readable (per order id).
pub(super) struct Tap {
    task: tokio::task::JoinHandle<()>,
    receipts: Receipts,
    group: String,
}

impl Tap {
    pub(super) async fn start(stack: &Stack, group: &str) -> anyhow::Result<Tap> {
        let consumer = mee_kafka::consumer(&stack.cfg.kafka, group)?;
        let mut tpl = TopicPartitionList::new();
        for p in mee_kafka::end_offsets(&stack.cfg.kafka, &stack.topics(), Duration::from_secs(10))
            .await?
        {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.offset))?;
        }
        consumer.assign(&tpl)?;
        let receipts: Receipts = Arc::default();
        let r = receipts.clone();
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => {
                        let at = Instant::now();
                        if let Some(id) = key_id(m.key()) {
                            r.lock().unwrap().entry(id as u64).or_default().push(at);
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Ok(Tap {
            task,
            receipts,
            group: group.to_owned(),
        })
    }

    /// Stop it and delete its group: ms from each commit to readable, sorted.
    pub(super) async fn finish(self, stack: &Stack, commits: &[ChangeTiming]) -> Vec<f64> {
        self.task.abort();
        let _ = self.task.await;
        let _ =
            mee_kafka::delete_group(&stack.cfg.kafka, &self.group, Duration::from_secs(10)).await;
        let mut k = first_after(commits, &self.receipts.lock().unwrap());
        k.sort_by(f64::total_cmp);
        k
    }
}
