//! `listen` as a real process: connects, reports healthy, serves metrics, and exits 0
//! on SIGTERM. A missing database section is a clear error with a non-zero exit.

use mee_test_support::{ServiceProcess, StackEnv, unique_name};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_listen");

#[test]
fn healthy_then_clean_exit_on_sigterm() {
    let env = StackEnv::load();
    // The `mysql` schema always exists and the replication user may read it.
    let toml = env.app_config_toml(&[("shop", "mysql")], &unique_name("r"));
    let mut p = ServiceProcess::spawn(BIN, &["-d", "shop"], &toml, &[]);
    p.wait_healthy(Duration::from_secs(30));
    let (status, metrics) = p.get("/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    for dep in ["mysql", "kafka", "redis"] {
        let line = format!("mee_dependency_up{{dependency=\"{dep}\",service=\"listen\"}} 1");
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert!(p.terminate(Duration::from_secs(10)).success());
}

#[test]
fn unknown_database_fails_with_the_known_ones() {
    let env = StackEnv::load();
    let toml = env.app_config_toml(&[("shop", "mysql")], &unique_name("r"));
    let mut p = ServiceProcess::spawn(BIN, &["-d", "nope"], &toml, &[]);
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let stderr = p.stderr();
    assert!(
        stderr.contains("no [mysql.nope] section in the app config (configured: shop)"),
        "{stderr}"
    );
}
