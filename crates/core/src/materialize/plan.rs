//! What SQL to run: the master page and key queries, and how each item's statement
//! is batched over many rows.
//!
//! An item is batched when every placeholder of its statement sits in a top-level
//! `AND` equality `<column> = %ref`, its result carries those columns, and it has no
//! LIMIT or aggregate. Then `col = %ref` becomes `col IN (?, ...)` (or a row
//! constructor `(a, b) IN ((?, ?), ...)`) over the distinct values of a batch, and the
//! rows are matched back by those columns. Other statements run once per distinct
//! set of values, and are counted as unbatched.

use super::{MaterializeError, Row};
use crate::handler::statement::{Rewrite, Statement};
use crate::handler::{Field, Group, Handler, Item};
use crate::value::Cell;
use std::collections::HashMap;

/// Most values bound in one `IN` list; larger batches are split.
pub const MAX_IN_VALUES: usize = 1000;

#[derive(Debug)]
pub(crate) struct Plan<'h> {
    pub handler: &'h Handler,
    /// Items by id: depth-first file order.
    pub items: Vec<&'h Item>,
    pub ids: HashMap<&'h str, usize>,
    pub master_id: usize,
    /// Per item id: whether its statement can be batched.
    pub batched: Vec<bool>,
}

impl<'h> Plan<'h> {
    pub fn new(handler: &'h Handler) -> Self {
        let items = handler.all_items();
        let ids = items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.key.as_str(), i))
            .collect::<HashMap<_, _>>();
        let master_id = ids[handler.master().key.as_str()];
        let batched = items.iter().map(|i| batchable(&i.statement)).collect();
        Self {
            handler,
            items,
            ids,
            master_id,
            batched,
        }
    }

    pub fn id(&self, item: &Item) -> usize {
        self.ids[item.key.as_str()]
    }

    /// The nested groups hanging from `item`'s fields, with their field index.
    pub fn nested_of(item: &'h Item) -> impl Iterator<Item = (usize, &'h Group)> {
        item.fields.iter().enumerate().filter_map(|(i, f)| match f {
            Field::Nested { group, .. } => Some((i, group)),
            Field::Column { .. } => None,
        })
    }

    fn pk_sql(&self) -> Vec<String> {
        self.handler.primary_key.iter().map(|c| quote(c)).collect()
    }

    /// The master statement for one page: rows with key > `after`, in key order.
    pub fn master_page(&self, after: Option<&[Cell]>, limit: usize) -> (String, Vec<Cell>) {
        let st = &self.handler.master().statement;
        let order = format!(" ORDER BY {}", self.pk_sql().join(", "));
        let (mut sql, mut params) = if let Some(bound) = st.last_bounds.first() {
            // Mee's `id > %__last.id:(0)`: the default on the first page, the cursor after.
            let rewrites: Vec<Rewrite> = after
                .map(|a| Rewrite {
                    range: bound.range.clone(),
                    sql: format!("{} > ?", bound.column_sql),
                    params: a.to_vec(),
                })
                .into_iter()
                .collect();
            let (sql, params) = st.render(&|i| default_cell(st, i), &rewrites);
            (format!("{}{order}", trim_end(&sql)), params)
        } else {
            let base = format!("SELECT * FROM ({}) AS __mee_m", trim_end(&st.text));
            match after {
                None => (format!("{base}{order}"), Vec::new()),
                Some(a) => (
                    format!(
                        "{base} WHERE {} > {}{order}",
                        tuple(&self.pk_sql()),
                        tuple(&marks(a.len()))
                    ),
                    a.to_vec(),
                ),
            }
        };
        sql.push_str(" LIMIT ?");
        params.push(Cell::UInt(limit as u64));
        (sql, params)
    }

    /// The master statement restricted to the given keys, in key order.
    pub fn master_keys(&self, keys: &[&Vec<Cell>]) -> (String, Vec<Cell>) {
        let st = &self.handler.master().statement;
        let pk = self.pk_sql();
        let order = format!(" ORDER BY {}", pk.join(", "));
        let list = in_list(&pk, keys.iter().map(|k| k.as_slice()));
        let key_params: Vec<Cell> = keys.iter().flat_map(|k| k.iter().cloned()).collect();
        if let Some(bound) = st.last_bounds.first() {
            // Keep the statement's own lower bound: a row below the default is no
            // more in the index when `sync` asks than when `update` built it.
            let op = if bound.inclusive { ">=" } else { ">" };
            let mut params = key_params;
            params.push(default_cell(st, bound.placeholder));
            let rewrite = Rewrite {
                range: bound.range.clone(),
                sql: format!("({list} AND {} {op} ?)", bound.column_sql),
                params,
            };
            let (sql, params) = st.render(&|i| default_cell(st, i), &[rewrite]);
            (format!("{}{order}", trim_end(&sql)), params)
        } else {
            (
                format!(
                    "SELECT * FROM ({}) AS __mee_m WHERE {list}{order}",
                    trim_end(&st.text)
                ),
                key_params,
            )
        }
    }

    /// The primary key values of a master row.
    pub fn master_key<E: std::error::Error>(
        &self,
        row: &Row,
    ) -> Result<Vec<Cell>, MaterializeError<E>> {
        self.handler
            .primary_key
            .iter()
            .map(|c| {
                row.get(c).map(|(cell, _)| cell.clone()).ok_or_else(|| {
                    MaterializeError::MissingColumn {
                        item: self.handler.master().key.clone(),
                        column: c.clone(),
                    }
                })
            })
            .collect()
    }
}

/// A batched statement for distinct value tuples (one value per equality, in order).
/// The list is padded to a power of two by repeating the last tuple, so only a few
/// distinct SQL texts reach the server's statement cache.
pub(crate) fn batched_sql(st: &Statement, tuples: &[Vec<Cell>]) -> (String, Vec<Cell>) {
    let mut padded: Vec<&[Cell]> = tuples.iter().map(Vec::as_slice).collect();
    let target = padded.len().next_power_of_two();
    while padded.len() < target {
        padded.push(padded[padded.len() - 1]);
    }
    let columns: Vec<String> = st.equalities.iter().map(|e| e.column_sql.clone()).collect();
    let list = in_list(&columns, padded.iter().copied());
    let params: Vec<Cell> = padded.iter().flat_map(|t| t.iter().cloned()).collect();
    let mut rewrites = vec![Rewrite {
        range: st.equalities[0].range.clone(),
        sql: list,
        params,
    }];
    for e in &st.equalities[1..] {
        rewrites.push(Rewrite {
            range: e.range.clone(),
            sql: "TRUE".into(),
            params: Vec::new(),
        });
    }
    st.render(&|_| Cell::Null, &rewrites)
}

fn batchable(st: &Statement) -> bool {
    !st.aggregates
        && !st.has_limit
        && !st.equalities.is_empty()
        && (0..st.placeholders.len()).all(|i| st.equalities.iter().any(|e| e.placeholder == i))
        && st.equalities.iter().all(|e| st.returns_column(&e.column))
}

/// `col IN (?, ?)` or `(a, b) IN ((?, ?), (?, ?))`.
fn in_list<'a>(columns: &[String], tuples: impl Iterator<Item = &'a [Cell]>) -> String {
    let n = tuples.count();
    if columns.len() == 1 {
        format!("{} IN ({})", columns[0], marks(n).join(", "))
    } else {
        let one = tuple(&marks(columns.len()));
        format!("{} IN ({})", tuple(columns), vec![one; n].join(", "))
    }
}

fn marks(n: usize) -> Vec<String> {
    vec!["?".to_string(); n]
}

fn tuple(parts: &[String]) -> String {
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("({})", parts.join(", "))
    }
}

fn trim_end(sql: &str) -> &str {
    sql.trim_end().trim_end_matches(';').trim_end()
}

/// A column name as a quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A placeholder's `:(default)` as a value: an integer when it reads as one, text
/// (quotes removed) otherwise, NULL when there is none.
pub(crate) fn default_cell(st: &Statement, placeholder: usize) -> Cell {
    match st.placeholders[placeholder]
        .default
        .as_deref()
        .map(str::trim)
    {
        None => Cell::Null,
        Some(d) => {
            if let Ok(i) = d.parse::<i64>() {
                Cell::Int(i)
            } else {
                let unquoted = d
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .or_else(|| d.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
                    .unwrap_or(d);
                Cell::Bytes(unquoted.as_bytes().to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(yaml: &str) -> Handler {
        Handler::parse("t.yml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const MEE: &str = r#"
idx:
  - key: users
    database: db
    table: users
    document_id: "u_%id"
    statement: "select * from users where id > %__last.id:(0) and role_id = 1"
    mapping: [id]
  - key: rel
    database: db
    table: rel
    statement: "select * from rel where user_id = %__master.id and status = 1"
    mapping: [auditor_id]
  - key: agg
    database: db
    table: loans
    statement: "select count(*) as n from loans where user_id = %__master.id"
    mapping: [n]
"#;

    #[test]
    fn master_pages_follow_the_last_placeholder() {
        let h = handler(MEE);
        let p = Plan::new(&h);
        let (sql, params) = p.master_page(None, 500);
        assert_eq!(
            sql,
            "select * from users where id > ? and role_id = 1 ORDER BY `id` LIMIT ?"
        );
        assert_eq!(params, [Cell::Int(0), Cell::UInt(500)]);
        let (sql, params) = p.master_page(Some(&[Cell::Int(41)]), 500);
        assert_eq!(
            sql,
            "select * from users where id > ? and role_id = 1 ORDER BY `id` LIMIT ?"
        );
        assert_eq!(params, [Cell::Int(41), Cell::UInt(500)]);
    }

    #[test]
    fn master_keys_keep_the_default_bound() {
        let h = handler(MEE);
        let p = Plan::new(&h);
        let (k1, k2) = (vec![Cell::Int(3)], vec![Cell::Int(9)]);
        let (sql, params) = p.master_keys(&[&k1, &k2]);
        assert_eq!(
            sql,
            "select * from users where (`id` IN (?, ?) AND id > ?) and role_id = 1 ORDER BY `id`"
        );
        assert_eq!(params, [Cell::Int(3), Cell::Int(9), Cell::Int(0)]);
    }

    #[test]
    fn composite_keys_wrap_the_statement() {
        let h = handler(
            r#"
idx:
  - key: m
    database: db
    table: t
    document_id: "%a-%b"
    primary_key: [a, b]
    statement: "select * from t where kind = 'x';"
    mapping: [a, b]
"#,
        );
        let p = Plan::new(&h);
        let after = [Cell::Int(1), Cell::Bytes(b"z".to_vec())];
        let (sql, params) = p.master_page(Some(&after), 10);
        assert_eq!(
            sql,
            "SELECT * FROM (select * from t where kind = 'x') AS __mee_m WHERE (`a`, `b`) > (?, ?) ORDER BY `a`, `b` LIMIT ?"
        );
        assert_eq!(params.len(), 3);
        let k = after.to_vec();
        let (sql, _) = p.master_keys(&[&k]);
        assert_eq!(
            sql,
            "SELECT * FROM (select * from t where kind = 'x') AS __mee_m WHERE (`a`, `b`) IN ((?, ?)) ORDER BY `a`, `b`"
        );
    }

    #[test]
    fn equalities_batch_and_aggregates_do_not() {
        let h = handler(MEE);
        let p = Plan::new(&h);
        assert_eq!(p.batched, [false, true, false]);
        let rel = &p.items[1].statement;
        let tuples = vec![vec![Cell::Int(1)], vec![Cell::Int(2)], vec![Cell::Int(3)]];
        let (sql, params) = batched_sql(rel, &tuples);
        assert_eq!(
            sql,
            "select * from rel where user_id IN (?, ?, ?, ?) and status = 1"
        );
        assert_eq!(
            params,
            [Cell::Int(1), Cell::Int(2), Cell::Int(3), Cell::Int(3)],
            "padded"
        );
    }
}
