//! Optional rate limit on documents and bytes per second, shared by every caller of
//! one writer: requests are paced so that, over time, neither rate is exceeded.

use std::time::{Duration, Instant};

/// One request never waits longer than this because of the limit.
const MAX_COST: Duration = Duration::from_secs(3600);

const MIB: f64 = 1024.0 * 1024.0;

/// A pacer: each request may start when the previous ones have "paid" for their size
/// at the configured rates. The first request after an idle period starts at once; no
/// budget builds up while idle, so there is no burst above the rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    docs_per_s: f64,
    bytes_per_s: f64,
    /// When the next request may start.
    next: Option<Instant>,
}

impl Pacer {
    /// `None` when both limits are off (0).
    pub fn new(docs_per_s: u64, mib_per_s: f64) -> Option<Self> {
        let bytes_per_s = if mib_per_s.is_finite() && mib_per_s > 0.0 {
            mib_per_s * MIB
        } else {
            0.0
        };
        (docs_per_s > 0 || bytes_per_s > 0.0).then_some(Self {
            docs_per_s: docs_per_s as f64,
            bytes_per_s,
            next: None,
        })
    }

    /// How long a request of this size occupies the budget.
    pub fn cost(&self, docs: usize, bytes: usize) -> Duration {
        let per = |n: usize, rate: f64| if rate > 0.0 { n as f64 / rate } else { 0.0 };
        let secs = per(docs, self.docs_per_s).max(per(bytes, self.bytes_per_s));
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_COST)
            .min(MAX_COST)
    }

    /// Reserve a slot for a request of this size at `now`; returns how long to wait
    /// before sending it.
    pub fn reserve(&mut self, now: Instant, docs: usize, bytes: usize) -> Duration {
        let start = match self.next {
            Some(next) if next > now => next,
            _ => now,
        };
        self.next = Some(start + self.cost(docs, bytes));
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn off_when_both_are_zero() {
        assert!(Pacer::new(0, 0.0).is_none());
        assert!(Pacer::new(1, 0.0).is_some());
        assert!(Pacer::new(0, 0.5).is_some());
    }

    #[test]
    fn cost_is_the_slower_of_the_two_rates() {
        let p = Pacer::new(1000, 1.0).expect("on");
        assert_eq!(p.cost(500, 0), ms(500));
        assert_eq!(p.cost(0, 512 * 1024), ms(500));
        assert_eq!(p.cost(100, 1024 * 1024), ms(1000));
        assert_eq!(p.cost(2000, 1024), ms(2000));
        let docs_only = Pacer::new(10, 0.0).expect("on");
        assert_eq!(docs_only.cost(5, usize::MAX), ms(500));
        let tiny = Pacer::new(0, 1e-300).expect("on");
        assert_eq!(tiny.cost(0, 1 << 20), MAX_COST);
    }

    #[test]
    fn requests_are_paced_at_the_rate() {
        let mut p = Pacer::new(100, 0.0).expect("on");
        let t0 = Instant::now();
        // 50 docs = 500 ms of budget each.
        assert_eq!(p.reserve(t0, 50, 0), ms(0));
        assert_eq!(p.reserve(t0, 50, 0), ms(500));
        assert_eq!(p.reserve(t0 + ms(100), 50, 0), ms(900));
        // After waiting its turn, the next one starts at 1500 ms.
        assert_eq!(p.reserve(t0 + ms(1500), 10, 0), ms(0));
        // Idle time builds no budget: after a pause, the pace is the same.
        assert_eq!(p.reserve(t0 + ms(10_000), 100, 0), ms(0));
        assert_eq!(p.reserve(t0 + ms(10_000), 1, 0), ms(1000));
    }

    #[test]
    fn concurrent_callers_share_the_budget() {
        let mut p = Pacer::new(0, 1.0).expect("on");
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| p.reserve(t0, 1, 256 * 1024)).collect();
        assert_eq!(waits, [ms(0), ms(250), ms(500), ms(750)]);
    }
}
