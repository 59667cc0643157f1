//! A bulk sink: an HTTP server that answers the subset of the Elasticsearch API that
//! Mee's writer and `update` use, stores no documents, and counts what it received.
//! Benchmarks point Mee at it to measure Mee's own ceiling: the rate of an `update`
//! rebuild with no cluster behind it, and `sync` latency where "searchable" means
//! "the sink received the document" (see [`BulkSink::on_document`]).
//!
//! What it answers, shaped like Elasticsearch 8.15's public API:
//!
//! - `GET|HEAD /`: a minimal root document.
//! - `POST /_bulk`, `POST /<index>/_bulk`: NDJSON bodies of `index`, `create` and
//!   `delete` actions. Action lines are parsed (serde_json, unknown parameters
//!   refused); source lines are only checked to start with `{`. Every op succeeds:
//!   `created`/201 for `index` and `create`, `deleted`/200 for `delete` (no documents
//!   are stored, so a delete cannot know the document was missing). Targets resolve
//!   as in Elasticsearch: an alias of exactly one index writes to that index; a missing
//!   index is created by `index`/`create` and is `index_not_found` for `delete`.
//! - `PUT /<index>` (body: `settings`, `mappings`, `aliases`), `GET|HEAD /<index>`,
//!   `DELETE /<index>`, `PUT /<index>/_settings` (acknowledged, not stored),
//!   `GET|POST /<index>/_refresh`, `GET /<index>/_count`, `GET|HEAD /_alias/<name>`,
//!   `POST /_aliases` (`add`, `remove`, `remove_index`; `*` globs in index names).
//! - Anything else: 404 with an Elasticsearch-shaped error body, so our code cannot
//!   silently rely on something the sink would only pretend to do.
//!
//! Memory is O(indices), not O(documents): `_count` is the number of `index`/`create`
//! ops received minus `delete` ops, which equals Elasticsearch's count only when every
//! indexed id is distinct and every deleted id existed.

mod admin;
mod bulk;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Largest request body accepted, as Elasticsearch's default `http.max_content_length`.
const MAX_BODY: usize = 100 * 1024 * 1024;

/// A running sink. Dropping it without [`BulkSink::stop`] aborts the server task.
pub struct BulkSink {
    /// Where the sink listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Counters since the sink started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// HTTP requests of any kind.
    pub requests: u64,
    /// `_bulk` requests, including refused ones.
    pub bulk_requests: u64,
    /// Successful `index` and `create` ops.
    pub docs_indexed: u64,
    /// Successful `delete` ops.
    pub docs_deleted: u64,
    /// Bytes of `_bulk` request bodies.
    pub body_bytes: u64,
    /// `_bulk` requests refused (HTTP 4xx) plus failed bulk items.
    pub bulk_errors: u64,
}

/// Called per successful bulk op with the concrete index, the document id, and the
/// time the request's body had been received.
type Hook = dyn Fn(&str, &str, Instant) + Send + Sync;

#[derive(Default)]
struct Shared {
    stats: Stats,
    cluster: Mutex<admin::Cluster>,
    hook: RwLock<Option<Arc<Hook>>>,
    /// Ids handed out for `index`/`create` ops without `_id`.
    next_auto_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    bulk_requests: AtomicU64,
    docs_indexed: AtomicU64,
    docs_deleted: AtomicU64,
    body_bytes: AtomicU64,
    bulk_errors: AtomicU64,
}

impl Shared {
    fn cluster(&self) -> MutexGuard<'_, admin::Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hook(&self) -> Option<Arc<Hook>> {
        self.hook
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl BulkSink {
    /// Bind 127.0.0.1 on a free port and serve on a tokio task.
    pub async fn start() -> std::io::Result<BulkSink> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shared = Arc::new(Shared::default());
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(BulkSink {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SinkSnapshot {
        let s = &self.shared.stats;
        SinkSnapshot {
            requests: s.requests.load(Relaxed),
            bulk_requests: s.bulk_requests.load(Relaxed),
            docs_indexed: s.docs_indexed.load(Relaxed),
            docs_deleted: s.docs_deleted.load(Relaxed),
            body_bytes: s.body_bytes.load(Relaxed),
            bulk_errors: s.bulk_errors.load(Relaxed),
        }
    }

    /// Call `f(index, id, received)` for every successful bulk op, on the server's
    /// task before the response is sent: `index` is the concrete index (an alias is
    /// resolved), `received` the time the request's body had been read. Keep `f`
    /// cheap; it replaces any earlier hook.
    pub fn on_document(&self, f: impl Fn(&str, &str, Instant) + Send + Sync + 'static) {
        *self
            .shared
            .hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(f));
    }

    /// Stop accepting, let in-flight requests finish (at most 5 s), and return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for BulkSink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for BulkSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkSink")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(admin::root))
        .route("/_bulk", post(bulk::bulk))
        .route("/{index}/_bulk", post(bulk::bulk_index))
        .route("/_aliases", post(admin::update_aliases))
        .route("/_alias/{name}", get(admin::get_alias))
        .route(
            "/{index}",
            put(admin::create_index)
                .get(admin::get_index)
                .delete(admin::delete_index),
        )
        .route("/{index}/_settings", put(admin::put_settings))
        .route(
            "/{index}/_refresh",
            get(admin::refresh).post(admin::refresh),
        )
        .route("/{index}/_count", get(admin::count))
        .fallback(no_handler)
        .method_not_allowed_fallback(no_handler)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            every_request,
        ))
        .with_state(shared)
}

/// Count the request; mark the answer as Elasticsearch's, as the real server does.
async fn every_request(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.stats.requests.fetch_add(1, Relaxed);
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    resp
}

async fn no_handler(method: Method, uri: Uri) -> Response {
    let reason = format!(
        "no handler found for uri [{uri}] and method [{method}] \
         (the bench sink answers only the API subset Mee uses)"
    );
    json(
        StatusCode::NOT_FOUND,
        serde_json::json!({"error": reason, "status": 404}).to_string(),
    )
}

/// A JSON response.
fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        )],
        body.into(),
    )
        .into_response()
}

/// An Elasticsearch error: `{"error":{"root_cause":[..],"type":..,"reason":..},"status":..}`.
#[derive(Debug, Clone)]
struct EsError {
    status: StatusCode,
    kind: &'static str,
    reason: String,
    /// The index the error is about, reported as Elasticsearch does for index errors.
    index: Option<String>,
}

impl EsError {
    fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        EsError {
            status,
            kind,
            reason: reason.into(),
            index: None,
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    fn index_not_found(index: &str) -> Self {
        EsError {
            index: Some(index.to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "index_not_found_exception",
                format!("no such index [{index}]"),
            )
        }
    }

    /// The `error` object.
    fn cause(&self) -> serde_json::Value {
        let mut cause = serde_json::json!({"type": self.kind, "reason": self.reason});
        if let Some(index) = &self.index {
            cause["index"] = index.as_str().into();
        }
        cause
    }
}

impl IntoResponse for EsError {
    fn into_response(self) -> Response {
        let cause = self.cause();
        let mut error = cause.clone();
        error["root_cause"] = serde_json::json!([cause]);
        let body = serde_json::json!({"error": error, "status": self.status.as_u16()});
        json(self.status, body.to_string())
    }
}
