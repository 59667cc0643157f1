use mee_core::Transient;

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("elasticsearch: invalid client settings: {0}")]
    Settings(String),
    #[error("elasticsearch: {what}: {source}")]
    Request {
        what: String,
        #[source]
        source: elasticsearch::Error,
    },
    #[error("elasticsearch: {what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

impl Transient for EsError {
    fn is_transient(&self) -> bool {
        match self {
            EsError::Settings(_) => false,
            // Connection refused, reset, timeout: the cluster may come back.
            EsError::Request { source, .. } => !source.is_json(),
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}
