//! Shared by the end-to-end tests: the shop pipeline running, and the documents the
//! materializer builds from MySQL now.
#![allow(dead_code)]

use mee_core::dead_letter::DeadLetter;
use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_kafka::rdkafka::consumer::Consumer;
use mee_kafka::rdkafka::message::Message;
use mee_mysql::MySqlSource;
use mee_test_support::{Pipeline, ServiceProcess};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(30);

/// listen, then the first generation (update), then sync.
pub async fn running_shop() -> (Pipeline, ServiceProcess, ServiceProcess) {
    let p = Pipeline::shop().await;
    let (listen, sync) = start(&p).await;
    (p, listen, sync)
}

pub async fn start(p: &Pipeline) -> (ServiceProcess, ServiceProcess) {
    let mut listen = p.spawn("listen", &[]);
    listen.wait_healthy(WAIT);
    let (status, log) = p.update(&[], Duration::from_secs(60));
    assert!(status.success(), "{log}");
    let mut sync = p.spawn("sync", &[]);
    sync.wait_healthy(WAIT);
    (listen, sync)
}

/// Every document the materializer builds from MySQL now, `_id` → source.
pub async fn expected(p: &Pipeline) -> BTreeMap<String, Value> {
    let handler = Handler::parse(
        "h.yml",
        &std::fs::read_to_string(&p.handler).expect("handler"),
    )
    .expect("handler");
    let source = MySqlSource::new(&p.cfg(), ["shop"]).expect("pools");
    let m = Materializer::new(&handler);
    let mut docs = BTreeMap::new();
    let mut after = None;
    loop {
        let page = m
            .page(&source, after.as_deref(), 1000)
            .await
            .expect("materialize");
        for d in page.documents {
            docs.insert(d.id.clone(), d.source_value());
        }
        match page.last_key {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    source.close().await;
    docs
}

/// The alias's documents once they equal the materializer's (panics with both after `timeout`).
pub async fn converges(p: &Pipeline, timeout: Duration) {
    let want = expected(p).await;
    p.wait_docs(
        timeout,
        "the index equals the materializer's documents",
        |d| *d == want,
    );
}

/// The task's generations in Redis.
pub async fn generations(p: &Pipeline) -> Vec<mee_core::generation::Generation> {
    let cfg = p.cfg();
    let conn = mee_redis::connect(&cfg.redis).await.expect("redis");
    let mut store = mee_redis::GenerationStore::new(conn, mee_redis::Keys::new(&p.prefix));
    store.list(&p.task).await.expect("list")
}

/// Up to `want` letters of the task's dead-letter topic, from its start (waits up to
/// [`WAIT`] for them).
pub fn read_dlq(p: &Pipeline, want: usize) -> Vec<DeadLetter> {
    let cfg = p.cfg();
    let mut c = mee_kafka::client_config(&cfg.kafka);
    c.set("group.id", mee_test_support::unique_name("g"))
        .set("auto.offset.reset", "earliest");
    let consumer: mee_kafka::rdkafka::consumer::BaseConsumer = c.create().expect("consumer");
    consumer
        .subscribe(&[&format!("{}.dlq", p.task)])
        .expect("subscribe");
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    while out.len() < want && start.elapsed() < WAIT {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            out.push(serde_json::from_slice(m.payload().expect("payload")).expect("letter"));
        }
    }
    out
}
