//! Which index `--verify` looks at, and with which copy of the handler: the task's
//! live generation in Redis, else the one index the alias points at.

use anyhow::{Context, bail};
use mee_core::generation::{Generation, GenerationState};
use mee_core::handler::Handler;
use mee_es::elasticsearch::Elasticsearch;
use mee_redis::GenerationStore;
use std::path::Path;

/// The index verified, and what it is verified with.
pub(super) struct Target {
    pub(super) index: String,
    pub(super) alias: String,
    /// What `sync` applies: the live generation's copy of the handler, else the file.
    pub(super) handler: Handler,
    /// The task's live generation, when Redis has one.
    pub(super) live: Option<Generation>,
}

impl Target {
    /// The live generation's index (warning when the alias points elsewhere), else the
    /// alias's only index; `file_handler` is the handler read from `handler_path`.
    pub(super) async fn find(
        handler_path: &Path,
        file_handler: Handler,
        task: &str,
        es: &Elasticsearch,
        store: &mut GenerationStore,
    ) -> anyhow::Result<Self> {
        let live = store
            .list(task)
            .await?
            .into_iter()
            .rev()
            .find(|g| g.state == GenerationState::Live);

        let alias = live
            .as_ref()
            .map_or_else(|| file_handler.alias.clone(), |g| g.alias.clone());
        let targets = mee_es::alias_targets(es, &alias).await?;
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
        Ok(Self {
            index,
            alias,
            handler,
            live,
        })
    }

    /// Print what is verified.
    pub(super) fn announce(&self, task: &str) {
        let (index, alias) = (&self.index, &self.alias);
        match &self.live {
            Some(g) => println!(
                "verifying index {index} (alias {alias}, task {task}, generation {}) against MySQL",
                g.id
            ),
            None => println!(
                "verifying index {index} (alias {alias}; task {task} has no live generation in Redis) \
                 against MySQL"
            ),
        }
    }
}
