//! One batch of change messages → document writes: parse, skip what the handler does
//! not read, trace the changed rows to their documents, rebuild those from MySQL,
//! write them (or delete them) with the newest event's version, and dead-letter what
//! cannot be applied.

use crate::SyncError;
use crate::remembered::{DocKey, RememberedWrites, doc_key};
use mee_core::dead_letter::DeadLetter;
use mee_core::event::{ChangeKind, Image, KeyColumns, KeyValues, LazyChangeEvent};
use mee_core::generation::Generation;
use mee_core::materialize::{
    AffectedKey, DocumentQuery, IdInverter, Materializer, RowChange, match_key,
};
use mee_core::value::{Cell, MatchKey};
use mee_es::elasticsearch::Elasticsearch;
use mee_es::{BulkAction, BulkOp, BulkWriter, IdScroll};
use mee_kafka::DeadLetterQueue;
use mee_mysql::MySqlSource;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message as the reader takes it from Kafka: its payload copied out, not yet read.
#[derive(Debug)]
pub(crate) struct RawMessage {
    /// Shared by the messages of a topic (one allocation, not one per message).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Box<[u8]>>,
}

/// A message with its change event read (in one pass; its row images are parsed
/// only if the batch needs them).
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The change event, or why the payload is not one (with the payload, for the
    /// dead letter).
    pub event: Result<LazyChangeEvent, (String, Option<Vec<u8>>)>,
}

impl Message {
    /// `keys`: the table and columns whose values to pick out of the row images.
    pub fn read(raw: RawMessage, keys: Option<&KeyColumns>) -> Self {
        let event = match raw.payload {
            Some(p) => LazyChangeEvent::from_payload(p, keys)
                .map_err(|(e, p)| (e.to_string(), Some(p.into_vec()))),
            None => Err(("empty message".to_string(), None)),
        };
        Self {
            topic: raw.topic,
            partition: raw.partition,
            offset: raw.offset,
            event,
        }
    }

    fn place(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BatchReport {
    /// Change events read, per (table, type).
    pub consumed: Vec<(String, &'static str, u64)>,
    /// Events that affected no document, per reason.
    pub skipped: Vec<(&'static str, u64)>,
    /// (table, type) of TRUNCATE/DDL on tables the handler reads.
    pub rebuild_needed: Vec<(String, &'static str)>,
    pub indexed: u64,
    pub deleted: u64,
    pub conflicts: u64,
    pub dead_lettered: u64,
    /// Documents not rebuilt: a write this process made already included their changes.
    pub covered: u64,
    pub bulk_latencies: Vec<Duration>,
    /// Time spent per stage: filter (skipping what the handler does not read), trace (finding the affected documents), search
    /// (items found by `query`), build (reading them from MySQL), queue (waiting for
    /// the earlier batches' writes), write (Elasticsearch), dead_letter.
    pub stages: Vec<(&'static str, Duration)>,
    /// Commit time of the newest event in the batch.
    pub newest_commit_ms: Option<u64>,
}

impl BatchReport {
    fn consumed(&mut self, table: &str, kind: &'static str) {
        match self
            .consumed
            .iter_mut()
            .find(|(t, k, _)| t == table && *k == kind)
        {
            Some((_, _, n)) => *n += 1,
            None => self.consumed.push((table.to_string(), kind, 1)),
        }
    }

    fn skipped(&mut self, reason: &'static str) {
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason, 1)),
        }
    }
}

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

/// The writes planned for a batch, the master key of each, and the version they carry
/// when it is a snapshot's (`None`: each its event's).
struct Planned {
    ops: Vec<BulkOp>,
    keys: Vec<DocKey>,
    snapshot: Option<u64>,
}

/// `query` searches per request (Elasticsearch limits the clauses of one query).
const SEARCHES_PER_REQUEST: usize = 256;
/// Ids per page of a search's scroll, and how long the scroll lives between pages.
const SEARCH_PAGE: usize = 1000;
const SEARCH_KEEP_ALIVE: &str = "1m";

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

    /// Index writes for the affected documents, deletes for those whose master row is
    /// gone or no longer passes the master statement.
    async fn operations(
        &self,
        changes: &[RowChange<'_>],
        files: &HashSet<&str>,
        report: &mut BatchReport,
    ) -> Result<Planned, SyncError> {
        let mut planned = Planned {
            ops: Vec::new(),
            keys: Vec::new(),
            snapshot: None,
        };
        if changes.is_empty() {
            return Ok(planned);
        }
        if let Some(ops) = self.image_operations(changes) {
            planned.ops = ops;
            return Ok(planned);
        }
        // Before any read, so every read sees at least this snapshot.
        planned.snapshot = self.snapshot_version(changes, files).await?;
        let traced = Instant::now();
        let found = self.materializer.affected(self.source, changes).await?;
        report.stages.push(("trace", traced.elapsed()));
        let mut affected = found.keys;
        if !found.queries.is_empty() {
            let searched = Instant::now();
            affected.extend(self.search(&found.queries).await?);
            report.stages.push(("search", searched.elapsed()));
        }
        let mut versions: HashMap<Vec<MatchKey>, u64> = HashMap::new();
        for a in &affected {
            let v = versions.entry(match_key(&a.key)).or_insert(0);
            *v = (*v).max(a.version);
        }
        let distinct = versions.len();
        versions.retain(|key, version| !self.remembered.covers(key, *version));
        report.covered = (distinct - versions.len()) as u64;
        let keys: Vec<Vec<Cell>> = affected
            .into_iter()
            .filter(|a| versions.contains_key(&match_key(&a.key)))
            .map(|a| a.key)
            .collect();
        if keys.is_empty() {
            return Ok(planned);
        }
        if let Some(snapshot) = planned.snapshot {
            versions.values_mut().for_each(|v| *v = snapshot);
        }
        let built = self.materializer.keys(self.source, &keys).await?;
        let index = &self.generation.index;
        let ops = &mut planned.ops;
        let mut written: HashSet<String> = HashSet::new();
        for d in built.documents {
            let mk = doc_key(&d.key);
            let version = versions.get(mk.as_slice()).copied().unwrap_or(0);
            written.insert(d.id.clone());
            planned.keys.push(mk);
            ops.push(BulkOp {
                index: index.clone(),
                id: d.id,
                routing: d.routing,
                version,
                action: BulkAction::Index { source: d.source },
            });
        }
        let master_ids = if built.missing.is_empty() {
            HashMap::new()
        } else {
            self.master_ids(changes)
        };
        for key in built.missing {
            let mk = doc_key(&key);
            let Some((id, routing)) = master_ids
                .get(mk.as_slice())
                .cloned()
                .or_else(|| self.id_from_key(&key))
            else {
                tracing::debug!(
                    ?key,
                    "no document id for a missing master; nothing to delete"
                );
                continue;
            };
            // Never delete a document this batch writes (keys of other types can
            // look different and still name the same row).
            if written.contains(&id) {
                continue;
            }
            ops.push(BulkOp {
                index: index.clone(),
                id,
                routing,
                version: versions.get(mk.as_slice()).copied().unwrap_or(0),
                action: BulkAction::Delete,
            });
            planned.keys.push(mk);
        }
        Ok(planned)
    }

    /// The version for this batch's writes: the binlog position of a consistent
    /// snapshot taken now, when it is past every change of the batch, so that the
    /// documents read after it include them all. `None` (each write then carries its
    /// newest event's version) without a snapshot database, on servers that do not
    /// report snapshot positions, or when the changes come from another binlog.
    async fn snapshot_version(
        &self,
        changes: &[RowChange<'_>],
        files: &HashSet<&str>,
    ) -> Result<Option<u64>, SyncError> {
        use std::sync::atomic::Ordering;
        let Some(database) = self.snapshot_database else {
            return Ok(None);
        };
        if !self.snapshots.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Some(position) = self.source.snapshot_position(database).await? else {
            self.snapshots.store(false, Ordering::Relaxed);
            tracing::info!(
                generation = %self.generation.id,
                database,
                "the server does not report consistent snapshots' binlog positions (MariaDB \
                 does): each write carries its event's version, and every change is rebuilt"
            );
            return Ok(None);
        };
        let newest = changes.iter().map(|c| c.version).max().unwrap_or(0);
        let base = binlog_base(&position.file);
        Ok(position
            .version()
            .ok()
            .filter(|v| *v > newest && files.iter().all(|f| *f == base)))
    }

    /// The master keys of the documents the searches find, after a refresh so that
    /// what earlier batches wrote is seen. Each search's documents get the newest
    /// version of its request: they are rebuilt from MySQL after every event of the
    /// batch was committed there, so that version is already reflected.
    async fn search(&self, queries: &[DocumentQuery]) -> Result<Vec<AffectedKey>, SyncError> {
        let Some(inverter) = &self.inverter else {
            return Ok(Vec::new());
        };
        let index = &self.generation.index;
        mee_es::refresh(self.es, index).await?;
        let mut keys = Vec::new();
        for chunk in queries.chunks(SEARCHES_PER_REQUEST) {
            let version = chunk.iter().map(|q| q.version).max().unwrap_or(0);
            let body = self.materializer.search_body(chunk);
            let mut scroll =
                IdScroll::matching(self.es.clone(), index, body, SEARCH_PAGE, SEARCH_KEEP_ALIVE);
            while let Some(hits) = scroll.next_page().await? {
                for hit in hits {
                    keys.extend(
                        inverter
                            .keys(&hit.id)
                            .into_iter()
                            .map(|key| AffectedKey { key, version }),
                    );
                }
            }
        }
        Ok(keys)
    }

    /// For a handler whose document is the master row alone: the writes straight from
    /// the events' images, newest per document, without asking MySQL. `None` when the
    /// handler needs MySQL, or an image lacks a column the templates use.
    fn image_operations(&self, changes: &[RowChange<'_>]) -> Option<Vec<BulkOp>> {
        if !self.materializer.image_only() {
            return None;
        }
        let index = &self.generation.index;
        let mut newest: HashMap<String, BulkOp> = HashMap::new();
        for ch in changes {
            let op = match (ch.after, ch.before) {
                (Some(after), before) => {
                    let d = self.materializer.document_from_image(after)?.ok()?;
                    // A changed primary key moves the document: the old one goes.
                    if let Some((old, routing)) =
                        before.and_then(|b| self.materializer.id_from_image(b))
                        && old != d.id
                    {
                        newest.insert(
                            old.clone(),
                            BulkOp {
                                index: index.clone(),
                                id: old,
                                routing,
                                version: ch.version,
                                action: BulkAction::Delete,
                            },
                        );
                    }
                    BulkOp {
                        index: index.clone(),
                        id: d.id,
                        routing: d.routing,
                        version: ch.version,
                        action: BulkAction::Index { source: d.source },
                    }
                }
                (None, Some(before)) => {
                    let (id, routing) = self.materializer.id_from_image(before)?;
                    BulkOp {
                        index: index.clone(),
                        id,
                        routing,
                        version: ch.version,
                        action: BulkAction::Delete,
                    }
                }
                (None, None) => continue,
            };
            match newest.get(&op.id) {
                Some(have) if have.version >= op.version => {}
                _ => {
                    newest.insert(op.id.clone(), op);
                }
            }
        }
        Some(newest.into_values().collect())
    }

    /// Master key → (id, routing) from the master rows' own images (the newest of
    /// each), for deleting documents whose master row is gone.
    fn master_ids(&self, changes: &[RowChange<'_>]) -> HashMap<DocKey, (String, Option<String>)> {
        let master = self.materializer.handler().master();
        let mut ids = HashMap::new();
        for ch in changes {
            if master.database != ch.database || !master.table.eq_ignore_ascii_case(ch.table) {
                continue;
            }
            let Some(img) = ch.after.or(ch.before) else {
                continue;
            };
            let key = master_key(self.primary_key.iter().map(|c| {
                img.get(c).or_else(|| {
                    img.iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(c))
                        .map(|(_, v)| v)
                })
            }));
            if let (Some(key), Some(id)) = (key, self.materializer.id_from_image(img)) {
                ids.insert(key, id);
            }
        }
        ids
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

    /// The document id from the key alone (templates that use only key columns).
    fn id_from_key(&self, key: &[Cell]) -> Option<(String, Option<String>)> {
        let image: Map<String, Value> = self
            .primary_key
            .iter()
            .zip(key)
            .map(|(c, v)| {
                (
                    c.clone(),
                    mee_core::value::to_json(mee_core::value::ColumnKind::Other, v, false),
                )
            })
            .collect();
        self.materializer.id_from_image(&image)
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

/// The match key of a master row from the values of its key columns; `None` when one
/// is missing or NULL (a NULL key names no row).
fn master_key<'v>(values: impl Iterator<Item = Option<&'v Value>>) -> Option<DocKey> {
    values
        .map(|v| {
            v.filter(|v| !v.is_null())
                .map(|v| mee_core::materialize::json_cell(v).match_key())
        })
        .collect()
}

/// `mariadb-bin.000003` → `mariadb-bin`.
fn binlog_base(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(base, _)| base)
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

    #[test]
    fn a_master_key_needs_every_column_and_no_null() {
        let (id, region) = (serde_json::json!(1001), serde_json::json!("eu"));
        let key = master_key([Some(&id), Some(&region)].into_iter()).expect("key");
        assert_eq!(key.len(), 2);
        assert_eq!(
            master_key([Some(&id), Some(&region)].into_iter()),
            Some(key)
        );
        assert_ne!(
            master_key([Some(&region), Some(&id)].into_iter()),
            master_key([Some(&id), Some(&region)].into_iter())
        );
        assert_eq!(master_key([Some(&id), None].into_iter()), None);
        assert_eq!(
            master_key([Some(&id), Some(&Value::Null)].into_iter()),
            None
        );
    }
}
