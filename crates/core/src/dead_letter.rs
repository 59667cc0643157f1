//! A dead letter: something `update` or `sync` could not apply, with the reason, kept
//! in the task's dead-letter topic (`<task>.dlq`) instead of being lost or blocking
//! the stream. `update --verify --repair` rewrites such documents once the cause is
//! fixed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format version written by this build.
pub const DEAD_LETTER_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// Elasticsearch refused the document (a mapping conflict, say).
    RejectedDocument,
    /// A message in a change topic that is not a change event this build can read.
    UnreadableEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub format: u32,
    pub kind: DeadLetterKind,
    pub task: String,
    pub generation: String,
    pub index: String,
    /// Why: Elasticsearch's error type and reason, or the parse error.
    pub reason: String,
    /// HTTP status of the refused item (rejected documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// The document as it was sent (rejected documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
    /// The message as it was read, lossily decoded as UTF-8 (unreadable events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the message was: `topic/partition@offset` (unreadable events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub at_ms: u64,
}

impl DeadLetter {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter always serializes")
    }
}

/// The dead-letter topic of a task.
pub fn dead_letter_topic(task: &str) -> String {
    format!("{task}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = DeadLetter {
            format: DEAD_LETTER_FORMAT,
            kind: DeadLetterKind::RejectedDocument,
            task: "orders".into(),
            generation: "20261121083311123".into(),
            index: "orders_20261121083311123".into(),
            reason: "mapper_parsing_exception: failed to parse field [total]".into(),
            status: Some(400),
            document_id: Some("1001".into()),
            document: Some(serde_json::json!({"total": "abc"})),
            message: None,
            source: None,
            at_ms: 1,
        };
        let text = String::from_utf8(d.to_json()).expect("utf8");
        assert!(text.contains(r#""kind":"rejected_document""#), "{text}");
        let back: DeadLetter = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, d);
        assert_eq!(dead_letter_topic("orders"), "orders.dlq");
    }
}
