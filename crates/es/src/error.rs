use mee_core::Transient;
use std::time::Duration;

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
    /// A 2xx answer whose body is not what the API returns (not JSON, fields missing,
    /// one bulk item per operation not kept). Retrying the same request cannot help.
    #[error("elasticsearch: {what}: unexpected response: {message}")]
    BadResponse { what: String, message: String },
    /// A request kept failing transiently for longer than the configured limit.
    #[error(
        "elasticsearch: {what}: still failing after {attempts} attempts over {}s; last error: {last}",
        elapsed.as_secs()
    )]
    GaveUp {
        what: String,
        attempts: u64,
        elapsed: Duration,
        #[source]
        last: Box<EsError>,
    },
}

impl EsError {
    /// The HTTP status Elasticsearch answered with, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            EsError::Status { status, .. } => Some(*status),
            EsError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

impl Transient for EsError {
    fn is_transient(&self) -> bool {
        match self {
            EsError::Settings(_) | EsError::BadResponse { .. } => false,
            // Connection refused, reset, timeout: the cluster may come back.
            EsError::Request { source, .. } => !source.is_json(),
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
            // The cluster was down or overloaded for long: the caller may try later.
            EsError::GaveUp { .. } => true,
        }
    }
}

/// At most `max` bytes of an error body, cut at a character boundary.
pub(crate) fn truncate(mut body: String, max: usize) -> String {
    if body.len() > max {
        let mut end = max;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push_str("...");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate("abc".into(), 10), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc...");
        assert_eq!(truncate("aé".into(), 2), "a...");
    }

    #[test]
    fn transient_split() {
        let status = |status| EsError::Status {
            what: "x".into(),
            status,
            body: String::new(),
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(403).is_transient());
        let bad = EsError::BadResponse {
            what: "x".into(),
            message: "y".into(),
        };
        assert!(!bad.is_transient());
        let gave_up = EsError::GaveUp {
            what: "x".into(),
            attempts: 3,
            elapsed: Duration::from_secs(1),
            last: Box::new(status(503)),
        };
        assert!(gave_up.is_transient());
        assert_eq!(gave_up.status(), Some(503));
    }
}
