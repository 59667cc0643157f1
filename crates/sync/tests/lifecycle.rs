//! `sync` as a real process: connects to everything, reports healthy, exits 0 on SIGTERM.

use mee_test_support::{ServiceProcess, StackEnv, unique_name};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sync");

/// Record a generation for `task` in Redis, as `update` would.
async fn record_generation(env: &StackEnv, prefix: &str, task: &str) {
    let cfg = env.app_config(&[("shop", "mysql")], prefix);
    let conn = mee_redis::connect(&cfg.redis).await.expect("redis");
    let mut store = mee_redis::GenerationStore::new(conn, mee_redis::Keys::new(prefix));
    let yaml = std::fs::read_to_string(
        mee_test_support::workspace_root().join("conf/handlers/orders.yml"),
    )
    .expect("handler");
    let mut g = mee_core::generation::Generation::new(
        task,
        &format!("{prefix}_alias"),
        vec![format!("{prefix}.shop")],
        yaml,
        "orders.yml".into(),
        mee_core::generation::millis(std::time::SystemTime::now()),
    )
    .expect("generation");
    g.offsets_mark = vec![mee_core::generation::PartitionOffset {
        topic: format!("{prefix}.shop"),
        partition: 0,
        offset: 0,
    }];
    store.put(&g).await.expect("put");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_then_clean_exit_on_sigterm() {
    let env = StackEnv::load();
    let prefix = unique_name("r");
    let task = format!("{prefix}_task");
    record_generation(&env, &prefix, &task).await;
    let toml = env.app_config_toml(&[("shop", "mysql")], &prefix);
    let mut p = ServiceProcess::spawn(BIN, &["-n", &task], &toml, &[]);
    p.wait_healthy(Duration::from_secs(30));
    let (_, metrics) = p.get("/metrics").expect("metrics answer");
    for dep in ["mysql", "elasticsearch", "kafka", "redis"] {
        let line = format!("mee_dependency_up{{dependency=\"{dep}\",service=\"sync\"}} 1");
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert!(
        p.terminate(Duration::from_secs(15)).success(),
        "{}",
        p.stderr()
    );
    assert!(p.stderr().contains("consuming"), "{}", p.stderr());
}

/// A database the task does not read may be down: `sync` does not wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unrelated_database_that_is_down_is_not_waited_for() {
    let env = StackEnv::load();
    let prefix = unique_name("r");
    let task = format!("{prefix}_task");
    record_generation(&env, &prefix, &task).await;
    let toml = env.app_config_toml(&[("shop", "mysql"), ("billing", "billing")], &prefix);
    let billing = toml.find("[mysql.billing]").expect("a billing section");
    let toml = format!(
        "{}{}",
        &toml[..billing],
        toml[billing..].replacen(&format!("port = {}", env.mysql_port), "port = 1", 1)
    );
    assert!(toml.contains("port = 1\n"), "{toml}");
    let mut p = ServiceProcess::spawn(BIN, &["-n", &task], &toml, &[]);
    p.wait_healthy(Duration::from_secs(30));
    assert!(
        p.terminate(Duration::from_secs(15)).success(),
        "{}",
        p.stderr()
    );
    assert!(p.stderr().contains("consuming"), "{}", p.stderr());
}

#[test]
fn a_task_without_generations_says_to_run_update() {
    let env = StackEnv::load();
    let toml = env.app_config_toml(&[("shop", "mysql")], &unique_name("r"));
    let mut p = ServiceProcess::spawn(BIN, &["-n", "orders"], &toml, &[]);
    let status = p.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = p.stderr();
    assert!(
        log.contains("has no generation: run `update -c <handler.yml> -n orders` first"),
        "{log}"
    );
}

#[test]
fn waits_for_a_server_that_is_down_and_still_stops_on_sigterm() {
    let env = StackEnv::load();
    let toml = env
        .app_config_toml(&[("shop", "mysql")], &unique_name("r"))
        .replace(&env.es_url, "http://127.0.0.1:1");
    let mut p = ServiceProcess::spawn(BIN, &["-n", "orders"], &toml, &[]);
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = p.get("/healthz").expect("healthz answers while waiting");
    assert_eq!(status, 503);
    assert!(body.contains("elasticsearch"), "{body}");
    assert!(p.terminate(Duration::from_secs(10)).success());
}

#[test]
fn secrets_never_reach_the_log() {
    let env = StackEnv::load();
    let toml = env
        .app_config_toml(&[("shop", "mysql")], &unique_name("r"))
        .replace(&env.redis_url, "redis://:redis-secret-1@127.0.0.1:1/")
        .replace(
            &format!("url = \"{}\"", env.es_url),
            &format!(
                "url = \"{}\"\nauth = {{ username = \"elastic\", password = \"es-secret-2\" }}",
                env.es_url
            ),
        );
    let mut p = ServiceProcess::spawn(BIN, &["-n", "orders"], &toml, &[("RUST_LOG", "trace")]);
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = p.get("/healthz").expect("healthz answers while waiting");
    assert_eq!((status, body.trim()), (503, "connecting to redis"));
    assert!(p.terminate(Duration::from_secs(10)).success());
    let log = p.stderr();
    assert!(
        log.contains("redis://:***@127.0.0.1:1/"),
        "redacted URL is logged:\n{log}"
    );
    for secret in ["redis-secret-1", "es-secret-2", env.mysql_password.as_str()] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}
