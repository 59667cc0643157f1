//! One `_bulk` request, retried until every operation in it is done.

use super::encode::{self, Prepared};
use super::episode::Log;
use super::response::{self, ItemOutcome};
use super::{BulkAction, BulkOutcome, Inner, Rejected};
use crate::EsError;
use crate::error::truncate;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use mee_core::{Backoff, Transient};
use std::time::{Duration, Instant};

const WHAT: &str = "POST /_bulk";

/// Send these operations (one request's worth) until each is written, conflicted or
/// rejected. Transient failures are retried with backoff, resending only the
/// operations that failed, until they have lasted `give_up_after_ms`.
pub(super) async fn run(inner: &Inner, mut pending: Vec<Prepared>) -> Result<BulkOutcome, EsError> {
    let cfg = &inner.cfg;
    let mut out = BulkOutcome::default();
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_millis(cfg.retry_max_ms),
    );
    let give_up = (cfg.give_up_after_ms > 0).then(|| Duration::from_millis(cfg.give_up_after_ms));
    let mut failing_since: Option<Instant> = None;
    loop {
        let body = encode::body(&pending);
        let deletes: Vec<bool> = pending
            .iter()
            .map(|p| matches!(p.op.action, BulkAction::Delete))
            .collect();
        let permit = inner
            .permits
            .acquire()
            .await
            .expect("the writer never closes its semaphore");
        inner.pace(pending.len(), body.len()).await;
        let started = Instant::now();
        let result = post(inner, &body, &deletes).await;
        drop(permit);
        out.requests += 1;
        out.latencies.push(started.elapsed());

        let failure = match result {
            Ok(items) => {
                let mut retry = Vec::new();
                let mut last = None;
                for (p, item) in pending.into_iter().zip(items) {
                    match item {
                        ItemOutcome::Indexed => out.indexed += 1,
                        ItemOutcome::Deleted => out.deleted += 1,
                        ItemOutcome::Conflict => out.conflicts += 1,
                        ItemOutcome::Rejected { status, reason } => out.rejected.push(Rejected {
                            op: p.op,
                            status,
                            reason,
                        }),
                        ItemOutcome::Retry { status, reason } => {
                            last = Some(EsError::Status {
                                what: format!("bulk item {}/{}", p.op.index, p.op.id),
                                status,
                                body: reason,
                            });
                            retry.push(p);
                        }
                    }
                }
                pending = retry;
                match last {
                    None => {
                        inner.log(inner.episodes.succeeded(Instant::now()), None);
                        return Ok(out);
                    }
                    Some(e) => e,
                }
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        let since = *failing_since.get_or_insert(started);
        if let Some(limit) = give_up
            && since.elapsed() >= limit
        {
            return Err(EsError::GaveUp {
                what: format!("{WHAT} of {} operations", pending.len()),
                attempts: out.requests,
                elapsed: since.elapsed(),
                last: Box::new(failure),
            });
        }
        let delay = backoff.next_delay();
        inner.log(
            inner.episodes.failed(Instant::now()),
            Some((&failure, delay)),
        );
        out.retries += 1;
        tokio::time::sleep(delay).await;
    }
}

/// One POST of this body; the outcome of each operation, or why there is none.
async fn post(inner: &Inner, body: &[u8], deletes: &[bool]) -> Result<Vec<ItemOutcome>, EsError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let request = |source| EsError::Request {
        what: WHAT.into(),
        source,
    };
    let resp = inner
        .client
        .send(
            Method::Post,
            "/_bulk",
            headers,
            Some(&[("filter_path", response::FILTER_PATH)]),
            Some(body),
            None,
        )
        .await
        .map_err(request)?;
    let status = resp.status_code().as_u16();
    if !(200..300).contains(&status) {
        let body = resp.text().await.unwrap_or_default();
        return Err(EsError::Status {
            what: WHAT.into(),
            status,
            body: truncate(body, 2000),
        });
    }
    let bytes = resp.bytes().await.map_err(request)?;
    response::parse(&bytes, deletes).map_err(|message| EsError::BadResponse {
        what: WHAT.into(),
        message,
    })
}

impl Inner {
    /// Wait until the rate limit allows a request of this size.
    async fn pace(&self, docs: usize, bytes: usize) {
        let Some(pacer) = &self.pacer else { return };
        let wait =
            pacer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(Instant::now(), docs, bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn log(&self, log: Log, failure: Option<(&EsError, Duration)>) {
        match (log, failure) {
            (Log::Warn, Some((e, delay))) => tracing::warn!(
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "elasticsearch bulk failing; retrying with backoff (logged once until it recovers)"
            ),
            (Log::Debug, Some((e, delay))) => tracing::debug!(
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "elasticsearch bulk retry"
            ),
            (Log::Recovered { retries, after }, _) => tracing::info!(
                retries,
                after_ms = after.as_millis() as u64,
                "elasticsearch bulk recovered"
            ),
            (Log::Debug, None) => tracing::debug!("elasticsearch bulk recovered"),
            _ => {}
        }
    }
}
