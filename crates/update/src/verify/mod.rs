//! `update -c <handler> -n <task> --verify [--repair]`: compare the live index with what
//! the materializer builds from MySQL now.
//!
//! Two passes, each holding one page at a time:
//!
//! 1. MySQL → index: master rows in primary-key order (keyset pages of
//!    `update.page_size`), materialized, and the same ids read back with `_mget`
//!    (realtime, with their routing). Finds documents missing from the index and
//!    documents that differ (sources compared as JSON, numbers by value).
//! 2. index → MySQL: every `_id` of the index (scroll sorted by `_doc`, no sources),
//!    inverted through the master's `document_id` template to master keys, which are
//!    looked up (master rows only). Finds documents without a master row (extra).
//!    Templates that cannot be inverted are reported as such.
//!
//! A document that differs is only a suspect: `sync` may be about to write it. Suspects
//! are re-checked in batches after waiting for the current lag (listen's saved position
//! reaches MySQL's binlog position of now, then the generation's consumer group reaches
//! the change topics' end offsets of that moment): re-materialized, read again, and
//! counted as drift only if they still differ.
//!
//! `--repair` writes the drifted documents again: `index` with the materialized source
//! or `delete`, versioned with MySQL's binlog position read before re-materializing, so
//! any later change (a higher version) wins and a newer write already there makes it a
//! harmless 409.

mod compare;
mod invert;

use anyhow::{Context, bail};
use compare::FieldDiff;
use invert::IdInverter;
use mee_core::generation::{Generation, GenerationState};
use mee_core::handler::Handler;
use mee_core::materialize::{Document, Materializer};
use mee_core::value::Cell;
use mee_core::{AppConfig, Backoff, Transient};
use mee_es::elasticsearch::Elasticsearch;
use mee_es::{BulkAction, BulkOp, BulkWriter, DocRef, IdScroll, StoredDoc};
use mee_mysql::MySqlSource;
use mee_redis::redis::aio::ConnectionManager;
use mee_redis::{GenerationStore, Keys, PositionStore};
use mee_telemetry::{CancellationToken, retry_transient};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Suspects gathered before they are re-checked together, after one wait for the lag.
const RECHECK_BATCH: usize = 1000;
/// Documents per `_mget` request.
const MGET_CHUNK: usize = 500;
/// Different documents whose differing fields are listed.
const DIFFS_SHOWN: u64 = 5;
/// Field lines listed per different document.
const FIELDS_SHOWN: usize = 20;
/// Ids listed per kind of drift; the rest are only counted.
const IDS_SHOWN: u64 = 100;
/// How long the cluster keeps the id scroll between two pages.
const SCROLL_KEEP_ALIVE: &str = "5m";
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

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
    let live = store
        .list(task)
        .await?
        .into_iter()
        .rev()
        .find(|g| g.state == GenerationState::Live);

    let alias = live
        .as_ref()
        .map_or_else(|| file_handler.alias.clone(), |g| g.alias.clone());
    let targets = mee_es::alias_targets(&es, &alias).await?;
    let index = match &live {
        Some(g) => {
            if !targets.contains(&g.index) {
                tracing::warn!(
                    alias = %alias, points_at = %targets.join(","), index = %g.index,
                    "the alias does not point at the live generation's index; verifying that index"
                );
            }
            g.index.clone()
        }
        None => match targets.as_slice() {
            [one] => one.clone(),
            [] => bail!(
                "task `{task}` has no live generation and the alias `{alias}` points at no index: \
                 run `update -c {} -n {task}` to build it first",
                handler_path.display()
            ),
            many => bail!(
                "task `{task}` has no live generation and the alias `{alias}` points at {} indices \
                 ({}): cannot tell which one to verify",
                many.len(),
                many.join(", ")
            ),
        },
    };
    // What `sync` applies: the generation's copy of the handler.
    let handler = match &live {
        Some(g) => {
            if g.handler_yaml != file_handler.source {
                tracing::warn!(
                    generation = %g.id,
                    "the handler file differs from the live generation's copy; verifying with the copy (what sync applies)"
                );
            }
            Handler::parse(&g.handler_path, &g.handler_yaml)
                .context("the live generation's copy of the handler")?
        }
        None => file_handler,
    };
    match &live {
        Some(g) => println!(
            "verifying index {index} (alias {alias}, task {task}, generation {}) against MySQL",
            g.id
        ),
        None => println!(
            "verifying index {index} (alias {alias}; task {task} has no live generation in Redis) \
             against MySQL"
        ),
    }

    let databases: BTreeSet<&str> = handler
        .all_items()
        .iter()
        .map(|i| i.database.as_str())
        .collect();
    let source = MySqlSource::new(cfg, databases.iter().copied())?;
    let shutdown = mee_telemetry::shutdown_on_signal();
    let result = Verifier {
        cfg,
        handler: &handler,
        m: Materializer::new(&handler),
        databases: databases.iter().map(|d| d.to_string()).collect(),
        source: &source,
        es: &es,
        index: &index,
        generation: live.as_ref(),
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

/// What the re-check found.
enum Verdict {
    /// Equal now: it was a change in flight.
    Settled,
    Missing,
    Different(Vec<FieldDiff>),
    /// A stored copy without a master row (or under a routing the document no longer has).
    Extra {
        routing: Option<String>,
    },
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

    /// MySQL → index: missing and different documents.
    async fn mysql_pass(&mut self) -> anyhow::Result<()> {
        let page_size = self.cfg.update.page_size;
        let mut masters = self
            .retry("read master rows", || {
                self.m.masters(self.source, None, page_size)
            })
            .await?;
        while !masters.is_empty() {
            self.interrupted()?;
            let next_after = masters.last_key.clone();
            let (page, next) = tokio::join!(
                self.retry("read items", || self.m.build(self.source, masters.clone())),
                self.retry("read master rows", || {
                    self.m
                        .masters(self.source, next_after.as_deref(), page_size)
                })
            );
            self.check_page(page?.documents).await?;
            if self.suspects.len() >= RECHECK_BATCH {
                self.recheck().await?;
            }
            masters = next?;
        }
        self.recheck().await
    }

    async fn check_page(&mut self, docs: Vec<Document>) -> anyhow::Result<()> {
        self.t.checked += docs.len() as u64;
        for chunk in docs.chunks(MGET_CHUNK) {
            let refs: Vec<DocRef<'_>> = chunk
                .iter()
                .map(|d| DocRef {
                    id: &d.id,
                    routing: d.routing.as_deref(),
                })
                .collect();
            let stored = self
                .retry("read documents from Elasticsearch", || {
                    mee_es::mget(self.es, self.index, &refs)
                })
                .await?;
            for (d, stored) in chunk.iter().zip(stored) {
                let kind = match stored {
                    None => Kind::Missing,
                    Some(s) => {
                        self.t.found += 1;
                        if differences(&s, d, 1).is_empty() {
                            continue;
                        }
                        Kind::Different
                    }
                };
                self.suspects.push(Suspect {
                    id: d.id.clone(),
                    keys: vec![d.key.clone()],
                    routing: d.routing.clone(),
                    kind,
                });
            }
        }
        Ok(())
    }

    /// Index → MySQL: documents without a master row. `Some(why)` when the
    /// `document_id` template cannot be inverted, so they cannot be found.
    async fn index_pass(&mut self) -> anyhow::Result<Option<String>> {
        // Everything written so far becomes visible to the scroll (searches see the
        // index as of its last refresh).
        if let Err(e) = self
            .retry("refresh the index", || mee_es::refresh(self.es, self.index))
            .await
        {
            self.note(format!(
                "could not refresh the index ({e:#}): documents written since its last refresh \
                 were not looked at for having no master row"
            ));
        }
        let inverter = match IdInverter::new(self.handler) {
            Ok(i) => i,
            Err(why) => {
                let count = self
                    .retry("count the index's documents", || {
                        mee_es::count(self.es, self.index)
                    })
                    .await?;
                return Ok(Some(format!(
                    "documents without a master row cannot be found: {why}. The index holds {count} \
                     documents; {} of the {} built from MySQL were found in it",
                    self.t.found, self.t.checked
                )));
            }
        };
        let mut scroll = IdScroll::new(
            self.es.clone(),
            self.index,
            self.cfg.update.page_size,
            SCROLL_KEEP_ALIVE,
        );
        loop {
            if let Err(e) = self.interrupted() {
                scroll.close().await;
                return Err(e);
            }
            let Some(hits) = scroll
                .next_page()
                .await
                .context("listing the index's document ids")?
            else {
                break;
            };
            self.t.scanned += hits.len() as u64;
            let candidates: Vec<Vec<Vec<Cell>>> =
                hits.iter().map(|h| inverter.keys(&h.id)).collect();
            let all: Vec<Vec<Cell>> = candidates.iter().flatten().cloned().collect();
            let refs = if all.is_empty() {
                Vec::new()
            } else {
                self.retry("read master rows", || {
                    self.m.document_refs(self.source, &all)
                })
                .await?
                .0
            };
            let routing_by_id: HashMap<&str, Option<&str>> = refs
                .iter()
                .map(|r| (r.id.as_str(), r.routing.as_deref()))
                .collect();
            for (hit, keys) in hits.into_iter().zip(candidates) {
                let extra = match routing_by_id.get(hit.id.as_str()) {
                    None => true,
                    // A copy under a routing the document does not have (when the
                    // cluster tells the routing of hits).
                    Some(routing) => hit.routing.is_some() && hit.routing.as_deref() != *routing,
                };
                if extra {
                    self.suspects.push(Suspect {
                        id: hit.id,
                        keys,
                        routing: hit.routing,
                        kind: Kind::Extra,
                    });
                }
            }
            if self.suspects.len() >= RECHECK_BATCH {
                self.recheck().await?;
            }
        }
        self.recheck().await?;
        Ok(None)
    }

    /// Re-check the suspects after the current lag; report (and repair) what still
    /// differs.
    async fn recheck(&mut self) -> anyhow::Result<()> {
        if self.suspects.is_empty() {
            return Ok(());
        }
        let suspects = std::mem::take(&mut self.suspects);
        self.t.rechecked += suspects.len() as u64;
        self.settle(suspects.len()).await?;
        // Read before materializing: any change after it has a higher version.
        let version = match &self.writer {
            Some(_) => Some(self.repair_version().await?),
            None => None,
        };
        let keys: Vec<Vec<Cell>> = suspects.iter().flat_map(|s| s.keys.clone()).collect();
        let truth: HashMap<String, Document> = if keys.is_empty() {
            HashMap::new()
        } else {
            self.retry("read items", || self.m.keys(self.source, &keys))
                .await?
                .documents
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect()
        };
        let mut ops = Vec::new();
        for chunk in suspects.chunks(MGET_CHUNK) {
            let refs: Vec<DocRef<'_>> = chunk
                .iter()
                .map(|s| DocRef {
                    id: &s.id,
                    routing: match (s.kind, truth.get(&s.id)) {
                        (Kind::Extra, _) | (_, None) => s.routing.as_deref(),
                        (_, Some(d)) => d.routing.as_deref(),
                    },
                })
                .collect();
            let stored = self
                .retry("read documents from Elasticsearch", || {
                    mee_es::mget(self.es, self.index, &refs)
                })
                .await?;
            for (s, stored) in chunk.iter().zip(stored) {
                let doc = truth.get(&s.id);
                let op = |action: BulkAction, routing: Option<String>| BulkOp {
                    index: self.index.to_string(),
                    id: s.id.clone(),
                    routing,
                    version: version.unwrap_or_default(),
                    action,
                };
                let index_op = |d: &Document| {
                    op(
                        BulkAction::Index {
                            source: d.source.clone(),
                        },
                        d.routing.clone(),
                    )
                };
                match verdict(s, doc, stored.as_ref()) {
                    Verdict::Settled => self.t.in_flight += 1,
                    Verdict::Missing => {
                        self.t.missing += 1;
                        if self.t.missing <= IDS_SHOWN {
                            println!("missing    {}", s.id);
                        }
                        ops.extend(doc.map(index_op));
                    }
                    Verdict::Different(diffs) => {
                        self.t.different += 1;
                        if self.t.different <= IDS_SHOWN {
                            println!("different  {}", s.id);
                        }
                        if self.t.different <= DIFFS_SHOWN {
                            for d in &diffs {
                                println!("    {d}");
                            }
                        }
                        ops.extend(doc.map(index_op));
                    }
                    Verdict::Extra { routing } => {
                        self.t.extra += 1;
                        if self.t.extra <= IDS_SHOWN {
                            match (&routing, doc) {
                                (Some(r), Some(d)) => println!(
                                    "extra      {} (a copy under routing {r}; the document's routing is {})",
                                    s.id,
                                    d.routing.as_deref().unwrap_or("none")
                                ),
                                _ => println!("extra      {} (no master row in MySQL)", s.id),
                            }
                        }
                        ops.push(op(BulkAction::Delete, routing));
                    }
                }
            }
        }
        if !ops.is_empty()
            && let Some(writer) = &self.writer
        {
            let outcome = writer
                .write(ops)
                .await
                .context("repairing: writing to Elasticsearch")?;
            self.t.indexed += outcome.indexed;
            self.t.deleted += outcome.deleted;
            self.t.conflicts += outcome.conflicts;
            for r in &outcome.rejected {
                self.t.refused += 1;
                println!("refused    {}: HTTP {}: {}", r.op.id, r.status, r.reason);
            }
        }
        Ok(())
    }

    /// Wait until the changes made up to now are in the index: `listen` has published
    /// MySQL's binlog up to its current position, and the live generation's consumer
    /// group (`sync`) has passed the change topics' current ends. Gives up after
    /// `--recheck-timeout` (once; later re-checks then do not wait).
    async fn settle(&mut self, suspects: usize) -> anyhow::Result<()> {
        if self.lag_given_up {
            return Ok(());
        }
        let started = Instant::now();
        tracing::info!(
            documents = suspects,
            "waiting for listen and sync to apply the changes made so far, then re-checking"
        );
        match self.wait_for_lag(started + self.opts.recheck_timeout).await {
            Ok(true) => {
                tracing::info!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "caught up; re-checking"
                );
            }
            Ok(false) => {
                self.lag_given_up = true;
                self.note(format!(
                    "listen and sync did not catch up within {} s (--recheck-timeout; are `listen` \
                     and `sync -n {}` running?): the drift reported may include changes still in \
                     flight",
                    self.opts.recheck_timeout.as_secs(),
                    self.generation.map_or("<task>", |g| g.task.as_str())
                ));
            }
            Err(e) => {
                self.lag_given_up = true;
                self.note(format!(
                    "could not measure the sync lag ({e:#}); re-checked without waiting"
                ));
            }
        }
        self.interrupted()
    }

    /// `Ok(true)` once caught up, `Ok(false)` at the deadline.
    async fn wait_for_lag(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        let keys = Keys::new(&self.cfg.redis.key_prefix);
        let shown_url = mee_core::secret::redact_url(self.cfg.redis.url.expose());
        for db in self.databases.clone() {
            let now = self.binlog_position(&db).await?;
            let mut saved = PositionStore::new(self.redis.clone(), &keys, &db, &shown_url);
            loop {
                let Some(at) = saved.load().await? else {
                    self.note(format!(
                        "`listen -d {db}` has saved no position: changes it has not published \
                         yet were not waited for"
                    ));
                    break;
                };
                match at.binlog_cmp(&now) {
                    Some(o) if o.is_ge() => break,
                    None => {
                        self.note(format!(
                            "listen's position {at} and MySQL's {now} cannot be compared: \
                             changes `listen -d {db}` has not published yet were not waited for"
                        ));
                        break;
                    }
                    Some(_) if Instant::now() >= deadline => return Ok(false),
                    Some(_) => self.pause(Duration::from_millis(200)).await?,
                }
            }
        }
        let Some(g) = self.generation else {
            self.note(
                "no live generation in Redis, so no consumer group to wait for: re-checked \
                 without waiting for sync"
                    .into(),
            );
            return Ok(true);
        };
        let mark = mee_kafka::end_offsets(&self.cfg.kafka, &g.topics, KAFKA_TIMEOUT).await?;
        loop {
            let lag =
                mee_kafka::group_lag(&self.cfg.kafka, &g.group, &g.topics, KAFKA_TIMEOUT).await?;
            let behind = mark.iter().any(|m| {
                m.offset > 0
                    && !lag
                        .partitions
                        .iter()
                        .any(|(topic, partition, committed, _)| {
                            *topic == m.topic && *partition == m.partition && *committed >= m.offset
                        })
            });
            if !behind {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.pause(Duration::from_millis(250)).await?;
        }
    }

    async fn pause(&self, d: Duration) -> anyhow::Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.shutdown.cancelled() => self.interrupted(),
        }
    }

    /// The version for repairs: the master database's binlog position now.
    async fn repair_version(&self) -> anyhow::Result<u64> {
        let db = &self.handler.master().database;
        let pos = self.binlog_position(db).await?;
        pos.version()
            .with_context(|| format!("binlog position {pos} of `{db}` as a version"))
    }

    async fn binlog_position(&self, db: &str) -> anyhow::Result<mee_core::BinlogPosition> {
        let mysql = self.cfg.mysql_for(db).map_err(anyhow::Error::msg)?;
        self.retry("read the binlog position", || async move {
            let mut conn = mee_mysql::connect(db, mysql).await?;
            let pos = mee_mysql::binlog_position(&mut conn, db).await;
            conn.disconnect().await.ok();
            pos
        })
        .await
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

    /// Run a MySQL or Elasticsearch step, retrying transient failures with backoff for
    /// at most `update.give_up_after_ms`.
    async fn retry<T, E, F, Fut>(&self, what: &str, op: F) -> anyhow::Result<T>
    where
        E: std::error::Error + Transient + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = self.cfg.update.give_up_after_ms;
        let attempt = retry_transient(what, Backoff::default(), self.shutdown, op);
        let result = if give_up == 0 {
            attempt.await
        } else {
            match tokio::time::timeout(Duration::from_millis(give_up), attempt).await {
                Ok(r) => r,
                Err(_) => bail!(
                    "{what}: still failing after {} s (update.give_up_after_ms)",
                    give_up / 1000
                ),
            }
        };
        match result {
            None => {
                self.interrupted()?;
                bail!("interrupted")
            }
            Some(r) => Ok(r.with_context(|| what.to_string())?),
        }
    }

    /// Print the totals; `Err` when drift remains.
    fn summary(&self, extras_unchecked: Option<String>) -> anyhow::Result<()> {
        let t = &self.t;
        println!(
            "checked {} documents: {} missing, {} extra, {} different",
            t.checked, t.missing, t.extra, t.different
        );
        let scanned = match &extras_unchecked {
            Some(_) => "index not scanned".to_string(),
            None => format!("{} ids read from the index", t.scanned),
        };
        println!(
            "  {} built from MySQL, {scanned}, {} re-checked after the sync lag ({} were \
             changes in flight)",
            t.checked, t.rechecked, t.in_flight
        );
        if let Some(why) = &extras_unchecked {
            println!("note: {why}");
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        if [t.missing, t.extra, t.different]
            .iter()
            .any(|n| *n > IDS_SHOWN)
        {
            println!(
                "note: only the first {IDS_SHOWN} ids of each kind are listed, and the fields of \
                 the first {DIFFS_SHOWN} different documents"
            );
        }
        let drift = t.missing + t.extra + t.different;
        if self.writer.is_some() {
            println!(
                "repaired {} of {drift} documents: {} indexed, {} deleted, {} already had a newer \
                 write, {} refused",
                drift.saturating_sub(t.refused),
                t.indexed,
                t.deleted,
                t.conflicts,
                t.refused
            );
            if t.refused > 0 {
                bail!(
                    "{} documents could not be repaired: Elasticsearch refused them (reasons above)",
                    t.refused
                );
            }
            return Ok(());
        }
        if drift > 0 {
            bail!(
                "drift: {drift} documents of index {} differ from MySQL ({} missing, {} extra, {} \
                 different); `--verify --repair` writes them again",
                self.index,
                t.missing,
                t.extra,
                t.different
            );
        }
        Ok(())
    }
}

/// The routing and source fields where the stored document differs from `doc`.
fn differences(stored: &StoredDoc, doc: &Document, max: usize) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    if stored.routing != doc.routing {
        out.push(FieldDiff {
            path: "_routing".into(),
            es: stored.routing.clone().map(Value::String),
            mysql: doc.routing.clone().map(Value::String),
        });
    }
    out.extend(compare::diff(
        &stored.source,
        &doc.source_value(),
        max.saturating_sub(out.len()),
    ));
    out
}

/// What a suspect is after the re-check: `doc` is what MySQL builds for its id now,
/// `stored` what the index holds (looked up with `doc`'s routing, or with the stored
/// copy's for an extra one).
fn verdict(s: &Suspect, doc: Option<&Document>, stored: Option<&StoredDoc>) -> Verdict {
    let stored_routing = |st: &StoredDoc| st.routing.clone().or_else(|| s.routing.clone());
    match (doc, stored) {
        (None, None) => Verdict::Settled,
        (None, Some(st)) => Verdict::Extra {
            routing: stored_routing(st),
        },
        (Some(_), None) if s.kind == Kind::Extra => Verdict::Settled,
        (Some(_), None) => Verdict::Missing,
        (Some(d), Some(st)) if s.kind == Kind::Extra && st.routing != d.routing => Verdict::Extra {
            routing: stored_routing(st),
        },
        (Some(d), Some(st)) => {
            let diffs = differences(st, d, FIELDS_SHOWN);
            if diffs.is_empty() {
                Verdict::Settled
            } else {
                Verdict::Different(diffs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(id: &str, routing: Option<&str>, source: Value) -> Document {
        Document {
            key: vec![Cell::Bytes(id.as_bytes().to_vec())],
            id: id.into(),
            routing: routing.map(Into::into),
            source: source.to_string(),
        }
    }

    fn stored(id: &str, routing: Option<&str>, source: Value) -> StoredDoc {
        StoredDoc {
            id: id.into(),
            routing: routing.map(Into::into),
            version: Some(1),
            source,
        }
    }

    fn suspect(kind: Kind, routing: Option<&str>) -> Suspect {
        Suspect {
            id: "1".into(),
            keys: Vec::new(),
            routing: routing.map(Into::into),
            kind,
        }
    }

    #[test]
    fn verdicts_after_the_recheck() {
        let d = doc("1", None, json!({"a": 1}));
        let same = stored("1", None, json!({"a": 1.0}));
        let other = stored("1", None, json!({"a": 2}));
        let missing = suspect(Kind::Missing, None);
        assert!(matches!(
            verdict(&missing, Some(&d), Some(&same)),
            Verdict::Settled
        ));
        assert!(matches!(
            verdict(&missing, Some(&d), None),
            Verdict::Missing
        ));
        match verdict(&missing, Some(&d), Some(&other)) {
            Verdict::Different(diffs) => {
                assert_eq!(diffs[0].to_string(), "a: es=2 mysql=1")
            }
            _ => panic!("different"),
        }
        // The master row went away meanwhile: gone from the index too, or left over.
        assert!(matches!(verdict(&missing, None, None), Verdict::Settled));
        assert!(matches!(
            verdict(&missing, None, Some(&same)),
            Verdict::Extra { routing: None }
        ));
        // An extra document whose master row appeared meanwhile.
        let extra = suspect(Kind::Extra, None);
        assert!(matches!(
            verdict(&extra, Some(&d), Some(&same)),
            Verdict::Settled
        ));
        assert!(matches!(verdict(&extra, Some(&d), None), Verdict::Settled));
        // A copy under a routing the document does not have.
        let routed = doc("1", Some("r1"), json!({"a": 1}));
        let stray = stored("1", Some("r9"), json!({"a": 1}));
        assert!(matches!(
            verdict(&suspect(Kind::Extra, Some("r9")), Some(&routed), Some(&stray)),
            Verdict::Extra { routing: Some(r) } if r == "r9"
        ));
    }

    #[test]
    fn a_routing_difference_is_a_difference() {
        let d = doc("1", Some("a"), json!({"x": 1}));
        let s = stored("1", Some("b"), json!({"x": 1}));
        let diffs: Vec<String> = differences(&s, &d, 5)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(diffs, [r#"_routing: es="b" mysql="a""#]);
    }
}
