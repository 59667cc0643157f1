//! The writes of a batch: the affected documents traced from its row changes, those
//! a remembered write does not cover rebuilt from MySQL (or, for a master-only
//! document, taken from the images), and deletes for master rows that are gone.

use crate::SyncError;
use crate::apply::Applier;
use crate::remembered::{DocKey, doc_key, master_key};
use crate::report::BatchReport;
use mee_core::materialize::{AffectedKey, DocumentQuery, RowChange, match_key};
use mee_core::value::{Cell, MatchKey};
use mee_es::{BulkAction, BulkOp, IdScroll};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The writes planned for a batch, the master key of each, and the version they carry
/// when it is a snapshot's (`None`: each its event's).
pub(crate) struct Planned {
    pub ops: Vec<BulkOp>,
    pub keys: Vec<DocKey>,
    pub snapshot: Option<u64>,
}

/// `query` searches per request (Elasticsearch limits the clauses of one query).
const SEARCHES_PER_REQUEST: usize = 256;
/// Ids per page of a search's scroll, and how long the scroll lives between pages.
const SEARCH_PAGE: usize = 1000;
const SEARCH_KEEP_ALIVE: &str = "1m";

impl Applier<'_> {
    /// Index writes for the affected documents, deletes for those whose master row is
    /// gone or no longer passes the master statement.
    pub(crate) async fn operations(
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
}

/// `mariadb-bin.000003` → `mariadb-bin`.
pub(crate) fn binlog_base(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(base, _)| base)
}
