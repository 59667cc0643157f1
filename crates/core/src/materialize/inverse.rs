//! The inverse of the materializer: which documents a changed row feeds.
//!
//! Every item other than the master is found from another row (its *link*) through
//! an equality in its statement, `<column> = %ref.<col>`: `%__master`, `%__parent` or
//! `%<item>`. Turned around, the rows of the linked item that can hold a changed row
//! `r` are those whose `<col>` equals `r.<column>`. Following links up to the master
//! gives the master keys, with one indexed SQL lookup per step (none when the step
//! reaches the master's primary key, as a nested child carrying its parent's id does).
//!
//! An item without such a link is found through its Elasticsearch `query` instead
//! (see [`super::by_query`]): the caller searches for those documents.
//!
//! The result can be a superset (an item's other conditions are not applied), never a
//! subset: every affected document is rebuilt from MySQL, so a superset costs a little
//! work and a subset would lose a change.

use super::by_query::{self, DocumentQuery};
use super::plan::{MAX_IN_VALUES, Plan, quote};
use super::{MaterializeError, QueryStats, RowSource};
use crate::handler::placeholder::Ref;
use crate::handler::{Field, Group, Item};
use crate::value::{Cell, MatchKey};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// How an item's row is found from another row: `item.column = %target.target_column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub column: String,
    pub target: usize,
    pub target_column: String,
}

/// Per item id: its link (`None` for the master, or when there is none).
pub(crate) fn links(plan: &Plan<'_>) -> Vec<Option<Link>> {
    let mut parent_of = vec![None; plan.items.len()];
    fn walk(plan: &Plan<'_>, group: &Group, parent_of: &mut [Option<usize>]) {
        for item in &group.items {
            for f in &item.fields {
                if let Field::Nested { group: inner, .. } = f {
                    for child in &inner.items {
                        parent_of[plan.id(child)] = Some(plan.id(item));
                    }
                    walk(plan, inner, parent_of);
                }
            }
        }
    }
    walk(plan, &plan.handler.group, &mut parent_of);
    plan.items
        .iter()
        .enumerate()
        .map(|(id, item)| {
            if id == plan.master_id {
                return None;
            }
            item.statement.equalities.iter().find_map(|eq| {
                let p = &item.statement.placeholders[eq.placeholder];
                let target = match &p.reference {
                    Ref::Master(_) => Some(plan.master_id),
                    Ref::Parent(_) => parent_of[id],
                    Ref::Item { key, .. } => plan.ids.get(key.as_str()).copied(),
                    Ref::Current(_) | Ref::Last(_) => None,
                }?;
                Some(Link {
                    column: eq.column.clone(),
                    target,
                    target_column: p.reference.column().to_string(),
                })
            })
        })
        .collect()
}

/// A row change as `sync` sees it: the row images from a change event.
#[derive(Debug, Clone, Copy)]
pub struct RowChange<'a> {
    pub database: &'a str,
    pub table: &'a str,
    pub before: Option<&'a Map<String, Value>>,
    pub after: Option<&'a Map<String, Value>>,
    /// The event's version: the affected documents are written with at least this.
    pub version: u64,
}

/// A master key affected by a batch of changes, with the newest version that affects it.
#[derive(Debug, Clone, PartialEq)]
pub struct AffectedKey {
    pub key: Vec<Cell>,
    pub version: u64,
}

/// Values of one column, each with the newest version that asks for it.
type Wanted = HashMap<MatchKey, (Cell, u64)>;

fn want(w: &mut Wanted, cell: Cell, version: u64) {
    if matches!(cell, Cell::Null) {
        return; // NULL equals nothing
    }
    let e = w.entry(cell.match_key()).or_insert((cell, version));
    e.1 = e.1.max(version);
}

/// A JSON value from a row image as a value to bind or match.
pub fn json_cell(v: &Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Int(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cell::Int(i),
            (None, Some(u)) => Cell::UInt(u),
            _ => Cell::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cell::Bytes(s.clone().into_bytes()),
        other => Cell::Bytes(other.to_string().into_bytes()),
    }
}

/// The image's value of `column` (exact name first, then case-insensitively).
fn image_value<'v>(image: &'v Map<String, Value>, column: &str) -> Option<&'v Value> {
    image.get(column).or_else(|| {
        image
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(column))
            .map(|(_, v)| v)
    })
}

/// A column of an image as template text, as [`Cell::to_text`] gives it for a row.
pub(crate) fn image_text(image: &Map<String, Value>, column: &str) -> Option<String> {
    match image_value(image, column)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        v => Some(v.to_string()),
    }
}

/// Whether the image passes the item's `filter` (every listed column has one of its
/// values; numbers and their text compare equal).
pub(crate) fn passes_filter(item: &Item, image: &Map<String, Value>) -> bool {
    item.filter.iter().all(|(column, accepted)| {
        let Some(v) = image_value(image, column) else {
            return false;
        };
        let got = json_cell(v).match_key();
        accepted.iter().any(|a| json_cell(a).match_key() == got)
    })
}

pub(crate) struct Inverse<'p, 'h> {
    pub plan: &'p Plan<'h>,
    pub links: &'p [Option<Link>],
}

type Res<T, S> = Result<T, MaterializeError<<S as RowSource>::Error>>;
/// Master keys, each with the newest version asking for it.
type KeysFuture<'a, S> = Pin<Box<dyn Future<Output = Res<Vec<(Vec<Cell>, u64)>, S>> + Send + 'a>>;

impl Inverse<'_, '_> {
    /// Items of the handler reading `database.table`.
    fn items_of<'a>(&'a self, database: &'a str, table: &'a str) -> impl Iterator<Item = usize> {
        self.plan
            .items
            .iter()
            .enumerate()
            .filter(move |(_, i)| i.database == database && i.table.eq_ignore_ascii_case(table))
            .map(|(id, _)| id)
    }

    /// Master keys affected by `changes`, each with the newest version affecting it,
    /// and the searches for documents held by rows of items no SQL inverse reaches.
    pub async fn affected<S: RowSource>(
        &self,
        source: &S,
        changes: &[RowChange<'_>],
        stats: &mut QueryStats,
    ) -> Res<(Vec<AffectedKey>, Vec<DocumentQuery>), S> {
        let mut keys: HashMap<Vec<MatchKey>, AffectedKey> = HashMap::new();
        let mut queries = Vec::new();
        // (item id, column) → values wanted, for the lookups.
        let mut lookups: HashMap<(usize, String), Wanted> = HashMap::new();
        for ch in changes {
            for id in self.items_of(ch.database, ch.table) {
                let item = self.plan.items[id];
                let images: Vec<&Map<String, Value>> = [ch.before, ch.after]
                    .into_iter()
                    .flatten()
                    .filter(|img| passes_filter(item, img))
                    .collect();
                if id == self.plan.master_id {
                    for img in images {
                        let key: Option<Vec<Cell>> = self
                            .plan
                            .handler
                            .primary_key
                            .iter()
                            .map(|c| image_value(img, c).map(json_cell))
                            .collect();
                        if let Some(key) = key {
                            add_key(&mut keys, key, ch.version);
                        }
                    }
                } else if let Some(link) = &self.links[id] {
                    let w = lookups
                        .entry((link.target, link.target_column.clone()))
                        .or_default();
                    for img in images {
                        if let Some(v) = image_value(img, &link.column) {
                            want(w, json_cell(v), ch.version);
                        }
                    }
                } else if let Some(templates) = by_query::templates(item) {
                    for img in images {
                        if let Some(q) = by_query::render(item, templates, img, ch.version) {
                            by_query::merge(&mut queries, q);
                        }
                    }
                }
            }
        }
        for ((target, column), wanted) in lookups {
            for (key, version) in self.keys_of(source, target, column, wanted, stats).await? {
                add_key(&mut keys, key, version);
            }
        }
        let mut out: Vec<AffectedKey> = keys.into_values().collect();
        out.sort_by_cached_key(|a| crate::materialize::match_key(&a.key));
        Ok((out, queries))
    }

    /// Master keys of the documents holding rows of item `id` whose `column` has one
    /// of the wanted values.
    fn keys_of<'a, S: RowSource>(
        &'a self,
        source: &'a S,
        id: usize,
        column: String,
        wanted: Wanted,
        stats: &'a mut QueryStats,
    ) -> KeysFuture<'a, S> {
        Box::pin(async move {
            if wanted.is_empty() {
                return Ok(Vec::new());
            }
            let item = self.plan.items[id];
            let pk = &self.plan.handler.primary_key;
            if id == self.plan.master_id {
                if pk.len() == 1 && pk[0].eq_ignore_ascii_case(&column) {
                    return Ok(wanted.into_values().map(|(c, v)| (vec![c], v)).collect());
                }
                let rows = self
                    .lookup(source, item, &column, pk, &wanted, stats)
                    .await?;
                return Ok(rows);
            }
            let Some(link) = &self.links[id] else {
                return Ok(Vec::new());
            };
            let next = if link.column.eq_ignore_ascii_case(&column) {
                wanted
            } else {
                let found = self
                    .lookup(
                        source,
                        item,
                        &column,
                        std::slice::from_ref(&link.column),
                        &wanted,
                        stats,
                    )
                    .await?;
                let mut next = Wanted::new();
                for (mut cells, version) in found {
                    want(&mut next, cells.remove(0), version);
                }
                next
            };
            self.keys_of(source, link.target, link.target_column.clone(), next, stats)
                .await
        })
    }

    /// `SELECT DISTINCT <column>, <out...> FROM <item's table> WHERE <column> IN (...)`:
    /// the `out` values of matching rows, each with the version of its `column` value.
    async fn lookup<S: RowSource>(
        &self,
        source: &S,
        item: &Item,
        column: &str,
        out: &[String],
        wanted: &Wanted,
        stats: &mut QueryStats,
    ) -> Res<Vec<(Vec<Cell>, u64)>, S> {
        let values: Vec<&(Cell, u64)> = wanted.values().collect();
        let mut found = Vec::new();
        for chunk in values.chunks(MAX_IN_VALUES) {
            let sql = lookup_sql(&item.table, column, out, chunk.len());
            let mut params: Vec<Cell> = chunk.iter().map(|(c, _)| c.clone()).collect();
            while !params.len().is_power_of_two() {
                params.push(params[params.len() - 1].clone());
            }
            let rows = source
                .query(&item.database, &sql, params)
                .await
                .map_err(|e| MaterializeError::Source {
                    item: item.key.clone(),
                    database: item.database.clone(),
                    source: e,
                })?;
            stats.queries += 1;
            stats.rows += rows.len() as u64;
            for row in rows {
                let version = wanted.get(&row.cells[0].match_key()).map_or(0, |(_, v)| *v);
                found.push((row.cells[1..].to_vec(), version));
            }
        }
        Ok(found)
    }
}

fn add_key(keys: &mut HashMap<Vec<MatchKey>, AffectedKey>, key: Vec<Cell>, version: u64) {
    if key.iter().any(|c| matches!(c, Cell::Null)) {
        return;
    }
    let e = keys
        .entry(crate::materialize::match_key(&key))
        .or_insert(AffectedKey { key, version });
    e.version = e.version.max(version);
}

/// The lookup statement; `n` values, padded to a power of two like the materializer's
/// batches, so the server sees few distinct statements.
pub(crate) fn lookup_sql(table: &str, column: &str, out: &[String], n: usize) -> String {
    let n = n.next_power_of_two();
    let cols: Vec<String> = std::iter::once(column)
        .chain(out.iter().map(String::as_str))
        .map(quote)
        .collect();
    format!(
        "SELECT DISTINCT {} FROM {} WHERE {} IN ({})",
        cols.join(", "),
        quote(table),
        quote(column),
        vec!["?"; n].join(", ")
    )
}
