//! One test's whole pipeline: a fixture database, topics and Redis keys under a unique
//! prefix, a handler with a unique alias, the service binaries, and a small HTTP
//! client to look at Elasticsearch.

use crate::{ServiceProcess, StackEnv, TestDatabase, orders_handler, shop_fixture, unique_name};
use mee_core::AppConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One test's world: its fixture database, names under a unique prefix, app config and
/// handler file.
#[derive(Debug)]
pub struct Pipeline {
    pub env: StackEnv,
    pub db: TestDatabase,
    /// Redis key prefix and topic prefix (`<prefix>.<database>`).
    pub prefix: String,
    pub task: String,
    pub alias: String,
    pub toml: String,
    pub handler: PathBuf,
}

/// A service binary of this workspace, next to the running test's `deps` directory
/// (`cargo test --workspace` builds every package's binaries before running tests).
pub fn service_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

impl Pipeline {
    /// `fixture_sql` creates the tables of logical database `shop`; `handler_yaml`'s
    /// top-level key (the alias) `alias_in_yaml` is renamed to a unique alias.
    pub async fn new(fixture_sql: &str, handler_yaml: &str, alias_in_yaml: &str) -> Self {
        let env = StackEnv::load();
        let db = TestDatabase::create(&env, "pipe").await;
        db.exec(&env, fixture_sql).await;
        let prefix = unique_name("p");
        let toml = env.app_config_toml(&[("shop", &db.name)], &prefix).replace(
            "[kafka]\n",
            &format!("[kafka]\ntopic_pattern = \"{prefix}.{{database}}\"\n"),
        ) + "[sync]\nflush_interval_ms = 50\ngenerations_poll_ms = 500\n";
        let alias = format!("{prefix}_alias");
        let yaml = handler_yaml.replacen(
            &format!("\n{alias_in_yaml}:\n"),
            &format!("\n{alias}:\n"),
            1,
        );
        let yaml = if yaml.starts_with(&format!("{alias_in_yaml}:\n")) {
            format!("{alias}:\n{}", &yaml[alias_in_yaml.len() + 2..])
        } else {
            yaml
        };
        assert!(
            yaml.contains(&format!("{alias}:")),
            "alias `{alias_in_yaml}` not found in the handler"
        );
        let handler = std::env::temp_dir().join(format!("{prefix}.yml"));
        std::fs::write(&handler, yaml).expect("write handler");
        Self {
            env,
            db,
            task: format!("{prefix}_task"),
            prefix,
            alias,
            toml,
            handler,
        }
    }

    /// The shop fixture with the shipped `orders` handler.
    pub async fn shop() -> Self {
        Self::shop_with(&orders_handler()).await
    }

    /// The shop fixture with `handler_yaml`, an `orders` handler (e.g. the shipped one
    /// edited).
    pub async fn shop_with(handler_yaml: &str) -> Self {
        Self::new(&shop_fixture(), handler_yaml, "orders").await
    }

    /// The shop fixture with an `orders` handler that maps `status` as a number, and
    /// order 1002's status `7`: Elasticsearch refuses orders 1001 and 1004.
    pub async fn shop_with_refused_orders() -> Self {
        let handler = orders_handler().replace(
            "    properties:\n      total:",
            "    properties:\n      status: {type: long}\n      total:",
        );
        let p = Self::shop_with(&handler).await;
        p.sql("UPDATE orders SET status = '7' WHERE id = 1002")
            .await;
        p
    }

    /// A second handle on the same world, e.g. for a background workload; it does not
    /// own the database: only the original is dropped.
    pub fn handle(&self) -> Pipeline {
        Pipeline {
            env: self.env.clone(),
            db: TestDatabase {
                name: self.db.name.clone(),
            },
            prefix: self.prefix.clone(),
            task: self.task.clone(),
            alias: self.alias.clone(),
            toml: self.toml.clone(),
            handler: self.handler.clone(),
        }
    }

    pub fn cfg(&self) -> AppConfig {
        AppConfig::from_toml_str(&self.toml, Default::default()).expect("config")
    }

    pub fn topic(&self) -> String {
        format!("{}.shop", self.prefix)
    }

    pub async fn sql(&self, sql: &str) {
        self.db.exec(&self.env, sql).await;
    }

    /// Start a service: `listen -d shop`, `sync -n <task>`, or `update -c <handler> -n <task>`
    /// followed by `extra`.
    pub fn spawn(&self, service: &str, extra: &[&str]) -> ServiceProcess {
        self.spawn_with(service, extra, &self.toml)
    }

    /// [`Pipeline::spawn`] with another app config (e.g. through a [`crate::TcpProxy`]).
    pub fn spawn_with(&self, service: &str, extra: &[&str], toml: &str) -> ServiceProcess {
        let handler = self.handler.display().to_string();
        let mut args: Vec<&str> = match service {
            "listen" => vec!["-d", "shop"],
            "sync" => vec!["-n", &self.task],
            "update" => vec!["-c", &handler, "-n", &self.task],
            other => panic!("unknown service {other}"),
        };
        args.extend_from_slice(extra);
        let log = std::env::var("MEE_TEST_LOG").unwrap_or_else(|_| "info".into());
        ServiceProcess::spawn(
            service_bin(service).to_str().expect("utf-8 path"),
            &args,
            toml,
            &[("RUST_LOG", &log)],
        )
    }

    /// Run `update` to completion; its exit status and log.
    pub fn update(&self, extra: &[&str], timeout: Duration) -> (ExitStatus, String) {
        let mut p = self.spawn("update", extra);
        let status = p.wait_exit(timeout);
        (status, p.stderr())
    }

    /// Every document of `index` (an index or alias): `_id` → `_source`, after a refresh.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        let (status, _) = self.es("POST", &format!("/{index}/_refresh"), None);
        assert!(status < 300, "refresh {index}: {status}");
        let (status, body) = self.es(
            "POST",
            &format!("/{index}/_search"),
            Some(&serde_json::json!({"size": 10000, "query": {"match_all": {}}})),
        );
        assert_eq!(status, 200, "search {index}: {body}");
        body["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| {
                (
                    h["_id"].as_str().expect("_id").to_string(),
                    h["_source"].clone(),
                )
            })
            .collect()
    }

    /// Indices the alias points at.
    pub fn alias_targets(&self) -> Vec<String> {
        let (status, body) = self.es("GET", &format!("/_alias/{}", self.alias), None);
        if status == 404 {
            return Vec::new();
        }
        body.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Poll `check` on the alias's documents until it holds (or panic after `timeout`).
    pub fn wait_docs(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        let start = Instant::now();
        loop {
            let docs = self.docs(&self.alias);
            if check(&docs) {
                return docs;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not reached in {timeout:?}; documents now:\n{docs:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until the task's consumer group is `Stable` with `members` members: every
    /// `sync` process has its partitions. Panics after `timeout`.
    pub fn wait_group_stable(&self, members: usize, timeout: Duration) {
        use mee_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = mee_kafka::client_config(&self.cfg().kafka)
            .create()
            .expect("a Kafka client");
        let prefix = format!("{}.", self.task);
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            if let Ok(list) = consumer.fetch_group_list(None, Duration::from_secs(5)) {
                let group = list.groups().iter().find(|g| g.name().starts_with(&prefix));
                if let Some(g) = group {
                    if g.state() == "Stable" && g.members().len() == members {
                        return;
                    }
                    last = format!(
                        "{} is {} with {} members",
                        g.name(),
                        g.state(),
                        g.members().len()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the consumer group of {} is not stable with {members} members after {timeout:?}: {last}",
            self.task
        );
    }

    /// One HTTP/1.0 request to Elasticsearch: (status, JSON body or Null).
    pub fn es(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        es_request(&self.env.es_url, method, path, body)
    }

    /// Start `update -c <handler> -n <task> --verify --recheck-timeout 30 <extra>`.
    pub fn start_verify(&self, extra: &[&str]) -> VerifyRun {
        VerifyRun::start(self, extra)
    }

    /// Run `update --verify <extra>` to completion: exit status, stdout, stderr.
    pub fn verify(&self, extra: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
        self.start_verify(extra).finish(timeout)
    }

    /// Drop the fixture database, and delete what the test's services left on the
    /// servers: its Elasticsearch indices and Kafka topics. The local emulator keeps
    /// them all in memory, and its pauses grow with what it holds.
    pub async fn drop(self) {
        let _ = std::fs::remove_file(&self.handler);
        if let (200, Value::Object(found)) = self.es("GET", &format!("/{}_*", self.alias), None) {
            for index in found.keys() {
                self.es("DELETE", &format!("/{index}"), None);
            }
        }
        let cfg = self.cfg().kafka;
        let (prefix, dlq) = (format!("{}.", self.prefix), format!("{}.dlq", self.task));
        let topics = tokio::task::spawn_blocking(move || {
            use mee_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
            let client: BaseConsumer = mee_kafka::client_config(&cfg).create().ok()?;
            let metadata = client.fetch_metadata(None, Duration::from_secs(10)).ok()?;
            let names = metadata.topics().iter().map(|t| t.name().to_string());
            Some(
                names
                    .filter(|t| t.starts_with(&prefix) || *t == dlq)
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        crate::delete_topics(&self.cfg().kafka, &topics).await;
        self.db.drop(&self.env).await;
    }
}

/// A minimal HTTP/1.0 client (one request per connection), enough for tests.
pub fn es_request(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    // Read the head, then exactly Content-Length bytes (servers may keep the
    // connection open regardless).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (head_len, length) = loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while raw.len() < head_len + length && method != "HEAD" {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_len]).to_string();
    let payload = String::from_utf8_lossy(&raw[head_len..]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

/// `update -c <handler> -n <task> --verify <extra>` with its own config file, stdout
/// and stderr in files (so a test can watch the log while it runs).
#[derive(Debug)]
pub struct VerifyRun {
    child: Child,
    files: [PathBuf; 3],
}

impl VerifyRun {
    fn start(p: &Pipeline, extra: &[&str]) -> Self {
        let name = unique_name("verify");
        let dir = std::env::temp_dir();
        let files = [
            dir.join(format!("{name}.toml")),
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        ];
        std::fs::write(&files[0], &p.toml).expect("config");
        let handler = p.handler.display().to_string();
        let child = Command::new(service_bin("update"))
            .args(["-c", &handler, "-n", &p.task, "--verify", "--config"])
            .arg(&files[0])
            .args(["--recheck-timeout", "30"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&files[1]).expect("stdout file"))
            .stderr(std::fs::File::create(&files[2]).expect("stderr file"))
            .spawn()
            .expect("start update --verify");
        Self { child, files }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.files[2]).unwrap_or_default()
    }

    /// Exit status, stdout, stderr.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                start.elapsed() < timeout,
                "--verify still running after {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(&self.files[1]).unwrap_or_default();
        (status, out, self.stderr())
    }
}

impl Drop for VerifyRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}
