//! The `_bulk` response: one item per operation, in order, each with its own status.

use serde::Deserialize;
use serde_json::Value;

/// Only what we read of each item; `filter_path` asks the cluster for no more.
pub(crate) const FILTER_PATH: &str = "items.*.status,items.*.result,items.*.error";

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<Item>,
}

/// `{"index": {...}}`, `{"delete": {...}}`, ...: the key is the operation type.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Item {
    Index(ItemResult),
    Create(ItemResult),
    Update(ItemResult),
    Delete(ItemResult),
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

/// What became of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    Indexed,
    Deleted,
    /// 409: the document has this version or a newer one; the write is done.
    Conflict,
    /// 429 or 5xx: try this operation again.
    Retry {
        status: u16,
        reason: String,
    },
    /// Any other failure: retrying the same operation cannot help.
    Rejected {
        status: u16,
        reason: String,
    },
}

/// The outcome of each operation, in request order; `deletes[i]` says whether
/// operation `i` was a delete. An error if the body is not a bulk response for
/// exactly these operations.
pub(crate) fn parse(body: &[u8], deletes: &[bool]) -> Result<Vec<ItemOutcome>, String> {
    let resp: BulkResponse = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("not a bulk response ({e}): {head}")
    })?;
    if resp.items.len() != deletes.len() {
        return Err(format!(
            "{} items for {} operations",
            resp.items.len(),
            deletes.len()
        ));
    }
    Ok(resp
        .items
        .into_iter()
        .zip(deletes)
        .map(|(item, &delete)| classify(item, delete))
        .collect())
}

fn classify(item: Item, delete: bool) -> ItemOutcome {
    let r = match item {
        Item::Index(r) | Item::Create(r) | Item::Update(r) | Item::Delete(r) => r,
    };
    match r.status {
        200..=299 if delete => ItemOutcome::Deleted,
        200..=299 => ItemOutcome::Indexed,
        // The document is not there (a tombstone with our version is): the delete is done.
        404 if delete && r.error.is_none() && r.result.as_deref() == Some("not_found") => {
            ItemOutcome::Deleted
        }
        409 => ItemOutcome::Conflict,
        status @ (429 | 500..) => ItemOutcome::Retry {
            status,
            reason: reason(r.error.as_ref(), status),
        },
        status => ItemOutcome::Rejected {
            status,
            reason: reason(r.error.as_ref(), status),
        },
    }
}

/// `type: reason (caused by type: reason)`, from an item's `error`.
fn reason(error: Option<&Value>, status: u16) -> String {
    let one = |e: &Value| -> Option<String> {
        let ty = e.get("type").and_then(Value::as_str);
        let why = e.get("reason").and_then(Value::as_str);
        match (ty, why) {
            (Some(t), Some(r)) => Some(format!("{t}: {r}")),
            (Some(s), None) | (None, Some(s)) => Some(s.to_string()),
            (None, None) => None,
        }
    };
    match error {
        Some(Value::String(s)) => s.clone(),
        Some(e) => {
            let mut out = one(e).unwrap_or_else(|| e.to_string());
            if let Some(cause) = e.get("caused_by").and_then(one) {
                out.push_str(&format!(" (caused by {cause})"));
            }
            out
        }
        None => format!("HTTP {status} without an error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_item() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"1","status":201,"result":"created"}},
            {"index":{"status":200,"result":"updated"}},
            {"delete":{"status":200,"result":"deleted"}},
            {"delete":{"status":404,"result":"not_found"}},
            {"delete":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index [x]"}}},
            {"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"v"}}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary"}}},
            {"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [n]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},
            {"create":{"status":400,"error":"plain string"}}
        ]}"#;
        let deletes = [
            false, false, true, true, true, false, false, false, false, false,
        ];
        let got = parse(body, &deletes).expect("parses");
        use ItemOutcome::*;
        assert_eq!(
            got,
            [
                Indexed,
                Indexed,
                Deleted,
                Deleted,
                Rejected {
                    status: 404,
                    reason: "index_not_found_exception: no such index [x]".into()
                },
                Conflict,
                Retry {
                    status: 429,
                    reason: "es_rejected_execution_exception: queue full".into()
                },
                Retry {
                    status: 503,
                    reason: "unavailable_shards_exception: primary".into()
                },
                Rejected {
                    status: 400,
                    reason: "document_parsing_exception: failed to parse field [n] (caused by \
                             illegal_argument_exception: For input string: \"abc\")"
                        .into()
                },
                Rejected {
                    status: 400,
                    reason: "plain string".into()
                },
            ]
        );
    }

    #[test]
    fn not_a_bulk_response() {
        for body in [
            &b"<html>proxy error</html>"[..],
            br#"{"acknowledged":true}"#,
            br#"{"items":[{"index":{"result":"created"}}]}"#,
            br#"{"items":[{"index":{"status":201},"delete":{"status":200}}]}"#,
        ] {
            let err = parse(body, &[false]).expect_err("not bulk");
            assert!(err.contains("not a bulk response"), "{err}");
        }
        let err = parse(br#"{"items":[{"index":{"status":201}}]}"#, &[false, true])
            .expect_err("too few items");
        assert_eq!(err, "1 items for 2 operations");
    }
}
