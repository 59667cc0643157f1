//! Resolving items for a batch of master rows: one batched query per item (per
//! nesting level), rows matched back to the documents that asked for them.

use super::plan::{MAX_IN_VALUES, Plan, batched_sql, default_cell};
use super::{Document, MaterializeError, QueryStats, Row, RowSource, assemble, match_key};
use crate::handler::placeholder::Ref;
use crate::handler::{Group, Item};
use crate::value::{Cell, MatchKey};
use std::collections::{HashMap, HashSet};
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

/// The document of a master row that needs no other row (no items, no nested lists).
pub(crate) fn document_of_row<E: std::error::Error>(
    plan: &Plan<'_>,
    row: Arc<Row>,
) -> Result<Document, MaterializeError<E>> {
    let mut bound = vec![None; plan.items.len()];
    bound[plan.master_id] = Some(row);
    assemble::document(
        plan,
        &Ctx {
            bound,
            parent: None,
            nested: Vec::new(),
        },
    )
}

/// Resolve every item of `group` (its master is already bound in each context).
///
/// Items are read in waves: every item whose statement refers only to rows already
/// known (the master, outer rows, items of earlier waves) is read in the same wave,
/// concurrently, together with the nested lists hanging from rows already known.
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
        let in_group: HashSet<&str> = group.items.iter().map(|i| i.key.as_str()).collect();
        let mut known: HashSet<&str> = HashSet::from([group.master_item().key.as_str()]);
        let mut pending: Vec<&Item> = group
            .items
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != group.master)
            .map(|(_, item)| item)
            .collect();
        // Nested lists to read: (the item they hang from, field index, the list).
        let mut lists: Vec<(&Item, usize, &Group)> = Plan::nested_of(group.master_item())
            .map(|(f, g)| (group.master_item(), f, g))
            .collect();
        while !pending.is_empty() || !lists.is_empty() {
            let (mut wave, rest): (Vec<&Item>, Vec<&Item>) =
                pending.into_iter().partition(|item| {
                    item.statement
                        .placeholders
                        .iter()
                        .all(|p| match &p.reference {
                            Ref::Item { key, .. } => {
                                !in_group.contains(key.as_str()) || known.contains(key.as_str())
                            }
                            _ => true,
                        })
                });
            pending = rest;
            if wave.is_empty() && lists.is_empty() {
                // Validation orders references; never stall if it somehow did not.
                wave.push(pending.remove(0));
            }
            let shared: &[Ctx] = ctxs;
            let items = futures_util::future::try_join_all(
                wave.iter()
                    .map(|item| fetch(plan, source, item, shared, &|c: &Ctx| c.parent.clone())),
            );
            let nested =
                futures_util::future::try_join_all(lists.iter().map(|(owner, _, list)| {
                    let owner_id = plan.id(owner);
                    fetch_owned(plan, source, list.master_item(), shared, move |c: &Ctx| {
                        c.bound[owner_id].clone()
                    })
                }));
            let (item_rows, list_rows) = futures_util::future::try_join(items, nested).await?;

            for (item, (rows, s)) in wave.iter().zip(item_rows) {
                *stats += s;
                let id = plan.id(item);
                for (ctx, mut rows) in ctxs.iter_mut().zip(rows) {
                    // One row per object; Mee takes the first when there are more.
                    ctx.bound[id] = if rows.is_empty() {
                        None
                    } else {
                        Some(rows.swap_remove(0))
                    };
                }
                known.insert(item.key.as_str());
            }
            for ((owner, field, list), (rows, s)) in lists.iter().zip(list_rows) {
                *stats += s;
                attach(plan, source, owner, *field, list, ctxs, rows, stats).await?;
            }
            lists = wave
                .iter()
                .flat_map(|item| Plan::nested_of(item).map(move |(f, g)| (*item, f, g)))
                .collect();
        }
        Ok(())
    })
}

/// Make the elements of a nested list from its rows, resolve them, and hang them on
/// their owners.
#[allow(clippy::too_many_arguments)]
async fn attach<S: RowSource>(
    plan: &Plan<'_>,
    source: &S,
    owner: &Item,
    field: usize,
    list: &Group,
    ctxs: &mut [Ctx],
    rows: Vec<Vec<Arc<Row>>>,
    stats: &mut QueryStats,
) -> Res<(), S> {
    let id = plan.id(owner);
    let nm_id = plan.id(list.master_item());
    let mut children = Vec::new();
    let mut owners = Vec::new();
    for (n, (ctx, rows)) in ctxs.iter().zip(rows).enumerate() {
        for row in rows {
            let mut bound = ctx.bound.clone();
            bound[nm_id] = Some(row);
            children.push(Ctx {
                bound,
                parent: ctx.bound[id].clone(),
                nested: Vec::new(),
            });
            owners.push(n);
        }
    }
    resolve_group(plan, source, list, &mut children, stats).await?;
    let mut per_owner: Vec<Vec<Ctx>> = vec![Vec::new(); ctxs.len()];
    for (child, n) in children.into_iter().zip(owners) {
        per_owner[n].push(child);
    }
    for (ctx, elements) in ctxs.iter_mut().zip(per_owner) {
        ctx.nested.push((id, field, elements));
    }
    Ok(())
}

async fn fetch_owned<S: RowSource>(
    plan: &Plan<'_>,
    source: &S,
    item: &Item,
    ctxs: &[Ctx],
    parent: impl Fn(&Ctx) -> Option<Arc<Row>> + Sync,
) -> Res<(Vec<Vec<Arc<Row>>>, QueryStats), S> {
    fetch(plan, source, item, ctxs, &parent).await
}

/// The rows of `item`'s statement for each context, in result order.
async fn fetch<S: RowSource>(
    plan: &Plan<'_>,
    source: &S,
    item: &Item,
    ctxs: &[Ctx],
    parent: &(dyn Fn(&Ctx) -> Option<Arc<Row>> + Sync),
) -> Res<(Vec<Vec<Arc<Row>>>, QueryStats), S> {
    let mut stats = QueryStats::default();
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
    Ok((out, stats))
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
