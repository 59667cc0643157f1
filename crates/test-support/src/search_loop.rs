//! Searching an alias over and over from a thread, e.g. while a rebuild swaps it.

use crate::{Pipeline, es_request};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A thread searching a pipeline's alias until stopped, keeping every answer that
/// failed or found no document.
#[derive(Debug)]
pub struct SearchLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Vec<(u16, Value)>)>,
}

impl SearchLoop {
    /// Start searching `p`'s alias (`GET /<alias>/_search?size=1`).
    pub fn start(p: &Pipeline) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, alias) = (p.env.es_url.clone(), p.alias.clone());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut searches, mut failures) = (0u64, Vec::new());
            while !stopped.load(Ordering::SeqCst) {
                let (status, body) =
                    es_request(&url, "GET", &format!("/{alias}/_search?size=1"), None);
                if status != 200 || body["hits"]["total"]["value"].as_u64().unwrap_or(0) == 0 {
                    failures.push((status, body));
                }
                searches += 1;
            }
            (searches, failures)
        });
        Self { stop, thread }
    }

    /// Stop searching: how many searches ran, and the failed or empty answers
    /// (status, body).
    pub fn stop(self) -> (u64, Vec<(u16, Value)>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the search loop panicked")
    }
}
