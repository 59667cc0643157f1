//! The writer's own retry, give-up and concurrency logic, against a tiny local HTTP
//! server that answers `_bulk` with scripted statuses (what a real cluster under load
//! answers: 429, 503, per-item 429). No Elasticsearch semantics are imitated here;
//! those are tested against the local stack in `bulk.rs`.

use mee_core::Transient;
use mee_es::elasticsearch::Elasticsearch;
use mee_es::elasticsearch::http::transport::Transport;
use mee_es::{BulkAction, BulkConfig, BulkOp, BulkWriter, EsError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

type Script = dyn Fn(usize, &str) -> (u16, String) + Send + Sync;

/// Answers request `n` (from 0) with `script(n, body)`, after `delay`.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Server {
    async fn start(delay: Duration, script: Arc<Script>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (seen2, max2) = (seen.clone(), max_in_flight.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (seen, max, in_flight, script) = (
                    seen2.clone(),
                    max2.clone(),
                    in_flight.clone(),
                    script.clone(),
                );
                tokio::spawn(async move {
                    let counter = InFlight {
                        now: &in_flight,
                        max: &max,
                    };
                    serve(conn, delay, &seen, &*script, counter).await;
                });
            }
        });
        Self {
            url,
            seen,
            max_in_flight,
        }
    }

    fn client(&self) -> Elasticsearch {
        Elasticsearch::new(Transport::single_node(&self.url).expect("transport"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Requests read and not yet answered, and the most there were at once.
struct InFlight<'a> {
    now: &'a AtomicUsize,
    max: &'a AtomicUsize,
}

async fn serve(
    mut conn: TcpStream,
    delay: Duration,
    seen: &Mutex<Vec<Seen>>,
    script: &Script,
    in_flight: InFlight<'_>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body_start, len) = loop {
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().expect("length"))
                })
                .unwrap_or(0);
            break (head, end + 4, len);
        }
    };
    while buf.len() < body_start + len {
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
    let n = {
        let mut seen = seen.lock().expect("lock");
        seen.push(Seen {
            head,
            body: body.clone(),
        });
        seen.len() - 1
    };
    let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    in_flight.max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    in_flight.now.fetch_sub(1, Ordering::SeqCst);
    let (status, reply) = script(n, &body);
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{reply}",
        reply.len()
    );
    conn.write_all(resp.as_bytes()).await.expect("write");
    conn.shutdown().await.ok();
}

/// A bulk response giving each operation in `body` the status `status(i)`.
fn items(body: &str, status: impl Fn(usize) -> u16) -> String {
    let items: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("{\"index\"") || l.starts_with("{\"delete\""))
        .enumerate()
        .map(|(i, l)| {
            let kind = if l.starts_with("{\"index\"") {
                "index"
            } else {
                "delete"
            };
            let s = status(i);
            let error = if s >= 300 {
                format!(r#","error":{{"type":"t{s}","reason":"r{s}"}}"#)
            } else {
                String::new()
            };
            format!(r#"{{"{kind}":{{"status":{s}{error}}}}}"#)
        })
        .collect();
    format!(r#"{{"errors":true,"items":[{}]}}"#, items.join(","))
}

fn op(id: &str) -> BulkOp {
    BulkOp {
        index: "i".into(),
        id: id.into(),
        routing: None,
        version: 1,
        action: BulkAction::Index {
            source: r#"{"a":1}"#.into(),
        },
    }
}

fn fast(cfg: BulkConfig) -> BulkConfig {
    BulkConfig {
        retry_initial_ms: 5,
        retry_max_ms: 20,
        ..cfg
    }
}

#[tokio::test]
async fn retries_the_request_then_only_the_failed_items() {
    let server = Server::start(
        Duration::ZERO,
        Arc::new(|n, body: &str| match n {
            0 => (429, r#"{"error":"too many requests","status":429}"#.into()),
            1 => (200, items(body, |i| if i == 1 { 429 } else { 201 })),
            2 => (200, items(body, |i| if i == 0 { 503 } else { 201 })),
            _ => (200, items(body, |_| 201)),
        }),
    )
    .await;
    let writer = BulkWriter::new(server.client(), fast(BulkConfig::default()));
    let out = writer
        .write(vec![op("a"), op("b"), op("c")])
        .await
        .expect("write");
    assert_eq!(
        (out.indexed, out.requests, out.retries),
        (3, 4, 3),
        "{out:?}"
    );
    assert_eq!(out.latencies.len(), 4);
    let seen = server.seen();
    let ids = |s: &Seen| -> Vec<String> {
        s.body
            .lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some(v["index"]["_id"].as_str()?.to_string())
            })
            .collect()
    };
    assert_eq!(ids(&seen[0]), ["a", "b", "c"]);
    assert_eq!(ids(&seen[1]), ["a", "b", "c"]);
    assert_eq!(ids(&seen[2]), ["b"]);
    assert_eq!(ids(&seen[3]), ["b"]);
    let head = seen[0].head.to_ascii_lowercase();
    assert!(head.starts_with("post /_bulk?"), "{head}");
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
}

#[tokio::test]
async fn gives_up_after_continuous_failure_with_a_transient_error() {
    let server = Server::start(
        Duration::ZERO,
        Arc::new(|_, _: &str| (503, r#"{"error":"unavailable"}"#.into())),
    )
    .await;
    let writer = BulkWriter::new(
        server.client(),
        fast(BulkConfig {
            give_up_after_ms: 150,
            ..BulkConfig::default()
        }),
    );
    let err = writer.write(vec![op("a")]).await.expect_err("gives up");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(503), "{err}");
    let EsError::GaveUp { attempts, .. } = err else {
        panic!("expected GaveUp, got {err}");
    };
    assert!(attempts >= 3, "{attempts}");
    assert_eq!(server.seen().len() as u64, attempts);
}

#[tokio::test]
async fn unreachable_cluster_gives_up_with_a_transient_error() {
    // A port nothing listens on: bind one, then close it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = Elasticsearch::new(
        Transport::single_node(&format!("http://127.0.0.1:{port}")).expect("transport"),
    );
    let writer = BulkWriter::new(
        client,
        fast(BulkConfig {
            give_up_after_ms: 100,
            ..BulkConfig::default()
        }),
    );
    let err = writer.write(vec![op("a")]).await.expect_err("gives up");
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, EsError::GaveUp { .. }), "{err}");
}

#[tokio::test]
async fn a_refused_request_is_a_definite_error_at_once() {
    let server = Server::start(
        Duration::ZERO,
        Arc::new(|_, _: &str| {
            (
                403,
                r#"{"error":{"type":"security_exception","reason":"no"},"status":403}"#.into(),
            )
        }),
    )
    .await;
    let writer = BulkWriter::new(server.client(), fast(BulkConfig::default()));
    let err = writer.write(vec![op("a")]).await.expect_err("refused");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(403));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_a_bulk_response_is_a_definite_error() {
    let server = Server::start(
        Duration::ZERO,
        Arc::new(|_, _: &str| (200, r#"{"acknowledged":true}"#.into())),
    )
    .await;
    let writer = BulkWriter::new(server.client(), fast(BulkConfig::default()));
    let err = writer.write(vec![op("a"), op("b")]).await.expect_err("bad");
    assert!(!err.is_transient(), "{err}");
    assert!(matches!(err, EsError::BadResponse { .. }), "{err}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn requests_in_flight_are_limited_across_callers() {
    let server = Server::start(
        Duration::from_millis(30),
        Arc::new(|_, body: &str| (200, items(body, |_| 201))),
    )
    .await;
    let writer = BulkWriter::new(
        server.client(),
        BulkConfig {
            max_docs: 1,
            concurrency: 2,
            ..BulkConfig::default()
        },
    );
    let mut tasks = Vec::new();
    for caller in 0..3 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let ops = (0..4).map(|i| op(&format!("{caller}-{i}"))).collect();
            writer.write(ops).await
        }));
    }
    for t in tasks {
        let out = t.await.expect("task").expect("write");
        assert_eq!((out.indexed, out.requests), (4, 4), "{out:?}");
    }
    assert_eq!(server.seen().len(), 12);
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2);
}
