//! A rebuild, start to finish: pick or create the generation, load it, wait for `sync`
//! to catch it up, swap the alias, retire the old generation.

use crate::handler_databases;
use crate::load::Load;
use crate::metrics::Metrics;
use anyhow::{Context, bail};
use mee_core::generation::{Generation, GenerationState, millis};
use mee_core::handler::Handler;
use mee_core::{AppConfig, Transient};
use mee_es::elasticsearch::Elasticsearch;
use mee_kafka::DeadLetterQueue;
use mee_mysql::MySqlSource;
use mee_redis::GenerationStore;
use mee_telemetry::CancellationToken;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant, SystemTime};

/// What to do with an unfinished generation, and whether to wait and swap.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub resume: bool,
    pub drop_unfinished: bool,
    pub no_wait: bool,
    pub no_swap: bool,
}

pub struct Rebuild<'a> {
    pub cfg: &'a AppConfig,
    pub handler: &'a Handler,
    pub handler_path: String,
    pub task: &'a str,
    pub es: &'a Elasticsearch,
    pub store: &'a mut GenerationStore,
    pub metrics: &'a Metrics,
    pub shutdown: &'a CancellationToken,
    pub options: Options,
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

fn now() -> u64 {
    millis(SystemTime::now())
}

impl Rebuild<'_> {
    pub async fn run(&mut self) -> anyhow::Result<Generation> {
        let mut g = match self.unfinished().await? {
            Some(g) => g,
            None => self.start().await?,
        };
        if g.state == GenerationState::Building {
            self.load(&mut g).await?;
            self.restore_settings(&g).await?;
            g.set_state(GenerationState::CatchingUp, now())
                .map_err(anyhow::Error::msg)?;
            self.store.put(&g).await?;
        }
        if self.options.no_swap {
            tracing::info!(
                generation = %g.id, index = %g.index,
                "built; not swapping (--no-swap). `sync` keeps it current; run `update --resume` to swap later"
            );
            return Ok(g);
        }
        if self.options.no_wait {
            tracing::info!("not waiting for sync to catch up (--no-wait)");
        } else {
            self.catch_up(&g).await?;
        }
        self.swap(&mut g).await?;
        self.retire_old(&g).await?;
        Ok(g)
    }

    /// The task's unfinished generation, if any, per `--resume` / `--drop-unfinished`.
    async fn unfinished(&mut self) -> anyhow::Result<Option<Generation>> {
        let unfinished: Vec<Generation> = self
            .store
            .list(self.task)
            .await?
            .into_iter()
            .filter(|g| {
                matches!(
                    g.state,
                    GenerationState::Building | GenerationState::CatchingUp
                )
            })
            .collect();
        let Some(newest) = unfinished.last().cloned() else {
            if self.options.resume {
                tracing::info!("nothing to resume: starting a new generation");
            }
            return Ok(None);
        };
        if self.options.drop_unfinished {
            for g in &unfinished {
                self.drop_generation(g).await?;
                tracing::info!(generation = %g.id, index = %g.index, "dropped the unfinished generation");
            }
            return Ok(None);
        }
        if self.options.resume {
            if newest.offsets_mark.is_empty() {
                // Killed between recording the generation and committing its consumer
                // group: `sync` never consumes it, and no row was loaded yet.
                tracing::warn!(
                    generation = %newest.id,
                    "the unfinished generation's set-up was interrupted before its consumer \
                     group was committed: dropping it and starting a new generation"
                );
                self.drop_generation(&newest).await?;
                return Ok(None);
            }
            if newest.handler_yaml != self.handler.source {
                tracing::warn!(
                    generation = %newest.id,
                    "the handler file differs from the generation's copy; resuming with the copy"
                );
            }
            tracing::info!(generation = %newest.id, state = %newest.state, "resuming");
            return Ok(Some(newest));
        }
        bail!(
            "task `{}` has an unfinished generation {} (state {}, index {}, {} masters loaded): \
             run again with --resume to finish it, or --drop-unfinished to delete it and start over",
            self.task,
            newest.id,
            newest.state,
            newest.index,
            newest.counters.masters_read
        )
    }

    /// A new generation: recorded in Redis first (so a crash leaves something to drop),
    /// then its index, then its consumer group at the change topics' current ends, before
    /// any row is read: every change made during the load reaches it through `sync`.
    async fn start(&mut self) -> anyhow::Result<Generation> {
        let alias = &self.handler.alias;
        if mee_es::alias_is_concrete_index(self.es, alias).await? {
            bail!(
                "`{alias}` is an index, not an alias: `update` serves the documents under the alias \
                 `{alias}` and builds indices named `{alias}_<timestamp>`. Rename or delete that index \
                 (or choose another alias in the handler) first"
            );
        }
        let databases = handler_databases(self.handler);
        let topics: Vec<String> = databases
            .iter()
            .map(|d| self.cfg.kafka.topic_for(d))
            .collect();
        let mut g = Generation::new(
            self.task,
            alias,
            topics.clone(),
            self.handler.source.clone(),
            self.handler_path.clone(),
            now(),
        )
        .map_err(anyhow::Error::msg)?;
        self.store.put(&g).await?;
        mee_es::create_index(
            self.es,
            &g.index,
            Some(&load_settings(
                self.handler.settings.as_ref(),
                &self.cfg.update.load_gc_deletes,
            )),
            self.handler.mappings.as_ref(),
        )
        .await
        .with_context(|| format!("creating index {}", g.index))?;
        for t in &topics {
            mee_kafka::ensure_topic(&self.cfg.kafka, t).await?;
        }
        let mark = mee_kafka::end_offsets(&self.cfg.kafka, &topics, KAFKA_TIMEOUT).await?;
        mee_kafka::commit_group_offsets(&self.cfg.kafka, &g.group, &mark, KAFKA_TIMEOUT).await?;
        g.offsets_mark = mark;
        g.updated_at_ms = now();
        self.store.put(&g).await?;
        tracing::info!(
            generation = %g.id, index = %g.index, group = %g.group, topics = %topics.join(","),
            "new generation: consumer group committed at the change topics' ends"
        );
        Ok(g)
    }

    async fn load(&mut self, g: &mut Generation) -> anyhow::Result<()> {
        let databases = handler_databases(self.handler);
        let source = MySqlSource::new(self.cfg, databases.iter().copied())?;
        let writer = mee_es::BulkWriter::new(self.es.clone(), self.cfg.elasticsearch.bulk.clone());
        let dlq = DeadLetterQueue::open(&self.cfg.kafka, self.task).await?;
        let started = Instant::now();
        let result = Load {
            cfg: self.cfg,
            handler: self.handler,
            source: &source,
            writer: &writer,
            dlq: &dlq,
            store: self.store,
            metrics: self.metrics,
            shutdown: self.shutdown,
        }
        .run(g)
        .await;
        source.close().await;
        result?;
        g.loaded_at_ms = Some(now());
        tracing::info!(
            masters = g.counters.masters_read,
            documents = g.counters.documents_written,
            rejected = g.counters.documents_rejected,
            seconds = started.elapsed().as_secs(),
            "load complete"
        );
        if g.counters.documents_rejected > 0 {
            tracing::warn!(
                rejected = g.counters.documents_rejected,
                topic = %dlq.topic(),
                "Elasticsearch refused some documents; they are in the dead-letter topic with the reasons"
            );
        }
        Ok(())
    }

    /// Put back the handler's own refresh interval, replicas and gc_deletes (or the
    /// cluster defaults), and refresh so the documents are searchable.
    async fn restore_settings(&self, g: &Generation) -> anyhow::Result<()> {
        let own = |name: &str| -> Value {
            let s = self.handler.settings.as_ref();
            s.and_then(|s| s.pointer(&format!("/index/{name}")).or_else(|| s.get(name)))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let body = json!({"index": {
            "refresh_interval": own("refresh_interval"),
            "number_of_replicas": own("number_of_replicas"),
        }});
        mee_es::put_index_settings(self.es, &g.index, &body).await?;
        mee_es::refresh(self.es, &g.index).await?;
        Ok(())
    }

    /// Wait until the generation's consumer group has applied the changes made during
    /// the load (its lag is at most `update.catch_up_max_lag`).
    async fn catch_up(&self, g: &Generation) -> anyhow::Result<()> {
        let limit = Duration::from_millis(self.cfg.update.catch_up_timeout_ms);
        let max_lag = self.cfg.update.catch_up_max_lag;
        let started = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let lag =
                mee_kafka::group_lag(&self.cfg.kafka, &g.group, &g.topics, KAFKA_TIMEOUT).await?;
            if lag.total <= max_lag {
                tracing::info!(lag = lag.total, "caught up");
                return Ok(());
            }
            if started.elapsed() >= limit {
                bail!(
                    "generation {} is not caught up after {} s: its consumer group {} is {} messages \
                     behind. Is `sync -n {}` running? The generation stays `catching_up`; run \
                     `update --resume` to wait again",
                    g.id,
                    limit.as_secs(),
                    g.group,
                    lag.total,
                    self.task
                );
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                tracing::info!(lag = lag.total, group = %g.group, "waiting for sync to catch up");
                last_log = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.shutdown.cancelled() => bail!("interrupted while waiting for sync; run `update --resume`"),
            }
        }
    }

    /// Move the alias in one request, then mark the generations.
    async fn swap(&mut self, g: &mut Generation) -> anyhow::Result<()> {
        let alias = &self.handler.alias;
        let old = mee_es::alias_targets(self.es, alias).await?;
        let old: Vec<String> = old.into_iter().filter(|i| i != &g.index).collect();
        mee_es::swap_alias(self.es, alias, &old, &g.index).await?;
        g.set_state(GenerationState::Live, now())
            .map_err(anyhow::Error::msg)?;
        self.store.put(g).await?;
        // The handler's gc_deletes now that no rebuild write can arrive late.
        let gc = self
            .handler
            .settings
            .as_ref()
            .and_then(|s| {
                s.pointer("/index/gc_deletes")
                    .or_else(|| s.get("gc_deletes"))
            })
            .cloned()
            .unwrap_or(Value::Null);
        mee_es::put_index_settings(self.es, &g.index, &json!({"index": {"gc_deletes": gc}}))
            .await?;
        tracing::info!(alias = %alias, index = %g.index, previous = %old.join(","), "alias swapped");
        Ok(())
    }

    /// Retire every other live generation; delete retired ones beyond
    /// `update.keep_generations` (index, consumer group, record).
    async fn retire_old(&mut self, live: &Generation) -> anyhow::Result<()> {
        let mut retired = Vec::new();
        for mut g in self.store.list(self.task).await? {
            if g.id == live.id {
                continue;
            }
            if g.state != GenerationState::Retired {
                g.set_state(GenerationState::Retired, now())
                    .map_err(anyhow::Error::msg)?;
                self.store.put(&g).await?;
                tracing::info!(generation = %g.id, index = %g.index, "retired");
            }
            retired.push(g);
        }
        retired.sort_by(|a, b| b.id.cmp(&a.id));
        for g in retired.iter().skip(self.cfg.update.keep_generations) {
            self.drop_generation(g).await?;
            tracing::info!(generation = %g.id, index = %g.index, "deleted an old generation");
        }
        Ok(())
    }

    /// Delete a generation's index and consumer group, then its record. An active
    /// generation is retired first, and `sync` given time to stop its consumer, so no
    /// late write re-creates the deleted index.
    async fn drop_generation(&mut self, g: &Generation) -> anyhow::Result<()> {
        if g.state.is_active() {
            let mut retired = g.clone();
            retired
                .set_state(GenerationState::Retired, now())
                .map_err(anyhow::Error::msg)?;
            self.store.put(&retired).await?;
            let settle = 2 * self.cfg.sync.generations_poll_ms + 1000;
            tracing::info!(generation = %g.id, wait_ms = settle, "retired; waiting for sync to stop its consumer");
            tokio::time::sleep(Duration::from_millis(settle)).await;
        }
        // The group first: while a consumer is still in it (Kafka says the group is
        // not empty), nothing is deleted yet and the index cannot come back.
        let started = Instant::now();
        loop {
            match mee_kafka::delete_group(&self.cfg.kafka, &g.group, KAFKA_TIMEOUT).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(60) => {
                    tracing::info!(group = %g.group, error = %e, "waiting for the consumer group to empty");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "deleting consumer group {} of generation {}: is a `sync -n {}` still \
                         consuming it? The generation is retired and kept; run again later",
                        g.group, g.id, self.task
                    )));
                }
            }
        }
        mee_es::delete_index(self.es, &g.index).await?;
        self.store.remove(self.task, &g.id).await?;
        Ok(())
    }
}

/// The handler's index settings with the load's overrides: no refresh, no replicas,
/// and a `gc_deletes` longer than the rebuild.
fn load_settings(handler: Option<&Value>, gc_deletes: &str) -> Value {
    let mut settings = handler.cloned().unwrap_or_else(|| json!({}));
    let obj = settings
        .as_object_mut()
        .expect("handler settings are an object");
    let index = obj
        .entry("index")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(index) = index.as_object_mut() {
        index.insert("refresh_interval".into(), json!("-1"));
        index.insert("number_of_replicas".into(), json!(0));
        index.insert("gc_deletes".into(), json!(gc_deletes));
    }
    for key in ["refresh_interval", "number_of_replicas", "gc_deletes"] {
        obj.remove(key);
        obj.remove(&format!("index.{key}"));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_settings_override_the_handlers_and_keep_the_rest() {
        let handler = json!({"number_of_shards": 2, "index": {"refresh_interval": "5s"}, "number_of_replicas": 2});
        assert_eq!(
            load_settings(Some(&handler), "24h"),
            json!({"number_of_shards": 2, "index": {"refresh_interval": "-1", "number_of_replicas": 0, "gc_deletes": "24h"}})
        );
        assert_eq!(
            load_settings(None, "1h"),
            json!({"index": {"refresh_interval": "-1", "number_of_replicas": 0, "gc_deletes": "1h"}})
        );
    }
}
