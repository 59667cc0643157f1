//! The bulk writer: versioned whole-document writes through `_bulk`.
//!
//! Every operation carries `version_type=external` and its version, so replays,
//! retries and out-of-order writes are harmless: an older write gets 409, which counts
//! as done. Operations are split into requests of at most `max_docs` operations and
//! `max_bytes` bytes; at most `concurrency` requests are in flight over all callers of
//! one writer. Transient failures (connection errors, timeouts, 429, 5xx — of the
//! whole request or of single items) are retried with capped exponential backoff,
//! resending only the operations that failed.

mod encode;
mod episode;
mod limit;
mod response;
mod send;

use crate::EsError;
use elasticsearch::Elasticsearch;
use mee_core::config::BulkConfig;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What to do with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    /// Write the whole document. `source` is its JSON text, already serialized.
    Index {
        source: String,
    },
    Delete,
}

/// One versioned write of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOp {
    pub index: String,
    pub id: String,
    pub routing: Option<String>,
    /// The external version; a write with a version not above the stored one is a
    /// conflict (409) and changes nothing. At most `i64::MAX`.
    pub version: u64,
    pub action: BulkAction,
}

/// An operation Elasticsearch refused for a reason retrying cannot fix (a mapping
/// error, a bad id, ...); the caller sends it to the dead-letter store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub op: BulkOp,
    /// The item's HTTP status (400 for operations refused before sending).
    pub status: u16,
    /// The error type and reason Elasticsearch gave (`mee: ...` if refused before sending).
    pub reason: String,
}

/// What became of the operations of one [`BulkWriter::write`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkOutcome {
    pub indexed: u64,
    /// Deleted, or already missing (a delete of a missing document is done).
    pub deleted: u64,
    /// Refused with 409: the stored document has this version or a newer one.
    pub conflicts: u64,
    pub rejected: Vec<Rejected>,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests that were retries of a (partly) failed one.
    pub retries: u64,
    /// How long each request took, from sending to the parsed response.
    pub latencies: Vec<Duration>,
}

impl BulkOutcome {
    fn merge(&mut self, other: BulkOutcome) {
        self.indexed += other.indexed;
        self.deleted += other.deleted;
        self.conflicts += other.conflicts;
        self.rejected.extend(other.rejected);
        self.requests += other.requests;
        self.retries += other.retries;
        self.latencies.extend(other.latencies);
    }
}

/// Writes operations through `_bulk`. Cheap to clone; clones share the limit on
/// requests in flight and the rate limit.
#[derive(Clone)]
pub struct BulkWriter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Elasticsearch,
    cfg: BulkConfig,
    permits: Semaphore,
    pacer: Option<Mutex<limit::Pacer>>,
    episodes: episode::Episodes,
}

impl fmt::Debug for BulkWriter {
    // Not the client: its Debug output includes the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkWriter")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl BulkWriter {
    pub fn new(client: Elasticsearch, cfg: BulkConfig) -> Self {
        let permits = Semaphore::new(cfg.concurrency.clamp(1, Semaphore::MAX_PERMITS));
        let pacer = limit::Pacer::new(cfg.rate_limit_docs_per_s, cfg.rate_limit_mb_per_s);
        Self {
            inner: Arc::new(Inner {
                client,
                cfg,
                permits,
                pacer: pacer.map(Mutex::new),
                episodes: episode::Episodes::default(),
            }),
        }
    }

    pub fn config(&self) -> &BulkConfig {
        &self.inner.cfg
    }

    /// Whether `_bulk` requests are failing now: from a transient failure until a
    /// request succeeds.
    pub fn failing(&self) -> bool {
        self.inner.episodes.failing()
    }

    /// Write all operations; returns when each is done: written, a version conflict
    /// (a newer write is there), or rejected (returned in [`BulkOutcome::rejected`]).
    ///
    /// An error means some operations may not be written: transient
    /// ([`EsError::GaveUp`]) after `give_up_after_ms` of continuous failure of one
    /// request, definite at once when the cluster refuses a whole request (e.g. HTTP
    /// 400/401/403/404) or answers with something that is not a bulk response.
    /// Writing the same operations again is always safe.
    pub async fn write(&self, ops: Vec<BulkOp>) -> Result<BulkOutcome, EsError> {
        let mut outcome = BulkOutcome::default();
        let mut ready = Vec::with_capacity(ops.len());
        for op in ops {
            match encode::refusal(&op) {
                None => ready.push(encode::prepare(op)),
                Some(reason) => outcome.rejected.push(Rejected {
                    op,
                    status: 400,
                    reason,
                }),
            }
        }
        let sizes: Vec<usize> = ready.iter().map(encode::Prepared::len).collect();
        let counts = encode::split(&sizes, self.inner.cfg.max_docs, self.inner.cfg.max_bytes);
        if counts.len() <= 1 {
            if !ready.is_empty() {
                outcome.merge(send::run(&self.inner, ready).await?);
            }
            return Ok(outcome);
        }
        // Each request in its own task: dropping this future (or returning an error)
        // drops the set, which aborts the requests still running.
        let mut tasks = JoinSet::new();
        let mut rest = ready.into_iter();
        for n in counts {
            let chunk: Vec<_> = rest.by_ref().take(n).collect();
            let inner = Arc::clone(&self.inner);
            tasks.spawn(async move { send::run(&inner, chunk).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => outcome.merge(result?),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => unreachable!("bulk request task cancelled while awaited: {e}"),
            }
        }
        Ok(outcome)
    }
}
