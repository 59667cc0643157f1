//! Change messages: as the reader copies them out of Kafka, and once read.

use mee_core::event::{KeyColumns, LazyChangeEvent};
use std::sync::Arc;

/// A message as the reader takes it from Kafka: its payload copied out, not yet read.
#[derive(Debug)]
pub(crate) struct RawMessage {
    /// Shared by the messages of a topic (one allocation, not one per message).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Box<[u8]>>,
}

/// A message with its change event read (in one pass; its row images are parsed
/// only if the batch needs them).
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The change event, or why the payload is not one (with the payload, for the
    /// dead letter).
    pub event: Result<LazyChangeEvent, (String, Option<Vec<u8>>)>,
}

impl Message {
    /// `keys`: the table and columns whose values to pick out of the row images.
    pub fn read(raw: RawMessage, keys: Option<&KeyColumns>) -> Self {
        let event = match raw.payload {
            Some(p) => LazyChangeEvent::from_payload(p, keys)
                .map_err(|(e, p)| (e.to_string(), Some(p.into_vec()))),
            None => Err(("empty message".to_string(), None)),
        };
        Self {
            topic: raw.topic,
            partition: raw.partition,
            offset: raw.offset,
            event,
        }
    }

    pub(crate) fn place(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}
