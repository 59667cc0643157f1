use mee_core::Transient;

/// Why `listen` stopped or must reconnect.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    MySql(#[from] mee_mysql::MySqlError),
    #[error(transparent)]
    Kafka(#[from] mee_kafka::KafkaError),
    #[error(transparent)]
    Redis(#[from] mee_redis::RedisError),
    #[error("mysql.{database}: {what}: {source}")]
    Binlog {
        database: String,
        what: &'static str,
        #[source]
        source: mee_mysql::mysql_async::Error,
    },
    #[error("mysql.{database}: the server ended the binlog stream")]
    StreamEnded { database: String },
    #[error("cannot decode the binlog at {position}: {message}")]
    Decode { position: String, message: String },
    #[error("kafka did not confirm an event at {position}: {message}")]
    Delivery { position: String, message: String },
    #[error("the source is not ready for listen:\n  - {}", .0.join("\n  - "))]
    Source(Vec<String>),
    #[error(
        "the saved position {position} is gone from the source (binlog purged; it has {oldest} onwards). \
         Changes since then are lost to listen: start `listen --from now`, then run `update` \
         for every task on this database (in that order, so no change is missed)"
    )]
    Purged { position: String, oldest: String },
    #[error(
        "the source cannot start after GTID {gtid}: {message}. Start listen from a place \
         the source has instead (`--from now`, `--from earliest` or `--from <file>:<offset>`; \
         SHOW BINARY LOGS lists the files), then run `update` for every task on this \
         database (in that order, so no change is missed)"
    )]
    GtidRejected { gtid: String, message: String },
    #[error("--from {gtid}: the source is {server}; give a GTID of its form ({form})")]
    GtidForm {
        gtid: String,
        server: &'static str,
        form: &'static str,
    },
}

impl ListenError {
    pub fn mysql(
        database: &str,
        what: &'static str,
        source: mee_mysql::mysql_async::Error,
    ) -> Self {
        ListenError::Binlog {
            database: database.to_string(),
            what,
            source,
        }
    }
}

/// Server errors on the binlog connection worth retrying: shutdown in progress, lost
/// connection, killed connection, and 4052 "a replica with the same server_id is
/// connected" — usually our own previous connection the server has not yet noticed
/// is dead (if it persists, another replica uses this server_id).
const TRANSIENT_CODES: &[u16] = &[1053, 2013, 1927, 4052];

impl ListenError {
    /// A lost connection to the MySQL source, as opposed to Kafka or Redis.
    pub(crate) fn is_source_outage(&self) -> bool {
        matches!(
            self,
            ListenError::MySql(_) | ListenError::Binlog { .. } | ListenError::StreamEnded { .. }
        )
    }
}

impl Transient for ListenError {
    fn is_transient(&self) -> bool {
        match self {
            ListenError::MySql(e) => e.is_transient(),
            ListenError::Kafka(e) => e.is_transient(),
            ListenError::Redis(e) => e.is_transient(),
            ListenError::Binlog { source, .. } => {
                matches!(
                    source,
                    mee_mysql::mysql_async::Error::Io(_)
                        | mee_mysql::mysql_async::Error::Driver(
                            mee_mysql::mysql_async::DriverError::ConnectionClosed
                        )
                ) || matches!(source, mee_mysql::mysql_async::Error::Server(s) if TRANSIENT_CODES.contains(&s.code))
            }
            ListenError::StreamEnded { .. } | ListenError::Delivery { .. } => true,
            ListenError::Decode { .. }
            | ListenError::Source(_)
            | ListenError::Purged { .. }
            | ListenError::GtidRejected { .. }
            | ListenError::GtidForm { .. } => false,
        }
    }
}
