//! Checks of a handler against the live MySQL servers: the databases, tables and
//! columns exist and every statement prepares. Nothing is written.

use crate::MySqlSource;
use mee_core::handler::{Field, Handler, Item};
use mee_core::materialize::Materializer;
use mee_core::value::Cell;
use mysql_async::prelude::Queryable;
use std::collections::HashSet;

/// One problem found by preflight, naming the item it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightProblem {
    pub item: String,
    pub message: String,
}

impl std::fmt::Display for PreflightProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item `{}`: {}", self.item, self.message)
    }
}

/// Prepare every statement and check that the tables and the columns the handler
/// names exist; then read one page the way `update` does (which runs the batched
/// forms of every item). Returns every problem.
pub async fn check_handler(source: &MySqlSource, handler: &Handler) -> Vec<PreflightProblem> {
    let mut problems = Vec::new();
    for item in handler.all_items() {
        if let Err(message) = check_item(source, item).await {
            problems.push(PreflightProblem {
                item: item.key.clone(),
                message,
            });
        }
    }
    // The queries `update` and `sync` run on the master: a first page, a key lookup.
    let m = Materializer::new(handler);
    let master = handler.master();
    let probe: Vec<Cell> = handler.primary_key.iter().map(|_| Cell::Null).collect();
    if let Err(e) = m.keys(source, &[probe]).await {
        problems.push(PreflightProblem {
            item: master.key.clone(),
            message: format!("looking up masters by key: {e}"),
        });
    }
    if problems.is_empty()
        && let Err(e) = m.page(source, None, 1).await
    {
        problems.push(PreflightProblem {
            item: master.key.clone(),
            message: format!("reading a first page: {e}"),
        });
    }
    problems
}

async fn check_item(source: &MySqlSource, item: &Item) -> Result<(), String> {
    let pool = source.pool(&item.database).map_err(|e| e.to_string())?;
    let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
    let (sql, _) = item.statement.render(&|_| Cell::Null, &[]);
    let stmt = conn
        .prep(&sql)
        .await
        .map_err(|e| format!("statement does not prepare: {e}"))?;
    let result: HashSet<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name_str().to_ascii_lowercase())
        .collect();
    conn.close(stmt).await.ok();

    let mut missing = Vec::new();
    let mut need = |col: &str, what: &str| {
        if !result.contains(&col.to_ascii_lowercase()) {
            missing.push(format!("`{col}` ({what})"));
        }
    };
    for f in &item.fields {
        if let Field::Column { column, .. } = f {
            need(column, "mapping");
        }
    }
    for t in item.document_id.iter().chain(&item.routing) {
        for c in t.columns() {
            need(c, "document_id/routing");
        }
    }
    for (_, t) in item.query.iter().chain(&item.parent_query) {
        for c in t.columns() {
            need(c, "query");
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the statement's result has no column {}",
            missing.join(", ")
        ));
    }

    let table_columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (&item.table,),
        )
        .await
        .map_err(|e| e.to_string())?;
    if table_columns.is_empty() {
        return Err(format!(
            "table `{}` does not exist in database `{}`",
            item.table, item.database
        ));
    }
    let table_columns: HashSet<String> = table_columns
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let unknown: Vec<&str> = item
        .filter
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| !table_columns.contains(&c.to_ascii_lowercase()))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "filter names columns `{}` that table `{}` does not have",
            unknown.join("`, `"),
            item.table
        ));
    }
    Ok(())
}
