//! (a) The steady-rate run: a paced writer of row changes, and the latency of each from
//! its commit to visible (in the sink's receipts, or polled in the Elasticsearch API)
//! and, into the sink, to readable from the change topic.

use super::stack::Stack;
use super::tap::Tap;
use super::visible::{Sample, poll_visible};
use super::{GIVE_UP, TARGET_MS};
use crate::common::{cpu_secs, server_pid};
use crate::report::Row;
use anyhow::{Context, ensure};
use mee_mysql::mysql_async::{self, prelude::Queryable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One change: order id, send instant, commit instant.
pub(super) type ChangeTiming = (u64, Instant, Instant);

/// Receive instants per order id, from the sink's hook.
pub(super) type Receipts = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

pub(super) enum Target {
    Sink(Receipts),
    Es {
        http: reqwest::Client,
        base: String,
        alias: String,
    },
}

/// One steady run.
pub(super) struct Steady {
    pub(super) rate: u64,
    /// Changes committed.
    changes: u64,
    /// First to last commit.
    pub(super) commit_span: f64,
    /// Latencies (ms, sorted; lost ones infinite) of the measured changes.
    pub(super) lat: Vec<f64>,
    /// Search-visible latencies (Elasticsearch API only).
    pub(super) search: Vec<f64>,
    /// The `_search` requests that polled them, and their total wall time (s).
    searches: (usize, f64),
    /// Commit → readable from the change topic (every change; into the sink only).
    kafka: Option<Vec<f64>>,
    /// Into the sink: the changes slower than the target, and when they were committed.
    slow: String,
    /// CPU seconds each process used during the run.
    cpu: Vec<(&'static str, f64)>,
}

impl Steady {
    pub(super) fn achieved(&self) -> f64 {
        self.changes as f64 / self.commit_span.max(1e-9)
    }

    pub(super) fn p99(&self, v: &[f64]) -> f64 {
        pct(v, 0.99)
    }

    pub(super) fn rows(&self, target: &str, v: &[f64]) -> Vec<Row> {
        let lost = v.iter().filter(|x| x.is_infinite()).count();
        let lost = if lost > 0 {
            format!(", {lost} lost")
        } else {
            String::new()
        };
        ["p50", "p99", "max"]
            .into_iter()
            .zip([0.50, 0.99, 1.0])
            .map(|(name, q)| {
                let x = pct(v, q);
                Row {
                    figure: format!(
                        "commit → visible, {} changes/s, {target}: {name} ({} samples{lost})",
                        self.rate,
                        v.len()
                    ),
                    measured: ms(x),
                    baseline: "1 s (target)".into(),
                    ratio: if name == "p99" {
                        format!(
                            "{:.2}{}",
                            x / TARGET_MS,
                            if x < TARGET_MS { " (met)" } else { " (missed)" }
                        )
                    } else {
                        format!("{:.2}", x / TARGET_MS)
                    },
                }
            })
            .collect()
    }

    pub(super) fn note(&self, target: &str) -> String {
        format!(
            "Into {target}: {} changes in {:.1} s (achieved {:.0}/s){}{}{}. CPU used meanwhile: {}.",
            self.changes,
            self.commit_span,
            self.achieved(),
            self.slow,
            self.search_text(),
            self.kafka_text(),
            self.cpu_text(),
        )
    }

    /// The search-visible latencies, when there are any (Elasticsearch API only).
    fn search_text(&self) -> String {
        if self.search.is_empty() {
            return String::new();
        }
        let (n, secs) = self.searches;
        format!(
            "; search p50 {} p99 {} ({n} `_search` requests of {} on average)",
            ms(pct(&self.search, 0.5)),
            ms(pct(&self.search, 0.99)),
            ms(secs * 1000.0 / n.max(1) as f64),
        )
    }

    fn kafka_text(&self) -> String {
        match &self.kafka {
            Some(k) => format!(
                "; of the latency, commit → readable from the change topic (a tap consumer, \
                 every change): p50 {}, p99 {}, max {}",
                ms(pct(k, 0.5)),
                ms(pct(k, 0.99)),
                ms(pct(k, 1.0)),
            ),
            None => String::new(),
        }
    }

    pub(super) fn cpu_text(&self) -> String {
        let used: Vec<String> = self
            .cpu
            .iter()
            .map(|(what, secs)| format!("{what} {secs:.1} s"))
            .collect();
        used.join(", ")
    }
}

pub(super) fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub(super) fn ms(x: f64) -> String {
    if x.is_infinite() {
        format!("> {} s (lost)", GIVE_UP.as_secs())
    } else if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else {
        format!("{x:.0} ms")
    }
}

/// `rate` changes/s for `secs`, sequence numbers from `seq0`; latencies per `target`.
pub(super) async fn steady(
    stack: &Stack,
    pool: &mysql_async::Pool,
    masters: u64,
    rate: u64,
    secs: u64,
    seq0: u64,
    target: &Target,
) -> anyhow::Result<Steady> {
    let total = rate * secs;
    let least = least_masters(rate, matches!(target, Target::Sink(_)));
    ensure!(
        masters >= least,
        "{masters} orders at {rate}/s: pass --masters {least} or more"
    );
    let sql = format!(
        "UPDATE `{}`.orders SET status = ? WHERE id = ?",
        stack.schema
    );
    // ~50 realtime-GET samples/s, a tenth of them also searched.
    let every = (rate / 50).max(1);
    let in_flight = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut commits: Vec<ChangeTiming> = Vec::with_capacity(total as usize);
    // A tap on the change topic, from its current end: when each change is readable.
    // Into the sink only: a caught-up consumer fetches without pause here (the emulator
    // answers each fetch at once instead of holding it), and into the emulator's
    // Elasticsearch API that CPU is taken from what is measured (at 1,000/s: p99 2.5 s
    // with the tap, 0.35-0.45 s without).
    let tap = match target {
        Target::Sink(_) => Some(Tap::start(stack, &format!("{}_tap_{seq0}", stack.name)).await?),
        Target::Es { .. } => None,
    };
    let cpu_before = cpu_now(stack);
    eprintln!("{}: {rate} changes/s for {secs} s", stack.name);
    // Sampled changes, polled in bulk (one `_mget` per 25 ms, one `_search` per 100 ms).
    let poller = match target {
        Target::Es { http, base, alias } => {
            let pending: Arc<Mutex<Vec<Sample>>> = Arc::default();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let task = tokio::spawn(poll_visible(
                http.clone(),
                base.clone(),
                alias.clone(),
                pending.clone(),
                done.clone(),
            ));
            Some((pending, done, task))
        }
        Target::Sink(_) => None,
    };
    // Created last: its ticks missed while setting up would come in one burst.
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for k in 0..total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let seq = seq0 + k;
        let id = seq % masters + 1;
        let (pool, sql) = (pool.clone(), sql.clone());
        let probe = (k % every == 0)
            .then(|| {
                poller
                    .as_ref()
                    .map(|p| (p.0.clone(), k % (every * 10) == 0))
            })
            .flatten();
        tasks.spawn(async move {
            let mut conn = pool.get_conn().await?;
            let sent = Instant::now();
            conn.exec_drop(sql, (format!("s{seq}"), id)).await?;
            let at = Instant::now();
            drop(conn);
            drop(permit);
            if let Some((pending, search)) = probe {
                pending.lock().unwrap().push(Sample {
                    id,
                    seq,
                    at,
                    search,
                });
            }
            anyhow::Ok((id, sent, at))
        });
        while let Some(done) = tasks.try_join_next() {
            commits.push(done??);
        }
    }
    while let Some(done) = tasks.join_next().await {
        commits.push(done??);
    }
    let (mut lat, mut search, mut searches) = (Vec::new(), Vec::new(), (0, 0.0));
    if let Some((_, done, task)) = poller {
        done.store(true, std::sync::atomic::Ordering::Release);
        let v = task.await?;
        lat = v.got;
        search = v.searched;
        searches = (v.searches, v.search_secs);
    }
    let first = commits.iter().map(|c| c.2).min().context("no commits")?;
    let last = commits.iter().map(|c| c.2).max().context("no commits")?;
    let mut slow = String::new();
    if let Target::Sink(receipts) = target {
        // Everything published is applied: the last receipts are in.
        stack.wait_drained(GIVE_UP).await.ok();
        tokio::time::sleep(Duration::from_millis(500)).await;
        lat = first_after(&commits, &receipts.lock().unwrap());
        slow = slow_window(&commits, &lat, first);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kafka = match tap {
        Some(tap) => Some(tap.finish(stack, &commits).await),
        None => None,
    };
    let cpu = cpu_now(stack)
        .into_iter()
        .zip(cpu_before)
        .map(|((what, after), (_, before))| (what, after - before))
        .collect();
    lat.sort_by(f64::total_cmp);
    search.sort_by(f64::total_cmp);
    let s = Steady {
        rate,
        changes: commits.len() as u64,
        commit_span: (last - first).as_secs_f64(),
        lat,
        search,
        searches,
        kafka,
        slow,
        cpu,
    };
    eprintln!(
        "{}: {} changes, achieved {:.0}/s; p50 {} p99 {} max {} ({} samples){}{}{}; CPU {}",
        stack.name,
        s.changes,
        s.achieved(),
        ms(pct(&s.lat, 0.5)),
        ms(pct(&s.lat, 0.99)),
        ms(pct(&s.lat, 1.0)),
        s.lat.len(),
        s.search_text(),
        s.slow,
        s.kafka_text(),
        s.cpu_text(),
    );
    Ok(s)
}

/// CPU seconds used so far by `listen`, `sync`, mariadbd and noida-db (NaN when unknown).
fn cpu_now(stack: &Stack) -> Vec<(&'static str, f64)> {
    let of =
        |p: &Option<mee_test_support::ServiceProcess>| p.as_ref().and_then(|p| cpu_secs(p.pid()));
    [
        ("listen", of(&stack.listen)),
        ("sync", of(&stack.sync)),
        ("mariadbd", server_pid("mariadb").and_then(cpu_secs)),
        ("noida-db", server_pid("noida").and_then(cpu_secs)),
    ]
    .into_iter()
    .map(|(what, secs)| (what, secs.unwrap_or(f64::NAN)))
    .collect()
}

/// Per change `(id, sent, committed)`, ms from its commit (the UPDATE's return) to the
/// first receipt of `id` after the UPDATE was sent, 0 when that came before the return
/// was seen (infinite when none).
pub(super) fn first_after(
    commits: &[ChangeTiming],
    receipts: &HashMap<u64, Vec<Instant>>,
) -> Vec<f64> {
    commits
        .iter()
        .map(|(id, sent, at)| {
            receipts
                .get(id)
                .and_then(|ts| ts.iter().filter(|t| **t >= *sent).min())
                .map_or(f64::INFINITY, |t| {
                    t.saturating_duration_since(*at).as_secs_f64() * 1000.0
                })
        })
        .collect()
}

/// The fewest orders for `rate` changes/s into the sink or the ES API. The latter is
/// polled for a change's own sequence, so an order may change every second; the sink
/// takes an order's first receipt after the change was sent, which a slow earlier
/// change of the order could give: there an order changes at most every 2 s.
pub(super) fn least_masters(rate: u64, into_sink: bool) -> u64 {
    if into_sink { rate * 2 } else { rate }
}

/// The changes (latencies `lat` in the order of `commits`) slower than the target: how
/// many, and when (seconds after `first`) the first and the last of them was committed.
fn slow_window(commits: &[ChangeTiming], lat: &[f64], first: Instant) -> String {
    let at: Vec<f64> = commits
        .iter()
        .zip(lat)
        .filter(|(_, l)| **l >= TARGET_MS)
        .map(|(c, _)| (c.2 - first).as_secs_f64())
        .collect();
    if at.is_empty() {
        return String::new();
    }
    let (a, b) = at
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), t| (a.min(*t), b.max(*t)));
    format!(
        "; {} changes took 1 s or more, committed {a:.1}-{b:.1} s into the run",
        at.len()
    )
}

/// The order id of a change message's key (`bench.orders:<id>`).
pub(super) fn key_id(key: Option<&[u8]>) -> Option<usize> {
    let key = std::str::from_utf8(key?).ok()?;
    key.rsplit(':')
        .next()?
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_changes_are_counted_with_when_they_were_committed() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let commits = [
            (1, at(0), at(5)),
            (2, at(1_000), at(1_500)),
            (3, at(2_000), at(2_500)),
            (4, at(3_000), at(3_005)),
        ];
        let lat = [10.0, 1_000.0, f64::INFINITY, 999.0];
        assert_eq!(
            slow_window(&commits, &lat, t0),
            "; 2 changes took 1 s or more, committed 1.5-2.5 s into the run"
        );
        assert_eq!(slow_window(&commits[..1], &lat[..1], t0), "");
    }
}
