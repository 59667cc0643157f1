//! One rebuild: the `update` binary run under names of its own, its result checked,
//! what it created deleted; and what it took.

use super::child::{phases, run_update};
use crate::common::{cleanup, config_toml, count, http_client, unique};
use crate::fixture;
use anyhow::{bail, ensure};
use mee_core::AppConfig;
use mee_test_support::StackEnv;
use std::path::{Path, PathBuf};

/// What one `update` run took.
#[derive(Debug, Clone)]
pub(super) struct Rebuild {
    /// Wall time from spawning the process to its exit.
    pub(super) secs: f64,
    /// Peak RSS of the process, MiB.
    pub(super) rss_mib: f64,
    /// CPU time of the process (user + system), seconds.
    pub(super) cpu_secs: f64,
    pub(super) phases: Phases,
}

/// Where a run's time went, from its log timestamps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Phases {
    /// Start to the `new generation` log line: connecting, creating the index, topics
    /// and consumer group.
    pub(super) setup: f64,
    /// `new generation` to `load complete`.
    pub(super) load: f64,
    /// `load complete` to exit: settings, refresh, lag check, alias swap.
    pub(super) finish: f64,
}

/// One `update` run of the `masters` fixture into the Elasticsearch API at `es_url`,
/// under names of its own; checks its result line and the index's count, then deletes
/// what it created.
pub(super) async fn rebuild(
    env: &StackEnv,
    bin: &Path,
    es_url: &str,
    masters: u64,
) -> anyhow::Result<Rebuild> {
    let name = unique("mee_bench_upd");
    let task = format!("{name}_task");
    let alias = format!("{name}_orders");
    let schema = fixture::schema(masters);
    let toml = config_toml(env, &schema, &name, es_url)?;
    let cfg = AppConfig::from_toml_str(&toml, Default::default())?;
    let files = Files::new(&name);
    std::fs::write(&files.config, &toml)?;
    std::fs::write(&files.handler, fixture::handler_with_alias(&alias))?;

    let run = run_update(bin, &files, &task).await;
    let stdout = std::fs::read_to_string(&files.stdout).unwrap_or_default();
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    let generation = stdout
        .split_once("generation ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned);
    let http = http_client()?;
    let counted = count(&http, es_url, &alias).await;
    cleanup(
        env,
        &cfg,
        &http,
        es_url,
        &alias,
        &task,
        generation.as_deref(),
    )
    .await;

    let outcome = run.and_then(|exit| {
        let status = exit.status;
        if !status.success() {
            bail!(
                "update exited with {status}; its log ends:\n{}",
                tail(&log, 30)
            );
        }
        // `task `x`: generation <id> (<index>) is live; N masters, N documents, 0 dead-lettered`
        let expected = format!("is live; {masters} masters, {masters} documents, 0 dead-lettered");
        ensure!(
            stdout.contains(&expected),
            "update's result line is not `... {expected}`: {stdout}"
        );
        ensure!(
            counted.as_ref().ok() == Some(&masters),
            "the alias {alias} counts {counted:?} documents of {masters}"
        );
        let phases = phases(&log, exit.started, exit.ended)?;
        Ok(Rebuild {
            secs: exit.secs,
            rss_mib: exit.rss_mib,
            cpu_secs: exit.cpu_secs,
            phases,
        })
    });
    if outcome.is_ok() {
        files.remove();
    } else {
        eprintln!(
            "kept {} and {} for inspection",
            files.config.display(),
            files.log.display()
        );
    }
    outcome
}

/// The temporary files of one run.
pub(super) struct Files {
    pub(super) config: PathBuf,
    pub(super) handler: PathBuf,
    pub(super) stdout: PathBuf,
    pub(super) log: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir();
        Self {
            config: dir.join(format!("{name}.toml")),
            handler: dir.join(format!("{name}.yml")),
            stdout: dir.join(format!("{name}.out")),
            log: dir.join(format!("{name}.log")),
        }
    }

    fn remove(&self) {
        for f in [&self.config, &self.handler, &self.stdout, &self.log] {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
