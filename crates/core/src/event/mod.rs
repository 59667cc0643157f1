//! The change event `listen` publishes to Kafka, one per row change (JSON).
//!
//! ```json
//! {"format":1,"database":"shop","table":"orders","type":"update",
//!  "key":{"id":1001},"before":{"id":1001,"status":"new"},"after":{"id":1001,"status":"paid"},
//!  "position":{"file":"mariadb-bin.000003","offset":1234},"version":12884903122,
//!  "commit_ts_ms":1717232400000,"index_in_tx":0}
//! ```
//!
//! Row values are converted exactly as the materializer converts query results
//! ([`crate::value::to_json`]). Fields may be added within a format version; readers
//! ignore fields they do not know and refuse a `format` they do not know.

mod lazy;

use crate::position::BinlogPosition;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use lazy::{Image, KeyColumns, KeyValues, LazyChangeEvent};

/// The format version written by this build.
pub const EVENT_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
    /// `TRUNCATE TABLE`: every row is gone; documents need a rebuild.
    Truncate,
    /// Any other DDL on the database (ALTER, RENAME, DROP, CREATE...).
    Ddl,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Format version of this JSON ([`EVENT_FORMAT`]).
    pub format: u32,
    /// Logical database name (the `[mysql.<name>]` of the app config).
    pub database: String,
    /// Table name; empty for DDL that names no single table.
    pub table: String,
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// Primary key columns and their values (row changes only).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub key: Map<String, Value>,
    /// The row before the change (update, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Map<String, Value>>,
    /// The row after the change (insert, update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Map<String, Value>>,
    /// The statement text (truncate, ddl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Where the event is in the binlog.
    pub position: BinlogPosition,
    /// Elasticsearch external version for writes this event causes
    /// ([`BinlogPosition::version`]): monotonic in binlog order.
    pub version: u64,
    /// Commit time of the transaction, in milliseconds since the epoch (the binlog
    /// records seconds, so the last three digits are zero).
    pub commit_ts_ms: u64,
    /// Index of this row change within its transaction, from 0.
    pub index_in_tx: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a change event: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "change event format {0} is newer than this build understands ({EVENT_FORMAT}); upgrade sync"
    )]
    Format(u32),
}

impl ChangeEvent {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a change event always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let e: ChangeEvent = serde_json::from_slice(bytes)?;
        if e.format > EVENT_FORMAT {
            return Err(EventError::Format(e.format));
        }
        Ok(e)
    }

    /// The Kafka message key: `<database>.<table>:<key values>`, so every change of
    /// one row goes to one partition. Values are joined by `,` (strings as they are,
    /// other values as JSON).
    pub fn message_key(&self) -> String {
        message_key(&self.database, &self.table, &self.key)
    }
}

/// `<database>.<table>:<v1>,<v2>` for a primary key.
pub fn message_key(database: &str, table: &str, key: &Map<String, Value>) -> String {
    let values: Vec<String> = key
        .values()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    format!("{database}.{table}:{}", values.join(","))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample() -> ChangeEvent {
        ChangeEvent {
            format: EVENT_FORMAT,
            database: "shop".into(),
            table: "orders".into(),
            kind: ChangeKind::Update,
            key: json!({"id": 1001}).as_object().cloned().unwrap_or_default(),
            before: json!({"id": 1001, "status": "new"}).as_object().cloned(),
            after: json!({"id": 1001, "status": "paid"}).as_object().cloned(),
            statement: None,
            position: BinlogPosition::new("mariadb-bin.000003", 1234),
            version: (3 << 32) | 1234,
            commit_ts_ms: 1_717_232_400_000,
            index_in_tx: 0,
        }
    }

    #[test]
    fn round_trips_and_keys() {
        let e = sample();
        let back = ChangeEvent::from_json(&e.to_json()).expect("parse");
        assert_eq!(back, e);
        assert_eq!(e.message_key(), "shop.orders:1001");
        let text = String::from_utf8(e.to_json()).expect("utf8");
        assert!(text.contains(r#""type":"update""#), "{text}");
        assert!(
            !text.contains("statement"),
            "absent fields are left out: {text}"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_newer_formats_refused() {
        let mut v: Value = serde_json::from_slice(&sample().to_json()).expect("json");
        v["added_later"] = json!(true);
        assert!(ChangeEvent::from_json(v.to_string().as_bytes()).is_ok());
        v["format"] = json!(EVENT_FORMAT + 1);
        assert!(matches!(
            ChangeEvent::from_json(v.to_string().as_bytes()),
            Err(EventError::Format(_))
        ));
        assert!(ChangeEvent::from_json(b"{not json").is_err());
    }

    #[test]
    fn composite_and_string_keys() {
        let key = json!({"a": 1, "b": "x,y"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(message_key("db", "t", &key), "db.t:1,x,y");
    }
}
