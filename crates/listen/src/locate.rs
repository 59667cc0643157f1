//! `--from <gtid>`: ask the source where the first transaction after a GTID starts.
//!
//! `listen` connects as a replica that has applied the GTID(s) and reads until the
//! server shows where it goes on: the start of the next transaction (its GTID event),
//! or, when nothing follows yet, the end of the binlog (the heartbeat's position). It
//! then streams by file:offset from there, as after any restart.

use crate::ListenError;
use crate::gtid::GtidSet;
use crate::reader::{HEARTBEAT_NS, clean_file_name};
use futures_util::StreamExt;
use mee_core::BinlogPosition;
use mee_core::config::MySqlConfig;
use mee_mysql::mysql_async::binlog::events::EventData;
use mee_mysql::mysql_async::prelude::Queryable;
use mee_mysql::mysql_async::{BinlogStream, BinlogStreamRequest};

/// The source `listen` reads, as far as locating a GTID needs it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub database: &'a str,
    pub cfg: &'a MySqlConfig,
    pub server_id: u32,
    pub is_mariadb: bool,
}

/// Event types that start a transaction: MariaDB's GTID event, MySQL's GTID and
/// anonymous GTID events.
const MARIADB_GTID: u8 = 162;
const MYSQL_GTID: u8 = 33;
const MYSQL_ANONYMOUS_GTID: u8 = 34;
const ROTATE: u8 = 4;
const HEARTBEAT: u8 = 27;

/// The position of the first transaction after `gtid`. `name_like` is one of the
/// source's binlog file names: rotate events at the start of a stream carry trailing
/// checksum bytes, and the name's form (base, digits) tells where the name ends.
pub async fn locate(
    source: Source<'_>,
    gtid: &GtidSet,
    name_like: &str,
) -> Result<BinlogPosition, ListenError> {
    let mut conn = mee_mysql::connect(source.database, source.cfg).await?;
    let sids = gtid.sids();
    let request = match gtid {
        GtidSet::MariaDb(_) if source.is_mariadb => {
            // Bound, not spliced: the server parses the GTID list itself.
            let set = "SET @master_heartbeat_period = ?, @mariadb_slave_capability = 4, \
                       @slave_connect_state = ?";
            conn.exec_drop(set, (HEARTBEAT_NS, gtid.to_string()))
                .await
                .map_err(|e| rejected(source.database, gtid, "set @slave_connect_state", e))?;
            BinlogStreamRequest::new(source.server_id)
        }
        GtidSet::MySql(_) if !source.is_mariadb => {
            conn.exec_drop("SET @master_heartbeat_period = ?", (HEARTBEAT_NS,))
                .await
                .map_err(|e| ListenError::mysql(source.database, "set the heartbeat", e))?;
            BinlogStreamRequest::new(source.server_id)
                .with_gtid()
                .with_gtid_set(sids)
        }
        _ => return Err(wrong_flavor(gtid, source.is_mariadb)),
    };
    // No file: the server finds it from the GTID and names it in a rotate event.
    let request = request.with_filename(b"").with_pos(4);
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(|e| rejected(source.database, gtid, "request the binlog", e))?;
    let found = first_position(&mut stream, source.database, name_like)
        .await
        .map_err(|e| match e {
            Located::Server(e) => rejected(source.database, gtid, "read the binlog", e),
            Located::Other(e) => e,
        });
    let _ = stream.close().await;
    let position = found?;
    tracing::info!(gtid = %gtid, at = %position, "the source starts after the GTID here");
    Ok(position)
}

enum Located {
    /// The server's answer to the GTID request (it may refuse it here).
    Server(mee_mysql::mysql_async::Error),
    Other(ListenError),
}

/// Read until the position of the first transaction the server sends, or of the end
/// of the binlog when it has none to send (it then sends heartbeats).
async fn first_position(
    stream: &mut BinlogStream,
    database: &str,
    name_like: &str,
) -> Result<BinlogPosition, Located> {
    let mut file = String::new();
    loop {
        let event = match stream.next().await {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(Located::Server(e)),
            None => {
                return Err(Located::Other(ListenError::StreamEnded {
                    database: database.to_string(),
                }));
            }
        };
        let header = event.header();
        let end = u64::from(header.log_pos());
        let at = match header.event_type_raw() {
            ROTATE => {
                if let Ok(Some(EventData::RotateEvent(r))) = event.read_data() {
                    file = clean_file_name(&r.name(), name_like);
                }
                continue;
            }
            MARIADB_GTID | MYSQL_GTID | MYSQL_ANONYMOUS_GTID => {
                end.saturating_sub(u64::from(header.event_size()))
            }
            // MySQL 8's v2 heartbeats (type 41) carry the position elsewhere: wait for
            // the next transaction there.
            HEARTBEAT if end > 0 => end,
            _ => continue,
        };
        if file.is_empty() {
            return Err(Located::Other(ListenError::Decode {
                position: format!("offset {at}"),
                message: "the source sent events before naming the binlog file".into(),
            }));
        }
        return Ok(BinlogPosition::new(file, at));
    }
}

/// A server error on the GTID request is the server refusing the GTID (not in its
/// binlog, purged, malformed), except for the errors any connection may meet.
fn rejected(
    database: &str,
    gtid: &GtidSet,
    what: &'static str,
    e: mee_mysql::mysql_async::Error,
) -> ListenError {
    let error = ListenError::mysql(database, what, e);
    match &error {
        ListenError::Binlog {
            source: mee_mysql::mysql_async::Error::Server(s),
            ..
        } if !mee_core::Transient::is_transient(&error) => ListenError::GtidRejected {
            gtid: gtid.to_string(),
            message: format!("{} (error {})", s.message, s.code),
        },
        _ => error,
    }
}

fn wrong_flavor(gtid: &GtidSet, is_mariadb: bool) -> ListenError {
    let (server, form) = if is_mariadb {
        ("MariaDB", "domain-server-sequence, e.g. 0-1-57")
    } else {
        (
            "MySQL",
            "<server uuid>:<first>-<last>, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57",
        )
    };
    ListenError::GtidForm {
        gtid: gtid.to_string(),
        server,
        form,
    }
}
