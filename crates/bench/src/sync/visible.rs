//! Polling the Elasticsearch API until sampled changes are visible: by realtime
//! `_mget`, and by `_search` (after a refresh).

use super::GIVE_UP;
use crate::common::es_call;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sampled change: order `id` must carry status `s<seq>` or a later one.
pub(super) struct Sample {
    pub(super) id: u64,
    pub(super) seq: u64,
    pub(super) at: Instant,
    pub(super) search: bool,
}

/// What the polling saw.
#[derive(Default)]
pub(super) struct Visible {
    /// Realtime-GET latencies (ms; infinite when lost).
    pub(super) got: Vec<f64>,
    /// Search latencies (ms; infinite when lost).
    pub(super) searched: Vec<f64>,
    /// `_search` requests sent, and their total wall time (s): the emulator scans the
    /// whole index for each, so they load what is measured.
    pub(super) searches: usize,
    pub(super) search_secs: f64,
}

/// Poll the pending samples until each is visible (ms from its commit to the answer
/// that showed it) or [`GIVE_UP`] passed (infinite): all realtime-GET samples with one
/// `_mget` every 25 ms; once a search sample is retrievable, with one `_search` by ids
/// every 100 ms, in a task of its own so that a slow search does not delay the GETs.
/// Returns once `done` is set and nothing is pending.
pub(super) async fn poll_visible(
    http: reqwest::Client,
    base: String,
    alias: String,
    pending: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicBool>,
) -> Visible {
    let retrievable: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let gets_done = Arc::new(AtomicBool::new(false));
    let search = tokio::spawn(poll_search(
        http.clone(),
        (base.clone(), format!("/{alias}/_search")),
        retrievable.clone(),
        gets_done.clone(),
    ));
    let mget = (base, format!("/{alias}/_mget"));
    let got = poll_get(&http, &mget, pending, done, retrievable).await;
    gets_done.store(true, Ordering::Release);
    Visible {
        got,
        ..search.await.expect("the search poller")
    }
}

/// The realtime-GET loop: search samples go on to `retrievable` once seen (or lost).
async fn poll_get(
    http: &reqwest::Client,
    (base, path): &(String, String),
    pending: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicBool>,
    retrievable: Arc<Mutex<Vec<Sample>>>,
) -> Vec<f64> {
    let mut got = Vec::new();
    let mut queue: Vec<Sample> = Vec::new();
    loop {
        // The flag first: what was pushed before it was set is then in the queue.
        let finished = done.load(Ordering::Acquire);
        queue.append(&mut pending.lock().unwrap());
        if finished && queue.is_empty() {
            return got;
        }
        if !queue.is_empty() {
            let ids: Vec<String> = queue.iter().map(|s| s.id.to_string()).collect();
            let seen = fetch_seen(http, base, path, &json!({"ids": ids}), "/docs").await;
            let now = Instant::now();
            for s in std::mem::take(&mut queue) {
                let Some(latency) = settled(&seen, &s, now) else {
                    queue.push(s);
                    continue;
                };
                got.push(latency);
                if s.search {
                    retrievable.lock().unwrap().push(s);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The search loop, until `gets_done` is set and nothing is pending.
async fn poll_search(
    http: reqwest::Client,
    (base, path): (String, String),
    retrievable: Arc<Mutex<Vec<Sample>>>,
    gets_done: Arc<AtomicBool>,
) -> Visible {
    let mut out = Visible::default();
    let mut queue: Vec<Sample> = Vec::new();
    loop {
        let finished = gets_done.load(Ordering::Acquire);
        queue.append(&mut retrievable.lock().unwrap());
        if finished && queue.is_empty() {
            return out;
        }
        if !queue.is_empty() {
            let ids: Vec<String> = queue.iter().map(|s| s.id.to_string()).collect();
            let body = json!({"size": ids.len(), "query": {"ids": {"values": ids}}});
            let sent = Instant::now();
            let seen = fetch_seen(&http, &base, &path, &body, "/hits/hits").await;
            let now = Instant::now();
            out.searches += 1;
            out.search_secs += (now - sent).as_secs_f64();
            queue.retain(|s| match settled(&seen, s, now) {
                Some(latency) => {
                    out.searched.push(latency);
                    false
                }
                None => true,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sample's latency (ms) at `now` when `seen` shows its change or a later one,
/// infinite once [`GIVE_UP`] passed, `None` while it is still awaited.
fn settled(seen: &HashMap<String, u64>, s: &Sample, now: Instant) -> Option<f64> {
    if seen.get(&s.id.to_string()).is_some_and(|n| *n >= s.seq) {
        Some((now - s.at).as_secs_f64() * 1000.0)
    } else if now - s.at > GIVE_UP {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// The change sequence a `status` value `s<n>` carries.
fn seq_of(v: &Value) -> Option<u64> {
    v.as_str()?.strip_prefix('s')?.parse().ok()
}

/// POST `body` to `path`; `_id` → the change sequence its document's `status` carries,
/// for the documents at `pointer` of the answer (`/docs` of `_mget`, `/hits/hits` of
/// `_search`). Empty when the request fails.
async fn fetch_seen(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
    pointer: &str,
) -> HashMap<String, u64> {
    let answer = es_call(http, base, "POST", path, Some(body)).await.ok();
    let docs = answer
        .and_then(|(_, v)| v.pointer(pointer)?.as_array().cloned())
        .unwrap_or_default();
    docs.iter()
        .filter_map(|d| {
            Some((
                d["_id"].as_str()?.to_owned(),
                seq_of(&d["_source"]["status"])?,
            ))
        })
        .collect()
}
