//! Turning resolved rows into JSON documents, field by field as the mapping says. The
//! JSON text is written directly (no intermediate tree): it is what the bulk body needs.

use super::plan::Plan;
use super::resolve::Ctx;
use super::{Document, MaterializeError, Row};
use crate::handler::{Field, Group, Template};
use crate::value::{Cell, write_json, write_str};

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
    let mut source = Vec::with_capacity(256);
    object(plan, &plan.handler.group, ctx, &mut source)?;
    Ok(Document {
        key: plan.master_key(row)?,
        id,
        routing,
        source: String::from_utf8(source).expect("the JSON writer writes UTF-8"),
    })
}

/// The JSON object of one group for one context: every item's fields in order.
fn object<E: std::error::Error>(
    plan: &Plan<'_>,
    group: &Group,
    ctx: &Ctx,
    out: &mut Vec<u8>,
) -> Result<(), MaterializeError<E>> {
    out.push(b'{');
    let mut first = true;
    for item in &group.items {
        let id = plan.id(item);
        let row: Option<&Row> = ctx.bound[id].as_deref();
        for (index, field) in item.fields.iter().enumerate() {
            if !first {
                out.push(b',');
            }
            first = false;
            match field {
                Field::Column {
                    column,
                    es_field,
                    null_value,
                    decimal_as_number,
                } => {
                    key(es_field, out);
                    let cell =
                        match row {
                            None => None,
                            Some(r) => Some(r.get(column).ok_or_else(|| {
                                MaterializeError::MissingColumn {
                                    item: item.key.clone(),
                                    column: column.clone(),
                                }
                            })?),
                        };
                    match (cell, null_value) {
                        (None | Some((Cell::Null, _)), Some(v)) => {
                            let _ = serde_json::to_writer(&mut *out, v);
                        }
                        (None, None) => out.extend_from_slice(b"null"),
                        (Some((cell, kind)), _) => write_json(kind, cell, *decimal_as_number, out),
                    }
                }
                Field::Nested { es_field, group } => {
                    key(es_field, out);
                    out.push(b'[');
                    let elements = ctx
                        .nested
                        .iter()
                        .find(|(i, f, _)| *i == id && *f == index)
                        .map(|(_, _, e)| e.as_slice())
                        .unwrap_or_default();
                    for (n, child) in elements.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        object(plan, group, child, out)?;
                    }
                    out.push(b']');
                }
            }
        }
    }
    out.push(b'}');
    Ok(())
}

fn key(name: &str, out: &mut Vec<u8>) {
    write_str(name, out);
    out.push(b':');
}
