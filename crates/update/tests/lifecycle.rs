//! `update` as a real process: healthy while it works, stops on SIGTERM leaving a
//! resumable generation; an unreadable handler file is an error before anything starts.

use mee_core::generation::GenerationState;
use mee_test_support::{Pipeline, ServiceProcess, StackEnv, unique_name};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_update");

/// While it waits for `sync` (not running here) to catch up: healthy, connected to
/// everything; SIGTERM stops it, saying how to finish, and the generation stays.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_waiting_for_sync_leaves_a_resumable_generation() {
    let p = Pipeline::shop().await;
    p.sql(
        "INSERT INTO orders (id, customer_id, status, total) \
         SELECT 10000 + seq, 1, 'paid', 1 FROM seq_1_to_20000",
    )
    .await;
    let p = Pipeline {
        toml: format!("{}[update]\npage_size = 50\n", p.toml),
        ..p
    };
    let mut listen = p.spawn("listen", &[]);
    listen.wait_healthy(Duration::from_secs(30));
    let mut update = p.spawn("update", &[]);
    update.wait_healthy(Duration::from_secs(30));
    // A change after the generation's offsets mark: only sync could apply it.
    let store = || async {
        let conn = mee_redis::connect(&p.cfg().redis).await.expect("redis");
        mee_redis::GenerationStore::new(conn, mee_redis::Keys::new(&p.prefix))
    };
    let start = Instant::now();
    while store()
        .await
        .list(&p.task)
        .await
        .expect("list")
        .first()
        .is_none_or(|g| g.offsets_mark.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            update.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.sql("UPDATE orders SET status = 'new' WHERE id = 1001")
        .await;
    while !update.stderr().contains("waiting for sync to catch up") {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{}",
            update.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, metrics) = update.get("/healthz").expect("healthz");
    assert_eq!(status, 200, "{metrics}");
    let (_, metrics) = update.get("/metrics").expect("metrics answer");
    for dep in ["elasticsearch", "kafka", "redis"] {
        let line = format!("mee_dependency_up{{dependency=\"{dep}\",service=\"update\"}} 1");
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    assert!(
        metrics.contains("mee_update_masters_read_total{task="),
        "{metrics}"
    );
    assert_eq!(update.terminate(Duration::from_secs(10)).code(), Some(1));
    assert!(
        update.stderr().contains("run `update --resume`"),
        "{}",
        update.stderr()
    );
    let g = store().await.list(&p.task).await.expect("list");
    assert_eq!(g[0].state, GenerationState::CatchingUp);
    assert!(p.alias_targets().is_empty(), "not swapped");
    p.drop().await;
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
