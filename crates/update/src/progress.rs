//! Load progress: a redrawn line on a terminal, a log line every few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: Option<u64>,
    started: Instant,
    tty: bool,
    last: Instant,
    done_at_start: u64,
}

impl Progress {
    /// `total`: the estimated number of master rows, when known; `done`: rows already
    /// loaded by an earlier run (resume).
    pub fn new(total: Option<u64>, done: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            started: now,
            tty: std::io::stderr().is_terminal(),
            last: now,
            done_at_start: done,
        }
    }

    pub fn update(&mut self, done: u64) {
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let line = self.line(done);
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            tracing::info!("{line}");
        }
    }

    pub fn finish(&mut self, done: u64) {
        let line = self.line(done);
        if self.tty {
            let _ = writeln!(std::io::stderr().lock(), "\r\x1b[2K{line}");
        }
        tracing::info!("loaded: {line}");
    }

    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (done - self.done_at_start.min(done)) as f64 / secs;
        describe(done, self.total, rate)
    }
}

/// `12,345 / ~100,000 masters (12%), 8,123/s, ETA 11s`.
pub fn describe(done: u64, total: Option<u64>, rate: f64) -> String {
    let mut s = format!("{} ", thousands(done));
    match total {
        Some(t) if t >= done && t > 0 => {
            s.push_str(&format!(
                "/ ~{} masters ({}%)",
                thousands(t),
                done * 100 / t
            ));
        }
        _ => s.push_str("masters"),
    }
    s.push_str(&format!(", {}/s", thousands(rate as u64)));
    if let Some(t) = total.filter(|t| *t > done && rate > 0.0) {
        s.push_str(&format!(
            ", ETA {}s",
            ((t - done) as f64 / rate).ceil() as u64
        ));
    }
    s
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_progress() {
        assert_eq!(
            describe(12_345, Some(100_000), 8_123.4),
            "12,345 / ~100,000 masters (12%), 8,123/s, ETA 11s"
        );
        assert_eq!(describe(5, None, 0.0), "5 masters, 0/s");
        // An estimate below the count (statistics are approximate) is not shown.
        assert_eq!(describe(2_000, Some(1_500), 100.0), "2,000 masters, 100/s");
    }
}
