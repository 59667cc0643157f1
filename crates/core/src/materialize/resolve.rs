//! Resolving items for a batch of master rows: one batched query per item (per
//! nesting level), rows matched back to the documents that asked for them.

use super::plan::{MAX_IN_VALUES, Plan, batched_sql, default_cell};
use super::{Document, MaterializeError, QueryStats, Row, RowSource, assemble, match_key};
use crate::handler::placeholder::Ref;
use crate::handler::{Group, Item};
use crate::value::{Cell, MatchKey};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The rows known for one object being built (a document, or a nested element).
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Row of each item (by plan id) for this object; `None`: no row, or not yet resolved.
    pub bound: Vec<Option<Arc<Row>>>,
    /// The row `%__parent` refers to (inside nested lists).
    pub parent: Option<Arc<Row>>,
    /// Nested elements: (item id, field index, element contexts).
    pub nested: Vec<(usize, usize, Vec<Ctx>)>,
}

type Res<T, S> = Result<T, MaterializeError<<S as RowSource>::Error>>;

pub(crate) async fn documents<S: RowSource>(
    plan: &Plan<'_>,
    source: &S,
    masters: Vec<Arc<Row>>,
    stats: &mut QueryStats,
) -> Res<Vec<Document>, S> {
    let n = plan.items.len();
    let mut ctxs: Vec<Ctx> = masters
        .into_iter()
        .map(|row| {
            let mut bound = vec![None; n];
            bound[plan.master_id] = Some(row);
            Ctx {
                bound,
                parent: None,
                nested: Vec::new(),
            }
        })
        .collect();
    resolve_group(plan, source, &plan.handler.group, &mut ctxs, stats).await?;
    ctxs.iter().map(|c| assemble::document(plan, c)).collect()
}

/// Resolve every item of `group` (its master is already bound in each context).
fn resolve_group<'a, S: RowSource>(
    plan: &'a Plan<'a>,
    source: &'a S,
    group: &'a Group,
    ctxs: &'a mut [Ctx],
    stats: &'a mut QueryStats,
) -> Pin<Box<dyn Future<Output = Res<(), S>> + Send + 'a>> {
    Box::pin(async move {
        if ctxs.is_empty() {
            return Ok(());
        }
        for (idx, item) in group.items.iter().enumerate() {
            let id = plan.id(item);
            if idx != group.master {
                let rows =
                    fetch(plan, source, item, ctxs, &|c: &Ctx| c.parent.clone(), stats).await?;
                for (ctx, mut rows) in ctxs.iter_mut().zip(rows) {
                    // One row per object; Mee takes the first when there are more.
                    ctx.bound[id] = if rows.is_empty() {
                        None
                    } else {
                        Some(rows.swap_remove(0))
                    };
                }
            }
            for (field, nested) in Plan::nested_of(item) {
                let nested_master = nested.master_item();
                let nm_id = plan.id(nested_master);
                let parent_of = move |c: &Ctx| c.bound[id].clone();
                let rows = fetch(plan, source, nested_master, ctxs, &parent_of, stats).await?;
                let mut children = Vec::new();
                let mut owners = Vec::new();
                for (owner, (ctx, rows)) in ctxs.iter().zip(rows).enumerate() {
                    for row in rows {
                        let mut bound = ctx.bound.clone();
                        bound[nm_id] = Some(row);
                        children.push(Ctx {
                            bound,
                            parent: ctx.bound[id].clone(),
                            nested: Vec::new(),
                        });
                        owners.push(owner);
                    }
                }
                resolve_group(plan, source, nested, &mut children, stats).await?;
                let mut per_owner: Vec<Vec<Ctx>> = vec![Vec::new(); ctxs.len()];
                for (child, owner) in children.into_iter().zip(owners) {
                    per_owner[owner].push(child);
                }
                for (ctx, elements) in ctxs.iter_mut().zip(per_owner) {
                    ctx.nested.push((id, field, elements));
                }
            }
        }
        Ok(())
    })
}

/// The rows of `item`'s statement for each context, in result order.
async fn fetch<S: RowSource>(
    plan: &Plan<'_>,
    source: &S,
    item: &Item,
    ctxs: &[Ctx],
    parent: &(dyn Fn(&Ctx) -> Option<Arc<Row>> + Sync),
    stats: &mut QueryStats,
) -> Res<Vec<Vec<Arc<Row>>>, S> {
    let st = &item.statement;
    let mut values = Vec::with_capacity(ctxs.len());
    for ctx in ctxs {
        values.push(placeholder_values(plan, item, ctx, parent)?);
    }
    let mut out = vec![Vec::new(); ctxs.len()];
    let run = |sql: String, params: Vec<Cell>| {
        let database = item.database.clone();
        async move {
            source
                .query(&database, &sql, params)
                .await
                .map_err(|e| MaterializeError::Source {
                    item: item.key.clone(),
                    database,
                    source: e,
                })
        }
    };

    if plan.batched[plan.id(item)] {
        // One value tuple per context (one value per equality); NULL matches nothing.
        let mut tuples: Vec<Vec<Cell>> = Vec::new();
        let mut index: HashMap<GroupKey, usize> = HashMap::new();
        let mut wants: Vec<Option<GroupKey>> = Vec::with_capacity(ctxs.len());
        for v in &values {
            let t: Vec<Cell> = st
                .equalities
                .iter()
                .map(|e| v[e.placeholder].clone())
                .collect();
            if t.contains(&Cell::Null) {
                wants.push(None);
                continue;
            }
            let k = GroupKey::of(t.iter());
            index.entry(k.clone()).or_insert_with(|| {
                tuples.push(t);
                tuples.len() - 1
            });
            wants.push(Some(k));
        }
        let mut found: HashMap<GroupKey, Vec<Arc<Row>>> = HashMap::with_capacity(tuples.len());
        let per_query = (MAX_IN_VALUES / st.equalities.len()).max(1);
        for chunk in tuples.chunks(per_query) {
            let (sql, params) = batched_sql(st, chunk);
            let rows = run(sql, params).await?;
            stats.queries += 1;
            stats.rows += rows.len() as u64;
            for row in rows {
                let mut cells = Vec::with_capacity(st.equalities.len());
                for e in &st.equalities {
                    let (cell, _) =
                        row.get(&e.column)
                            .ok_or_else(|| MaterializeError::MissingColumn {
                                item: item.key.clone(),
                                column: e.column.clone(),
                            })?;
                    cells.push(cell);
                }
                let key = GroupKey::of(cells.into_iter());
                found.entry(key).or_default().push(Arc::new(row));
            }
        }
        for (slot, want) in out.iter_mut().zip(wants) {
            if let Some(rows) = want.and_then(|k| found.get(&k)) {
                slot.clone_from(rows);
            }
        }
    } else {
        // Once per distinct set of values.
        let mut cache: HashMap<Vec<MatchKey>, Vec<Arc<Row>>> = HashMap::new();
        for (slot, v) in out.iter_mut().zip(&values) {
            let k = match_key(v);
            if let Some(rows) = cache.get(&k) {
                slot.clone_from(rows);
                continue;
            }
            let (sql, params) = st.render(&|i| v[i].clone(), &[]);
            let rows: Vec<Arc<Row>> = run(sql, params).await?.into_iter().map(Arc::new).collect();
            stats.queries += 1;
            stats.unbatched += 1;
            stats.rows += rows.len() as u64;
            slot.clone_from(&rows);
            cache.insert(k, rows);
        }
    }
    Ok(out)
}

/// What rows are matched back by: the compared columns' values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    One(MatchKey),
    Many(Vec<MatchKey>),
}

impl GroupKey {
    fn of<'c>(mut cells: impl ExactSizeIterator<Item = &'c Cell>) -> Self {
        if cells.len() == 1 {
            GroupKey::One(cells.next().map_or(MatchKey::Null, Cell::match_key))
        } else {
            GroupKey::Many(cells.map(Cell::match_key).collect())
        }
    }
}

/// The value of each of `item`'s placeholders for one context.
fn placeholder_values<E: std::error::Error>(
    plan: &Plan<'_>,
    item: &Item,
    ctx: &Ctx,
    parent: &(dyn Fn(&Ctx) -> Option<Arc<Row>> + Sync),
) -> Result<Vec<Cell>, MaterializeError<E>> {
    let st = &item.statement;
    let mut out = Vec::with_capacity(st.placeholders.len());
    for (i, p) in st.placeholders.iter().enumerate() {
        let (row, owner) = match &p.reference {
            Ref::Master(_) => (
                ctx.bound[plan.master_id].clone(),
                plan.handler.master().key.as_str(),
            ),
            Ref::Parent(_) => (parent(ctx), "__parent"),
            Ref::Item { key, .. } => (
                plan.ids
                    .get(key.as_str())
                    .and_then(|id| ctx.bound[*id].clone()),
                key.as_str(),
            ),
            // Refused by validation: %col and %__last never reach here.
            Ref::Current(_) | Ref::Last(_) => (None, ""),
        };
        let value = match row {
            Some(r) => match r.get(p.reference.column()) {
                Some((cell, _)) => cell.clone(),
                None => {
                    return Err(MaterializeError::MissingColumn {
                        item: owner.to_string(),
                        column: p.reference.column().to_string(),
                    });
                }
            },
            None => default_cell(st, i),
        };
        out.push(value);
    }
    Ok(out)
}
