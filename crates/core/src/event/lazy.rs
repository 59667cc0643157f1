//! A change event read in one pass that builds no row: its images are checked and
//! skipped (one table's key columns picked out on the way), and parsed only when
//! asked. `sync` catching up skips most events by their key; those then cost one
//! scan of their JSON and no row.

use super::{ChangeKind, EVENT_FORMAT, EventError};
use crate::position::BinlogPosition;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A row image as a map of column → value.
pub type Image = Map<String, Value>;

/// The values of some columns in one image, in the order asked; `None` for a column
/// the image does not have.
pub type KeyValues = Vec<Option<Value>>;

/// The table whose key columns a reader wants picked out of the row images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumns {
    pub database: String,
    /// Matched case-insensitively, as MySQL names tables.
    pub table: String,
    /// Matched case-insensitively.
    pub columns: Vec<String>,
}

impl KeyColumns {
    fn names(&self, database: &str, table: &str) -> bool {
        self.database == database && self.table.eq_ignore_ascii_case(table)
    }
}

/// Same JSON as [`super::ChangeEvent`]; refuses what it refuses (a newer `format`,
/// an image that is not an object), so that [`Self::images`] cannot fail later.
#[derive(Debug, Clone)]
pub struct LazyChangeEvent {
    pub format: u32,
    pub database: String,
    pub table: String,
    pub kind: ChangeKind,
    pub statement: Option<String>,
    pub position: BinlogPosition,
    pub version: u64,
    pub commit_ts_ms: u64,
    pub index_in_tx: u32,
    /// The asked-for key columns of the before and after images (`None` for an
    /// absent image), when the event is a row change of the asked-for table that
    /// names its table before its images, as `listen` writes it.
    pub keys: Option<(Option<KeyValues>, Option<KeyValues>)>,
    payload: Box<[u8]>,
}

impl LazyChangeEvent {
    /// Reads `bytes`, picking the key columns of `keys`' table out of the images.
    pub fn from_json(bytes: &[u8], keys: Option<&KeyColumns>) -> Result<Self, EventError> {
        Self::from_payload(bytes.into(), keys).map_err(|(e, _)| e)
    }

    /// [`Self::from_json`] keeping `payload` as the event's own (no copy); on an error
    /// the payload comes back with it, for the dead letter.
    pub fn from_payload(
        payload: Box<[u8]>,
        keys: Option<&KeyColumns>,
    ) -> Result<Self, (EventError, Box<[u8]>)> {
        match Self::read(&payload, keys) {
            Ok(event) => Ok(Self { payload, ..event }),
            Err(e) => Err((e, payload)),
        }
    }

    /// The event without its payload.
    fn read(bytes: &[u8], keys: Option<&KeyColumns>) -> Result<Self, EventError> {
        // Checked once here, the text's strings are then borrowed unchecked.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| EventError::Json(de::Error::custom(format_args!("not UTF-8: {e}"))))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let header = de.deserialize_map(HeaderVisitor { keys })?;
        de.end()?;
        let format = header.format.ok_or_else(|| missing("format"))?;
        if format > EVENT_FORMAT {
            return Err(EventError::Format(format));
        }
        let (database, table) = (
            header.database.ok_or_else(|| missing("database"))?,
            header.table.ok_or_else(|| missing("table"))?,
        );
        let picked = keys.is_some_and(|k| k.names(&database, &table)) && !header.unpicked;
        Ok(Self {
            format,
            kind: header.kind.ok_or_else(|| missing("type"))?,
            statement: header.statement,
            position: header.position.ok_or_else(|| missing("position"))?,
            version: header.version.ok_or_else(|| missing("version"))?,
            commit_ts_ms: header.commit_ts_ms.ok_or_else(|| missing("commit_ts_ms"))?,
            index_in_tx: header.index_in_tx.ok_or_else(|| missing("index_in_tx"))?,
            keys: picked.then(|| (header.before.flatten(), header.after.flatten())),
            database,
            table,
            payload: Box::default(),
        })
    }

    /// The before and after images, parsed.
    pub fn images(&self) -> Result<(Option<Image>, Option<Image>), EventError> {
        #[derive(Deserialize)]
        struct Images {
            #[serde(default)]
            before: Option<Image>,
            #[serde(default)]
            after: Option<Image>,
        }
        let i: Images = serde_json::from_slice(&self.payload)?;
        Ok((i.before, i.after))
    }

    /// The JSON the event was read from.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

fn missing(field: &'static str) -> EventError {
    EventError::Json(de::Error::missing_field(field))
}

/// The event's fields but its images, which are only checked (and picked from).
#[derive(Default)]
struct Header {
    format: Option<u32>,
    database: Option<String>,
    table: Option<String>,
    kind: Option<ChangeKind>,
    statement: Option<String>,
    position: Option<BinlogPosition>,
    version: Option<u64>,
    commit_ts_ms: Option<u64>,
    index_in_tx: Option<u32>,
    before: Option<Option<KeyValues>>,
    after: Option<Option<KeyValues>>,
    /// An image came before the names of its database and table, so nothing was
    /// picked from it.
    unpicked: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Format,
    Database,
    Table,
    #[serde(rename = "type")]
    Kind,
    Statement,
    Position,
    Version,
    CommitTsMs,
    IndexInTx,
    Before,
    After,
    #[serde(other)]
    Other,
}

struct HeaderVisitor<'k> {
    keys: Option<&'k KeyColumns>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a change event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut h = Header::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Format => h.format = Some(map.next_value()?),
                Field::Database => h.database = Some(map.next_value()?),
                Field::Table => h.table = Some(map.next_value()?),
                Field::Kind => h.kind = Some(map.next_value()?),
                Field::Statement => h.statement = map.next_value()?,
                Field::Position => h.position = Some(map.next_value()?),
                Field::Version => h.version = Some(map.next_value()?),
                Field::CommitTsMs => h.commit_ts_ms = Some(map.next_value()?),
                Field::IndexInTx => h.index_in_tx = Some(map.next_value()?),
                Field::Before | Field::After => {
                    let columns = match (self.keys, &h.database, &h.table) {
                        (Some(k), Some(d), Some(t)) if k.names(d, t) => &k.columns[..],
                        (Some(_), None, _) | (Some(_), _, None) => {
                            h.unpicked = true;
                            &[]
                        }
                        _ => &[],
                    };
                    let name = if matches!(field, Field::Before) {
                        "before"
                    } else {
                        "after"
                    };
                    let image = map
                        .next_value_seed(OptionalImage(Columns(columns)))
                        .map_err(|e| de::Error::custom(format_args!("`{name}` image: {e}")))?;
                    match field {
                        Field::Before => h.before = Some(image),
                        _ => h.after = Some(image),
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(h)
    }
}

/// An image or `null`.
struct OptionalImage<'c>(Columns<'c>);

impl<'de> DeserializeSeed<'de> for OptionalImage<'_> {
    type Value = Option<KeyValues>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalImage<'_> {
    type Value = Option<KeyValues>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self.0).map(Some)
    }
}

/// An image: the values of some of its columns, the others skipped.
struct Columns<'c>(&'c [String]);

impl<'de> Visitor<'de> for Columns<'_> {
    type Value = KeyValues;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row image (an object of column values)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = vec![None; self.0.len()];
        let mut wanted = self.0.len();
        // Names are compared until every wanted column is found, then skipped.
        while wanted > 0 {
            match map.next_key_seed(ColumnIndex(self.0))? {
                None => return Ok(out),
                Some(Some(i)) => {
                    wanted -= usize::from(out[i].is_none());
                    out[i] = Some(map.next_value()?);
                }
                Some(None) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(out)
    }
}

/// A key of an image: the index of the wanted column it names, if any.
struct ColumnIndex<'c>(&'c [String]);

impl<'de> DeserializeSeed<'de> for ColumnIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for ColumnIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|c| c.eq_ignore_ascii_case(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ChangeEvent;
    use super::super::tests::sample;
    use super::*;
    use serde_json::json;

    fn orders_key() -> KeyColumns {
        KeyColumns {
            database: "shop".into(),
            table: "ORDERS".into(),
            columns: vec!["ID".into(), "missing".into()],
        }
    }

    #[test]
    fn reads_the_same_json_and_parses_images_on_demand() {
        let e = sample();
        let lazy = LazyChangeEvent::from_json(&e.to_json(), None).expect("parse");
        assert_eq!(
            (lazy.database.as_str(), lazy.table.as_str(), lazy.kind),
            ("shop", "orders", ChangeKind::Update)
        );
        assert_eq!(
            (lazy.version, lazy.position.clone(), lazy.commit_ts_ms),
            (e.version, e.position.clone(), e.commit_ts_ms)
        );
        assert_eq!(lazy.keys, None, "nothing asked, nothing picked");
        assert_eq!(lazy.payload(), &e.to_json()[..]);
        assert_eq!(lazy.images().expect("images"), (e.before, e.after));
    }

    #[test]
    fn an_owned_payload_is_kept_or_given_back_with_the_error() {
        let json = sample().to_json();
        let lazy = LazyChangeEvent::from_payload(json.clone().into(), None).expect("parse");
        assert_eq!(lazy.payload(), &json[..]);
        let broken = b"{\"format\":1,\"database\":".to_vec();
        let (err, back) =
            LazyChangeEvent::from_payload(broken.clone().into(), None).expect_err("broken");
        assert!(matches!(err, EventError::Json(_)), "{err}");
        assert_eq!(&back[..], &broken[..]);
    }

    #[test]
    fn picks_the_key_columns_of_the_asked_table_only() {
        let key = orders_key();
        let lazy = LazyChangeEvent::from_json(&sample().to_json(), Some(&key)).expect("parse");
        let id = Some(vec![Some(json!(1001)), None]);
        assert_eq!(lazy.keys, Some((id.clone(), id.clone())));

        let mut insert = sample();
        insert.kind = ChangeKind::Insert;
        insert.before = None;
        let lazy = LazyChangeEvent::from_json(&insert.to_json(), Some(&key)).expect("parse");
        assert_eq!(lazy.keys, Some((None, id)));

        let mut other = sample();
        other.table = "customers".into();
        let lazy = LazyChangeEvent::from_json(&other.to_json(), Some(&key)).expect("parse");
        assert_eq!(lazy.keys, None);
    }

    #[test]
    fn picks_nothing_from_images_that_come_before_the_table() {
        let e = sample();
        let text = format!(
            r#"{{"before":{},"after":{},"format":1,"database":"shop","table":"orders",
                "type":"update","position":{{"file":"mariadb-bin.000003","offset":1234}},
                "version":{},"commit_ts_ms":0,"index_in_tx":0}}"#,
            json!(e.before),
            json!(e.after),
            e.version
        );
        let lazy = LazyChangeEvent::from_json(text.as_bytes(), Some(&orders_key()))
            .expect("field order is free");
        assert_eq!(lazy.keys, None);
        assert_eq!(lazy.images().expect("images"), (e.before, e.after));
    }

    #[test]
    fn refuses_what_the_eager_reader_refuses() {
        let mut v: Value = serde_json::from_slice(&sample().to_json()).expect("json");
        v["format"] = json!(EVENT_FORMAT + 1);
        assert!(matches!(
            LazyChangeEvent::from_json(v.to_string().as_bytes(), None),
            Err(EventError::Format(_))
        ));
        assert!(LazyChangeEvent::from_json(b"{not json", None).is_err());
        assert!(LazyChangeEvent::from_json(b"{} trailing", None).is_err());
        v["format"] = json!(EVENT_FORMAT);
        for (field, value) in [("after", json!("not a row")), ("before", json!([1]))] {
            let mut bad = v.clone();
            bad[field] = value;
            let bytes = bad.to_string().into_bytes();
            assert!(ChangeEvent::from_json(&bytes).is_err(), "{field}");
            let err = LazyChangeEvent::from_json(&bytes, Some(&orders_key()))
                .expect_err(field)
                .to_string();
            assert!(err.contains(field), "{err}");
        }
        let mut bad = v.clone();
        bad["version"] = json!("x");
        assert!(LazyChangeEvent::from_json(bad.to_string().as_bytes(), None).is_err());
        let mut no_version = v.clone();
        no_version.as_object_mut().map(|o| o.remove("version"));
        let err = LazyChangeEvent::from_json(no_version.to_string().as_bytes(), None)
            .expect_err("version is required");
        assert!(err.to_string().contains("version"), "{err}");

        // (Serialized as the struct orders its fields: the table before the images.)
        let text = String::from_utf8(sample().to_json()).expect("utf8");
        let null_after = text.replace(r#""after":{"id":1001,"status":"paid"}"#, r#""after":null"#);
        assert_ne!(null_after, text);
        let lazy =
            LazyChangeEvent::from_json(null_after.as_bytes(), Some(&orders_key())).expect("parse");
        assert_eq!(lazy.images().expect("images").1, None, "null is no image");
        assert_eq!(lazy.keys.expect("picked").1, None);
    }
}
