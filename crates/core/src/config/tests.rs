use super::*;

const MINIMAL: &str = r#"
[mysql.shop]
host = "127.0.0.1"
port = 13306
user = "mee"
password = "s3cret-pw"
server_id = 1001

[kafka]
brokers = ["127.0.0.1:19092"]

[redis]
url = "redis://:redis-pw@127.0.0.1:16379/"

[elasticsearch]
url = "http://127.0.0.1:19200"
auth = { username = "elastic", password = "es-pw" }
"#;

fn load(toml: &str) -> Result<AppConfig, ConfigError> {
    AppConfig::from_toml_str(toml, HashMap::new())
}

#[test]
fn minimal_config_gets_defaults() {
    let cfg = load(MINIMAL).expect("valid");
    assert_eq!(cfg.kafka.topic_pattern, "mee.{database}");
    assert_eq!(cfg.kafka.topic_for("shop"), "mee.shop");
    assert_eq!(cfg.kafka.topic_partitions, 6);
    assert_eq!(cfg.redis.key_prefix, "mee");
    assert_eq!(cfg.telemetry.log_format, LogFormat::Text);
    assert_eq!(cfg.mysql["shop"].connect_timeout_ms, 5_000);
    assert_eq!(cfg.mysql["shop"].schema_name("shop"), "shop");
    assert_eq!(cfg.mysql["shop"].password.expose(), "s3cret-pw");
}

#[test]
fn debug_never_shows_secrets() {
    let mut toml = MINIMAL.to_string();
    toml.push_str(
        "[kafka.librdkafka_options]\n\"sasl.password\" = \"kafka-pw\"\n\"sasl.username\" = \"bob\"\n",
    );
    let cfg = load(&toml).expect("valid");
    let dbg = format!("{cfg:?}");
    for secret in ["s3cret-pw", "redis-pw", "es-pw", "kafka-pw"] {
        assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
    }
    assert!(
        dbg.contains("bob"),
        "non-secret options stay visible: {dbg}"
    );
    assert!(dbg.contains("redis://:***@127.0.0.1:16379/"), "{dbg}");
}

#[test]
fn unknown_key_is_an_error_with_its_path() {
    let toml = MINIMAL.replace("server_id = 1001", "server_id = 1001\nserverid = 2");
    let err = load(&toml).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("mysql.shop"), "{msg}");
    assert!(msg.contains("serverid"), "{msg}");
}

#[test]
fn unknown_top_level_section_is_an_error() {
    let err = load(&format!("{MINIMAL}\n[kafkaa]\nbrokers = []\n")).expect_err("unknown");
    assert!(err.to_string().contains("kafkaa"), "{err}");
}

#[test]
fn wrong_type_names_its_key_path() {
    let toml = MINIMAL.replace("port = 13306", "port = \"not-a-port\"");
    let err = load(&toml).expect_err("bad port");
    match &err {
        ConfigError::Field { key, .. } => assert_eq!(key, "mysql.shop.port", "{err}"),
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let toml = r#"
[mysql.a]
host = ""
user = "u"
server_id = 7
[mysql.b]
host = "h"
user = "u"
server_id = 7
tls = { client_cert_file = "c.pem" }
[kafka]
brokers = ["nohostport"]
topic_pattern = "changes"
topic_partitions = 0
[redis]
url = "http://x"
[elasticsearch]
url = "ftp://x"
auth = { api_key = "k", username = "u" }
"#;
    let err = load(toml).expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "mysql.a.host",
        "mysql.b.server_id",
        "mysql.b.tls",
        "kafka.brokers[0]",
        "kafka.topic_pattern",
        "kafka.topic_partitions",
        "redis.url",
        "elasticsearch.url",
        "elasticsearch.auth",
    ] {
        assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let env = HashMap::from([
        (
            "MEE__KAFKA__BROKERS".to_string(),
            "k1:9092,k2:9092".to_string(),
        ),
        (
            "MEE__MYSQL__SHOP__PASSWORD".to_string(),
            "0012345".to_string(),
        ),
        ("MEE__MYSQL__SHOP__PORT".to_string(), "3307".to_string()),
        (
            "MEE__ELASTICSEARCH__TLS__INSECURE_SKIP_VERIFY".to_string(),
            "true".to_string(),
        ),
        ("MEE__TELEMETRY__LOG_FORMAT".to_string(), "json".to_string()),
        // Single-underscore names are not ours and must not be read as keys.
        ("MEE_MYSQL_HOST".to_string(), "ignored".to_string()),
    ]);
    let cfg = AppConfig::from_toml_str(MINIMAL, env).expect("valid");
    assert_eq!(cfg.kafka.brokers, vec!["k1:9092", "k2:9092"]);
    // Text stays text, even when it looks like a number.
    assert_eq!(cfg.mysql["shop"].password.expose(), "0012345");
    assert_eq!(cfg.mysql["shop"].port, 3307);
    assert!(cfg.elasticsearch.tls.insecure_skip_verify);
    assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
}

#[test]
fn environment_override_with_unknown_key_is_an_error() {
    let env = HashMap::from([("MEE__KAFKA__BROKER".to_string(), "x:1".to_string())]);
    let err = AppConfig::from_toml_str(MINIMAL, env).expect_err("unknown");
    assert!(err.to_string().contains("broker"), "{err}");
}

#[test]
fn credentials_in_es_url_are_refused() {
    let toml = MINIMAL.replace("http://127.0.0.1:19200", "http://u:pw@127.0.0.1:19200");
    let err = load(&toml).expect_err("creds in url");
    assert!(err.to_string().contains("elasticsearch.url"), "{err}");
}

#[test]
fn missing_file_is_a_read_error() {
    let err = AppConfig::load_with_env(Path::new("/nonexistent/app.toml"), Some(HashMap::new()))
        .expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/app.toml"), "{err}");
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf");
    for name in ["app.toml", "app.example.toml", "docker/app.toml"] {
        let path = root.join(name);
        AppConfig::load_with_env(&path, Some(HashMap::new()))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn mysql_for_lists_known_databases() {
    let cfg = load(MINIMAL).expect("valid");
    assert!(cfg.mysql_for("shop").is_ok());
    let err = cfg.mysql_for("nope").expect_err("unknown");
    assert!(err.contains("configured: shop"), "{err}");
}

#[test]
fn bulk_defaults_match_serde_defaults() {
    let cfg = load(MINIMAL).expect("valid");
    let bulk = &cfg.elasticsearch.bulk;
    assert_eq!(*bulk, BulkConfig::default());
    assert_eq!(bulk.max_docs, 1000);
    assert_eq!(bulk.max_bytes, 5 * 1024 * 1024);
    assert_eq!(bulk.concurrency, 2);
    assert_eq!((bulk.retry_initial_ms, bulk.retry_max_ms), (100, 10_000));
    assert_eq!(bulk.give_up_after_ms, 600_000);
    assert_eq!(bulk.rate_limit_docs_per_s, 0);
    assert_eq!(bulk.rate_limit_mb_per_s, 0.0);
    // An empty section gets the same defaults.
    let cfg = load(&format!("{MINIMAL}\n[elasticsearch.bulk]\n")).expect("valid");
    assert_eq!(cfg.elasticsearch.bulk, BulkConfig::default());
}

#[test]
fn bulk_section_is_read_and_overridable() {
    let toml = format!(
        "{MINIMAL}\n[elasticsearch.bulk]\nmax_docs = 10\nmax_bytes = 2048\nconcurrency = 4\n\
         retry_initial_ms = 5\nretry_max_ms = 50\ngive_up_after_ms = 0\n\
         rate_limit_docs_per_s = 100\nrate_limit_mb_per_s = 1.5\n"
    );
    let env = HashMap::from([(
        "MEE__ELASTICSEARCH__BULK__CONCURRENCY".to_string(),
        "8".to_string(),
    )]);
    let cfg = AppConfig::from_toml_str(&toml, env).expect("valid");
    let bulk = &cfg.elasticsearch.bulk;
    assert_eq!(
        *bulk,
        BulkConfig {
            max_docs: 10,
            max_bytes: 2048,
            concurrency: 8,
            retry_initial_ms: 5,
            retry_max_ms: 50,
            give_up_after_ms: 0,
            rate_limit_docs_per_s: 100,
            rate_limit_mb_per_s: 1.5,
        }
    );
}

#[test]
fn bulk_unknown_key_is_an_error() {
    let err =
        load(&format!("{MINIMAL}\n[elasticsearch.bulk]\nmax_doc = 5\n")).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("elasticsearch.bulk"), "{msg}");
    assert!(msg.contains("max_doc"), "{msg}");
}

#[test]
fn bulk_problems_are_reported_at_once() {
    let toml = format!(
        "{MINIMAL}\n[elasticsearch.bulk]\nmax_docs = 0\nmax_bytes = 1023\nconcurrency = 65\n\
         retry_initial_ms = 200\nretry_max_ms = 100\nrate_limit_mb_per_s = -1.0\n"
    );
    let err = load(&toml).expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "elasticsearch.bulk.max_docs",
            "elasticsearch.bulk.max_bytes",
            "elasticsearch.bulk.concurrency",
            "elasticsearch.bulk.retry_initial_ms",
            "elasticsearch.bulk.rate_limit_mb_per_s",
        ],
        "{err}"
    );
}

#[test]
fn bulk_limits_at_their_bounds_are_valid() {
    let mut cfg = load(MINIMAL).expect("valid");
    let bulk = &mut cfg.elasticsearch.bulk;
    bulk.max_docs = 1;
    bulk.max_bytes = 1024;
    bulk.concurrency = 64;
    bulk.retry_initial_ms = 7;
    bulk.retry_max_ms = 7;
    assert_eq!(cfg.validate(), []);
    cfg.elasticsearch.bulk.concurrency = 0;
    cfg.elasticsearch.bulk.retry_initial_ms = 0;
    cfg.elasticsearch.bulk.rate_limit_mb_per_s = f64::NAN;
    let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "elasticsearch.bulk.concurrency",
            "elasticsearch.bulk.retry_initial_ms",
            "elasticsearch.bulk.rate_limit_mb_per_s",
        ]
    );
}
