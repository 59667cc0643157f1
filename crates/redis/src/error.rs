use mee_core::Transient;
use redis::ServerErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `url` is shown with its password redacted.
    #[error("redis {url}: {what}: {source}")]
    Request {
        url: String,
        what: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// A command on one of our keys failed.
    #[error("redis key {key}: {what}: {source}")]
    Key {
        key: String,
        what: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("redis key {key} holds something we cannot read: {message}")]
    Corrupt { key: String, message: String },
}

impl Transient for RedisError {
    fn is_transient(&self) -> bool {
        let (RedisError::Request { source, .. } | RedisError::Key { source, .. }) = self else {
            return false;
        };
        source.is_io_error()
            || source.is_timeout()
            || source.is_connection_refusal()
            || source.is_connection_dropped()
            || matches!(
                source.kind(),
                redis::ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
            )
    }
}
