use mee_core::Transient;
use mee_core::materialize::MaterializeError;
use mee_mysql::MySqlError;

/// Why a batch could not be applied, or a generation's consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("materializing documents: {0}")]
    Materialize(#[from] MaterializeError<MySqlError>),
    #[error(transparent)]
    MySql(#[from] MySqlError),
    #[error(transparent)]
    Es(#[from] mee_es::EsError),
    #[error(transparent)]
    Kafka(#[from] mee_kafka::KafkaError),
    #[error(transparent)]
    Redis(#[from] mee_redis::RedisError),
    #[error("generation {generation}: its handler copy does not parse:\n{message}")]
    Handler { generation: String, message: String },
    #[error(
        "generation {generation}: sync cannot follow changes of these items (give each a \
         `<column> = %<item>.<column>` condition, or a `query` and an invertible \
         `document_id`):\n  - {}", items.join("\n  - ")
    )]
    Untraceable {
        generation: String,
        items: Vec<String>,
    },
    #[error(
        "task `{task}` has no generation: run `update -c <handler.yml> -n {task}` first to build its index"
    )]
    NoGeneration { task: String },
}

impl SyncError {
    /// A transient failure of MySQL (unreachable, timed out), as opposed to the others.
    pub(crate) fn is_mysql_outage(&self) -> bool {
        let mysql = matches!(
            self,
            SyncError::MySql(_) | SyncError::Materialize(MaterializeError::Source { .. })
        );
        mysql && self.is_transient()
    }
}

impl Transient for SyncError {
    fn is_transient(&self) -> bool {
        match self {
            SyncError::Materialize(e) => e.is_transient(),
            SyncError::MySql(e) => e.is_transient(),
            SyncError::Es(e) => e.is_transient(),
            SyncError::Kafka(e) => e.is_transient(),
            SyncError::Redis(e) => e.is_transient(),
            SyncError::Handler { .. }
            | SyncError::Untraceable { .. }
            | SyncError::NoGeneration { .. } => false,
        }
    }
}
