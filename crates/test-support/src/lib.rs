//! Test support for integration tests against the local stack (`scripts/dev-up`).
//!
//! Server addresses come from `MEE_*` environment variables, falling back to
//! `.dev/env`, which dev-up writes. Every test takes its own names — database,
//! topic, index, Redis key prefix — from [`unique_name`], so tests run in parallel.

mod pipeline;
mod process;
mod proxy;
mod search_loop;
mod shop;
pub mod workload;
pub use pipeline::{Pipeline, VerifyRun, es_request, service_bin};
pub use process::ServiceProcess;
pub use proxy::TcpProxy;
pub use search_loop::SearchLoop;
pub use shop::{orders_golden, orders_handler, shop_fixture, workspace_file};

use mee_core::AppConfig;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Addresses and credentials of the local stack.
#[derive(Debug, Clone)]
pub struct StackEnv {
    pub mysql_host: String,
    pub mysql_port: u16,
    /// The replication user with only what the services need.
    pub mysql_user: String,
    pub mysql_password: String,
    /// A user that may create and drop fixture databases.
    pub mysql_admin_user: String,
    pub mysql_admin_password: String,
    pub redis_url: String,
    pub kafka_brokers: String,
    pub es_url: String,
}

/// The workspace root (where `.dev/` and `conf/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl StackEnv {
    /// Read `MEE_*` variables, falling back to `.dev/env`. Panics with a hint to run
    /// `scripts/dev-up` when neither has them: these tests need the real servers.
    pub fn load() -> Self {
        let file = std::fs::read_to_string(workspace_root().join(".dev/env")).unwrap_or_default();
        let from_file: HashMap<&str, &str> = file
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &str| -> String {
            std::env::var(key)
                .ok()
                .or_else(|| from_file.get(key).map(|v| v.to_string()))
                .unwrap_or_else(|| {
                    panic!("{key} is not set and .dev/env lacks it: run scripts/dev-up first")
                })
        };
        Self {
            mysql_host: get("MEE_MYSQL_HOST"),
            mysql_port: get("MEE_MYSQL_PORT")
                .parse()
                .expect("MEE_MYSQL_PORT is a port"),
            mysql_user: get("MEE_MYSQL_USER"),
            mysql_password: get("MEE_MYSQL_PASSWORD"),
            mysql_admin_user: get("MEE_MYSQL_ADMIN_USER"),
            mysql_admin_password: get("MEE_MYSQL_ADMIN_PASSWORD"),
            redis_url: get("MEE_REDIS_URL"),
            kafka_brokers: get("MEE_KAFKA_BROKERS"),
            es_url: get("MEE_ES_URL"),
        }
    }

    /// An app config for the stack, with one `[mysql.<logical>]` section per
    /// `(logical name, schema)` pair, connecting as the least-privileged user.
    pub fn app_config(&self, databases: &[(&str, &str)], redis_prefix: &str) -> AppConfig {
        let toml = self.app_config_toml(databases, redis_prefix);
        AppConfig::from_toml_str(&toml, HashMap::new()).expect("test app config is valid")
    }

    /// The TOML text of [`StackEnv::app_config`], for running the binaries.
    pub fn app_config_toml(&self, databases: &[(&str, &str)], redis_prefix: &str) -> String {
        let mut toml = String::new();
        for (i, (logical, schema)) in databases.iter().enumerate() {
            toml.push_str(&format!(
                "[mysql.{logical}]\nhost = \"{}\"\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n\
                 schema = \"{schema}\"\nserver_id = {}\n",
                self.mysql_host,
                self.mysql_port,
                self.mysql_user,
                self.mysql_password,
                // Distinct per test (process and call) and section, away from the demo's ids.
                replica_id(i),
            ));
        }
        toml.push_str(&format!(
            "[kafka]\nbrokers = [\"{}\"]\ntopic_partitions = 3\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{redis_prefix}\"\n\
             [elasticsearch]\nurl = \"{}\"\n",
            self.kafka_brokers, self.redis_url, self.es_url
        ));
        toml
    }

    /// A connection as the admin user, with no default database.
    pub async fn admin_conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.mysql_host.clone())
            .tcp_port(self.mysql_port)
            .user(Some(self.mysql_admin_user.clone()))
            .pass(Some(self.mysql_admin_password.clone()))
            .prefer_socket(false);
        mysql_async::Conn::new(opts)
            .await
            .expect("admin connection to MariaDB (is scripts/dev-up running?)")
    }
}

/// A replica server id no other test uses at the same time.
fn replica_id(section: usize) -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed) % 1000;
    10_000 + (std::process::id() % 4000) * 10_000 + n * 10 + section as u32 % 10
}

/// A name no other test (in this or another process) uses: lowercase letters,
/// digits and `_`, valid as a MySQL schema, Kafka topic, ES index and key prefix.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t_{prefix}_{}_{}_{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfffff
    )
}

/// A fixture database, created empty, owned by one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create(env: &StackEnv, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let mut conn = env.admin_conn().await;
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create test database");
        conn.disconnect().await.ok();
        Self { name }
    }

    /// Run statements as the admin user with this database as the default.
    pub async fn exec(&self, env: &StackEnv, sql: &str) {
        let mut conn = env.admin_conn().await;
        conn.query_drop(format!("USE `{}`", self.name))
            .await
            .expect("use");
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.ok();
    }

    pub async fn drop(self, env: &StackEnv) {
        let mut conn = env.admin_conn().await;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .await
            .ok();
        conn.disconnect().await.ok();
    }
}

/// Delete Kafka `topics` (a warning for each one that cannot be).
pub async fn delete_topics(cfg: &mee_core::config::KafkaConfig, topics: &[String]) {
    use mee_kafka::rdkafka::admin::{AdminClient, AdminOptions};
    use mee_kafka::rdkafka::client::DefaultClientContext;
    if topics.is_empty() {
        return;
    }
    let admin: AdminClient<DefaultClientContext> = match mee_kafka::client_config(cfg).create() {
        Ok(a) => a,
        Err(e) => return eprintln!("warning: no Kafka admin client to delete {topics:?}: {e}"),
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(30)));
    match admin.delete_topics(&names, &opts).await {
        Ok(results) => {
            for (topic, code) in results.into_iter().filter_map(Result::err) {
                eprintln!("warning: deleting topic {topic}: {code}");
            }
        }
        Err(e) => eprintln!("warning: could not delete topics {topics:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_portable() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a.len() < 64, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        );
    }
}
