//! Polling the Elasticsearch API until sampled changes are visible: by realtime
//! `_mget`, and by `_search` (after a refresh).

use super::GIVE_UP;
use crate::common::es_call;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sampled change: order `id` must carry status `s<seq>` or a later one.
pub(super) struct Sample {
    pub(super) id: u64,
    pub(super) seq: u64,
    pub(super) at: Instant,
    pub(super) search: bool,
}

/// Poll the pending samples until each is visible (ms from its commit to the answer
/// that showed it) or [`GIVE_UP`] passed (infinite): all realtime-GET samples with one
/// `_mget` every 25 ms, the search samples with one `_search` by ids every 100 ms.
/// Returns once `done` is set and nothing is pending: (GET, search) latencies.
pub(super) async fn poll_visible(
    http: reqwest::Client,
    base: String,
    alias: String,
    pending: Arc<Mutex<Vec<Sample>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut got, mut searched) = (Vec::new(), Vec::new());
    // Samples waiting for the GET, then (search samples) for the search.
    let (mut get_q, mut search_q): (Vec<Sample>, Vec<Sample>) = (Vec::new(), Vec::new());
    for round in 0u64.. {
        get_q.append(&mut pending.lock().unwrap());
        if done.load(std::sync::atomic::Ordering::Relaxed)
            && get_q.is_empty()
            && search_q.is_empty()
        {
            break;
        }
        if !get_q.is_empty() {
            let ids: Vec<String> = get_q.iter().map(|s| s.id.to_string()).collect();
            let body = json!({"ids": ids});
            let seen = fetch_seen(&http, &base, &format!("/{alias}/_mget"), &body, "/docs").await;
            let now = Instant::now();
            let mut keep = Vec::new();
            for s in get_q.drain(..) {
                if seen.get(&s.id.to_string()).is_some_and(|n| *n >= s.seq) {
                    got.push((now - s.at).as_secs_f64() * 1000.0);
                    if s.search {
                        search_q.push(s);
                    }
                } else if now - s.at > GIVE_UP {
                    got.push(f64::INFINITY);
                    if s.search {
                        searched.push(f64::INFINITY);
                    }
                } else {
                    keep.push(s);
                }
            }
            get_q = keep;
        }
        if round % 4 == 0 && !search_q.is_empty() {
            let ids: Vec<String> = search_q.iter().map(|s| s.id.to_string()).collect();
            let body = json!({"size": ids.len(), "query": {"ids": {"values": ids}}});
            let path = format!("/{alias}/_search");
            let seen = fetch_seen(&http, &base, &path, &body, "/hits/hits").await;
            let now = Instant::now();
            search_q.retain(|s| {
                if seen.get(&s.id.to_string()).is_some_and(|n| *n >= s.seq) {
                    searched.push((now - s.at).as_secs_f64() * 1000.0);
                    false
                } else if now - s.at > GIVE_UP {
                    searched.push(f64::INFINITY);
                    false
                } else {
                    true
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (got, searched)
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
