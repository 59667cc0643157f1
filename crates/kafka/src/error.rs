use mee_core::Transient;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode as Code};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: cannot create {what} client: {source} (check kafka.librdkafka_options)")]
    Client {
        what: &'static str,
        #[source]
        source: Box<RdError>,
    },
    #[error("kafka ({brokers}): {what}: {source}")]
    Request {
        brokers: String,
        what: String,
        #[source]
        source: Box<RdError>,
    },
    #[error("kafka: creating topic `{topic}`: {code}")]
    CreateTopic { topic: String, code: Code },
    #[error("kafka ({brokers}): topic `{topic}` does not exist (has listen run for its database?)")]
    MissingTopic { brokers: String, topic: String },
    #[error("kafka ({brokers}): group {group} does not hold the offsets just committed: {detail}")]
    CommitMismatch {
        brokers: String,
        group: String,
        detail: String,
    },
    #[error("kafka ({brokers}): deleting group {group}: {code}")]
    DeleteGroup {
        brokers: String,
        group: String,
        code: Code,
    },
    #[error("kafka ({brokers}): {what}: no answer within {after:?}")]
    TimedOut {
        brokers: String,
        what: String,
        after: std::time::Duration,
    },
}

/// Codes that no retry can fix: authentication, authorization, bad configuration.
const DEFINITE: &[Code] = &[
    Code::Authentication,
    Code::SaslAuthenticationFailed,
    Code::TopicAuthorizationFailed,
    Code::GroupAuthorizationFailed,
    Code::ClusterAuthorizationFailed,
    Code::InvalidConfig,
    Code::InvalidReplicationFactor,
    Code::InvalidPartitions,
    Code::InvalidTopic,
    Code::Fatal,
];

impl Transient for KafkaError {
    fn is_transient(&self) -> bool {
        match self {
            KafkaError::Client { .. } => false,
            KafkaError::Request { source, .. } => source
                .rdkafka_error_code()
                .is_none_or(|c| !DEFINITE.contains(&c)),
            KafkaError::CreateTopic { code, .. } | KafkaError::DeleteGroup { code, .. } => {
                !DEFINITE.contains(code)
            }
            // A missing topic needs `listen` (or an operator) to create it.
            KafkaError::MissingTopic { .. } => false,
            // Someone else commits for the group (a running consumer): retrying races it.
            KafkaError::CommitMismatch { .. } => false,
            KafkaError::TimedOut { .. } => true,
        }
    }
}
