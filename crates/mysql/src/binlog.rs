//! Decoding binlog row images into the same [`Row`]s (cells and column kinds) the
//! materializer reads from queries, so both convert to identical JSON.

use crate::source::{column_kind, from_mysql};
use mee_core::materialize::{ColumnMeta, Row};
use mee_core::value::{Cell, ColumnKind};
use mysql_async::Value;
use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use std::collections::HashSet;
use std::io;
use std::sync::Arc;

/// Decodes the rows of one table map (one table, one shape).
#[derive(Debug)]
pub struct TableDecoder {
    /// ENUM value names per column (by column index), from the table map's metadata.
    enums: Vec<Option<Vec<String>>>,
    /// SET member names per column.
    sets: Vec<Option<Vec<String>>>,
    /// Fractional-second digits per column (DATETIME2, TIME2, TIMESTAMP2).
    fsp: Vec<u8>,
    /// Declared byte length of CHAR/BINARY columns: the binlog drops BINARY's trailing
    /// zero bytes, which queries return.
    fixed_len: Vec<Option<usize>>,
    /// Columns stored as text that hold JSON (MariaDB's JSON alias).
    json_columns: HashSet<String>,
    /// Column list, built from the first row (it carries names, flags, charsets).
    columns: Option<Arc<[ColumnMeta]>>,
    key: Vec<usize>,
}

impl TableDecoder {
    /// Read the table map's metadata. `json_columns`: text columns holding JSON.
    pub fn new(tme: &TableMapEvent<'_>, json_columns: HashSet<String>) -> io::Result<Self> {
        let n = tme.columns_count() as usize;
        let mut fsp = vec![0u8; n];
        let mut fixed_len = vec![None; n];
        let mut enum_cols = Vec::new();
        let mut set_cols = Vec::new();
        for (i, slot) in fsp.iter_mut().enumerate() {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match ty {
                Some(
                    ColumnType::MYSQL_TYPE_DATETIME2
                    | ColumnType::MYSQL_TYPE_TIME2
                    | ColumnType::MYSQL_TYPE_TIMESTAMP2,
                ) => {
                    *slot = tme
                        .get_column_metadata(i)
                        .and_then(|m| m.first().copied())
                        .unwrap_or(0)
                }
                Some(ColumnType::MYSQL_TYPE_STRING) => {
                    fixed_len[i] = tme.get_column_metadata(i).and_then(string_length);
                }
                Some(ColumnType::MYSQL_TYPE_ENUM) => enum_cols.push(i),
                Some(ColumnType::MYSQL_TYPE_SET) => set_cols.push(i),
                _ => {}
            }
        }
        let mut enums = vec![None; n];
        let mut sets = vec![None; n];
        for field in tme.iter_optional_meta() {
            match field? {
                OptionalMetadataField::EnumStrValue(values) => {
                    for (col, v) in enum_cols.iter().zip(values.iter_values()) {
                        enums[*col] =
                            Some(v?.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                OptionalMetadataField::SetStrValue(values) => {
                    for (col, v) in set_cols.iter().zip(values.iter_values()) {
                        sets[*col] =
                            Some(v?.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            enums,
            sets,
            fsp,
            fixed_len,
            json_columns,
            columns: None,
            key: Vec::new(),
        })
    }

    /// One row image as a [`Row`].
    pub fn decode(&mut self, row: BinlogRow) -> io::Result<Row> {
        let columns = match &self.columns {
            Some(c) => c.clone(),
            None => {
                let mut meta = Vec::with_capacity(row.len());
                for (i, c) in row.columns_ref().iter().enumerate() {
                    let name = c.name_str().into_owned();
                    if name.starts_with('@') {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the binlog carries no column names: set binlog_row_metadata=FULL",
                        ));
                    }
                    let kind = match column_kind(c) {
                        ColumnKind::DateTime { .. } => ColumnKind::DateTime { fsp: self.fsp[i] },
                        ColumnKind::Time { .. } => ColumnKind::Time { fsp: self.fsp[i] },
                        ColumnKind::Timestamp { .. } => ColumnKind::Timestamp { fsp: self.fsp[i] },
                        ColumnKind::Text if self.json_columns.contains(&name) => ColumnKind::Json,
                        k => k,
                    };
                    if c.flags().contains(ColumnFlags::PRI_KEY_FLAG) {
                        self.key.push(i);
                    }
                    meta.push(ColumnMeta { name, kind });
                }
                let columns: Arc<[ColumnMeta]> = meta.into();
                self.columns = Some(columns.clone());
                columns
            }
        };
        let mut cells = Vec::with_capacity(columns.len());
        for (i, value) in row.unwrap().into_iter().enumerate() {
            let kind = columns.get(i).map_or(ColumnKind::Other, |c| c.kind);
            cells.push(self.cell(i, kind, value)?);
        }
        Ok(Row { columns, cells })
    }

    /// Indexes of the primary key columns (all columns when the table has none).
    pub fn key_columns(&self) -> Vec<usize> {
        match (&self.columns, self.key.is_empty()) {
            (Some(c), true) => (0..c.len()).collect(),
            _ => self.key.clone(),
        }
    }

    fn cell(&self, i: usize, kind: ColumnKind, value: BinlogValue<'_>) -> io::Result<Cell> {
        let value = match value {
            BinlogValue::Jsonb(j) => {
                let v = serde_json::Value::try_from(j)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                return Ok(Cell::Json(v));
            }
            BinlogValue::JsonDiff(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "partial JSON update in the binlog: set binlog_row_value_options='' on the source",
                ));
            }
            BinlogValue::Value(v) => v,
        };
        Ok(match (kind, value) {
            (_, Value::NULL) => Cell::Null,
            (ColumnKind::Timestamp { .. }, Value::Int(secs)) => Cell::from_unix(secs, 0),
            (ColumnKind::Timestamp { .. }, Value::Bytes(b)) => {
                let text = String::from_utf8_lossy(&b);
                let (secs, frac) = text.split_once('.').unwrap_or((&text, "0"));
                let micro = format!("{frac:0<6}")[..6].parse().unwrap_or(0);
                Cell::from_unix(secs.parse().unwrap_or(0), micro)
            }
            (ColumnKind::Enum, Value::Int(idx)) => {
                let names = self.enums.get(i).and_then(Option::as_ref);
                let name = usize::try_from(idx)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| names.and_then(|v| v.get(n)));
                Cell::Bytes(name.map(|s| s.as_bytes().to_vec()).unwrap_or_default())
            }
            (ColumnKind::Set, Value::Bytes(mask)) => {
                let names = self.sets.get(i).and_then(Option::as_ref);
                let bits = mask
                    .iter()
                    .rev()
                    .fold(0u64, |acc, b| acc << 8 | u64::from(*b));
                let members: Vec<&str> = names
                    .map(|v| {
                        v.iter()
                            .enumerate()
                            .filter(|(n, _)| bits >> n & 1 == 1)
                            .map(|(_, s)| s.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                Cell::Bytes(members.join(",").into_bytes())
            }
            // The binlog gives YEAR as text, 1900 standing for the zero year.
            (ColumnKind::Year, Value::Bytes(b)) => {
                let y: i64 = String::from_utf8_lossy(&b).parse().unwrap_or(0);
                Cell::Int(if y == 1900 { 0 } else { y })
            }
            (ColumnKind::Binary, Value::Bytes(mut b)) => {
                if let Some(n) = self.fixed_len.get(i).copied().flatten()
                    && b.len() < n
                {
                    b.resize(n, 0);
                }
                Cell::Bytes(b)
            }
            (_, v) => from_mysql(v),
        })
    }
}

/// The declared length of a CHAR/BINARY column from its two metadata bytes (the
/// encoding mysql_common and the server use for MYSQL_TYPE_STRING).
fn string_length(meta: &[u8]) -> Option<usize> {
    let (b0, b1) = (usize::from(*meta.first()?), usize::from(*meta.get(1)?));
    Some(if b0 & 0x30 != 0x30 {
        b1 | (((b0 & 0x30) ^ 0x30) << 4)
    } else {
        b1
    })
}
