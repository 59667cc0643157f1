//! `update` as a real process: connects to everything, reports healthy, exits 0 on
//! SIGTERM; an unreadable handler file is an error before anything starts.

use mee_test_support::{ServiceProcess, StackEnv, unique_name};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_update");

#[test]
fn healthy_then_clean_exit_on_sigterm() {
    let env = StackEnv::load();
    let toml = env.app_config_toml(&[("shop", "mysql")], &unique_name("r"));
    let handler = std::env::temp_dir().join(format!("{}.yml", unique_name("h")));
    std::fs::write(&handler, "orders: []\n").expect("write handler");
    let handler = handler.to_str().expect("utf8 path");
    let mut p = ServiceProcess::spawn(BIN, &["-c", handler, "-n", "orders"], &toml, &[]);
    p.wait_healthy(Duration::from_secs(30));
    let (_, metrics) = p.get("/metrics").expect("metrics answer");
    for dep in ["mysql", "elasticsearch", "kafka", "redis"] {
        let line = format!("mee_dependency_up{{dependency=\"{dep}\",service=\"update\"}} 1");
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert!(p.terminate(Duration::from_secs(10)).success());
    std::fs::remove_file(handler).ok();
}

#[test]
fn missing_handler_file_is_an_error() {
    let env = StackEnv::load();
    let toml = env.app_config_toml(&[("shop", "mysql")], &unique_name("r"));
    let mut p = ServiceProcess::spawn(BIN, &["-c", "/nonexistent/h.yml", "-n", "t"], &toml, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(1));
    let stderr = p.stderr();
    assert!(
        stderr.contains("cannot read handler /nonexistent/h.yml"),
        "{stderr}"
    );
}
