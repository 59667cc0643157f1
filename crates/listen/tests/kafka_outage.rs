//! Kafka down in the middle of a stream: `listen` keeps running, loses nothing, saves
//! no position ahead of what Kafka has, and says so in its log without flooding it.
//!
//! The broker is a private Kafka API server (noida-db, Kafka only, its own port and
//! data directory) that the test stops and starts: a proxy in front of the shared one
//! would not do, since a broker advertises its own address in its metadata and the
//! client then connects there directly, around the proxy.

mod common;

use common::{World, metric};
use mee_core::BinlogPosition;
use mee_core::event::ChangeEvent;
use mee_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use mee_kafka::rdkafka::message::Message;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use mee_test_support::{ServiceProcess, TestDatabase, unique_name, workspace_root};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Kafka API server of this test's own.
struct PrivateKafka {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl PrivateKafka {
    /// Start noida-db with only Kafka on a free port, data in a fresh directory.
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_name("kafka"));
        std::fs::create_dir_all(&dir).expect("data dir");
        Self::start_in(dir)
    }

    fn start_in(dir: PathBuf) -> Self {
        let bin = noida_bin();
        let port = free_port();
        let child = Command::new(&bin)
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--kafka-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let k = Self {
            bin,
            dir,
            port,
            child,
        };
        k.wait_reachable(true);
        k
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `noida-db stop kafka`: the port refuses connections and open ones are closed;
    /// the data is kept.
    fn stop(&self) {
        self.control("stop");
        self.wait_reachable(false);
    }

    fn restart(&self) {
        self.control("start");
        self.wait_reachable(true);
    }

    /// A second server on a copy of the (stopped) data: what Kafka had at the stop.
    fn snapshot(&self) -> Self {
        let dir = std::env::temp_dir().join(unique_name("kafka_snap"));
        std::fs::create_dir_all(&dir).expect("snapshot dir");
        std::fs::copy(self.dir.join("kafka.json"), dir.join("kafka.json"))
            .expect("copy kafka.json (noida-db keeps a stopped Kafka's data there)");
        Self::start_in(dir)
    }

    fn control(&self, verb: &str) {
        let out = Command::new(&self.bin)
            .args([verb, "kafka", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("run noida-db");
        assert!(out.status.success(), "noida-db {verb} kafka: {out:?}");
    }

    fn wait_reachable(&self, up: bool) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() != up {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "Kafka on {} not {}",
                self.port,
                if up { "up" } else { "down" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The noida-db server binary `scripts/dev-up` installed.
fn noida_bin() -> PathBuf {
    let lib = workspace_root().join(".dev/venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/noida_db/noida-db"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no noida-db under {}: run scripts/dev-up", lib.display()))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Every event in `topic` on `brokers`, up to the current end of each partition.
fn drain(brokers: &str, topic: &str) -> Vec<ChangeEvent> {
    let consumer: BaseConsumer = mee_kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("g"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .expect("watermarks");
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
            left += high - low;
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while left > 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "{left} not read");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            out.push(ChangeEvent::from_json(m.payload().expect("payload")).expect("event"));
            left -= 1;
        }
    }
    out
}

/// `mee_dependency_up` of Kafka: 1 while it confirms events, 0 while it does not.
fn kafka_up(p: &ServiceProcess) -> Option<f64> {
    p.get("/metrics").and_then(|(_, body)| {
        metric(
            &body,
            "mee_dependency_up{dependency=\"kafka\",service=\"listen\"}",
        )
    })
}

fn published(p: &ServiceProcess) -> f64 {
    p.get("/metrics")
        .and_then(|(_, body)| metric(&body, "mee_listen_events_published_total"))
        .unwrap_or(0.0)
}

async fn saved(w: &World) -> BinlogPosition {
    serde_json::from_str(&w.saved_position().await.expect("a saved position")).expect("json")
}

/// `batches` transactions of `rows` inserts each, with a pause between them.
async fn write(w: &World, batches: usize, rows: usize) -> tokio::task::JoinHandle<()> {
    let env = w.env.clone();
    let db = TestDatabase {
        name: w.db.name.clone(),
    };
    tokio::spawn(async move {
        for i in 0..batches {
            let (first, last) = (i * rows + 1, (i + 1) * rows);
            db.exec(
                &env,
                &format!("INSERT INTO big SELECT seq, seq FROM seq_{first}_to_{last}"),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
}

fn identity(e: &ChangeEvent) -> (String, u64, u32) {
    (e.message_key(), e.version, e.index_in_tx)
}

fn log_lines<'a>(stderr: &'a str, level: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .collect()
}

/// A 15-second Kafka outage in the middle of a stream of `BATCHES` × `ROWS` inserts,
/// with `kafka_options` for the producer. Checks that listen stays up, every change
/// arrives, and the position it saved during the outage has nothing missing from Kafka
/// before it.
async fn outage(kafka_options: &str) -> Outage {
    const BATCHES: usize = 120;
    const ROWS: usize = 500;
    let kafka = PrivateKafka::start();
    let mut w = World::new("CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL)").await;
    w.toml = w.toml.replace(&w.env.kafka_brokers, &kafka.brokers())
        + "[kafka.librdkafka_options]\n"
        + kafka_options;
    let mut p = w.listen(&[]);
    let writer = write(&w, BATCHES, ROWS).await;
    let start = Instant::now();
    while published(&p) < 3_000.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    kafka.stop();
    let cut = Instant::now();
    let log_from = p.stderr().len();
    while cut.elapsed() < Duration::from_secs(13) {
        assert!(p.try_exit().is_none(), "listen exited:\n{}", p.stderr());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Late in the outage: the saver had seconds to write whatever it had.
    let saved_in_cut = saved(&w).await;
    assert_eq!(kafka_up(&p), Some(0.0), "Kafka is down for the metrics");
    let had = {
        let snapshot = kafka.snapshot();
        drain(&snapshot.brokers(), &w.topic())
    };
    while cut.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kafka.restart();
    let cut_log = p.stderr()[log_from..].to_string();

    writer.await.expect("writer");
    let events = w.consume_watching(
        |e| {
            let ids: HashSet<i64> = e.iter().filter_map(|x| x.key["id"].as_i64()).collect();
            ids.len() == BATCHES * ROWS
        },
        Some(&p),
    );
    assert!(p.try_exit().is_none(), "listen exited:\n{}", p.stderr());
    assert_eq!(kafka_up(&p), Some(1.0), "Kafka is back for the metrics");

    // Nothing before the saved position is missing from what Kafka had at the cut.
    let had: HashSet<_> = had.iter().map(identity).collect();
    assert!(!had.is_empty(), "events reached Kafka before the cut");
    let missing: Vec<&ChangeEvent> = events
        .iter()
        .filter(|e| e.position.binlog_cmp(&saved_in_cut) == Some(std::cmp::Ordering::Less))
        .filter(|e| !had.contains(&identity(e)))
        .collect();
    assert!(
        missing.is_empty(),
        "saved {saved_in_cut} during the cut, but Kafka did not have {} events before it, e.g. {:?}",
        missing.len(),
        missing.first().map(|e| e.position.to_string())
    );
    eprintln!(
        "{} events ({} in Kafka at the cut), saved {saved_in_cut} during the cut",
        events.len(),
        had.len()
    );
    assert!(p.terminate(Duration::from_secs(15)).success());
    let saved_at_end = saved(&w).await;
    assert_eq!(
        saved_at_end.binlog_cmp(&saved_in_cut),
        Some(std::cmp::Ordering::Greater),
        "saving went on after the outage: {saved_at_end}"
    );
    let all = p.stderr();
    w.drop().await;
    Outage {
        during: cut_log,
        all,
    }
}

/// What listen logged during the outage, and in all.
struct Outage {
    during: String,
    all: String,
}

/// The failure is in the log at warn, once-ish, not a flood.
fn assert_logged_once_ish(log: &str) {
    let warnings = log_lines(log, "WARN");
    let errors = log_lines(log, "ERROR");
    eprintln!("log during the outage:\n{log}");
    assert!(!warnings.is_empty(), "no warning in the outage:\n{log}");
    assert!(
        warnings.len() + errors.len() < 20,
        "{} warnings and {} errors in the outage:\n{log}",
        warnings.len(),
        errors.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_mid_stream_loses_nothing_and_saves_nothing_ahead() {
    let log = outage("").await;
    assert_logged_once_ish(&log.during);
    assert!(
        log.during.contains("Kafka has not confirmed an event"),
        "{}",
        log.during
    );
    assert!(
        log.all.contains("Kafka confirms events again"),
        "{}",
        log.all
    );
}

/// Messages time out in the producer during the outage (`message.timeout.ms` shorter
/// than it): listen reconnects and sends again from the last confirmed position.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_past_the_message_timeout_sends_again_from_the_saved_position() {
    let log = outage("\"message.timeout.ms\" = \"4000\"\n").await;
    assert_logged_once_ish(&log.during);
    assert!(
        log.during
            .contains("resuming from the last confirmed position"),
        "{}",
        log.during
    );
}
