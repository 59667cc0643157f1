//! Reading one database's changes from the binlog as a replica.
//!
//! Yields change events in binlog order, a commit marker after each transaction (the
//! only places it is safe to resume), and heartbeats while the source is idle.

use crate::ListenError;
use futures_util::StreamExt;
use mee_core::BinlogPosition;
use mee_core::config::MySqlConfig;
use mee_core::event::{ChangeEvent, ChangeKind, EVENT_FORMAT};
use mee_core::materialize::Row;
use mee_core::value::to_json;
use mee_mysql::binlog::TableDecoder;
use mee_mysql::mysql_async::binlog::EventType;
use mee_mysql::mysql_async::binlog::events::{EventData, RowsEventData};
use mee_mysql::mysql_async::prelude::Queryable;
use mee_mysql::mysql_async::{BinlogStream, BinlogStreamRequest, Pool};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// What the binlog said next.
#[derive(Debug)]
pub enum Item {
    Event(Box<ChangeEvent>),
    /// A transaction ended; after it, reading may resume at `next`.
    Commit {
        next: BinlogPosition,
        commit_ts_ms: u64,
    },
    /// The source has nothing more to send for now.
    Heartbeat,
}

pub struct Reader {
    stream: BinlogStream,
    database: String,
    schema: String,
    /// Current binlog file (from rotate events).
    file: String,
    /// Decoders by table id, rebuilt at every table map.
    decoders: HashMap<u64, TableDecoder>,
    /// For MariaDB's JSON-as-LONGTEXT columns.
    pool: Pool,
    json_cache: HashMap<String, std::collections::HashSet<String>>,
    index_in_tx: u32,
    /// GTID of the transaction being read, when the server sends one.
    gtid: Option<String>,
    queue: std::collections::VecDeque<Item>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("database", &self.database)
            .field("file", &self.file)
            .finish()
    }
}

/// How often an idle source sends a heartbeat.
pub(crate) const HEARTBEAT_NS: u64 = 1_000_000_000;

impl Reader {
    /// Register as replica `server_id` and request the binlog from `from`.
    pub async fn open(
        database: &str,
        cfg: &MySqlConfig,
        server_id: u32,
        from: &BinlogPosition,
    ) -> Result<Self, ListenError> {
        let mut conn = mee_mysql::connect(database, cfg).await?;
        // Heartbeats while idle; on MariaDB, GTID events as they are (capability 4,
        // "GTID aware"), instead of being rewritten as BEGIN queries. MySQL ignores the
        // MariaDB variable.
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {HEARTBEAT_NS}, @mariadb_slave_capability = 4"
        ))
        .await
        .map_err(|e| ListenError::mysql(database, "set replication session variables", e))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.offset);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| ListenError::mysql(database, "request the binlog", e))?;
        Ok(Self {
            stream,
            database: database.to_string(),
            schema: cfg.schema_name(database).to_string(),
            file: from.file.clone(),
            decoders: HashMap::new(),
            pool: mee_mysql::pool(database, cfg)?,
            json_cache: HashMap::new(),
            index_in_tx: 0,
            gtid: None,
            queue: Default::default(),
        })
    }

    /// The next item, waiting for the source when there is none.
    pub async fn next(&mut self) -> Result<Item, ListenError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(item);
            }
            let event = match self.stream.next().await {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    return Err(ListenError::mysql(&self.database, "read the binlog", e));
                }
                None => {
                    return Err(ListenError::StreamEnded {
                        database: self.database.clone(),
                    });
                }
            };
            let header = event.header();
            let end = u64::from(header.log_pos());
            let start = end.saturating_sub(u64::from(header.event_size()));
            let ts_ms = u64::from(header.timestamp()) * 1000;
            if header.event_type().ok() == Some(EventType::HEARTBEAT_EVENT) {
                return Ok(Item::Heartbeat);
            }
            // MariaDB event types mysql_common does not decode: 160 annotate rows,
            // 161 binlog checkpoint, 162 GTID (starts a transaction), 163 GTID list.
            match header.event_type_raw() {
                MARIADB_GTID_EVENT => {
                    self.gtid = mariadb_gtid(event.data(), header.server_id());
                    self.index_in_tx = 0;
                    continue;
                }
                160 | 161 | 163 => continue,
                _ => {}
            }
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                // Event types mysql_common does not decode (e.g. MariaDB annotations).
                Ok(None) | Err(_) => continue,
            };
            let mut at = BinlogPosition::new(self.file.clone(), start);
            at.gtid.clone_from(&self.gtid);
            match data {
                EventData::RotateEvent(r) => {
                    self.file = clean_file_name(&r.name(), &self.file);
                }
                EventData::QueryEvent(q) => {
                    let sql = q.query().trim().to_string();
                    let upper = sql.to_ascii_uppercase();
                    tracing::debug!(at = %at, query = %truncate(&sql, 80), "query event");
                    if upper == "BEGIN" {
                        self.index_in_tx = 0;
                    } else if upper == "COMMIT" {
                        self.commit(end, ts_ms);
                    } else if is_ddl(&upper) {
                        // DDL: its own transaction. Ours if run in our schema or naming it.
                        let schema = q.schema().to_string();
                        if let Some(table) = ddl_table(&sql, &schema, &self.schema) {
                            self.json_cache.remove(&table);
                            let kind = if upper.starts_with("TRUNCATE") {
                                ChangeKind::Truncate
                            } else {
                                ChangeKind::Ddl
                            };
                            let e = self.event(
                                kind,
                                table,
                                Map::new(),
                                None,
                                None,
                                Some(sql),
                                at,
                                ts_ms,
                            )?;
                            self.queue.push_back(Item::Event(Box::new(e)));
                        }
                        self.commit(end, ts_ms);
                    }
                }
                EventData::XidEvent(_) => self.commit(end, ts_ms),
                EventData::TableMapEvent(tme) if tme.database_name() == self.schema => {
                    let table = tme.table_name().into_owned();
                    let json = self.json_columns(&table).await?;
                    let decoder =
                        TableDecoder::new(&tme, json).map_err(|e| ListenError::Decode {
                            position: at.to_string(),
                            message: e.to_string(),
                        })?;
                    self.decoders.insert(tme.table_id(), decoder);
                }
                EventData::RowsEvent(rows) => self.rows(rows, at, ts_ms)?,
                _ => {}
            }
        }
    }

    fn commit(&mut self, end: u64, ts_ms: u64) {
        self.index_in_tx = 0;
        let mut next = BinlogPosition::new(self.file.clone(), end);
        // The last committed transaction's GTID, for the operator.
        next.gtid = self.gtid.take();
        self.queue.push_back(Item::Commit {
            next,
            commit_ts_ms: ts_ms,
        });
    }

    fn rows(
        &mut self,
        rows: RowsEventData<'_>,
        at: BinlogPosition,
        ts_ms: u64,
    ) -> Result<(), ListenError> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Ok(());
        };
        if tme.database_name() != self.schema {
            return Ok(());
        }
        let table = tme.table_name().into_owned();
        let Some(decoder) = self.decoders.get_mut(&rows.table_id()) else {
            return Ok(());
        };
        let kind = match rows {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                ChangeKind::Insert
            }
            RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => ChangeKind::Update,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                ChangeKind::Delete
            }
        };
        let decode_err = |e: std::io::Error| ListenError::Decode {
            position: at.to_string(),
            message: e.to_string(),
        };
        let mut decoded = Vec::new();
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(decode_err)?;
            let before = before
                .map(|r| decoder.decode(r))
                .transpose()
                .map_err(decode_err)?;
            let after = after
                .map(|r| decoder.decode(r))
                .transpose()
                .map_err(decode_err)?;
            decoded.push((before, after));
        }
        let key_columns = decoder.key_columns();
        for (before, after) in decoded {
            let image = after
                .as_ref()
                .or(before.as_ref())
                .expect("a row change has an image");
            let mut key = Map::new();
            for &i in &key_columns {
                let c = &image.columns[i];
                key.insert(c.name.clone(), to_json(c.kind, &image.cells[i], false));
            }
            let e = self.event(
                kind,
                table.clone(),
                key,
                before.as_ref().map(json_row),
                after.as_ref().map(json_row),
                None,
                at.clone(),
                ts_ms,
            )?;
            self.queue.push_back(Item::Event(Box::new(e)));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        kind: ChangeKind,
        table: String,
        key: Map<String, Value>,
        before: Option<Map<String, Value>>,
        after: Option<Map<String, Value>>,
        statement: Option<String>,
        position: BinlogPosition,
        commit_ts_ms: u64,
    ) -> Result<ChangeEvent, ListenError> {
        let version = position.version().map_err(|e| ListenError::Decode {
            position: position.to_string(),
            message: e.to_string(),
        })?;
        let index_in_tx = self.index_in_tx;
        self.index_in_tx += 1;
        Ok(ChangeEvent {
            format: EVENT_FORMAT,
            database: self.database.clone(),
            table,
            kind,
            key,
            before,
            after,
            statement,
            position,
            version,
            commit_ts_ms,
            index_in_tx,
        })
    }

    async fn json_columns(
        &mut self,
        table: &str,
    ) -> Result<std::collections::HashSet<String>, ListenError> {
        if let Some(c) = self.json_cache.get(table) {
            return Ok(c.clone());
        }
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(|e| ListenError::mysql(&self.database, "connect for table metadata", e))?;
        let cols = mee_mysql::json_columns(&mut conn, &self.schema, table).await;
        self.json_cache.insert(table.to_string(), cols.clone());
        Ok(cols)
    }

    pub async fn close(self) {
        let _ = self.stream.close().await;
        let _ = self.pool.disconnect().await;
    }
}

fn json_row(row: &Row) -> Map<String, Value> {
    row.columns
        .iter()
        .zip(&row.cells)
        .map(|(c, cell)| (c.name.clone(), to_json(c.kind, cell, false)))
        .collect()
}

/// MariaDB's GTID event type.
const MARIADB_GTID_EVENT: u8 = 162;

/// `domain-server-sequence` from a MariaDB GTID event: sequence (8 bytes LE), domain
/// (4 bytes LE), flags; the server id is the event's.
fn mariadb_gtid(data: &[u8], server_id: u32) -> Option<String> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    Some(format!("{domain}-{server_id}-{seq}"))
}

/// `mariadb-bin.000001` from a rotate event's name, which may carry trailing bytes
/// (the fake rotate event at the start of a stream comes with its checksum). Binlog
/// names are `<base>.<number>` with a fixed number width, as in `known` (the file we
/// asked for).
pub(crate) fn clean_file_name(name: &str, known: &str) -> String {
    if let Some((base, number)) = known.rsplit_once('.') {
        let prefix = format!("{base}.");
        if let Some(rest) = name.strip_prefix(&prefix) {
            let digits: String = rest.chars().take(number.len()).collect();
            if digits.len() == number.len() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return format!("{prefix}{digits}");
            }
        }
    }
    name.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect()
}

/// Statements that change a table's shape or contents outside row events. Other
/// query events (annotations of row events, statements on other engines) are not
/// transaction boundaries.
fn is_ddl(upper: &str) -> bool {
    ["ALTER ", "CREATE ", "DROP ", "RENAME ", "TRUNCATE "]
        .iter()
        .any(|k| upper.starts_with(k))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The table a DDL statement concerns, when it concerns our schema: the statement runs
/// in our schema with an unqualified table, or qualifies the table with our schema.
/// `None` for DDL elsewhere. Unparsed forms touching our schema give `""`.
fn ddl_table(sql: &str, current_schema: &str, ours: &str) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    // The word after TABLE (skipping IF [NOT] EXISTS).
    let after = upper
        .iter()
        .position(|w| w == "TABLE")
        .or_else(|| (upper.first().map(String::as_str) == Some("TRUNCATE")).then_some(0));
    let name = after.and_then(|i| {
        let mut j = i + 1;
        while j < upper.len() && matches!(upper[j].as_str(), "IF" | "NOT" | "EXISTS") {
            j += 1;
        }
        words.get(j).map(|w| w.trim_end_matches(';').to_string())
    });
    let unquote = |s: &str| s.trim_matches('`').to_string();
    match name {
        Some(n) => match n.split_once('.') {
            Some((schema, table)) if unquote(schema) == ours => Some(unquote(table)),
            Some(_) => None,
            None if current_schema == ours => Some(unquote(&n)),
            None => None,
        },
        None if current_schema == ours || sql.contains(&format!("`{ours}`")) => Some(String::new()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_names_lose_trailing_bytes() {
        let known = "mariadb-bin.000001";
        assert_eq!(
            clean_file_name("mariadb-bin.000001F\u{fffd}1\"", known),
            "mariadb-bin.000001"
        );
        assert_eq!(
            clean_file_name("mariadb-bin.000005P\u{fffd}.\u{fffd}", known),
            "mariadb-bin.000005"
        );
        assert_eq!(
            clean_file_name("mariadb-bin.00000712", known),
            "mariadb-bin.000007"
        );
        assert_eq!(
            clean_file_name("mysql-bin.000042", "mysql-bin.000041"),
            "mysql-bin.000042"
        );
        // As MariaDB 10.11 sends it at the start of a GTID dump: the name, then CRC32.
        assert_eq!(
            clean_file_name("mariadb-bin.000011\u{13}\rhM", "mariadb-bin.000011"),
            "mariadb-bin.000011"
        );
        // The checksum's first byte may be a digit: the template's width stops it.
        assert_eq!(
            clean_file_name("mariadb-bin.0000117\rhM", "mariadb-bin.000003"),
            "mariadb-bin.000011"
        );
    }

    #[test]
    fn mariadb_gtids() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend_from_slice(&7u32.to_le_bytes());
        data.push(0);
        assert_eq!(mariadb_gtid(&data, 1).as_deref(), Some("7-1-42"));
        assert_eq!(mariadb_gtid(&data[..5], 1), None);
    }

    #[test]
    fn ddl_tables() {
        assert_eq!(
            ddl_table("ALTER TABLE items ADD c INT", "shop", "shop").as_deref(),
            Some("items")
        );
        assert_eq!(
            ddl_table("TRUNCATE TABLE `shop`.`items`", "other", "shop").as_deref(),
            Some("items")
        );
        assert_eq!(
            ddl_table("DROP TABLE IF EXISTS items", "shop", "shop").as_deref(),
            Some("items")
        );
        assert_eq!(
            ddl_table("ALTER TABLE items ADD c INT", "other", "shop"),
            None
        );
        assert_eq!(
            ddl_table("CREATE INDEX i ON t (a)", "shop", "shop").as_deref(),
            Some("")
        );
        assert_eq!(
            ddl_table("truncate items", "shop", "shop").as_deref(),
            Some("items")
        );
    }
}
