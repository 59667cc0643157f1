//! Turning resolved rows into JSON documents, field by field as the mapping says.

use super::plan::Plan;
use super::resolve::Ctx;
use super::{Document, MaterializeError, Row};
use crate::handler::{Field, Group, Template};
use crate::value::{Cell, to_json};
use serde_json::{Map, Value};

pub(crate) fn document<E: std::error::Error>(
    plan: &Plan<'_>,
    ctx: &Ctx,
) -> Result<Document, MaterializeError<E>> {
    let master = plan.handler.master();
    let row = ctx.bound[plan.master_id]
        .as_deref()
        .expect("a document context always has its master row");
    let render = |t: &Template| {
        t.render(&|c| row.get(c).map(|(cell, _)| cell.to_text()))
            .ok_or_else(|| MaterializeError::MissingColumn {
                item: master.key.clone(),
                column: t
                    .columns()
                    .find(|c| row.get(c).is_none())
                    .unwrap_or_default()
                    .to_string(),
            })
    };
    let id = match &master.document_id {
        Some(t) => render(t)?,
        None => unreachable!("the master item has document_id"),
    };
    let routing = master.routing.as_ref().map(render).transpose()?;
    Ok(Document {
        key: plan.master_key(row)?,
        id,
        routing,
        source: object(plan, &plan.handler.group, ctx)?,
    })
}

/// The JSON object of one group for one context: every item's fields in order.
fn object<E: std::error::Error>(
    plan: &Plan<'_>,
    group: &Group,
    ctx: &Ctx,
) -> Result<Map<String, Value>, MaterializeError<E>> {
    let mut out = Map::new();
    for item in &group.items {
        let id = plan.id(item);
        let row: Option<&Row> = ctx.bound[id].as_deref();
        for (index, field) in item.fields.iter().enumerate() {
            match field {
                Field::Column {
                    column,
                    es_field,
                    null_value,
                    decimal_as_number,
                } => {
                    let value = match row {
                        None => null_value.clone().unwrap_or(Value::Null),
                        Some(r) => {
                            let (cell, kind) =
                                r.get(column)
                                    .ok_or_else(|| MaterializeError::MissingColumn {
                                        item: item.key.clone(),
                                        column: column.clone(),
                                    })?;
                            match (cell, null_value) {
                                (Cell::Null, Some(v)) => v.clone(),
                                _ => to_json(kind, cell, *decimal_as_number),
                            }
                        }
                    };
                    out.insert(es_field.clone(), value);
                }
                Field::Nested { es_field, group } => {
                    let elements = ctx
                        .nested
                        .iter()
                        .find(|(i, f, _)| *i == id && *f == index)
                        .map(|(_, _, e)| e.as_slice())
                        .unwrap_or_default();
                    let array = elements
                        .iter()
                        .map(|child| object(plan, group, child).map(Value::Object))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.insert(es_field.clone(), Value::Array(array));
                }
            }
        }
    }
    Ok(out)
}
