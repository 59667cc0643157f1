//! The materializer: master keys → complete documents, by running the handler's item
//! statements against MySQL, batched (one query per item per batch of masters).
//!
//! `update` drives it page by page ([`Materializer::page`]); `sync` drives it over
//! the masters a batch of changes affects ([`Materializer::keys`]). The queries go
//! through a [`RowSource`], which the MySQL adapter implements; this module does no
//! I/O of its own.

mod assemble;
mod by_query;
mod id_key;
mod inverse;
mod plan;
mod resolve;

pub use by_query::DocumentQuery;
pub use id_key::IdInverter;
pub use inverse::{AffectedKey, RowChange, json_cell};

use crate::Transient;
use crate::handler::Handler;
use crate::value::{Cell, ColumnKind, MatchKey};
use std::future::Future;
use std::sync::Arc;

/// What a batch of changes affects.
#[derive(Debug, Clone, PartialEq)]
pub struct Affected {
    pub keys: Vec<AffectedKey>,
    /// Searches for documents held by rows of items that only their `query` finds.
    pub queries: Vec<DocumentQuery>,
    pub stats: QueryStats,
}

/// A result column: its name and how its values convert to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    pub name: String,
    pub kind: ColumnKind,
}

/// One result row; rows of one result share their column list.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub columns: Arc<[ColumnMeta]>,
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell and kind of `column` (exact name first, then case-insensitively, as
    /// MySQL column names are).
    pub fn get(&self, column: &str) -> Option<(&Cell, ColumnKind)> {
        let i = self
            .columns
            .iter()
            .position(|c| c.name == column)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(column))
            })?;
        Some((&self.cells[i], self.columns[i].kind))
    }
}

/// Runs one statement. Implemented by the MySQL adapter over its connection pools.
pub trait RowSource: Sync {
    type Error: std::error::Error + Transient + Send + Sync + 'static;

    /// Run `sql` on logical database `database`, binding `params` to its `?` in order.
    fn query(
        &self,
        database: &str,
        sql: &str,
        params: Vec<Cell>,
    ) -> impl Future<Output = Result<Vec<Row>, Self::Error>> + Send;
}

/// A document ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The master row's primary key values.
    pub key: Vec<Cell>,
    /// `_id`, from the master item's `document_id`.
    pub id: String,
    /// From the master item's `routing`, when set.
    pub routing: Option<String>,
    /// The document as JSON text, fields in mapping order.
    pub source: String,
}

impl Document {
    /// The source parsed, for inspection (tests, comparisons).
    pub fn source_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.source).expect("the materializer writes valid JSON")
    }
}

/// Where a master row's document is: its `_id` and routing, without its content.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRef {
    /// The master row's primary key values.
    pub key: Vec<Cell>,
    pub id: String,
    pub routing: Option<String>,
}

/// Query counts of one materializer call, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Statements run, batched or not.
    pub queries: u64,
    /// Of those, statements run for a single row because the item's statement could
    /// not be batched (see the README on batchable shapes).
    pub unbatched: u64,
    /// Rows read.
    pub rows: u64,
}

impl std::ops::AddAssign for QueryStats {
    fn add_assign(&mut self, o: Self) {
        self.queries += o.queries;
        self.unbatched += o.unbatched;
        self.rows += o.rows;
    }
}

/// One page of an `update` scan.
#[derive(Debug, Clone)]
pub struct Page {
    pub documents: Vec<Document>,
    /// Key of the last master row read; pass it as `after` for the next page. `None`
    /// when the page was empty: the scan is complete.
    pub last_key: Option<Vec<Cell>>,
    pub stats: QueryStats,
}

/// Master rows of one page, before their items are read.
#[derive(Debug, Clone)]
pub struct MasterRows {
    rows: Vec<Arc<Row>>,
    /// Key of the last row; `None` when there are none (the scan is complete).
    pub last_key: Option<Vec<Cell>>,
    stats: QueryStats,
}

impl MasterRows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The documents for a set of master keys.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub documents: Vec<Document>,
    /// Requested keys whose master row is gone or fails the master statement's
    /// WHERE: their documents should be deleted.
    pub missing: Vec<Vec<Cell>>,
    pub stats: QueryStats,
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError<E: std::error::Error + 'static> {
    #[error("item `{item}` ({database}): {source}")]
    Source {
        item: String,
        database: String,
        #[source]
        source: E,
    },
    #[error("item `{item}`: column `{column}` is not in the result of its statement")]
    MissingColumn { item: String, column: String },
    #[error("master key has {got} values; the primary key ({pk}) has {want}")]
    KeyArity { got: usize, want: usize, pk: String },
}

impl<E: std::error::Error + Transient + 'static> Transient for MaterializeError<E> {
    fn is_transient(&self) -> bool {
        match self {
            MaterializeError::Source { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// Builds documents for one handler.
#[derive(Debug)]
pub struct Materializer<'h> {
    handler: &'h Handler,
    plan: plan::Plan<'h>,
    links: Vec<Option<inverse::Link>>,
    /// The document is the master row alone (see [`Materializer::document_from_image`]).
    image_only: bool,
}

impl<'h> Materializer<'h> {
    pub fn new(handler: &'h Handler) -> Self {
        let plan = plan::Plan::new(handler);
        let links = inverse::links(&plan);
        let image_only = image_only(handler);
        Self {
            handler,
            plan,
            links,
            image_only,
        }
    }

    /// Whether a document is its master row alone, so a change event's image is enough
    /// to build it: one item, plain columns, `SELECT *`, and no condition in WHERE but
    /// the `%__last` paging bound.
    pub fn image_only(&self) -> bool {
        self.image_only
    }

    /// The document a master row image gives, without asking MySQL (only when
    /// [`Materializer::image_only`]; `None` otherwise). Image values are already
    /// converted as the materializer converts them; DECIMAL text becomes a number where
    /// the mapping is numeric, as for query results.
    pub fn document_from_image(
        &self,
        image: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Result<Document, MaterializeError<std::convert::Infallible>>> {
        if !self.image_only {
            return None;
        }
        let numeric: std::collections::HashSet<&str> = self
            .handler
            .master()
            .fields
            .iter()
            .filter_map(|f| match f {
                crate::handler::Field::Column {
                    column,
                    decimal_as_number: true,
                    ..
                } => Some(column.as_str()),
                _ => None,
            })
            .collect();
        let mut columns = Vec::with_capacity(image.len());
        let mut cells = Vec::with_capacity(image.len());
        for (name, v) in image {
            let (kind, cell) = match v {
                serde_json::Value::Null => (ColumnKind::Json, Cell::Null),
                serde_json::Value::String(s)
                    if numeric.iter().any(|c| c.eq_ignore_ascii_case(name))
                        && s.parse::<f64>().is_ok() =>
                {
                    (ColumnKind::Decimal, Cell::Bytes(s.clone().into_bytes()))
                }
                other => (ColumnKind::Json, Cell::Json(other.clone())),
            };
            columns.push(ColumnMeta {
                name: name.clone(),
                kind,
            });
            cells.push(cell);
        }
        let row = Arc::new(Row {
            columns: columns.into(),
            cells,
        });
        Some(resolve::document_of_row(&self.plan, row))
    }

    pub fn handler(&self) -> &'h Handler {
        self.handler
    }

    /// Items whose changed rows cannot be traced to documents, one message each: no
    /// `<column> = %ref` condition and no `query`, a `query`
    /// but a `document_id` that cannot be turned back into a key, or a link to an item
    /// that only a `query` finds.
    pub fn untraceable(&self) -> Vec<String> {
        let inverter = IdInverter::new(self.handler).err();
        (0..self.plan.items.len())
            .filter_map(|id| self.why_untraceable(id, inverter.as_deref()))
            .collect()
    }

    fn why_untraceable(&self, id: usize, inverter: Option<&str>) -> Option<String> {
        let item = self.plan.items[id];
        let name = format!("item `{}` ({}.{})", item.key, item.database, item.table);
        let mut at = id;
        for _ in 0..=self.plan.items.len() {
            if at == self.plan.master_id {
                return None;
            }
            match &self.links[at] {
                Some(link) => at = link.target,
                None if at != id => {
                    return Some(format!(
                        "{name}: links to item `{}`, which has no `<column> = %<item>.<column>` \
                         condition; a change can be traced through SQL links only",
                        self.plan.items[at].key
                    ));
                }
                None if by_query::templates(item).is_none() => {
                    return Some(format!(
                        "{name}: its statement has no `<column> = %<item>.<column>` condition \
                         and it has no `query` (or `parent_query`), so a change to its table \
                         cannot be traced to the documents it feeds"
                    ));
                }
                None => {
                    return inverter.map(|why| {
                        format!(
                            "{name}: is found through its `query` in Elasticsearch, which needs                              document ids turned back into master keys, but {why}"
                        )
                    });
                }
            }
        }
        Some(format!("{name}: its links go round in a circle"))
    }

    /// Whether some item is found through its `query` in Elasticsearch (see
    /// [`Materializer::search_body`]).
    pub fn searches(&self) -> bool {
        (0..self.plan.items.len()).any(|id| id != self.plan.master_id && self.links[id].is_none())
    }

    /// The body (`query`) of one search for the documents any of `queries` asks for.
    pub fn search_body(&self, queries: &[DocumentQuery]) -> serde_json::Value {
        by_query::search_body(&by_query::nested_paths(&self.handler.group), queries)
    }

    /// Whether any item reads `database.table`.
    pub fn reads_table(&self, database: &str, table: &str) -> bool {
        self.items_reading(database, table) > 0
    }

    /// How many items read `database.table`.
    pub fn items_reading(&self, database: &str, table: &str) -> usize {
        self.plan
            .items
            .iter()
            .filter(|i| i.database == database && i.table.eq_ignore_ascii_case(table))
            .count()
    }

    /// Whether a row image of `database.table` passes the `filter` of some item
    /// reading that table (an item without a filter passes everything).
    pub fn passes_filter(
        &self,
        database: &str,
        table: &str,
        image: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        self.plan
            .items
            .iter()
            .filter(|i| i.database == database && i.table.eq_ignore_ascii_case(table))
            .any(|i| inverse::passes_filter(i, image))
    }

    /// The master keys of the documents that `changes` affect, each with the newest
    /// version among the changes affecting it (may include keys without a document),
    /// and the searches that find the documents of items no SQL link reaches.
    pub async fn affected<S: RowSource>(
        &self,
        source: &S,
        changes: &[RowChange<'_>],
    ) -> Result<Affected, MaterializeError<S::Error>> {
        let mut stats = QueryStats::default();
        let inv = inverse::Inverse {
            plan: &self.plan,
            links: &self.links,
        };
        let (keys, queries) = inv.affected(source, changes, &mut stats).await?;
        Ok(Affected {
            keys,
            queries,
            stats,
        })
    }

    /// `_id` and routing of the document a master row image would have, for deleting
    /// a document whose master row is gone (`None` when the template needs a column
    /// the image does not have).
    pub fn id_from_image(
        &self,
        image: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<(String, Option<String>)> {
        let text = |c: &str| inverse::image_text(image, c);
        let m = self.handler.master();
        let id = match &m.document_id {
            Some(t) => t.render(&text)?,
            None => return None,
        };
        let routing = match &m.routing {
            Some(t) => Some(t.render(&text)?),
            None => None,
        };
        Some((id, routing))
    }
    /// Up to `limit` documents whose master key is greater than `after` (from the
    /// start when `None`), in primary-key order.
    pub async fn page<S: RowSource>(
        &self,
        source: &S,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Page, MaterializeError<S::Error>> {
        let masters = self.masters(source, after, limit).await?;
        self.build(source, masters).await
    }

    /// The first step of [`Materializer::page`]: the master rows of a page. A driver
    /// can read the next page's masters (from [`MasterRows::last_key`]) while
    /// [`Materializer::build`] works on these.
    pub async fn masters<S: RowSource>(
        &self,
        source: &S,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<MasterRows, MaterializeError<S::Error>> {
        if let Some(a) = after {
            self.check_arity(a)?;
        }
        let (sql, params) = self.plan.master_page(after, limit);
        let mut stats = QueryStats::default();
        let rows = self.run_master(source, &sql, params, &mut stats).await?;
        let last_key = rows.last().map(|r| self.plan.master_key(r)).transpose()?;
        Ok(MasterRows {
            rows,
            last_key,
            stats,
        })
    }

    /// The second step of [`Materializer::page`]: documents for master rows.
    pub async fn build<S: RowSource>(
        &self,
        source: &S,
        masters: MasterRows,
    ) -> Result<Page, MaterializeError<S::Error>> {
        let mut stats = masters.stats;
        let documents = resolve::documents(&self.plan, source, masters.rows, &mut stats).await?;
        Ok(Page {
            documents,
            last_key: masters.last_key,
            stats,
        })
    }

    /// Documents for the given master keys, plus the keys that have no document.
    pub async fn keys<S: RowSource>(
        &self,
        source: &S,
        keys: &[Vec<Cell>],
    ) -> Result<Materialized, MaterializeError<S::Error>> {
        let mut stats = QueryStats::default();
        let mut masters = Vec::new();
        let distinct = self.distinct_keys(keys)?;
        for chunk in distinct.chunks(plan::MAX_IN_VALUES / self.handler.primary_key.len().max(1)) {
            let (sql, params) = self.plan.master_keys(chunk);
            masters.extend(self.run_master(source, &sql, params, &mut stats).await?);
        }
        let mut found = std::collections::HashSet::new();
        for r in &masters {
            found.insert(match_key(&self.plan.master_key(r)?));
        }
        let missing = distinct
            .into_iter()
            .filter(|k| !found.contains(&match_key(k)))
            .cloned()
            .collect();
        let documents = resolve::documents(&self.plan, source, masters, &mut stats).await?;
        Ok(Materialized {
            documents,
            missing,
            stats,
        })
    }

    /// `_id` and routing of the documents the given master keys have now, reading only
    /// the master rows (no items): whether a document in the index still has a master
    /// row. Keys without a document (row gone, or failing the master statement's WHERE)
    /// are left out.
    pub async fn document_refs<S: RowSource>(
        &self,
        source: &S,
        keys: &[Vec<Cell>],
    ) -> Result<(Vec<DocumentRef>, QueryStats), MaterializeError<S::Error>> {
        let mut stats = QueryStats::default();
        let distinct = self.distinct_keys(keys)?;
        let m = self.handler.master();
        let mut refs = Vec::new();
        for chunk in distinct.chunks(plan::MAX_IN_VALUES / self.handler.primary_key.len().max(1)) {
            let (sql, params) = self.plan.master_keys(chunk);
            for row in self.run_master(source, &sql, params, &mut stats).await? {
                let text = |c: &str| row.get(c).map(|(cell, _)| cell.to_text());
                let render = |t: &crate::handler::Template| {
                    t.render(&text)
                        .ok_or_else(|| MaterializeError::MissingColumn {
                            item: m.key.clone(),
                            column: t
                                .columns()
                                .find(|c| row.get(c).is_none())
                                .unwrap_or_default()
                                .to_string(),
                        })
                };
                let id = match &m.document_id {
                    Some(t) => render(t)?,
                    None => unreachable!("the master item has document_id"),
                };
                let routing = m.routing.as_ref().map(render).transpose()?;
                refs.push(DocumentRef {
                    key: self.plan.master_key(&row)?,
                    id,
                    routing,
                });
            }
        }
        Ok((refs, stats))
    }

    /// Each key once (by [`match_key`]), in first-seen order, after checking its arity.
    fn distinct_keys<'k, E: std::error::Error>(
        &self,
        keys: &'k [Vec<Cell>],
    ) -> Result<Vec<&'k Vec<Cell>>, MaterializeError<E>> {
        let mut distinct = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            self.check_arity(k)?;
            if seen.insert(match_key(k)) {
                distinct.push(k);
            }
        }
        Ok(distinct)
    }

    async fn run_master<S: RowSource>(
        &self,
        source: &S,
        sql: &str,
        params: Vec<Cell>,
        stats: &mut QueryStats,
    ) -> Result<Vec<Arc<Row>>, MaterializeError<S::Error>> {
        let m = self.handler.master();
        let rows =
            source
                .query(&m.database, sql, params)
                .await
                .map_err(|e| MaterializeError::Source {
                    item: m.key.clone(),
                    database: m.database.clone(),
                    source: e,
                })?;
        stats.queries += 1;
        stats.rows += rows.len() as u64;
        Ok(rows.into_iter().map(Arc::new).collect())
    }

    fn check_arity<E: std::error::Error>(&self, key: &[Cell]) -> Result<(), MaterializeError<E>> {
        let pk = &self.handler.primary_key;
        if key.len() == pk.len() {
            Ok(())
        } else {
            Err(MaterializeError::KeyArity {
                got: key.len(),
                want: pk.len(),
                pk: pk.join(", "),
            })
        }
    }
}

fn image_only(handler: &Handler) -> bool {
    let m = handler.master();
    let st = &m.statement;
    handler.group.items.len() == 1
        && m.fields
            .iter()
            .all(|f| matches!(f, crate::handler::Field::Column { .. }))
        && st.selects_all
        && !st.aggregates
        && !st.has_limit
        && st.conditions == st.last_bounds.len()
        && st
            .placeholders
            .iter()
            .all(|p| matches!(p.reference, crate::handler::placeholder::Ref::Last(_)))
}

/// Comparable form of a key (see [`Cell::match_key`]).
pub fn match_key(cells: &[Cell]) -> Vec<MatchKey> {
    cells.iter().map(Cell::match_key).collect()
}
