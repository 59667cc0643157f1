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

use crate::position::BinlogPosition;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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
    #[error("change event's `{0}` image is not an object of column values")]
    Image(&'static str),
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

/// A change event read with its row images left as raw JSON, parsed only when asked:
/// a reader that skips most events (`sync` catching up) then pays a scan for them
/// instead of building every row. Same JSON as [`ChangeEvent`].
#[derive(Debug, Clone, Deserialize)]
pub struct LazyChangeEvent {
    pub format: u32,
    pub database: String,
    pub table: String,
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    #[serde(default)]
    pub statement: Option<String>,
    pub position: BinlogPosition,
    pub version: u64,
    pub commit_ts_ms: u64,
    pub index_in_tx: u32,
    #[serde(default)]
    before: Option<Box<RawValue>>,
    #[serde(default)]
    after: Option<Box<RawValue>>,
}

/// A row image as a map of column → value.
pub type Image = Map<String, Value>;

impl LazyChangeEvent {
    /// Refuses what [`ChangeEvent::from_json`] refuses, images that are not objects
    /// included, so that [`Self::images`] only fails on what no JSON parser accepts.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let e: LazyChangeEvent = serde_json::from_slice(bytes)?;
        if e.format > EVENT_FORMAT {
            return Err(EventError::Format(e.format));
        }
        for (name, raw) in [("before", &e.before), ("after", &e.after)] {
            if raw.as_ref().is_some_and(|r| !r.get().starts_with('{')) {
                return Err(EventError::Image(name));
            }
        }
        Ok(e)
    }

    /// The before and after images, parsed.
    pub fn images(&self) -> Result<(Option<Image>, Option<Image>), EventError> {
        let parse = |raw: &Option<Box<RawValue>>| {
            raw.as_ref()
                .map(|r| serde_json::from_str::<Image>(r.get()))
                .transpose()
        };
        Ok((parse(&self.before)?, parse(&self.after)?))
    }

    /// The values of `columns` (matched case-insensitively) in the before and after
    /// images, without building the rest of the rows: `None` for an absent image,
    /// and for a column the image does not have.
    #[allow(clippy::type_complexity)]
    pub fn image_columns(
        &self,
        columns: &[String],
    ) -> Result<(Option<Vec<Option<Value>>>, Option<Vec<Option<Value>>>), EventError> {
        let pick = |raw: &Option<Box<RawValue>>| {
            raw.as_ref()
                .map(|r| {
                    let mut de = serde_json::Deserializer::from_str(r.get());
                    serde::de::DeserializeSeed::deserialize(Columns(columns), &mut de)
                })
                .transpose()
        };
        Ok((pick(&self.before)?, pick(&self.after)?))
    }
}

/// Picks the values of some columns out of an image, skipping the others.
struct Columns<'c>(&'c [String]);

impl<'de> serde::de::DeserializeSeed<'de> for Columns<'_> {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Columns<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row image (an object of column values)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = vec![None; self.0.len()];
        while let Some(found) = map.next_key_seed(ColumnIndex(self.0))? {
            match found {
                Some(i) => out[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key of an image: the index of the wanted column it names, if any.
struct ColumnIndex<'c>(&'c [String]);

impl<'de> serde::de::DeserializeSeed<'de> for ColumnIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for ColumnIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|c| c.eq_ignore_ascii_case(name)))
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
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ChangeEvent {
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
    fn a_lazy_event_reads_the_same_json_and_parses_images_on_demand() {
        let e = sample();
        let lazy = LazyChangeEvent::from_json(&e.to_json()).expect("parse");
        assert_eq!(
            (lazy.database.as_str(), lazy.table.as_str(), lazy.kind),
            ("shop", "orders", ChangeKind::Update)
        );
        assert_eq!(
            (lazy.version, lazy.position.clone()),
            (e.version, e.position)
        );
        assert_eq!(lazy.images().expect("images"), (e.before, e.after));
        let (before, after) = lazy
            .image_columns(&["ID".to_string(), "missing".to_string()])
            .expect("columns");
        assert_eq!(before, Some(vec![Some(json!(1001)), None]));
        assert_eq!(after, Some(vec![Some(json!(1001)), None]));

        let mut insert = sample();
        insert.kind = ChangeKind::Insert;
        insert.before = None;
        let lazy = LazyChangeEvent::from_json(&insert.to_json()).expect("parse");
        let (before, after) = lazy.image_columns(&["status".into()]).expect("columns");
        assert_eq!((before, after), (None, Some(vec![Some(json!("paid"))])));
    }

    #[test]
    fn a_lazy_event_refuses_what_the_eager_one_refuses() {
        let mut v: Value = serde_json::from_slice(&sample().to_json()).expect("json");
        v["format"] = json!(EVENT_FORMAT + 1);
        assert!(matches!(
            LazyChangeEvent::from_json(v.to_string().as_bytes()),
            Err(EventError::Format(_))
        ));
        assert!(LazyChangeEvent::from_json(b"{not json").is_err());
        v["format"] = json!(EVENT_FORMAT);
        v["after"] = json!("not a row");
        assert!(ChangeEvent::from_json(v.to_string().as_bytes()).is_err());
        assert!(matches!(
            LazyChangeEvent::from_json(v.to_string().as_bytes()),
            Err(EventError::Image("after"))
        ));
        v["after"] = Value::Null;
        let lazy = LazyChangeEvent::from_json(v.to_string().as_bytes()).expect("parse");
        assert_eq!(lazy.images().expect("images").1, None, "null is no image");
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
