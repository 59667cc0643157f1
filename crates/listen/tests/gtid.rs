//! `listen --from <gtid>` against the local stack's MariaDB: it starts after the given
//! transaction, and a GTID the source does not have is a clear error.

mod common;

use common::{BIN, ITEMS, World, metric};
use mee_core::event::ChangeEvent;
use mee_test_support::ServiceProcess;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn ids(events: &[ChangeEvent]) -> Vec<i64> {
    events.iter().filter_map(|e| e.key["id"].as_i64()).collect()
}

#[tokio::test]
async fn from_a_gtid_starts_after_that_transaction() {
    let mut w = World::new(ITEMS).await;
    let mut p = w.listen(&[]);
    // A, B and C: three transactions.
    for id in 1..=3 {
        w.sql(&format!("INSERT INTO items VALUES ({id}, 'x', {id})"))
            .await;
    }
    let events = w.consume_watching(|e| e.len() >= 3, Some(&p));
    let gtid_of = |id: i64| {
        events
            .iter()
            .find(|e| e.key["id"] == json!(id))
            .and_then(|e| e.position.gtid.clone())
            .unwrap_or_else(|| panic!("no GTID for row {id}: {events:#?}"))
    };
    let b = gtid_of(2);
    assert!(gtid_of(1) != b && gtid_of(3) != b, "{events:#?}");
    assert!(p.terminate(Duration::from_secs(15)).success());

    // A fresh deployment (topic, Redis prefix) starting after B. A saved position far
    // ahead of B: versions go backwards, which listen must say.
    w.renew_prefix();
    w.save_position(r#"{"file":"mariadb-bin.999999","offset":4}"#)
        .await;
    let mut p = w.listen(&["--from", &b]);
    // D: a change after the start, so the topic has what follows C too.
    w.sql("INSERT INTO items VALUES (4, 'x', 4)").await;
    let events = w.consume_watching(|e| [3, 4].iter().all(|id| ids(e).contains(id)), Some(&p));
    assert_eq!(
        ids(&events).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([3, 4]),
        "C and D, not A or B: {events:#?}"
    );
    let (_, body) = p.get("/metrics").expect("metrics");
    assert_eq!(
        metric(&body, "mee_listen_events_published_total"),
        Some(2.0),
        "{body}"
    );
    let stderr = p.stderr();
    assert!(stderr.contains("go backwards"), "{stderr}");
    assert!(stderr.contains("run `update`"), "{stderr}");
    assert!(p.terminate(Duration::from_secs(15)).success());
    // What is saved is a file:offset past D, on the binlog the GTID led to.
    let saved: mee_core::BinlogPosition =
        serde_json::from_str(&w.saved_position().await.expect("saved")).expect("json");
    let d = &events.iter().find(|e| e.key["id"] == json!(4)).expect("D");
    assert_eq!(
        saved.binlog_cmp(&d.position),
        Some(std::cmp::Ordering::Greater),
        "saved {saved}, D at {}",
        d.position
    );

    // From the newest transaction (D): when no other test wrote since, the source has
    // nothing after it and says where its binlog ends instead.
    let d_gtid = d.position.gtid.clone().expect("D's GTID");
    w.renew_prefix();
    let mut p = w.listen(&["--from", &d_gtid]);
    w.sql("INSERT INTO items VALUES (5, 'x', 5)").await;
    let events = w.consume_watching(|e| ids(e).contains(&5), Some(&p));
    assert_eq!(ids(&events), [5], "{events:#?}");
    assert!(p.terminate(Duration::from_secs(15)).success());
    w.drop().await;
}

#[tokio::test]
async fn a_gtid_the_source_does_not_have_is_refused_with_what_to_do() {
    let w = World::new(ITEMS).await;
    let gtid = "0-1-999999999999";
    let mut p = ServiceProcess::spawn(BIN, &["-d", "shop", "--from", gtid], &w.toml, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let stderr = p.stderr();
    for wanted in [
        "cannot start after GTID 0-1-999999999999",
        "not in the master's binlog",
        "--from now",
        "--from <file>:<offset>",
        "then run `update` for every task",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} in {stderr}");
    }
    // A MySQL GTID set on MariaDB: told which form the source takes.
    let mysql = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
    let mut p = ServiceProcess::spawn(BIN, &["-d", "shop", "--from", mysql], &w.toml, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let stderr = p.stderr();
    assert!(
        stderr.contains("the source is MariaDB; give a GTID of its form"),
        "{stderr}"
    );
    w.drop().await;
}
