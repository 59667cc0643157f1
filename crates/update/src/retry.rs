//! A MySQL or Elasticsearch step retried while it fails transiently, for at most
//! `update.give_up_after_ms`.

use anyhow::Context;
use mee_core::{Backoff, Transient};
use mee_telemetry::{CancellationToken, retry_transient};
use std::future::Future;
use std::time::Duration;

/// How a step run by [`retry_step`] ended.
pub(crate) enum Retried<T> {
    /// It succeeded, or failed with an error that is not transient (in `what`'s context).
    Done(anyhow::Result<T>),
    /// It was still failing after `give_up_after_ms`.
    GaveUp,
    /// Shutdown was asked for while it was failing.
    Interrupted,
}

/// Run `op`, retrying transient failures with backoff, for at most `give_up_after_ms`
/// (0: no limit) or until `shutdown`.
pub(crate) async fn retry_step<T, E, F, Fut>(
    what: &str,
    give_up_after_ms: u64,
    shutdown: &CancellationToken,
    op: F,
) -> Retried<T>
where
    E: std::error::Error + Transient + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempt = retry_transient(what, Backoff::default(), shutdown, op);
    let result = if give_up_after_ms == 0 {
        attempt.await
    } else {
        match tokio::time::timeout(Duration::from_millis(give_up_after_ms), attempt).await {
            Ok(r) => r,
            Err(_) => return Retried::GaveUp,
        }
    };
    match result {
        None => Retried::Interrupted,
        Some(r) => Retried::Done(r.with_context(|| what.to_string())),
    }
}
