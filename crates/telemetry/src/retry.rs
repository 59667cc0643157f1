use mee_core::{Backoff, Transient};
use std::fmt::Display;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Run `op` until it succeeds, retrying transient errors with `backoff`.
///
/// A definite error is returned at once. Returns `None` when `shutdown` fires while
/// waiting. Logs the first failure of a streak at warn and later ones at debug, so a
/// long outage is one line, not a flood; a recovery after failures is logged at info.
pub async fn retry_transient<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<Result<T, E>>
where
    E: Transient + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            r = op() => r,
            _ = shutdown.cancelled() => return None,
        };
        match result {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(what, failures, "recovered");
                }
                return Some(Ok(v));
            }
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                if failures == 0 {
                    tracing::warn!(what, error = %e, "transient failure; retrying with backoff");
                } else {
                    tracing::debug!(what, error = %e, ?delay, failures, "still failing");
                }
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[derive(Debug)]
    struct E(bool);
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
        }
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let calls = AtomicU32::new(0);
        let r = retry_transient("op", quick(), &CancellationToken::new(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(E(true))
            } else {
                Ok(7)
            }
        })
        .await;
        assert!(matches!(r, Some(Ok(7))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn definite_error_stops_at_once() {
        let calls = AtomicU32::new(0);
        let r: Option<Result<(), E>> =
            retry_transient("op", quick(), &CancellationToken::new(), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(false))
            })
            .await;
        assert!(matches!(r, Some(Err(E(false)))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait() {
        let token = CancellationToken::new();
        token.cancel();
        let r: Option<Result<(), E>> =
            retry_transient("op", quick(), &token, || async { Err(E(true)) }).await;
        assert!(r.is_none());
    }
}
