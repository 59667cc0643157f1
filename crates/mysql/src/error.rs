use mee_core::Transient;

#[derive(Debug, thiserror::Error)]
pub enum MySqlError {
    #[error("mysql.{database}: cannot connect to {host}:{port}: {source}")]
    Connect {
        database: String,
        host: String,
        port: u16,
        #[source]
        source: mysql_async::Error,
    },
    #[error(
        "mysql.{database}: no answer from {host}:{port} within {timeout_ms} ms (connect_timeout_ms)"
    )]
    ConnectTimeout {
        database: String,
        host: String,
        port: u16,
        timeout_ms: u64,
    },
    #[error("mysql.{database}: {what}: {source}")]
    Query {
        database: String,
        what: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("app config: {message}")]
    Config { message: String },
    #[error("mysql.{database}: TLS files: {message}")]
    Tls { database: String, message: String },
}

/// Server error codes that clear up by themselves: too many connections, lock wait
/// timeout, deadlock, server shutting down, query interrupted, read-only during failover.
const TRANSIENT_SERVER_CODES: &[u16] = &[1040, 1053, 1205, 1213, 1317, 1290, 1927];

fn transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Server(s) => TRANSIENT_SERVER_CODES.contains(&s.code),
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => true,
        _ => false,
    }
}

impl Transient for MySqlError {
    fn is_transient(&self) -> bool {
        match self {
            MySqlError::Connect { source, .. } | MySqlError::Query { source, .. } => {
                transient(source)
            }
            MySqlError::ConnectTimeout { .. } => true,
            MySqlError::Tls { .. } | MySqlError::Config { .. } => false,
        }
    }
}

impl MySqlError {
    pub(crate) fn query(
        database: &str,
        what: impl Into<String>,
        source: mysql_async::Error,
    ) -> Self {
        MySqlError::Query {
            database: database.to_string(),
            what: what.into(),
            source,
        }
    }

    /// The server's error code, when the server answered with one.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            MySqlError::Connect { source, .. } | MySqlError::Query { source, .. } => match source {
                mysql_async::Error::Server(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}
