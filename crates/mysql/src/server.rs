use crate::MySqlError;
use mee_core::BinlogPosition;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// What a source server is and how its binlog is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `SELECT VERSION()`, e.g. `10.11.14-MariaDB-0+deb12u2-log`.
    pub version: String,
    pub is_mariadb: bool,
    pub log_bin: bool,
    pub binlog_format: String,
    pub binlog_row_image: String,
    /// `FULL` when the binlog carries column names (MySQL 8 / MariaDB 10.5+).
    pub binlog_row_metadata: Option<String>,
    pub server_id: u32,
}

/// Read the server's version and binlog settings.
pub async fn server_info(conn: &mut Conn, database: &str) -> Result<ServerInfo, MySqlError> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| MySqlError::query(database, "SELECT VERSION()", e))?;
    let version = version.unwrap_or_default();
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin','binlog_format','binlog_row_image','binlog_row_metadata','server_id')",
        )
        .await
        .map_err(|e| MySqlError::query(database, "SHOW GLOBAL VARIABLES", e))?;
    let get = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    Ok(ServerInfo {
        is_mariadb: version.to_ascii_lowercase().contains("mariadb"),
        version,
        log_bin: get("log_bin").is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1"),
        binlog_format: get("binlog_format").unwrap_or_default(),
        binlog_row_image: get("binlog_row_image").unwrap_or_default(),
        binlog_row_metadata: get("binlog_row_metadata"),
        server_id: get("server_id").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// The server's current binlog write position (end of the last written event).
///
/// `SHOW MASTER STATUS` on MariaDB and MySQL before 8.4; MySQL 8.4 removed it in favour
/// of `SHOW BINARY LOG STATUS`, tried when the first is a syntax error.
pub async fn binlog_position(
    conn: &mut Conn,
    database: &str,
) -> Result<BinlogPosition, MySqlError> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(s)) if s.code == 1064 => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| MySqlError::query(database, "SHOW BINARY LOG STATUS", e))?,
        Err(e) => return Err(MySqlError::query(database, "SHOW MASTER STATUS", e)),
    };
    let row = row.ok_or_else(|| {
        MySqlError::query(
            database,
            "SHOW MASTER STATUS",
            mysql_async::Error::Other("binary logging is off (log_bin=OFF)".into()),
        )
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let offset: u64 = row.get(1).unwrap_or_default();
    Ok(BinlogPosition::new(file, offset))
}

/// The binlog position of a consistent snapshot taken now: every transaction before it
/// in the binlog is visible to any read that starts afterwards, and none after it was
/// visible to the snapshot. MariaDB reports it (`Binlog_snapshot_file`/`_position` after
/// `START TRANSACTION WITH CONSISTENT SNAPSHOT`); `None` from servers that do not
/// (MySQL) or with binary logging off.
///
/// Unlike [`binlog_position`], it never counts a transaction that is in the binlog but
/// not yet committed in the storage engine.
pub async fn snapshot_position(
    conn: &mut Conn,
    database: &str,
) -> Result<Option<BinlogPosition>, MySqlError> {
    let what = "START TRANSACTION WITH CONSISTENT SNAPSHOT; SHOW STATUS LIKE 'binlog_snapshot_%'";
    let err = |e| MySqlError::query(database, what, e);
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(err)?;
    let status: Result<Vec<(String, String)>, _> =
        conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await;
    // Ends the snapshot whatever happened; a connection left in a transaction would
    // hold old row versions.
    conn.query_drop("COMMIT").await.map_err(err)?;
    let status = status.map_err(err)?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(offset)) = (
        get("Binlog_snapshot_file").filter(|f| !f.is_empty()),
        get("Binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
    ) else {
        return Ok(None);
    };
    Ok(Some(BinlogPosition::new(file, offset)))
}
