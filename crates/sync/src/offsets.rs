//! The offsets to commit: per partition, past the last message of the batches applied.

use crate::message::Message;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The next offset to commit per partition: after the last message of every batch
/// applied so far.
#[derive(Debug, Default)]
pub(crate) struct Offsets(BTreeMap<(Arc<str>, i32), i64>);

impl Offsets {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Move past `batch`; the partitions it touched.
    pub(crate) fn advance<'b>(&mut self, batch: &'b [Message]) -> BTreeSet<(&'b str, i32)> {
        let mut touched = BTreeSet::new();
        for m in batch {
            let e = self.0.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
            touched.insert((&*m.topic, m.partition));
        }
        touched
    }

    /// The offsets of the partitions `keep` selects.
    pub(crate) fn list(&self, keep: impl Fn(&str, i32) -> bool) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.0 {
            if !keep(topic, *partition) {
                continue;
            }
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("a valid offset");
        }
        tpl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RawMessage;

    fn msg(topic: &str, partition: i32, offset: i64) -> Message {
        let raw = RawMessage {
            topic: topic.into(),
            partition,
            offset,
            payload: None,
        };
        Message::read(raw, None)
    }

    #[test]
    fn offsets_move_past_each_batch_and_list_only_the_chosen_partitions() {
        let mut offsets = Offsets::new();
        let batch = [msg("t", 0, 5), msg("t", 1, 9), msg("t", 0, 7)];
        let touched = offsets.advance(&batch);
        assert_eq!(touched, BTreeSet::from([("t", 0), ("t", 1)]));
        let batch = [msg("t", 0, 8)];
        let touched = offsets.advance(&batch);
        let list = offsets.list(|t, p| touched.contains(&(t, p)));
        assert_eq!(list.count(), 1);
        assert_eq!(
            list.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(9))
        );
        let all = offsets.list(|_, _| true);
        assert_eq!(
            all.find_partition("t", 1).map(|e| e.offset()),
            Some(Offset::Offset(10))
        );
    }
}
