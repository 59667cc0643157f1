//! Logging of transient failures: one warning when a writer starts failing, one line
//! when it recovers, debug lines in between, however many requests are retrying.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A new episode that starts this soon after the last warning is logged at debug only,
/// so that a cluster flapping between ok and overloaded does not flood the log.
const QUIET: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct Episodes {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Since when requests have been failing, if they are.
    failing_since: Option<Instant>,
    retries: u64,
    warned: bool,
    last_warning: Option<Instant>,
}

/// What to log for an event; decided under the lock, logged outside it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Log {
    Warn,
    Debug,
    Recovered { retries: u64, after: Duration },
    Nothing,
}

impl Episodes {
    /// A request failed transiently and will be retried.
    pub fn failed(&self, now: Instant) -> Log {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.retries += 1;
        if s.failing_since.is_some() {
            return Log::Debug;
        }
        s.failing_since = Some(now);
        let quiet = s
            .last_warning
            .is_some_and(|t| now.duration_since(t) < QUIET);
        s.warned = !quiet;
        if quiet {
            Log::Debug
        } else {
            s.last_warning = Some(now);
            Log::Warn
        }
    }

    /// Whether requests are failing now (since a failure, until a success).
    pub fn failing(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failing_since.is_some()
    }

    /// A request completed with nothing left to retry.
    pub fn succeeded(&self, now: Instant) -> Log {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(since) = s.failing_since.take() else {
            return Log::Nothing;
        };
        let retries = std::mem::take(&mut s.retries);
        if s.warned {
            Log::Recovered {
                retries,
                after: now.duration_since(since),
            }
        } else {
            Log::Debug
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_episode_and_none_while_flapping() {
        let e = Episodes::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(e.succeeded(t0), Log::Nothing);
        assert!(!e.failing());
        assert_eq!(e.failed(t0), Log::Warn);
        assert!(e.failing());
        assert_eq!(e.failed(t0 + s(1)), Log::Debug);
        assert_eq!(e.failed(t0 + s(2)), Log::Debug);
        assert_eq!(
            e.succeeded(t0 + s(5)),
            Log::Recovered {
                retries: 3,
                after: s(5)
            }
        );
        assert!(!e.failing());
        assert_eq!(e.succeeded(t0 + s(6)), Log::Nothing);
        // Failing again soon after: no second warning, no recovery line.
        assert_eq!(e.failed(t0 + s(10)), Log::Debug);
        assert_eq!(e.succeeded(t0 + s(11)), Log::Debug);
        // Long after the last warning: warn again.
        assert_eq!(e.failed(t0 + s(100)), Log::Warn);
    }
}
