//! `update -c <handler> --check`: validate a handler, then (when the servers answer)
//! preflight it against MySQL and Elasticsearch. Writes nothing.

use crate::handler_databases;
use anyhow::{Context, bail};
use mee_core::handler::Handler;
use mee_core::{AppConfig, Transient};
use mee_mysql::MySqlSource;
use std::path::Path;

/// Returns the lines to print on success; an error lists every problem.
pub async fn check(handler_path: &Path, cfg: &AppConfig) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(handler_path)
        .with_context(|| format!("cannot read handler {}", handler_path.display()))?;
    let handler = Handler::parse(&handler_path.display().to_string(), &text)?;
    let mut report = vec![format!(
        "{}: valid: index alias `{}`, {} items",
        handler_path.display(),
        handler.alias,
        handler.all_items().len()
    )];

    // `sync` must be able to trace every item's changes to the documents.
    let untraceable = mee_core::materialize::Materializer::new(&handler).untraceable();
    if !untraceable.is_empty() {
        bail!(problem_list(
            &untraceable
                .iter()
                .map(|u| format!("{u} (sync would refuse it)"))
                .collect::<Vec<_>>()
        ));
    }

    let databases = handler_databases(&handler);
    let mut problems: Vec<String> = databases
        .iter()
        .filter_map(|db| cfg.mysql_for(db).err())
        .collect();
    if !problems.is_empty() {
        bail!(problem_list(&problems));
    }

    // MySQL preflight, when every database answers.
    let source = MySqlSource::new(cfg, databases.iter().copied())?;
    let mut reachable = true;
    for db in &databases {
        let mysql = cfg.mysql_for(db).map_err(anyhow::Error::msg)?;
        match mee_mysql::connect(db, mysql).await {
            Ok(conn) => {
                conn.disconnect().await.ok();
            }
            Err(e) if e.is_transient() => {
                report.push(format!("preflight skipped for MySQL: {e}"));
                reachable = false;
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if reachable && problems.is_empty() {
        let found = mee_mysql::check_handler(&source, &handler).await;
        if found.is_empty() {
            report.push(format!(
                "MySQL preflight ok: {} database(s), every statement prepares, the columns exist",
                databases.len()
            ));
        }
        problems.extend(found.iter().map(ToString::to_string));
    }
    source.close().await;

    // Elasticsearch: does it accept the index settings and mappings?
    let es = mee_es::client(&cfg.elasticsearch)?;
    match mee_es::cluster_info(&es).await {
        Err(e) if e.is_transient() => {
            report.push(format!("preflight skipped for Elasticsearch: {e}"))
        }
        Err(e) => problems.push(e.to_string()),
        Ok(info) => {
            match mee_es::check_index_body(
                &es,
                &handler.alias,
                handler.settings.as_ref(),
                handler.mappings.as_ref(),
            )
            .await
            {
                Ok(()) => report.push(format!(
                    "Elasticsearch preflight ok: {} {} accepts the index settings and mappings",
                    info.distribution, info.version
                )),
                Err(e) => problems.push(format!("index settings/mappings refused: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        bail!(problem_list(&problems))
    }
}

fn problem_list(problems: &[String]) -> String {
    let mut s = format!("preflight found {} problem(s):", problems.len());
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
}
