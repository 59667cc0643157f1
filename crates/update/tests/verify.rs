//! `update --verify [--repair]` as a real process against the local stack: a clean index,
//! drift made directly in Elasticsearch, dead-lettered documents, and a change still in
//! flight while `sync` is stopped.

use mee_test_support::{Pipeline, orders_golden};
use serde_json::{Value, json};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

const MIN: Duration = Duration::from_secs(60);

fn verify(p: &Pipeline, extra: &[&str]) -> (ExitStatus, String, String) {
    p.verify(extra, MIN)
}

/// The index the alias points at.
fn live_index(p: &Pipeline) -> String {
    let targets = p.alias_targets();
    assert_eq!(targets.len(), 1, "{targets:?}");
    targets[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_index_verifies() {
    let p = Pipeline::shop().await;
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    let (status, out, err) = verify(&p, &[]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("checked 3 documents: 0 missing, 0 extra, 0 different"),
        "{out}"
    );
    assert!(out.contains("3 ids read from the index"), "{out}");
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_reported_then_repaired() {
    let p = Pipeline::shop().await;
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    let index = live_index(&p);
    // Missing: 1001 deleted behind sync's back.
    let (status, body) = p.es("DELETE", &format!("/{index}/_doc/1001"), None);
    assert_eq!(status, 200, "{body}");
    // Different: 1002 rewritten with another status (a version above the load's).
    let mut changed = orders_golden()["1002"].clone();
    changed["status"] = json!("hacked");
    let put = |id: &str, doc: &Value| {
        let (status, body) = p.es(
            "PUT",
            &format!("/{index}/_doc/{id}?version=2&version_type=external"),
            Some(doc),
        );
        assert!(status < 300, "{status} {body}");
    };
    put("1002", &changed);
    // Extra: no such order; and an order the master statement filters out.
    put("9999", &json!({"order_id": 9999, "status": "ghost"}));
    put("1003", &json!({"order_id": 1003, "status": "deleted"}));

    let (status, out, err) = verify(&p, &[]);
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("checked 3 documents: 1 missing, 2 extra, 1 different"),
        "{out}"
    );
    assert!(out.contains("missing    1001"), "{out}");
    assert!(out.contains("different  1002"), "{out}");
    assert!(
        out.contains(r#"    status: es="hacked" mysql="new""#),
        "field-level diff:\n{out}"
    );
    assert!(
        out.contains("extra      9999 (no master row in MySQL)"),
        "{out}"
    );
    assert!(
        out.contains("extra      1003 (no master row in MySQL)"),
        "{out}"
    );
    assert!(err.contains("error: drift: 4 documents"), "{err}");

    let (status, out, err) = verify(&p, &["--repair"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains(
            "repaired 4 of 4 documents: 2 indexed, 2 deleted, 0 already had a newer write, 0 refused"
        ),
        "{out}"
    );
    let (status, out, err) = verify(&p, &[]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("checked 3 documents: 0 missing, 0 extra, 0 different"),
        "{out}"
    );
    assert_eq!(p.docs(&p.alias), orders_golden());
    // Repairs carry MySQL's binlog position as their version, above the load's and ours.
    let (_, got) = p.es("GET", &format!("/{index}/_doc/1002"), None);
    assert!(
        got["_version"].as_u64().expect("version") > 1 << 32,
        "{got}"
    );
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_lettered_documents_show_as_missing_and_are_recovered_once_fixed() {
    let p = Pipeline::shop_with_refused_orders().await;
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");

    let (status, out, err) = verify(&p, &[]);
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("missing    1001") && out.contains("missing    1004"),
        "{out}"
    );
    assert!(
        out.contains("checked 3 documents: 2 missing, 0 extra, 0 different"),
        "{out}"
    );

    // Repairing before the cause is fixed: refused again, with the reason.
    let (status, out, err) = verify(&p, &["--repair"]);
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("refused    1001: HTTP 400"), "{out}");
    assert!(out.contains("repaired 0 of 2 documents"), "{out}");
    assert!(err.contains("2 documents could not be repaired"), "{err}");

    // Fixed (here: the data now fits the mapping): a repair recovers them.
    p.sql("UPDATE orders SET status = '8' WHERE id IN (1001, 1004)")
        .await;
    let (status, out, err) = verify(&p, &["--repair"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("repaired 2 of 2 documents: 2 indexed"),
        "{out}"
    );
    let (status, out, err) = verify(&p, &[]);
    assert!(status.success(), "{out}\n{err}");
    let docs = p.docs(&p.alias);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs["1001"]["status"], "8");
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_still_in_flight_is_not_drift() {
    let p = Pipeline::shop().await;
    let mut listen = p.spawn("listen", &[]);
    listen.wait_healthy(MIN);
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    let mut sync = p.spawn("sync", &[]);
    sync.wait_healthy(MIN);
    // sync stops; a change is made; --verify sees it differ and waits for the lag.
    assert!(sync.terminate(MIN).success(), "{}", sync.stderr());
    p.sql("UPDATE orders SET status = 'shipped' WHERE id = 1002")
        .await;
    let run = p.start_verify(&[]);
    let start = Instant::now();
    while !run.stderr().contains("waiting for listen and sync") {
        assert!(
            start.elapsed() < MIN,
            "--verify did not wait for the lag:\n{}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // sync comes back and applies it; the re-check finds the documents equal.
    let mut sync = p.spawn("sync", &[]);
    sync.wait_healthy(MIN);
    let (status, out, err) = run.finish(MIN);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("checked 3 documents: 0 missing, 0 extra, 0 different"),
        "{out}"
    );
    assert!(
        out.contains("1 re-checked after the sync lag (1 were changes in flight)"),
        "{out}"
    );
    assert_eq!(p.docs(&p.alias)["1002"]["status"], "shipped");
    p.drop().await;
}
