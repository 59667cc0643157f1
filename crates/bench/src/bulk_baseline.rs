//! The raw bulk rate: pre-built documents posted as NDJSON `_bulk` bodies (built before
//! the clock starts) with a plain HTTP client, a fixed number of requests in flight.
//! The baseline beside Mee's own write rate, against the sink or a real cluster.

use anyhow::{Context, bail, ensure};
use std::time::{Duration, Instant};

/// Post `docs` (`(id, JSON source)`) to `<url>/_bulk` as `index` ops into `index`,
/// `docs_per_request` per body, `concurrency` requests in flight (one connection
/// each). Returns documents/s and the elapsed time, measured from the first request
/// to the last response. Fails on a non-2xx answer or an answer with `"errors":true`.
pub async fn raw_bulk_rate(
    url: &str,
    index: &str,
    docs: &[(String, String)],
    docs_per_request: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Duration)> {
    ensure!(
        docs_per_request > 0 && concurrency > 0,
        "docs_per_request and concurrency must be positive"
    );
    let endpoint = format!("{}/_bulk", url.trim_end_matches('/'));
    // Bodies first, dealt round-robin to the workers.
    let mut queues: Vec<Vec<Vec<u8>>> = vec![Vec::new(); concurrency];
    for (n, chunk) in docs.chunks(docs_per_request).enumerate() {
        queues[n % concurrency].push(ndjson(index, chunk));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()?;

    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for queue in queues.into_iter().filter(|q| !q.is_empty()) {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        workers.spawn(async move {
            for body in queue {
                post(&client, &endpoint, body).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = start.elapsed();
    Ok((docs.len() as f64 / elapsed.as_secs_f64(), elapsed))
}

/// One `_bulk` body: an `index` action line and the source line per document.
pub fn ndjson(index: &str, docs: &[(String, String)]) -> Vec<u8> {
    let size: usize = docs.iter().map(|(id, doc)| id.len() + doc.len() + 48).sum();
    let mut body = Vec::with_capacity(size + index.len() * docs.len());
    let index = serde_json::to_string(index).expect("a string serializes");
    for (id, doc) in docs {
        body.extend_from_slice(br#"{"index":{"_index":"#);
        body.extend_from_slice(index.as_bytes());
        body.extend_from_slice(br#","_id":"#);
        serde_json::to_writer(&mut body, id).expect("a string serializes");
        body.extend_from_slice(b"}}\n");
        body.extend_from_slice(doc.as_bytes());
        body.push(b'\n');
    }
    body
}

async fn post(client: &reqwest::Client, endpoint: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let resp = client
        .post(endpoint)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {endpoint}"))?;
    let status = resp.status();
    let answer = resp.bytes().await.context("reading the _bulk answer")?;
    // Elasticsearch answers `{"took":N,"errors":B,...`: no need to parse the items.
    let head = String::from_utf8_lossy(&answer[..answer.len().min(200)]);
    if !status.is_success() || !head.contains(r#""errors":false"#) {
        bail!("POST {endpoint}: {status}: {head}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::raw_bulk_rate;
    use crate::sink::BulkSink;

    #[tokio::test]
    async fn the_sink_sees_every_document() {
        let sink = BulkSink::start().await.expect("sink starts");
        let docs: Vec<(String, String)> = (0..1_000)
            .map(|i| (format!("doc-{i}"), format!(r#"{{"n":{i},"s":"x\"y"}}"#)))
            .collect();
        let (rate, elapsed) = raw_bulk_rate(&sink.url(), "baseline", &docs, 64, 3)
            .await
            .expect("bulk");
        assert!(rate > 0.0 && elapsed.as_nanos() > 0);
        let stats = sink.stats();
        assert_eq!(stats.docs_indexed, 1_000);
        assert_eq!(stats.bulk_requests, 1_000u64.div_ceil(64));
        assert_eq!(stats.bulk_errors, 0);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let count = client
            .get(format!("{}/baseline/_count", sink.url()))
            .send()
            .await
            .expect("count");
        let count: serde_json::Value =
            serde_json::from_slice(&count.bytes().await.expect("body")).expect("json");
        assert_eq!(count["count"], 1_000);
        sink.stop().await;
    }
}
