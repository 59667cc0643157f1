//! One batch of change messages → document writes: skip what the handler does not
//! read, plan the writes (`plan.rs`: trace the changed rows to their documents and
//! rebuild those from MySQL), write them in read order with their versions, and
//! dead-letter what cannot be applied.

use crate::SyncError;
use crate::message::Message;
use crate::plan::binlog_base;
use crate::remembered::{RememberedWrites, master_key};
use crate::report::BatchReport;
use mee_core::dead_letter::DeadLetter;
use mee_core::event::{ChangeKind, Image, KeyColumns, KeyValues, LazyChangeEvent};
use mee_core::generation::Generation;
use mee_core::materialize::{IdInverter, Materializer, RowChange};
use mee_es::elasticsearch::Elasticsearch;
use mee_es::{BulkAction, BulkWriter};
use mee_kafka::DeadLetterQueue;
use mee_mysql::MySqlSource;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Everything a generation's batches need.
pub(crate) struct Applier<'h> {
    pub generation: &'h Generation,
    pub materializer: Materializer<'h>,
    pub primary_key: &'h [String],
    pub source: &'h MySqlSource,
    pub writer: &'h BulkWriter,
    pub dlq: &'h DeadLetterQueue,
    pub es: &'h Elasticsearch,
    /// Document ids → master keys, for the documents a `query` search finds (`None`
    /// when no item needs one).
    pub inverter: Option<IdInverter>,
    /// The database whose server's consistent snapshots version the writes (`None`:
    /// each write carries its newest event's version). Set when every database the
    /// handler reads is on one server, the one whose binlog the events come from.
    pub snapshot_database: Option<&'h str>,
    /// Cleared when the server turns out not to report snapshot positions.
    pub snapshots: std::sync::atomic::AtomicBool,
    pub remembered: RememberedWrites,
    /// The master table's key columns, picked out of its events' images as they are
    /// read; only when no item but the master reads the master's table, so that a
    /// change of a master row that keeps its key affects that row's document alone.
    pub key_columns: Option<KeyColumns>,
    /// The sequence number of the batch whose writes go next: batches are built
    /// concurrently but write in read order.
    pub write_turn: tokio::sync::watch::Sender<u64>,
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Insert => "insert",
        ChangeKind::Update => "update",
        ChangeKind::Delete => "delete",
        ChangeKind::Truncate => "truncate",
        ChangeKind::Ddl => "ddl",
    }
}

/// Statements that may remove or rename a column the documents map.
fn may_drop_columns(statement: &str) -> bool {
    let s = statement.to_ascii_lowercase();
    ["drop", "rename", "change", "modify"]
        .iter()
        .any(|w| s.contains(w))
}

impl Applier<'_> {
    /// Apply `batch`, the `seq`th read (from 0). On an error nothing may be committed:
    /// the caller retries the whole batch (writes are versioned, so repeating them is
    /// harmless).
    pub async fn apply(&self, batch: &[Message], seq: u64) -> Result<BatchReport, SyncError> {
        let mut report = BatchReport::default();
        let mut clock = Instant::now();
        let mut lap = |report: &mut BatchReport, stage: &'static str| {
            let now = Instant::now();
            report.stages.push((stage, now - clock));
            clock = now;
        };
        let mut letters = Vec::new();
        let mut events = Vec::with_capacity(batch.len());
        for msg in batch {
            match &msg.event {
                Ok(e) => events.push((msg, e)),
                Err((reason, payload)) => {
                    letters.push(self.unreadable(msg, reason.clone(), payload.as_deref()))
                }
            }
        }
        // The events that may affect documents, with their images.
        let mut rows: Vec<(&LazyChangeEvent, Option<Image>, Option<Image>)> = Vec::new();
        for (msg, e) in events {
            report.consumed(&e.table, kind_name(e.kind));
            report.newest_commit_ms = report.newest_commit_ms.max(Some(e.commit_ts_ms));
            match e.kind {
                // `listen` writes these to every partition, to keep each partition's
                // changes in order around them; one copy is enough to report.
                ChangeKind::Truncate | ChangeKind::Ddl if msg.partition != 0 => {
                    report.skipped("ddl_copy");
                    continue;
                }
                ChangeKind::Truncate | ChangeKind::Ddl => {
                    self.structural(e, &mut report);
                    continue;
                }
                ChangeKind::Insert | ChangeKind::Update | ChangeKind::Delete => {}
            }
            if !self.materializer.reads_table(&e.database, &e.table) {
                report.skipped("table");
                continue;
            }
            if self.covered_by_key(e) {
                report.skipped("covered");
                continue;
            }
            match e.images() {
                Ok((before, after)) => rows.push((e, before, after)),
                Err(err) => letters.push(self.unreadable(msg, err.to_string(), Some(e.payload()))),
            }
        }
        let mut changes = Vec::new();
        let mut files: HashSet<&str> = HashSet::new();
        for (e, before, after) in &rows {
            let passes = |img: &Option<Image>| {
                img.as_ref()
                    .is_some_and(|i| self.materializer.passes_filter(&e.database, &e.table, i))
            };
            if !passes(before) && !passes(after) {
                report.skipped("filter");
                continue;
            }
            files.insert(binlog_base(&e.position.file));
            changes.push(RowChange {
                database: &e.database,
                table: &e.table,
                before: before.as_ref(),
                after: after.as_ref(),
                version: e.version,
            });
        }

        lap(&mut report, "filter");
        let before = report.stages.len();
        let planned = self.operations(&changes, &files, &mut report).await?;
        // `operations` recorded its tracing and searching; the rest is building.
        let inner: Duration = report.stages[before..].iter().map(|s| s.1).sum();
        lap(&mut report, "build");
        if let Some(build) = report.stages.last_mut() {
            build.1 = build.1.saturating_sub(inner);
        }
        // Writes in read order, so that a document's writes reach Elasticsearch
        // oldest first: their external versions alone would keep the newest, but a
        // delete's version is kept only for `index.gc_deletes`.
        // (It cannot fail: the applier holds the sender.)
        let _ = self.write_turn.subscribe().wait_for(|t| *t >= seq).await;
        lap(&mut report, "queue");
        if !planned.ops.is_empty() {
            // Ids to remember, only when the writes carry a snapshot's version.
            let ids: Vec<String> = match planned.snapshot {
                Some(_) => planned.ops.iter().map(|op| op.id.clone()).collect(),
                None => Vec::new(),
            };
            let outcome = self.writer.write(planned.ops).await?;
            report.indexed = outcome.indexed;
            report.deleted = outcome.deleted;
            report.conflicts = outcome.conflicts;
            report.bulk_latencies = outcome.latencies;
            if let Some(version) = planned.snapshot {
                let refused: HashSet<&str> =
                    outcome.rejected.iter().map(|r| r.op.id.as_str()).collect();
                let taken = ids
                    .iter()
                    .zip(planned.keys)
                    .filter(|(id, _)| !refused.contains(id.as_str()));
                self.remembered.remember(taken.map(|(_, key)| key), version);
            }
            for r in outcome.rejected {
                letters.push(self.rejected(r));
            }
            lap(&mut report, "write");
        }
        self.write_turn.send_modify(|t| *t = (*t).max(seq + 1));
        report.dead_lettered = letters.len() as u64;
        for letter in &letters {
            tracing::warn!(
                generation = %self.generation.id,
                kind = ?letter.kind,
                reason = %letter.reason,
                document_id = letter.document_id.as_deref().unwrap_or(""),
                source = letter.source.as_deref().unwrap_or(""),
                "dead-lettered"
            );
            self.dlq.send(letter).await?;
        }
        if !letters.is_empty() {
            lap(&mut report, "dead_letter");
        }
        Ok(report)
    }

    /// Whether a remembered write already includes this change of a master row, told
    /// from the key columns picked as it was read (see `key_columns`), before its
    /// images are parsed: only when the change keeps the row's key.
    fn covered_by_key(&self, e: &LazyChangeEvent) -> bool {
        let Some((before, after)) = &e.keys else {
            return false;
        };
        let key = |values: &KeyValues| master_key(values.iter().map(Option::as_ref));
        let key = match (before.as_ref().map(key), after.as_ref().map(key)) {
            (Some(Some(before)), Some(Some(after))) if before == after => after,
            (None, Some(Some(key))) | (Some(Some(key)), None) => key,
            _ => return false,
        };
        self.remembered.covers(&key, e.version)
    }

    fn structural(&self, e: &LazyChangeEvent, report: &mut BatchReport) {
        let reads = !e.table.is_empty() && self.materializer.reads_table(&e.database, &e.table);
        let statement = e.statement.as_deref().unwrap_or("");
        let serious = match e.kind {
            ChangeKind::Truncate => reads,
            _ => reads && may_drop_columns(statement),
        };
        if serious {
            tracing::error!(
                task = %self.generation.task,
                generation = %self.generation.id,
                database = %e.database,
                table = %e.table,
                statement,
                "{} on a table this task reads: documents may no longer match MySQL. Run \
                 `update -c <handler.yml> -n {}` to rebuild the index",
                kind_name(e.kind).to_uppercase(),
                self.generation.task
            );
            report
                .rebuild_needed
                .push((e.table.clone(), kind_name(e.kind)));
        } else {
            report.skipped("ddl");
        }
    }

    fn unreadable(&self, msg: &Message, reason: String, payload: Option<&[u8]>) -> DeadLetter {
        DeadLetter::unreadable_event(self.generation, reason, payload, msg.place(), now_ms())
    }

    fn rejected(&self, r: mee_es::Rejected) -> DeadLetter {
        let sent = match &r.op.action {
            BulkAction::Index { source } => Some(source.as_str()),
            BulkAction::Delete => None,
        };
        DeadLetter::rejected_document(self.generation, r.op.id, r.status, r.reason, sent, now_ms())
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_dropping_ddl_is_recognised() {
        assert!(may_drop_columns("ALTER TABLE t DROP COLUMN a"));
        assert!(may_drop_columns("alter table t change a b int"));
        assert!(may_drop_columns("RENAME TABLE t TO u"));
        assert!(!may_drop_columns("ALTER TABLE t ADD COLUMN c INT"));
        assert!(!may_drop_columns("CREATE INDEX i ON t (a)"));
    }
}
