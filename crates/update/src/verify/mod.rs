//! `update -c <handler> -n <task> --verify [--repair]`: compare the live index with what
//! the materializer builds from MySQL now.
//!
//! Two passes, each holding one page at a time:
//!
//! 1. MySQL → index ([`missing`]): master rows in primary-key order (keyset pages of
//!    `update.page_size`), materialized, and the same ids read back with `_mget`
//!    (realtime, with their routing). Finds documents missing from the index and
//!    documents that differ (sources compared as JSON, numbers by value).
//! 2. index → MySQL ([`extra`]): every `_id` of the index (scroll sorted by `_doc`, no
//!    sources), inverted through the master's `document_id` template to master keys,
//!    which are looked up (master rows only). Finds documents without a master row
//!    (extra). Templates that cannot be inverted are reported as such.
//!
//! A document that differs is only a suspect: `sync` may be about to write it. Suspects
//! are re-checked in batches ([`recheck`]) after waiting for the current lag ([`lag`]:
//! listen's saved position reaches MySQL's binlog position of now, then the
//! generation's consumer group reaches the change topics' end offsets of that moment):
//! re-materialized, read again, and counted as drift only if they still differ
//! ([`verdict`]).
//!
//! `--repair` ([`repair`]) writes the drifted documents again: `index` with the
//! materialized source or `delete`, versioned with MySQL's binlog position read before
//! re-materializing, so any later change (a higher version) wins and a newer write
//! already there makes it a harmless 409. [`report`] prints the drift and the totals.

mod compare;
mod extra;
mod lag;
mod missing;
mod recheck;
mod repair;
mod report;
mod target;
mod verdict;

use crate::handler_databases;
use crate::retry::{Retried, retry_step};
use anyhow::{Context, bail};
use mee_core::generation::Generation;
use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_core::value::Cell;
use mee_core::{AppConfig, Transient};
use mee_es::elasticsearch::Elasticsearch;
use mee_es::{BulkWriter, DocRef, StoredDoc};
use mee_mysql::MySqlSource;
use mee_redis::redis::aio::ConnectionManager;
use mee_redis::{GenerationStore, Keys};
use mee_telemetry::CancellationToken;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use target::Target;

/// Suspects gathered before they are re-checked together, after one wait for the lag.
const RECHECK_BATCH: usize = 1000;
/// Documents per `_mget` request.
const MGET_CHUNK: usize = 500;

#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Write the drifted documents again.
    pub repair: bool,
    /// How long to wait for `listen` and `sync` before re-checking suspects.
    pub recheck_timeout: Duration,
}

/// Verify the task's live index; `Err` when drift remains (or could not be repaired).
pub async fn run(
    handler_path: &Path,
    task: &str,
    cfg: &AppConfig,
    opts: VerifyOptions,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(handler_path)
        .with_context(|| format!("cannot read handler {}", handler_path.display()))?;
    let file_handler = Handler::parse(&handler_path.display().to_string(), &text)?;
    let es = mee_es::client(&cfg.elasticsearch)?;
    mee_es::cluster_info(&es).await?;
    let redis = mee_redis::connect(&cfg.redis).await?;
    let mut store = GenerationStore::new(redis.clone(), Keys::new(&cfg.redis.key_prefix));
    let target = Target::find(handler_path, file_handler, task, &es, &mut store).await?;
    target.announce(task);

    let handler = &target.handler;
    let databases = handler_databases(handler);
    let source = MySqlSource::new(cfg, databases.iter().copied())?;
    let shutdown = mee_telemetry::shutdown_on_signal();
    let result = Verifier {
        cfg,
        handler,
        m: Materializer::new(handler),
        databases: databases.iter().map(|d| d.to_string()).collect(),
        source: &source,
        es: &es,
        index: &target.index,
        generation: target.live.as_ref(),
        redis,
        writer: opts
            .repair
            .then(|| BulkWriter::new(es.clone(), cfg.elasticsearch.bulk.clone())),
        opts,
        shutdown: &shutdown,
        suspects: Vec::new(),
        t: Totals::default(),
        lag_given_up: false,
        notes: Vec::new(),
    }
    .run()
    .await;
    source.close().await;
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    Extra,
    Different,
}

/// A document that differed at the first look.
#[derive(Debug)]
struct Suspect {
    id: String,
    /// The master keys it may come from: its own (first pass), or the candidates its
    /// id inverts to (second pass; none when no master can have this id).
    keys: Vec<Vec<Cell>>,
    /// The routing the stored copy has (extra), or the document's when first built.
    routing: Option<String>,
    kind: Kind,
}

#[derive(Debug, Default)]
struct Totals {
    /// Documents built from MySQL (first pass).
    checked: u64,
    /// Of those, found in the index at the first look (equal or not).
    found: u64,
    /// Ids read from the index (second pass).
    scanned: u64,
    missing: u64,
    extra: u64,
    different: u64,
    rechecked: u64,
    in_flight: u64,
    indexed: u64,
    deleted: u64,
    conflicts: u64,
    refused: u64,
}

/// One verification run: the two passes, the suspects waiting for their re-check, and
/// the totals so far.
struct Verifier<'a> {
    cfg: &'a AppConfig,
    handler: &'a Handler,
    m: Materializer<'a>,
    databases: Vec<String>,
    source: &'a MySqlSource,
    es: &'a Elasticsearch,
    index: &'a str,
    generation: Option<&'a Generation>,
    redis: ConnectionManager,
    writer: Option<BulkWriter>,
    opts: VerifyOptions,
    shutdown: &'a CancellationToken,
    suspects: Vec<Suspect>,
    t: Totals,
    /// Set once waiting for the lag timed out or failed: later re-checks do not wait.
    lag_given_up: bool,
    /// Printed after the totals, each once.
    notes: Vec<String>,
}

impl Verifier<'_> {
    async fn run(mut self) -> anyhow::Result<()> {
        self.mysql_pass().await?;
        let extras_unchecked = self.index_pass().await?;
        self.summary(extras_unchecked)
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            tracing::warn!("{note}");
            self.notes.push(note);
        }
    }

    fn interrupted(&self) -> anyhow::Result<()> {
        if self.shutdown.is_cancelled() {
            bail!(
                "interrupted after checking {} documents ({} missing, {} extra, {} different so far)",
                self.t.checked,
                self.t.missing,
                self.t.extra,
                self.t.different
            );
        }
        Ok(())
    }

    /// Read documents back from the index (realtime, each with its routing); `None`
    /// where there is none.
    async fn read_back(&self, refs: &[DocRef<'_>]) -> anyhow::Result<Vec<Option<StoredDoc>>> {
        self.retry("read documents from Elasticsearch", || {
            mee_es::mget(self.es, self.index, refs)
        })
        .await
    }

    /// Run a MySQL or Elasticsearch step, retrying transient failures with backoff for
    /// at most `update.give_up_after_ms`.
    async fn retry<T, E, F, Fut>(&self, what: &str, op: F) -> anyhow::Result<T>
    where
        E: std::error::Error + Transient + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = self.cfg.update.give_up_after_ms;
        match retry_step(what, give_up, self.shutdown, op).await {
            Retried::Done(r) => r,
            Retried::GaveUp => bail!(
                "{what}: still failing after {} s (update.give_up_after_ms)",
                give_up / 1000
            ),
            Retried::Interrupted => {
                self.interrupted()?;
                bail!("interrupted")
            }
        }
    }
}
