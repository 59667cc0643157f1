//! The application configuration (`conf/app.toml`): where the servers are and how to
//! reach them. Handler configs (what to index) are a separate format.
//!
//! Loaded from a TOML file, then overridden by environment variables named
//! `MEE__<SECTION>__<KEY>` (double underscores between levels), e.g.
//! `MEE__KAFKA__BROKERS=a:9092,b:9092` or `MEE__MYSQL__SHOP__PASSWORD=...`.
//! Unknown keys are errors; every error names its key path; [`AppConfig::validate`]
//! reports all semantic problems at once.

use crate::secret::{Secret, redact_url};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod services;
pub use services::{SyncConfig, UpdateConfig};

/// Environment variable prefix for overrides: `MEE__KAFKA__BROKERS`.
pub const ENV_PREFIX: &str = "MEE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// One connection per logical database name, as Mee's `[mysql:<database>]`.
    #[serde(default)]
    pub mysql: BTreeMap<String, MySqlConfig>,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub elasticsearch: ElasticsearchConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub update: UpdateConfig,
    #[serde(default)]
    pub sync: SyncConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlConfig {
    pub host: String,
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    pub user: String,
    #[serde(default)]
    pub password: Secret,
    /// Schema name on the server when it differs from the logical name.
    #[serde(default)]
    pub schema: Option<String>,
    /// Replica server id used by `listen`; unique among all replicas of the source.
    #[serde(default)]
    pub server_id: Option<u32>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub tls: MySqlTls,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlTls {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file with the CA that signed the server certificate (system roots otherwise).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for servers that require client certs.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyIdentity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    #[serde(deserialize_with = "list_or_comma_text")]
    pub brokers: Vec<String>,
    /// Change topic name; `{database}` is replaced by the logical database name.
    #[serde(default = "default_topic_pattern")]
    pub topic_pattern: String,
    /// Partitions of a change topic when `listen` creates it.
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    #[serde(default = "default_topic_replication_factor")]
    pub topic_replication_factor: i32,
    /// Extra librdkafka properties (security.protocol, sasl.*, ssl.*, ...).
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
}

/// librdkafka properties; values whose key looks secret are hidden in `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct LibrdkafkaOptions(pub BTreeMap<String, String>);

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS.
    pub url: Secret,
    /// Prefix of every key we write: `<prefix>:task:<task>:...`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster (http or https).
    pub url: String,
    #[serde(default)]
    pub auth: EsAuth,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default)]
    pub tls: EsTls,
    /// How documents are written: request sizes, concurrency, retries, rate limits.
    #[serde(default)]
    pub bulk: BulkConfig,
}

/// The bulk writer (`[elasticsearch.bulk]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// Operations per `_bulk` request, at most.
    #[serde(default = "default_bulk_max_docs")]
    pub max_docs: usize,
    /// Body bytes per `_bulk` request, at most (an operation larger than this goes alone).
    #[serde(default = "default_bulk_max_bytes")]
    pub max_bytes: usize,
    /// `_bulk` requests in flight at once, shared by every caller of one writer.
    #[serde(default = "default_bulk_concurrency")]
    pub concurrency: usize,
    /// First delay of the capped exponential backoff after a 429, 5xx or connection error.
    #[serde(default = "default_bulk_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts.
    #[serde(default = "default_bulk_retry_max_ms")]
    pub retry_max_ms: u64,
    /// How long one request may keep failing transiently before the writer returns an
    /// error; 0 retries forever.
    #[serde(default = "default_bulk_give_up_after_ms")]
    pub give_up_after_ms: u64,
    /// Documents per second, over all callers of one writer; 0 is no limit.
    #[serde(default)]
    pub rate_limit_docs_per_s: u64,
    /// Request body MiB per second, over all callers of one writer; 0 is no limit.
    #[serde(default)]
    pub rate_limit_mb_per_s: f64,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self {
            max_docs: default_bulk_max_docs(),
            max_bytes: default_bulk_max_bytes(),
            concurrency: default_bulk_concurrency(),
            retry_initial_ms: default_bulk_retry_initial_ms(),
            retry_max_ms: default_bulk_retry_max_ms(),
            give_up_after_ms: default_bulk_give_up_after_ms(),
            rate_limit_docs_per_s: 0,
            rate_limit_mb_per_s: 0.0,
        }
    }
}

/// Either basic auth (`username` + `password`) or an encoded `api_key`, or nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The base64 `id:api_key` value Elasticsearch returns as `encoded`.
    #[serde(default)]
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTls {
    /// PEM CA certificate to trust in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. For local testing only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the `/metrics` and `/healthz` endpoint. Each service has its own
    /// default port (listen 9101, update 9102, sync 9103) when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A tracing filter: `info`, or `warn,mee_sync=debug`. `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    #[serde(default)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            log_level: default_log_level(),
            log_format: LogFormat::default(),
        }
    }
}

fn default_mysql_port() -> u16 {
    3306
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
/// A list, or text with comma-separated items (how an environment override gives it).
fn list_or_comma_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(d)? {
        ListOrText::List(l) => l,
        ListOrText::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

fn default_topic_pattern() -> String {
    "mee.{database}".into()
}
fn default_topic_partitions() -> i32 {
    6
}
fn default_topic_replication_factor() -> i32 {
    1
}
fn default_key_prefix() -> String {
    "mee".into()
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_bulk_max_docs() -> usize {
    1000
}
fn default_bulk_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_bulk_concurrency() -> usize {
    2
}
fn default_bulk_retry_initial_ms() -> u64 {
    100
}
fn default_bulk_retry_max_ms() -> u64 {
    10_000
}
fn default_bulk_give_up_after_ms() -> u64 {
    600_000
}
fn default_log_level() -> String {
    "info".into()
}

/// One semantic problem in a config, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read app config {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("app config {path}: key `{key}`: {message}")]
    Field {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("app config {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl AppConfig {
    /// Load `path`, apply `MEE__*` overrides from the process environment, validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`AppConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let file = config::File::from(path).format(config::FileFormat::Toml);
        Self::build(path, file, env)
    }

    /// Parse TOML text (no file), with explicit environment overrides.
    pub fn from_toml_str(toml: &str, env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let file = config::File::from_str(toml, config::FileFormat::Toml);
        Self::build(Path::new("<string>"), file, Some(env))
    }

    fn build<S>(
        path: &Path,
        file: S,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError>
    where
        S: config::Source + Send + Sync + 'static,
    {
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            // Values stay text (a password `00123` must not become 123); serde turns
            // text into numbers and booleans where a field wants them.
            .source(env);
        let raw = config::Config::builder()
            .add_source(file)
            .add_source(environment)
            .build()
            .map_err(|e| ConfigError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let cfg: AppConfig =
            serde_path_to_error::deserialize(raw).map_err(|e| ConfigError::Field {
                path: path.to_path_buf(),
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every semantic problem, with its key path. Pure: touches no file or server.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: &str| {
            out.push(Problem {
                key,
                message: message.to_string(),
            })
        };
        for (key, message) in services::problems(&self.update, &self.sync) {
            bad(key, &message);
        }
        let mut server_ids: BTreeMap<u32, &str> = BTreeMap::new();
        for (name, m) in &self.mysql {
            let k = |f: &str| format!("mysql.{name}.{f}");
            if m.host.trim().is_empty() {
                bad(k("host"), "must not be empty");
            }
            if m.user.trim().is_empty() {
                bad(k("user"), "must not be empty");
            }
            if m.connect_timeout_ms == 0 {
                bad(k("connect_timeout_ms"), "must be at least 1");
            }
            match m.server_id {
                Some(0) => bad(k("server_id"), "0 is not a valid replica server id"),
                Some(id) => {
                    if let Some(other) = server_ids.insert(id, name) {
                        bad(
                            k("server_id"),
                            &format!(
                                "{id} is also used by mysql.{other}; each replica needs its own"
                            ),
                        );
                    }
                }
                None => {}
            }
            if m.tls.client_cert_file.is_some() != m.tls.client_key_file.is_some() {
                bad(
                    k("tls"),
                    "client_cert_file and client_key_file must be set together",
                );
            }
            if m.tls.mode == TlsMode::Disabled
                && (m.tls.ca_file.is_some() || m.tls.client_cert_file.is_some())
            {
                bad(k("tls.mode"), "TLS files are set but mode is `disabled`");
            }
        }
        let kafka = &self.kafka;
        if kafka.brokers.is_empty() {
            bad("kafka.brokers".into(), "at least one broker is required");
        }
        for (i, b) in kafka.brokers.iter().enumerate() {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                bad(format!("kafka.brokers[{i}]"), "expected host:port");
            }
        }
        if !kafka.topic_pattern.contains("{database}") {
            bad(
                "kafka.topic_pattern".into(),
                "must contain {database}, so each source database gets its own topic",
            );
        }
        if kafka.topic_partitions < 1 {
            bad("kafka.topic_partitions".into(), "must be at least 1");
        }
        if kafka.topic_replication_factor < 1 {
            bad(
                "kafka.topic_replication_factor".into(),
                "must be at least 1",
            );
        }
        if self.redis.key_prefix.is_empty() {
            bad("redis.key_prefix".into(), "must not be empty");
        }
        match url::Url::parse(self.redis.url.expose()) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") => {}
            Ok(_) => bad("redis.url".into(), "scheme must be redis:// or rediss://"),
            Err(e) => bad("redis.url".into(), &format!("not a URL: {e}")),
        }
        let es = &self.elasticsearch;
        match url::Url::parse(&es.url) {
            Ok(u) if u.password().is_some() => bad(
                "elasticsearch.url".into(),
                "must not carry credentials; set elasticsearch.auth instead",
            ),
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(_) => bad("elasticsearch.url".into(), "scheme must be http or https"),
            Err(e) => bad("elasticsearch.url".into(), &format!("not a URL: {e}")),
        }
        let auth = &es.auth;
        if auth.api_key.is_some() && (auth.username.is_some() || auth.password.is_some()) {
            bad(
                "elasticsearch.auth".into(),
                "use either api_key or username/password, not both",
            );
        }
        if auth.username.is_some() != auth.password.is_some() {
            bad(
                "elasticsearch.auth".into(),
                "username and password must be set together",
            );
        }
        if es.request_timeout_ms == 0 {
            bad(
                "elasticsearch.request_timeout_ms".into(),
                "must be at least 1",
            );
        }
        let bulk = &es.bulk;
        let k = |f: &str| format!("elasticsearch.bulk.{f}");
        if bulk.max_docs < 1 {
            bad(k("max_docs"), "must be at least 1");
        }
        if bulk.max_bytes < 1024 {
            bad(k("max_bytes"), "must be at least 1024");
        }
        if !(1..=64).contains(&bulk.concurrency) {
            bad(k("concurrency"), "must be between 1 and 64");
        }
        if bulk.retry_initial_ms == 0 {
            bad(k("retry_initial_ms"), "must be at least 1");
        } else if bulk.retry_initial_ms > bulk.retry_max_ms {
            bad(
                k("retry_initial_ms"),
                "must not be greater than retry_max_ms",
            );
        }
        if !(bulk.rate_limit_mb_per_s.is_finite() && bulk.rate_limit_mb_per_s >= 0.0) {
            bad(
                k("rate_limit_mb_per_s"),
                "must be a finite number, 0 or more (0 is no limit)",
            );
        }
        if self.telemetry.log_level.trim().is_empty() {
            bad("telemetry.log_level".into(), "must not be empty");
        }
        out
    }

    /// The MySQL connection for a logical database, or an error listing those known.
    pub fn mysql_for(&self, database: &str) -> Result<&MySqlConfig, String> {
        self.mysql.get(database).ok_or_else(|| {
            let known: Vec<_> = self.mysql.keys().map(String::as_str).collect();
            format!(
                "no [mysql.{database}] section in the app config (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }
}

impl MySqlConfig {
    /// Schema name on the server for logical database `name`.
    pub fn schema_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.schema.as_deref().unwrap_or(name)
    }
}

impl KafkaConfig {
    /// The change topic for a logical database.
    pub fn topic_for(&self, database: &str) -> String {
        self.topic_pattern.replace("{database}", database)
    }
}

impl LibrdkafkaOptions {
    fn is_secret_key(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        ["password", "secret", "key", "jaas", "token"]
            .iter()
            .any(|s| k.contains(s))
    }
}

impl fmt::Debug for LibrdkafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Self::is_secret_key(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(self.url.expose()))
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

#[cfg(test)]
mod tests;
