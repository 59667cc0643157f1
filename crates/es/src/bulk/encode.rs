//! The NDJSON body of a `_bulk` request, and how operations are split into requests.

use super::{BulkAction, BulkOp};
use serde::Serialize;

/// Elasticsearch refuses a whole bulk request (400) if one `_id` is longer than this.
const MAX_ID_BYTES: usize = 512;

/// The action line of an operation: `{"index":{...}}` or `{"delete":{...}}`.
#[derive(Serialize)]
enum ActionLine<'a> {
    #[serde(rename = "index")]
    Index(Meta<'a>),
    #[serde(rename = "delete")]
    Delete(Meta<'a>),
}

#[derive(Serialize)]
struct Meta<'a> {
    _index: &'a str,
    _id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<&'a str>,
    version: u64,
    version_type: &'static str,
}

/// An operation ready to send: its action line, encoded once.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub op: BulkOp,
    action: String,
}

impl Prepared {
    /// Bytes this operation adds to a request body.
    pub fn len(&self) -> usize {
        match &self.op.action {
            BulkAction::Index { source } => self.action.len() + 1 + source.len() + 1,
            BulkAction::Delete => self.action.len() + 1,
        }
    }

    /// Append the operation's lines to a request body.
    pub fn write_to(&self, body: &mut Vec<u8>) {
        body.extend_from_slice(self.action.as_bytes());
        body.push(b'\n');
        if let BulkAction::Index { source } = &self.op.action {
            let start = body.len();
            body.extend_from_slice(source.as_bytes());
            // A line break in valid JSON is whitespace between tokens (inside strings it
            // must be escaped), so a pretty-printed source stays the same document as a
            // single line; the bulk format needs exactly one line per source.
            for b in &mut body[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
            body.push(b'\n');
        }
    }
}

/// Encode an operation's action line.
pub(crate) fn prepare(op: BulkOp) -> Prepared {
    let meta = Meta {
        _index: &op.index,
        _id: &op.id,
        routing: op.routing.as_deref(),
        version: op.version,
        version_type: "external",
    };
    let line = match op.action {
        BulkAction::Index { .. } => ActionLine::Index(meta),
        BulkAction::Delete => ActionLine::Delete(meta),
    };
    // Serializing plain strings and integers cannot fail.
    let action = serde_json::to_string(&line).expect("action line serializes");
    Prepared { op, action }
}

/// Why Elasticsearch would refuse this operation, if it would. Such an operation fails
/// the validation of the whole request (HTTP 400 for every operation in it), so it is
/// rejected before sending, alone.
pub(crate) fn refusal(op: &BulkOp) -> Option<String> {
    if op.index.is_empty() {
        return Some("mee: empty index name".into());
    }
    if op.id.is_empty() {
        return Some("mee: empty _id".into());
    }
    if op.id.len() > MAX_ID_BYTES {
        return Some(format!(
            "mee: _id is {} bytes long; Elasticsearch allows at most {MAX_ID_BYTES}",
            op.id.len()
        ));
    }
    if op.version > i64::MAX as u64 {
        return Some(format!(
            "mee: version {} is above the largest external version {}",
            op.version,
            i64::MAX
        ));
    }
    if let BulkAction::Index { source } = &op.action
        && source.trim().is_empty()
    {
        return Some("mee: empty document source".into());
    }
    None
}

/// The NDJSON body for these operations.
pub(crate) fn body(ops: &[Prepared]) -> Vec<u8> {
    let mut body = Vec::with_capacity(ops.iter().map(Prepared::len).sum());
    for op in ops {
        op.write_to(&mut body);
    }
    body
}

/// Split operations of these encoded sizes into consecutive requests of at most
/// `max_docs` operations and `max_bytes` bytes; an operation larger than `max_bytes`
/// goes alone. Returns the number of operations in each request.
pub(crate) fn split(sizes: &[usize], max_docs: usize, max_bytes: usize) -> Vec<usize> {
    let max_docs = max_docs.max(1);
    let mut out = Vec::new();
    let (mut docs, mut bytes) = (0usize, 0usize);
    for &size in sizes {
        if docs > 0 && (docs == max_docs || bytes + size > max_bytes) {
            out.push(docs);
            (docs, bytes) = (0, 0);
        }
        docs += 1;
        bytes += size;
    }
    if docs > 0 {
        out.push(docs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn index(id: &str, version: u64, source: &str) -> BulkOp {
        BulkOp {
            index: "shop_1".into(),
            id: id.into(),
            routing: None,
            version,
            action: BulkAction::Index {
                source: source.into(),
            },
        }
    }

    fn delete(id: &str, version: u64) -> BulkOp {
        BulkOp {
            index: "shop_1".into(),
            id: id.into(),
            routing: None,
            version,
            action: BulkAction::Delete,
        }
    }

    fn encode(ops: Vec<BulkOp>) -> Vec<u8> {
        let prepared: Vec<Prepared> = ops
            .into_iter()
            .inspect(|op| assert_eq!(refusal(op), None))
            .map(prepare)
            .collect();
        let body = body(&prepared);
        assert_eq!(
            body.len(),
            prepared.iter().map(Prepared::len).sum::<usize>()
        );
        body
    }

    /// `UPDATE_GOLDEN=1 cargo test -p mee-es golden` rewrites the golden file.
    #[test]
    fn golden_body() {
        let ops = vec![
            BulkOp {
                routing: Some("customer-7".into()),
                ..index("42", 4_294_967_396, r#"{"name":"Ann","tags":["a","b"]}"#)
            },
            delete("43", 7),
            index(
                "say \"hi\" \\ 名前 😀 \u{1}",
                1,
                "{\n  \"title\": \"line\\nbreak\",\n  \"n\": 1\n}",
            ),
            BulkOp {
                routing: Some("r\"1".into()),
                ..delete("x/y?z", 0)
            },
        ];
        let got = String::from_utf8(encode(ops)).expect("utf-8");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bulk_body.ndjson");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden");
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(got, want, "bulk body differs from {}", path.display());
        // Every line is one JSON value.
        for line in got.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn local_refusals() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for (op, reason) in [
            (index("", 1, "{}"), "empty _id"),
            (index(&long, 1, "{}"), "513 bytes"),
            (index("1", 1, "  "), "empty document source"),
            (delete("1", u64::MAX), "largest external version"),
            (
                BulkOp {
                    index: String::new(),
                    ..delete("1", 1)
                },
                "empty index name",
            ),
        ] {
            let got = refusal(&op).expect(reason);
            assert!(got.contains(reason), "{got} lacks {reason}");
        }
        assert_eq!(refusal(&index(&"x".repeat(MAX_ID_BYTES), 1, "{}")), None);
        assert_eq!(refusal(&delete("1", i64::MAX as u64)), None);
    }

    #[test]
    fn split_by_docs_and_bytes() {
        assert_eq!(split(&[], 10, 100), Vec::<usize>::new());
        assert_eq!(split(&[1; 7], 3, 100), [3, 3, 1]);
        assert_eq!(split(&[40, 40, 40, 40], 10, 100), [2, 2]);
        // Exactly full is still one request.
        assert_eq!(split(&[50, 50, 1], 10, 100), [2, 1]);
        // An operation larger than the limit goes alone.
        assert_eq!(split(&[10, 500, 10, 10], 10, 100), [1, 1, 2]);
        assert_eq!(split(&[500], 10, 100), [1]);
        assert_eq!(split(&[1, 1], 0, 100), [1, 1]);
    }
}
