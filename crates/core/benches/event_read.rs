//! CPU of reading a change event as `sync` does while catching up (one pass, the
//! master key picked out of the images), against the cheapest complete check of the
//! same bytes (`serde_json` skipping every value) and against building the whole
//! event. `cargo bench -p mee-core --bench event_read`; prints ratios to the skip.

use mee_core::event::{ChangeEvent, ChangeKind, KeyColumns, LazyChangeEvent};
use mee_core::position::BinlogPosition;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

const EVENTS: u64 = 200_000;
const ROUNDS: usize = 5;

/// An UPDATE of the benchmark fixture's `orders` (the shape `scripts/bench sync` sends).
fn order_update(i: u64) -> Vec<u8> {
    let image = |status: &str| {
        json!({"id": i % 100_000, "customer_id": 1 + i % 10_000, "status": status,
               "total": format!("{}.00", i % 1000), "created_at": "2024-01-01 10:11:12",
               "note": format!("order note number {}", i % 100_000)})
        .as_object()
        .cloned()
    };
    ChangeEvent {
        format: 1,
        database: "bench".into(),
        table: "orders".into(),
        kind: ChangeKind::Update,
        key: json!({"id": i % 100_000})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        before: image("new"),
        after: image("paid"),
        statement: None,
        position: BinlogPosition::new("mariadb-bin.000003", 1000 + i),
        version: (3 << 32) | (1000 + i),
        commit_ts_ms: 1_717_232_400_000,
        index_in_tx: 0,
    }
    .to_json()
}

/// The fastest of `ROUNDS` passes over `events`.
fn best(events: &[Vec<u8>], read: impl Fn(&[u8])) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for e in events {
                read(e);
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let events: Vec<Vec<u8>> = (0..EVENTS).map(order_update).collect();
    let keys = KeyColumns {
        database: "bench".into(),
        table: "orders".into(),
        columns: vec!["id".into()],
    };
    let skip = best(&events, |e| {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(e).ok());
    });
    let lazy = best(&events, |e| {
        black_box(LazyChangeEvent::from_json(e, Some(&keys)).ok());
    });
    let eager = best(&events, |e| {
        black_box(ChangeEvent::from_json(e).ok());
    });
    let per = |d: Duration| d.as_secs_f64() * 1e9 / EVENTS as f64;
    println!(
        "{EVENTS} events of {} bytes, best of {ROUNDS} passes",
        events[0].len()
    );
    println!("| read | ns/event | ratio to the skip |");
    println!("| --- | --- | --- |");
    for (name, d) in [
        ("serde_json skipping every value (baseline)", skip),
        ("LazyChangeEvent, master key picked", lazy),
        ("ChangeEvent, whole rows built", eager),
    ] {
        println!("| {name} | {:.0} | {:.2} |", per(d), per(d) / per(skip));
    }
}
