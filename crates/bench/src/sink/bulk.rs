//! `POST /_bulk` and `POST /<index>/_bulk`: parse the action lines, skip the source
//! lines by position (checking only that they start with `{`), answer every op.

use super::{EsError, Shared, json};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub(super) async fn bulk(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    handle(&shared, None, &body)
}

pub(super) async fn bulk_index(
    State(shared): State<Arc<Shared>>,
    Path(index): Path<String>,
    body: Bytes,
) -> Response {
    handle(&shared, Some(&index), &body)
}

fn handle(shared: &Shared, default_index: Option<&str>, body: &[u8]) -> Response {
    let received = Instant::now();
    let stats = &shared.stats;
    stats.bulk_requests.fetch_add(1, Relaxed);
    stats.body_bytes.fetch_add(body.len() as u64, Relaxed);
    run(shared, default_index, body, received).unwrap_or_else(|e| {
        stats.bulk_errors.fetch_add(1, Relaxed);
        e.into_response()
    })
}

/// One action line: `{"<op>":{<meta>}}`.
#[derive(Deserialize)]
enum Action<'a> {
    #[serde(rename = "index", borrow)]
    Index(Meta<'a>),
    #[serde(rename = "create", borrow)]
    Create(Meta<'a>),
    #[serde(rename = "delete", borrow)]
    Delete(Meta<'a>),
    /// Refused: the sink cannot know whether the document exists.
    #[serde(rename = "update")]
    Update(IgnoredAny),
}

/// The parameters of an action. Others are refused rather than silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta<'a> {
    #[serde(rename = "_index", borrow, default, deserialize_with = "opt_str")]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", borrow, default, deserialize_with = "opt_str")]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<u64>,
    /// Accepted: without stored versions there is nothing to compare it with.
    #[serde(rename = "version_type", default)]
    _version_type: Option<IgnoredAny>,
    /// Accepted: one shard.
    #[serde(rename = "routing", default)]
    _routing: Option<IgnoredAny>,
}

/// An optional string, borrowed from the body unless it has escapes.
fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Str<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Str<'a>>::deserialize(d)?.map(|s| s.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Create,
    Delete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Index => "index",
            Kind::Create => "create",
            Kind::Delete => "delete",
        }
    }
}

struct Op<'a> {
    kind: Kind,
    /// Into the request's targets.
    target: usize,
    id: Cow<'a, str>,
    version: u64,
    /// The source line does not start with `{`.
    bad_source: bool,
}

/// A distinct `_index` of the request, and the ops on it that can succeed.
struct Target<'a> {
    name: Cow<'a, str>,
    /// Some op would auto-create it (`index`/`create`).
    creates: bool,
    indexed: u64,
    deleted: u64,
}

fn run(
    shared: &Shared,
    default_index: Option<&str>,
    body: &[u8],
    received: Instant,
) -> Result<Response, EsError> {
    let body = std::str::from_utf8(body)
        .map_err(|e| EsError::bad_request(format!("the bulk body is not UTF-8: {e}")))?;
    if !body.is_empty() && !body.ends_with('\n') {
        return Err(EsError::bad_request(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }

    // Parse, with no lock held.
    let mut ops: Vec<Op> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut lines = body.split_terminator('\n').enumerate();
    while let Some((i, line)) = lines.next() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue; // as Elasticsearch does for empty action lines
        }
        let malformed = |why: String| {
            EsError::bad_request(format!("Malformed action/metadata line [{line_no}]: {why}"))
        };
        let (kind, meta) = match serde_json::from_str(line).map_err(|e| malformed(e.to_string()))? {
            Action::Index(m) => (Kind::Index, m),
            Action::Create(m) => (Kind::Create, m),
            Action::Delete(m) => (Kind::Delete, m),
            Action::Update(_) => {
                return Err(malformed(
                    "the bench sink does not support [update] actions".into(),
                ));
            }
        };
        let bad_source = match kind {
            Kind::Delete => false,
            Kind::Index | Kind::Create => match lines.next() {
                Some((_, source)) => !source.trim_start().starts_with('{'),
                None => return Err(malformed("no source line follows it".into())),
            },
        };
        let name = meta
            .index
            .or(default_index.map(Cow::Borrowed))
            .ok_or_else(|| validation("index is missing"))?;
        let id = match meta.id {
            Some(id) => id,
            None if kind == Kind::Delete => return Err(validation("id is missing")),
            None => Cow::Owned(format!(
                "sink-auto-{}",
                shared.next_auto_id.fetch_add(1, Relaxed)
            )),
        };
        let target = match targets.iter().position(|t| t.name == name) {
            Some(t) => t,
            None => {
                targets.push(Target {
                    name,
                    creates: false,
                    indexed: 0,
                    deleted: 0,
                });
                targets.len() - 1
            }
        };
        let t = &mut targets[target];
        t.creates |= kind != Kind::Delete;
        match (kind, bad_source) {
            (_, true) => {}
            (Kind::Delete, false) => t.deleted += 1,
            (Kind::Index | Kind::Create, false) => t.indexed += 1,
        }
        ops.push(Op {
            kind,
            target,
            id,
            version: meta.version.unwrap_or(1),
            bad_source,
        });
    }
    if ops.is_empty() {
        return Err(validation("no requests added"));
    }

    // Resolve each distinct target once, under the lock, and count there.
    let resolved: Vec<Result<String, EsError>> = {
        let mut cluster = shared.cluster();
        targets
            .iter()
            .map(|t| {
                let r = cluster.resolve_write(&t.name, t.creates);
                if let Ok(index) = &r {
                    cluster.add_counts(index, t.indexed, t.deleted);
                }
                r
            })
            .collect()
    };
    let (mut indexed, mut deleted) = (0, 0);
    for (t, r) in targets.iter().zip(&resolved) {
        if r.is_ok() {
            indexed += t.indexed;
            deleted += t.deleted;
        }
    }
    let failed = ops.len() as u64 - indexed - deleted;
    let stats = &shared.stats;
    stats.docs_indexed.fetch_add(indexed, Relaxed);
    stats.docs_deleted.fetch_add(deleted, Relaxed);
    stats.bulk_errors.fetch_add(failed, Relaxed);

    if let Some(hook) = shared.hook() {
        for op in ops.iter().filter(|op| !op.bad_source) {
            if let Ok(index) = &resolved[op.target] {
                hook(index, &op.id, received);
            }
        }
    }

    let mut out = Vec::with_capacity(64 + ops.len() * 100);
    let took = received.elapsed().as_millis();
    let _ = write!(out, r#"{{"took":{took},"errors":{},"items":["#, failed > 0);
    let bad_source = EsError::new(
        StatusCode::BAD_REQUEST,
        "document_parsing_exception",
        "failed to parse: the source line does not start with '{' (the sink checks no more)",
    );
    for (n, op) in ops.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let outcome = match &resolved[op.target] {
            Ok(_) if op.bad_source => Err(&bad_source),
            Ok(index) => Ok(index.as_str()),
            Err(e) => Err(e),
        };
        write_item(&mut out, op, &targets[op.target].name, outcome);
    }
    out.extend_from_slice(b"]}");
    Ok(json(StatusCode::OK, out))
}

/// `{"<op>":{"_index":..,"_id":..,...}}`: the result, or the error.
fn write_item(out: &mut Vec<u8>, op: &Op, name: &str, outcome: Result<&str, &EsError>) {
    let _ = write!(out, r#"{{"{}":{{"_index":"#, op.kind.name());
    let _ = serde_json::to_writer(&mut *out, outcome.unwrap_or(name));
    out.extend_from_slice(br#","_id":"#);
    let _ = serde_json::to_writer(&mut *out, op.id.as_ref());
    match outcome {
        Ok(_) => {
            let (result, status) = match op.kind {
                Kind::Index | Kind::Create => ("created", 201),
                Kind::Delete => ("deleted", 200),
            };
            let _ = write!(
                out,
                r#","_version":{},"result":"{result}","status":{status}}}}}"#,
                op.version
            );
        }
        Err(e) => {
            let _ = write!(out, r#","status":{},"error":"#, e.status.as_u16());
            let _ = serde_json::to_writer(&mut *out, &e.cause());
            out.extend_from_slice(b"}}");
        }
    }
}

/// Elasticsearch's request validation error.
fn validation(what: &str) -> EsError {
    EsError::new(
        StatusCode::BAD_REQUEST,
        "action_request_validation_exception",
        format!("Validation Failed: 1: {what};"),
    )
}
