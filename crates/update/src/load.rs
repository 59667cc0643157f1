//! The load: master rows in primary-key order (keyset pages), materialized and
//! bulk-written to the new index at the lowest version, with a resumable cursor.

use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::retry::{Retried, retry_step};
use anyhow::{Context, bail};
use mee_core::dead_letter::DeadLetter;
use mee_core::generation::Generation;
use mee_core::handler::Handler;
use mee_core::materialize::{Document, Materializer, RowSource, json_cell};
use mee_core::value::{Cell, ColumnKind, to_json};
use mee_core::{AppConfig, Transient};
use mee_es::{BulkAction, BulkOp, BulkOutcome, BulkWriter};
use mee_kafka::DeadLetterQueue;
use mee_mysql::MySqlSource;
use mee_redis::GenerationStore;
use mee_telemetry::CancellationToken;
use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The version of every document the load writes: lower than any change event's, so
/// a concurrent incremental write of the same document always wins.
pub const REBUILD_VERSION: u64 = 1;

/// How often the cursor and counters are saved to Redis.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

pub struct Load<'a> {
    pub cfg: &'a AppConfig,
    pub handler: &'a Handler,
    pub source: &'a MySqlSource,
    pub writer: &'a BulkWriter,
    pub dlq: &'a DeadLetterQueue,
    pub store: &'a mut GenerationStore,
    pub metrics: &'a Metrics,
    pub shutdown: &'a CancellationToken,
}

struct InFlight {
    handle: JoinHandle<Result<BulkOutcome, mee_es::EsError>>,
    /// Cursor once this page is written: its last master key.
    last_key: Vec<Cell>,
    masters: u64,
}

impl Load<'_> {
    /// Load every master after the generation's cursor; the cursor and counters are
    /// saved as pages complete (in key order), so `--resume` continues where a killed
    /// run stopped.
    pub async fn run(&mut self, g: &mut Generation) -> anyhow::Result<()> {
        let m = Materializer::new(self.handler);
        let page_size = self.cfg.update.page_size;
        let mut after: Option<Vec<Cell>> = g
            .resume_after
            .as_ref()
            .map(|k| k.iter().map(json_cell).collect());
        if after.is_some() {
            tracing::info!(
                masters_done = g.counters.masters_read,
                "resuming the load after the saved cursor"
            );
        }
        let total = self.estimate_total().await;
        let mut progress = Progress::new(total, g.counters.masters_read);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let max_in_flight = self.cfg.elasticsearch.bulk.concurrency + 1;
        let mut last_checkpoint = Instant::now();

        let mut masters = self
            .mysql("read master rows", || {
                m.masters(self.source, after.as_deref(), page_size)
            })
            .await?;
        while !masters.is_empty() {
            let next_after = masters.last_key.clone();
            let count = masters.len() as u64;
            let (page, next) = tokio::join!(
                self.mysql("read items", || m.build(self.source, masters.clone())),
                self.mysql("read master rows", || {
                    m.masters(self.source, next_after.as_deref(), page_size)
                })
            );
            let page = page?;
            let ops = page
                .documents
                .into_iter()
                .map(|d| op(&g.index, d))
                .collect();
            let writer = self.writer.clone();
            in_flight.push_back(InFlight {
                handle: tokio::spawn(async move { writer.write(ops).await }),
                last_key: page.last_key.clone().unwrap_or_default(),
                masters: count,
            });
            while in_flight.len() >= max_in_flight {
                self.complete(g, in_flight.pop_front().expect("non-empty"))
                    .await?;
                progress.update(g.counters.masters_read);
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                self.checkpoint(g).await?;
                last_checkpoint = Instant::now();
            }
            if self.shutdown.is_cancelled() {
                bail!(
                    "interrupted; the generation stays `building`: run `update --resume` to finish it"
                );
            }
            masters = next?;
            after = next_after;
        }
        let _ = after;
        while let Some(f) = in_flight.pop_front() {
            self.complete(g, f).await?;
        }
        progress.finish(g.counters.masters_read);
        self.checkpoint(g).await
    }

    /// Wait for a page's writes; dead-letter what Elasticsearch refused; advance the
    /// cursor past the page.
    async fn complete(&mut self, g: &mut Generation, f: InFlight) -> anyhow::Result<()> {
        let outcome = f
            .handle
            .await
            .context("bulk write task")?
            .context("writing to Elasticsearch")?;
        let written = outcome.indexed + outcome.conflicts;
        g.counters.documents_written += written;
        g.counters.documents_rejected += outcome.rejected.len() as u64;
        g.counters.masters_read += f.masters;
        self.metrics
            .documents
            .with_label_values(&["indexed"])
            .inc_by(outcome.indexed);
        self.metrics
            .documents
            .with_label_values(&["conflict"])
            .inc_by(outcome.conflicts);
        self.metrics
            .documents
            .with_label_values(&["dead_lettered"])
            .inc_by(outcome.rejected.len() as u64);
        self.metrics.masters.inc_by(f.masters);
        for d in &outcome.latencies {
            self.metrics.bulk_seconds.observe(d.as_secs_f64());
        }
        for r in outcome.rejected {
            tracing::warn!(document_id = %r.op.id, status = r.status, reason = %r.reason, "document refused; dead-lettered");
            let sent = match &r.op.action {
                BulkAction::Index { source } => Some(source.as_str()),
                BulkAction::Delete => None,
            };
            let letter = DeadLetter::rejected_document(
                g,
                r.op.id,
                r.status,
                r.reason,
                sent,
                mee_core::generation::millis(std::time::SystemTime::now()),
            );
            self.dlq
                .send(&letter)
                .await
                .context("writing a dead letter")?;
        }
        g.resume_after = Some(
            f.last_key
                .iter()
                .map(|c| to_json(ColumnKind::Other, c, false))
                .collect(),
        );
        Ok(())
    }

    async fn checkpoint(&mut self, g: &mut Generation) -> anyhow::Result<()> {
        g.updated_at_ms = mee_core::generation::millis(std::time::SystemTime::now());
        self.store
            .put(g)
            .await
            .context("saving the load cursor to redis")
    }

    /// Run a MySQL step, retrying transient failures with backoff for at most
    /// `update.give_up_after_ms`.
    async fn mysql<T, E, F, Fut>(&self, what: &str, op: F) -> anyhow::Result<T>
    where
        E: std::error::Error + Transient + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = self.cfg.update.give_up_after_ms;
        match retry_step(what, give_up, self.shutdown, op).await {
            Retried::Done(r) => r,
            Retried::GaveUp => bail!(
                "{what}: MySQL kept failing for {} s (update.give_up_after_ms); the generation \
                 stays `building`: run `update --resume` when MySQL is back",
                give_up / 1000
            ),
            Retried::Interrupted => bail!(
                "interrupted; the generation stays `building`: run `update --resume` to finish it"
            ),
        }
    }

    /// The master table's row estimate from information_schema (cheap; approximate).
    async fn estimate_total(&self) -> Option<u64> {
        let master = self.handler.master();
        let rows = self
            .source
            .query(
                &master.database,
                "SELECT TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                vec![Cell::Bytes(master.table.clone().into_bytes())],
            )
            .await
            .ok()?;
        match rows.first()?.cells.first()? {
            Cell::Int(i) => u64::try_from(*i).ok(),
            Cell::UInt(u) => Some(*u),
            Cell::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

fn op(index: &str, d: Document) -> BulkOp {
    BulkOp {
        index: index.to_string(),
        id: d.id,
        routing: d.routing,
        version: REBUILD_VERSION,
        action: BulkAction::Index { source: d.source },
    }
}
