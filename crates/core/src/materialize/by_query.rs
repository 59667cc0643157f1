//! The fallback for items that no SQL inverse reaches (their statement has no
//! `<column> = %ref` equality): Mee's `query` (or `parent_query`), the Elasticsearch
//! fields that hold a row of the item, filled from the changed row's own columns. The
//! documents a search finds hold the row's old or new values; their ids lead back to
//! master keys through the `document_id` template ([`super::IdInverter`]).
//!
//! A search only finds what the index holds after its last refresh, and only documents
//! that already carry the row's values: a row starting to match documents that did not
//! hold it before is not found. Such items are a fallback, not the way to model data.

use super::inverse::image_text;
use crate::handler::{Field, Group, Item, Template};
use serde_json::{Map, Value, json};

/// Documents to rebuild: those whose fields equal all these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentQuery {
    /// The item whose changed row asked for it.
    pub item: String,
    /// (Elasticsearch field, value), all of which must match.
    pub terms: Vec<(String, String)>,
    /// The newest version of the changes asking for it.
    pub version: u64,
}

/// The item's query templates (filled from its own row, as the handler parser
/// ensures): `query`, else `parent_query`; `None` when it has neither.
pub(crate) fn templates(item: &Item) -> Option<&[(String, Template)]> {
    let q = if item.query.is_empty() {
        &item.parent_query
    } else {
        &item.query
    };
    (!q.is_empty()).then_some(q.as_slice())
}

/// The query for one row image; `None` when the image lacks a column it needs.
pub(crate) fn render(
    item: &Item,
    templates: &[(String, Template)],
    image: &Map<String, Value>,
    version: u64,
) -> Option<DocumentQuery> {
    let text = |c: &str| image_text(image, c);
    let terms = templates
        .iter()
        .map(|(field, t)| Some((field.clone(), t.render(&text)?)))
        .collect::<Option<Vec<_>>>()?;
    Some(DocumentQuery {
        item: item.key.clone(),
        terms,
        version,
    })
}

/// Add `q`, keeping one query per set of terms with the newest version.
pub(crate) fn merge(queries: &mut Vec<DocumentQuery>, q: DocumentQuery) {
    match queries.iter_mut().find(|have| have.terms == q.terms) {
        Some(have) => have.version = have.version.max(q.version),
        None => queries.push(q),
    }
}

/// The paths of the handler's nested arrays (`items`, `items.parts`), outermost first.
pub(crate) fn nested_paths(group: &Group) -> Vec<String> {
    fn walk(group: &Group, prefix: &str, out: &mut Vec<String>) {
        for item in &group.items {
            for f in &item.fields {
                if let Field::Nested { es_field, group } = f {
                    let path = format!("{prefix}{es_field}");
                    out.push(path.clone());
                    walk(group, &format!("{path}."), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(group, "", &mut out);
    out.sort_by_key(|p| p.matches('.').count());
    out.dedup();
    out
}

/// One search for documents matching any of `queries`: each is a `bool` filter of
/// `term`s; a field inside nested arrays is wrapped in a `nested` query per level.
pub(crate) fn search_body(nested: &[String], queries: &[DocumentQuery]) -> Value {
    let should: Vec<Value> = queries
        .iter()
        .map(|q| {
            let filter: Vec<Value> = q
                .terms
                .iter()
                .map(|(field, value)| term(nested, field, value))
                .collect();
            json!({"bool": {"filter": filter}})
        })
        .collect();
    json!({"bool": {"should": should, "minimum_should_match": 1}})
}

fn term(nested: &[String], field: &str, value: &str) -> Value {
    let mut q = json!({"term": {field: value}});
    // Innermost path first: each level wraps the one inside it.
    for path in nested.iter().rev() {
        if field.starts_with(&format!("{path}.")) {
            q = json!({"nested": {"path": path, "query": q}});
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Handler;
    use crate::materialize::Materializer;

    const HANDLER: &str = r#"
orders:
  - key: orders
    database: shop
    table: orders
    document_id: "%id"
    statement: "select * from orders"
    mapping:
      - id
      - db_field:
          - key: order_items
            database: shop
            table: order_items
            statement: "select * from order_items where order_id = %__parent.id"
            parent_query: {id: "%order_id"}
            mapping:
              - product_id
              - db_field:
                  - key: parts
                    database: shop
                    table: parts
                    statement: "select * from parts where item_id = %__parent.id"
                    parent_query: {items.id: "%item_id"}
                    mapping:
                      - sku
                es_field: parts
                type: nested
        es_field: items
        type: nested
  - key: tiers
    database: shop
    table: tiers
    statement: "select * from tiers where %__master.total between low and high"
    query: {tier_id: "%id", tier_kind: "k-%kind"}
    mapping:
      - {db_field: id, es_field: tier_id}
  - key: notes
    database: shop
    table: notes
    statement: "select * from notes where %__master.total > 10"
    mapping:
      - {db_field: text, es_field: note}
"#;

    fn handler() -> Handler {
        Handler::parse("h.yml", HANDLER).expect("handler")
    }

    #[test]
    fn an_item_its_query_finds_is_traceable_when_ids_lead_back_to_keys() {
        let problems = Materializer::new(&handler()).untraceable();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("item `notes`") && problems[0].contains("no `query`"));

        let total_id = HANDLER.replace(r#"document_id: "%id""#, r#"document_id: "%total""#);
        let problems =
            Materializer::new(&Handler::parse("h.yml", &total_id).expect("handler")).untraceable();
        let tiers = problems.iter().find(|p| p.contains("item `tiers`"));
        assert!(
            tiers.is_some_and(|p| p.contains("turned back into master keys")),
            "{problems:?}"
        );

        let through = format!(
            "{HANDLER}  - key: tier_names\n    database: shop\n    table: tier_names\n    \
             statement: \"select * from tier_names where tier_id = %tiers.id\"\n    \
             mapping: [label]\n"
        );
        let problems =
            Materializer::new(&Handler::parse("h.yml", &through).expect("handler")).untraceable();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("item `tier_names`") && p.contains("links to item `tiers`")),
            "{problems:?}"
        );
    }

    fn item<'h>(h: &'h Handler, key: &str) -> &'h Item {
        h.all_items()
            .into_iter()
            .find(|i| i.key == key)
            .expect("item")
    }

    #[test]
    fn templates_from_the_own_row_only() {
        let h = handler();
        assert_eq!(templates(item(&h, "tiers")).map(<[_]>::len), Some(2));
        assert!(templates(item(&h, "notes")).is_none(), "no query");
        // A nested item without `query` falls back to `parent_query`.
        assert_eq!(
            templates(item(&h, "order_items")).map(|t| t[0].0.as_str()),
            Some("id")
        );
    }

    #[test]
    fn rendering_needs_every_column() {
        let h = handler();
        let tiers = item(&h, "tiers");
        let t = templates(tiers).expect("templates");
        let image: Map<String, Value> =
            serde_json::from_value(json!({"id": 7, "kind": "gold"})).expect("image");
        let q = render(tiers, t, &image, 9).expect("rendered");
        assert_eq!(
            q.terms,
            [
                ("tier_id".into(), "7".into()),
                ("tier_kind".into(), "k-gold".into())
            ]
        );
        let partial: Map<String, Value> = serde_json::from_value(json!({"id": 7})).expect("image");
        assert_eq!(render(tiers, t, &partial, 9), None);
    }

    #[test]
    fn merging_keeps_one_query_per_terms_at_the_newest_version() {
        let q = |v, value: &str| DocumentQuery {
            item: "tiers".into(),
            terms: vec![("tier_id".into(), value.into())],
            version: v,
        };
        let mut all = Vec::new();
        merge(&mut all, q(5, "1"));
        merge(&mut all, q(3, "1"));
        merge(&mut all, q(4, "2"));
        assert_eq!(all, [q(5, "1"), q(4, "2")]);
    }

    #[test]
    fn nested_fields_are_searched_inside_their_arrays() {
        let h = handler();
        let nested = nested_paths(&h.group);
        assert_eq!(nested, ["items", "items.parts"]);
        let queries = [
            DocumentQuery {
                item: "tiers".into(),
                terms: vec![("tier_id".into(), "7".into())],
                version: 1,
            },
            DocumentQuery {
                item: "parts".into(),
                terms: vec![("items.parts.sku".into(), "A-1".into())],
                version: 2,
            },
        ];
        assert_eq!(
            search_body(&nested, &queries),
            json!({"bool": {"minimum_should_match": 1, "should": [
                {"bool": {"filter": [{"term": {"tier_id": "7"}}]}},
                {"bool": {"filter": [{"nested": {"path": "items", "query":
                    {"nested": {"path": "items.parts", "query":
                        {"term": {"items.parts.sku": "A-1"}}}}}}]}}
            ]}})
        );
    }
}
