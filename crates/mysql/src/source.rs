//! The materializer's [`RowSource`] over MySQL: one pool per logical database,
//! prepared statements with bound parameters, rows converted to core [`Row`]s.

use crate::{MySqlError, opts};
use mee_core::AppConfig;
use mee_core::materialize::{ColumnMeta, Row, RowSource};
use mee_core::value::{Cell, ColumnKind};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Params, Pool, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// (schema, table) → names of its JSON columns.
type JsonColumns = HashMap<(String, String), Arc<HashSet<String>>>;

/// Connection pools for the logical databases a handler uses.
#[derive(Debug)]
pub struct MySqlSource {
    pools: HashMap<String, Pool>,
    /// (schema, table) → columns that hold JSON. MariaDB stores JSON as LONGTEXT with
    /// a `json_valid` check, which result metadata does not show.
    json_columns: Mutex<JsonColumns>,
}

impl MySqlSource {
    /// Pools for `databases` (logical names from the app config's `[mysql.*]`).
    pub fn new<'a>(
        cfg: &AppConfig,
        databases: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, MySqlError> {
        let mut pools = HashMap::new();
        for db in databases {
            if pools.contains_key(db) {
                continue;
            }
            let mysql = cfg
                .mysql_for(db)
                .map_err(|message| MySqlError::Config { message })?;
            pools.insert(db.to_string(), Pool::new(opts(db, mysql)?));
        }
        Ok(Self {
            pools,
            json_columns: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self, database: &str) -> Result<&Pool, MySqlError> {
        self.pools.get(database).ok_or_else(|| MySqlError::Config {
            message: format!("no pool for database `{database}`"),
        })
    }

    /// [`crate::snapshot_position`] on `database`'s server.
    pub async fn snapshot_position(
        &self,
        database: &str,
    ) -> Result<Option<mee_core::BinlogPosition>, MySqlError> {
        let mut conn = self
            .pool(database)?
            .get_conn()
            .await
            .map_err(|e| MySqlError::query(database, "get a connection", e))?;
        crate::snapshot_position(&mut conn, database).await
    }

    /// Close every pool's connections.
    pub async fn close(self) {
        for (_, pool) in self.pools {
            let _ = pool.disconnect().await;
        }
    }

    async fn json_columns_of(
        &self,
        conn: &mut mysql_async::Conn,
        schema: &str,
        table: &str,
    ) -> Result<Arc<HashSet<String>>, MySqlError> {
        let key = (schema.to_string(), table.to_string());
        if let Some(cols) = self.lock().get(&key) {
            return Ok(cols.clone());
        }
        let cols = json_columns(conn, schema, table).await;
        let cols = Arc::new(cols);
        self.lock().insert(key, cols.clone());
        Ok(cols)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JsonColumns> {
        self.json_columns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RowSource for MySqlSource {
    type Error = MySqlError;

    async fn query(
        &self,
        database: &str,
        sql: &str,
        params: Vec<Cell>,
    ) -> Result<Vec<Row>, MySqlError> {
        let pool = self.pool(database)?;
        let mut conn = pool
            .get_conn()
            .await
            .map_err(|e| MySqlError::query(database, "get a connection", e))?;
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params.into_iter().map(to_mysql).collect())
        };
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(|e| MySqlError::query(database, format!("statement `{sql}`"), e))?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let columns = first.columns();
        let mut meta = Vec::with_capacity(columns.len());
        for c in columns.iter() {
            let mut kind = column_kind(c);
            if kind == ColumnKind::Text && !c.org_table_str().is_empty() {
                let json = self
                    .json_columns_of(&mut conn, &c.schema_str(), &c.org_table_str())
                    .await?;
                if json.contains(c.org_name_str().as_ref()) {
                    kind = ColumnKind::Json;
                }
            }
            meta.push(ColumnMeta {
                name: c.name_str().into_owned(),
                kind,
            });
        }
        let meta: Arc<[ColumnMeta]> = meta.into();
        Ok(rows
            .into_iter()
            .map(|r| Row {
                columns: meta.clone(),
                cells: r.unwrap().into_iter().map(from_mysql).collect(),
            })
            .collect())
    }
}

/// Columns of `schema.table` stored as text but holding JSON: MariaDB's JSON type is
/// LONGTEXT with a `json_valid` check, which result and binlog metadata do not show.
/// MySQL's CHECK_CONSTRAINTS has no TABLE_NAME (its JSON type shows in the metadata
/// anyway): an error there means "none".
pub async fn json_columns(
    conn: &mut mysql_async::Conn,
    schema: &str,
    table: &str,
) -> HashSet<String> {
    let clauses: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
        .unwrap_or_default();
    clauses
        .iter()
        .filter_map(|c| json_valid_column(c))
        .collect()
}

/// `json_valid(`col`)` → `col`.
fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause
        .trim()
        .strip_prefix("json_valid(")?
        .strip_suffix(')')?;
    Some(inner.trim().trim_matches('`').to_string())
}

/// How values of a result column convert, from its protocol metadata.
pub fn column_kind(c: &Column) -> ColumnKind {
    let flags = c.flags();
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_LONGLONG => {
            if unsigned {
                ColumnKind::UInt
            } else {
                ColumnKind::Int
            }
        }
        ColumnType::MYSQL_TYPE_FLOAT => ColumnKind::Float,
        ColumnType::MYSQL_TYPE_DOUBLE => ColumnKind::Double,
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal,
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => ColumnKind::Date,
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => {
            ColumnKind::DateTime {
                fsp: c.decimals().min(6),
            }
        }
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => {
            ColumnKind::Timestamp {
                fsp: c.decimals().min(6),
            }
        }
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => ColumnKind::Time {
            fsp: c.decimals().min(6),
        },
        ColumnType::MYSQL_TYPE_YEAR => ColumnKind::Year,
        ColumnType::MYSQL_TYPE_BIT => ColumnKind::Bit,
        ColumnType::MYSQL_TYPE_JSON => ColumnKind::Json,
        ColumnType::MYSQL_TYPE_ENUM => ColumnKind::Enum,
        ColumnType::MYSQL_TYPE_SET => ColumnKind::Set,
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if flags.contains(ColumnFlags::ENUM_FLAG) {
                ColumnKind::Enum
            } else if flags.contains(ColumnFlags::SET_FLAG) {
                ColumnKind::Set
            } else if c.character_set() == BINARY_CHARSET {
                ColumnKind::Binary
            } else {
                ColumnKind::Text
            }
        }
        _ => ColumnKind::Other,
    }
}

/// Character set number 63: `binary` (BINARY, VARBINARY, BLOB).
const BINARY_CHARSET: u16 = 63;

pub(crate) fn from_mysql(v: Value) -> Cell {
    match v {
        Value::NULL => Cell::Null,
        Value::Bytes(b) => Cell::Bytes(b),
        Value::Int(i) => Cell::Int(i),
        Value::UInt(u) => Cell::UInt(u),
        Value::Float(f) => Cell::Float(f),
        Value::Double(d) => Cell::Double(d),
        Value::Date(year, month, day, hour, minute, second, micro) => Cell::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micro,
        },
        Value::Time(negative, days, hours, minutes, seconds, micro) => Cell::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micro,
        },
    }
}

pub(crate) fn to_mysql(c: Cell) -> Value {
    match c {
        Cell::Null => Value::NULL,
        Cell::Int(i) => Value::Int(i),
        Cell::UInt(u) => Value::UInt(u),
        Cell::Float(f) => Value::Float(f),
        Cell::Double(d) => Value::Double(d),
        Cell::Bytes(b) => Value::Bytes(b),
        Cell::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micro,
        } => Value::Date(year, month, day, hour, minute, second, micro),
        Cell::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micro,
        } => Value::Time(negative, days, hours, minutes, seconds, micro),
        Cell::Json(v) => Value::Bytes(v.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_check_clauses() {
        assert_eq!(
            json_valid_column("json_valid(`attrs`)").as_deref(),
            Some("attrs")
        );
        assert_eq!(json_valid_column("`a` > 0"), None);
    }

    #[test]
    fn cells_round_trip_through_mysql_values() {
        for c in [
            Cell::Null,
            Cell::Int(-5),
            Cell::UInt(u64::MAX),
            Cell::Bytes(b"x'; --".to_vec()),
            Cell::Double(1.5),
        ] {
            assert_eq!(from_mysql(to_mysql(c.clone())), c);
        }
    }
}
