//! A dead letter: something `update` or `sync` could not apply, with the reason, kept
//! in the task's dead-letter topic (`<task>.dlq`) instead of being lost or blocking
//! the stream. `update --verify --repair` rewrites such documents once the cause is
//! fixed.

use crate::generation::Generation;
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
    /// A document of `generation`'s index that Elasticsearch refused with `status` and
    /// `reason`; `sent` is the JSON source that was sent (`None` for a delete), kept
    /// parsed when it parses.
    pub fn rejected_document(
        generation: &Generation,
        document_id: String,
        status: u16,
        reason: String,
        sent: Option<&str>,
        at_ms: u64,
    ) -> Self {
        Self {
            document_id: Some(document_id),
            status: Some(status),
            document: sent.and_then(|s| serde_json::from_str(s).ok()),
            ..Self::empty(DeadLetterKind::RejectedDocument, generation, reason, at_ms)
        }
    }

    /// A message of a change topic that is not a change event: `payload` as read (kept
    /// lossily decoded as UTF-8), `place` where it was (`topic/partition@offset`).
    pub fn unreadable_event(
        generation: &Generation,
        reason: String,
        payload: Option<&[u8]>,
        place: String,
        at_ms: u64,
    ) -> Self {
        Self {
            message: payload.map(|p| String::from_utf8_lossy(p).into_owned()),
            source: Some(place),
            ..Self::empty(DeadLetterKind::UnreadableEvent, generation, reason, at_ms)
        }
    }

    /// The fields every dead letter has; the optional ones empty.
    fn empty(kind: DeadLetterKind, generation: &Generation, reason: String, at_ms: u64) -> Self {
        Self {
            format: DEAD_LETTER_FORMAT,
            kind,
            task: generation.task.clone(),
            generation: generation.id.clone(),
            index: generation.index.clone(),
            reason,
            status: None,
            document_id: None,
            document: None,
            message: None,
            source: None,
            at_ms,
        }
    }

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

    #[test]
    fn constructors_fill_the_kinds_fields() {
        let g = Generation::new(
            "orders",
            "orders",
            Vec::new(),
            String::new(),
            String::new(),
            1,
        )
        .expect("generation");
        let r = DeadLetter::rejected_document(
            &g,
            "1001".into(),
            400,
            "mapper_parsing_exception".into(),
            Some(r#"{"total":"abc"}"#),
            7,
        );
        assert_eq!(r.kind, DeadLetterKind::RejectedDocument);
        assert_eq!(
            (r.task.as_str(), r.generation.as_str()),
            ("orders", g.id.as_str())
        );
        assert_eq!(r.index, g.index);
        assert_eq!(
            (r.status, r.document_id.as_deref()),
            (Some(400), Some("1001"))
        );
        assert_eq!(r.document, Some(serde_json::json!({"total": "abc"})));
        assert_eq!((r.message, r.source, r.at_ms), (None, None, 7));
        let deleted = DeadLetter::rejected_document(&g, "1".into(), 400, "x".into(), None, 7);
        assert_eq!(deleted.document, None);

        let u = DeadLetter::unreadable_event(
            &g,
            "expected value".into(),
            Some(b"{not json\xff"),
            "mee.shop/0@42".into(),
            8,
        );
        assert_eq!(u.kind, DeadLetterKind::UnreadableEvent);
        assert_eq!(u.message.as_deref(), Some("{not json\u{fffd}"));
        assert_eq!(u.source.as_deref(), Some("mee.shop/0@42"));
        assert_eq!((u.status, u.document_id, u.document), (None, None, None));
        assert_eq!((u.index, u.at_ms), (g.index.clone(), 8));
    }
}
