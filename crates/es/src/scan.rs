//! Reading documents back: [`mget`] (the stored documents for a list of ids, realtime)
//! and [`IdScroll`] (every `_id` of an index, page by page, without the sources).
//! What `update --verify` compares with MySQL. Only APIs that Elasticsearch 7/8/9 and
//! OpenSearch share: `_mget` with `docs`, and the scroll API sorted by `_doc`.

use crate::EsError;
use crate::error::truncate;
use elasticsearch::http::response::Response;
use elasticsearch::{ClearScrollParts, Elasticsearch, MgetParts, ScrollParts, SearchParts};
use serde::Deserialize;
use serde_json::{Value, json};

/// A document as Elasticsearch stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    pub id: String,
    /// The routing it was written with, when it has one.
    pub routing: Option<String>,
    pub version: Option<u64>,
    pub source: Value,
}

/// Where to look for one document: its `_id` and the routing it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub id: &'a str,
    pub routing: Option<&'a str>,
}

#[derive(Deserialize)]
struct MgetResponse {
    docs: Vec<MgetDoc>,
}

#[derive(Deserialize)]
struct MgetDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    found: bool,
    #[serde(rename = "_routing", default)]
    routing: Option<String>,
    #[serde(rename = "_version", default)]
    version: Option<u64>,
    #[serde(rename = "_source", default)]
    source: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// `POST /<index>/_mget`: the stored documents for `docs`, in the same order (`None`
/// for a document that is not there). Realtime: sees every acknowledged write, refreshed
/// or not. Each id is looked up with its routing, so it finds documents on any shard.
pub async fn mget(
    client: &Elasticsearch,
    index: &str,
    docs: &[DocRef<'_>],
) -> Result<Vec<Option<StoredDoc>>, EsError> {
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let what = format!("mget {} documents from {index}", docs.len());
    let body: Vec<Value> = docs
        .iter()
        .map(|d| match d.routing {
            Some(r) => json!({"_id": d.id, "routing": r}),
            None => json!({"_id": d.id}),
        })
        .collect();
    let resp = client
        .mget(MgetParts::Index(index))
        .body(json!({ "docs": body }))
        .send()
        .await;
    let resp = ok(&what, resp).await?;
    let parsed: MgetResponse = json_body(&what, resp).await?;
    if parsed.docs.len() != docs.len() {
        return Err(EsError::BadResponse {
            what,
            message: format!(
                "{} documents asked for, {} answered",
                docs.len(),
                parsed.docs.len()
            ),
        });
    }
    parsed
        .docs
        .into_iter()
        .zip(docs)
        .map(|(d, asked)| {
            if let Some(e) = d.error {
                return Err(EsError::BadResponse {
                    what: what.clone(),
                    message: format!("document {}: {e}", asked.id),
                });
            }
            if d.id != asked.id {
                return Err(EsError::BadResponse {
                    what: what.clone(),
                    message: format!("asked for {}, got {}", asked.id, d.id),
                });
            }
            Ok(d.found.then(|| StoredDoc {
                id: d.id,
                routing: d.routing,
                version: d.version,
                source: d.source.unwrap_or(Value::Null),
            }))
        })
        .collect()
}

/// One document of a scroll page: its `_id` and routing (when the cluster says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdHit {
    pub id: String,
    pub routing: Option<String>,
}

#[derive(Deserialize)]
struct ScrollResponse {
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_routing", default)]
    routing: Option<String>,
}

/// Every `_id` of an index, `size` per page, through the scroll API sorted by `_doc`
/// (the cheapest order; no fielddata on `_id` needed) and without sources. Sees the
/// index as of the last refresh when it was opened. Holds one page at a time.
#[derive(Debug)]
pub struct IdScroll {
    client: Elasticsearch,
    index: String,
    query: Value,
    keep_alive: String,
    size: usize,
    scroll_id: Option<String>,
    started: bool,
    done: bool,
}

impl IdScroll {
    /// Nothing is sent until the first [`IdScroll::next_page`]. `keep_alive` is how long
    /// the cluster keeps the scroll between pages (e.g. `5m`).
    pub fn new(client: Elasticsearch, index: &str, size: usize, keep_alive: &str) -> Self {
        Self::matching(client, index, json!({"match_all": {}}), size, keep_alive)
    }

    /// As [`IdScroll::new`], for the documents `query` (a Query DSL object) matches.
    pub fn matching(
        client: Elasticsearch,
        index: &str,
        query: Value,
        size: usize,
        keep_alive: &str,
    ) -> Self {
        Self {
            client,
            index: index.to_string(),
            query,
            keep_alive: keep_alive.to_string(),
            size: size.max(1),
            scroll_id: None,
            started: false,
            done: false,
        }
    }

    /// The next page of ids; `None` once every document was returned (the scroll is
    /// then cleared). A failed request is not retried here: a scroll cannot be asked
    /// for the same page twice.
    pub async fn next_page(&mut self) -> Result<Option<Vec<IdHit>>, EsError> {
        if self.done {
            return Ok(None);
        }
        let page = if !self.started {
            self.started = true;
            let what = format!("scroll the ids of {}", self.index);
            let resp = self
                .client
                .search(SearchParts::Index(&[&self.index]))
                .scroll(&self.keep_alive)
                .body(json!({
                    "size": self.size,
                    "_source": false,
                    "sort": ["_doc"],
                    "query": self.query,
                }))
                .send()
                .await;
            let resp = ok(&what, resp).await?;
            json_body::<ScrollResponse>(&what, resp).await?
        } else {
            let Some(id) = self.scroll_id.clone() else {
                self.done = true;
                return Ok(None);
            };
            let what = format!("scroll the ids of {} (next page)", self.index);
            let resp = self
                .client
                .scroll(ScrollParts::None)
                .body(json!({"scroll": self.keep_alive, "scroll_id": id}))
                .send()
                .await;
            let resp = ok(&what, resp).await?;
            json_body::<ScrollResponse>(&what, resp).await?
        };
        if page.scroll_id.is_some() {
            self.scroll_id = page.scroll_id;
        }
        if page.hits.hits.is_empty() {
            self.done = true;
            self.close().await;
            return Ok(None);
        }
        Ok(Some(
            page.hits
                .hits
                .into_iter()
                .map(|h| IdHit {
                    id: h.id,
                    routing: h.routing,
                })
                .collect(),
        ))
    }

    /// Free the scroll on the cluster (it would expire after `keep_alive` anyway).
    pub async fn close(&mut self) {
        self.done = true;
        let Some(id) = self.scroll_id.take() else {
            return;
        };
        let resp = self
            .client
            .clear_scroll(ClearScrollParts::None)
            .body(json!({ "scroll_id": [id] }))
            .send()
            .await;
        if let Err(e) = ok("clear scroll", resp).await {
            tracing::debug!(error = %e, "could not clear the scroll; it expires by itself");
        }
    }
}

async fn ok(what: &str, resp: Result<Response, elasticsearch::Error>) -> Result<Response, EsError> {
    let resp = resp.map_err(|source| EsError::Request {
        what: what.to_string(),
        source,
    })?;
    let status = resp.status_code().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body = truncate(resp.text().await.unwrap_or_default(), 2000);
    Err(EsError::Status {
        what: what.to_string(),
        status,
        body,
    })
}

async fn json_body<T: serde::de::DeserializeOwned>(
    what: &str,
    resp: Response,
) -> Result<T, EsError> {
    let bytes = resp.bytes().await.map_err(|source| EsError::Request {
        what: what.to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| EsError::BadResponse {
        what: what.to_string(),
        message: e.to_string(),
    })
}
