//! What the integration tests of `listen` share: a world of their own (database,
//! topic, Redis prefix) on the local stack, and a Kafka reader.
#![allow(dead_code)] // each test file uses its own part

use mee_core::event::ChangeEvent;
use mee_kafka::rdkafka::consumer::Consumer;
use mee_kafka::rdkafka::message::Message;
use mee_redis::redis::AsyncCommands;
use mee_test_support::{ServiceProcess, StackEnv, TestDatabase, unique_name};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_listen");

/// One test's world: a database, a topic prefix, a Redis prefix, and the config.
pub struct World {
    pub env: StackEnv,
    pub db: TestDatabase,
    pub prefix: String,
    pub toml: String,
}

impl World {
    pub async fn new(schema_sql: &str) -> Self {
        let env = StackEnv::load();
        let db = TestDatabase::create(&env, "listen").await;
        db.exec(&env, schema_sql).await;
        let mut w = Self {
            env,
            db,
            prefix: String::new(),
            toml: String::new(),
        };
        w.renew_prefix();
        w
    }

    /// A new topic and Redis prefix (and config) for the same database: what a fresh
    /// `listen` deployment would have.
    pub fn renew_prefix(&mut self) {
        let prefix = unique_name("r");
        self.toml = self
            .env
            .app_config_toml(&[("shop", &self.db.name)], &prefix)
            .replace(
                "[kafka]\n",
                &format!("[kafka]\ntopic_pattern = \"{prefix}.{{database}}\"\n"),
            );
        self.prefix = prefix;
    }

    pub fn topic(&self) -> String {
        format!("{}.shop", self.prefix)
    }

    pub fn cfg(&self) -> mee_core::AppConfig {
        mee_core::AppConfig::from_toml_str(&self.toml, Default::default()).expect("config")
    }

    pub fn listen(&self, extra: &[&str]) -> ServiceProcess {
        let mut args = vec!["-d", "shop"];
        args.extend_from_slice(extra);
        let log = std::env::var("MEE_TEST_LISTEN_LOG").unwrap_or_else(|_| "info".into());
        let mut p = ServiceProcess::spawn(BIN, &args, &self.toml, &[("RUST_LOG", &log)]);
        p.wait_healthy(Duration::from_secs(30));
        p
    }

    pub async fn sql(&self, sql: &str) {
        self.db.exec(&self.env, sql).await;
    }

    /// Read events from the start of the topic until `done` says so (or 30 s pass).
    pub fn consume(&self, done: impl Fn(&[ChangeEvent]) -> bool) -> Vec<ChangeEvent> {
        self.consume_watching(done, None)
    }

    pub fn consume_watching(
        &self,
        done: impl Fn(&[ChangeEvent]) -> bool,
        p: Option<&ServiceProcess>,
    ) -> Vec<ChangeEvent> {
        self.consume_with_partitions(done, p)
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    /// Events with the partition each came from, in consumption order.
    pub fn consume_with_partitions(
        &self,
        done: impl Fn(&[ChangeEvent]) -> bool,
        p: Option<&ServiceProcess>,
    ) -> Vec<(ChangeEvent, i32)> {
        let cfg = self.cfg();
        let consumer: mee_kafka::rdkafka::consumer::BaseConsumer = {
            let mut c = mee_kafka::client_config(&cfg.kafka);
            c.set("group.id", unique_name("g"))
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "10");
            c.create().expect("consumer")
        };
        consumer.subscribe(&[&self.topic()]).expect("subscribe");
        let mut events = Vec::new();
        let mut out = Vec::new();
        let start = Instant::now();
        // `done` is checked when the topic is idle or every 1,000 messages: it may
        // look at every event so far.
        let mut unchecked = 0;
        loop {
            if unchecked == 0 && done(&events) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "only got {} events, the last: {:#?}\nlisten published {:?}, said:\n{}",
                events.len(),
                events.last(),
                p.and_then(|p| p.get("/metrics"))
                    .and_then(|(_, body)| metric(&body, "mee_listen_events_published_total")),
                p.map(ServiceProcess::stderr).unwrap_or_default()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(m) => {
                    let m = m.expect("message");
                    let e = ChangeEvent::from_json(m.payload().expect("payload")).expect("event");
                    assert_eq!(m.key(), Some(e.message_key().as_bytes()), "keyed by row");
                    events.push(e.clone());
                    out.push((e, m.partition()));
                    unchecked = (unchecked + 1) % 1000;
                }
                None => unchecked = 0,
            }
        }
        out
    }

    pub async fn saved_position(&self) -> Option<String> {
        let mut conn = mee_redis::connect(&self.cfg().redis).await.expect("redis");
        conn.get(format!("{}:listen:shop:position", self.prefix))
            .await
            .expect("get")
    }

    pub async fn save_position(&self, json: &str) {
        let mut conn = mee_redis::connect(&self.cfg().redis).await.expect("redis");
        let _: () = conn
            .set(format!("{}:listen:shop:position", self.prefix), json)
            .await
            .expect("set");
    }

    pub async fn drop(self) {
        self.db.drop(&self.env).await;
    }
}

pub const ITEMS: &str =
    "CREATE TABLE items (id INT PRIMARY KEY, title VARCHAR(32) NOT NULL, qty INT)";

/// The value of a metric line in a /metrics body (first match of `prefix`).
pub fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
