//! A backlog made while `sync` was stopped: a document changed in many batches is
//! rebuilt from MySQL once per consistent snapshot that includes its changes, not once
//! per change, and the index still ends equal to MySQL, with changes going on meanwhile.

mod common;

use common::{WAIT, converges, start};
use mee_test_support::workload::{Rng, shop_change};
use mee_test_support::{Pipeline, ServiceProcess};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_rebuilds_each_document_once_and_converges() {
    let p = Pipeline::shop().await;
    let (_listen, mut sync) = start(&p).await;
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());

    let mut rng = Rng::new(21);
    for i in 0..150 {
        p.sql(&shop_change(&mut rng, i)).await;
    }
    for round in 0..5 {
        p.sql(&format!("UPDATE orders SET status = 'round {round}'"))
            .await;
    }
    // Small batches, so that the same documents come back batch after batch.
    let toml = p
        .toml
        .replace("[sync]\n", "[sync]\nflush_max_events = 10\n");
    let mut sync = p.spawn_with("sync", &[], &toml);
    sync.wait_healthy(WAIT);
    for i in 150..250 {
        p.sql(&shop_change(&mut rng, i)).await;
    }
    converges(&p, Duration::from_secs(60)).await;

    let covered = documents(&sync, "covered") + skipped(&sync, "covered");
    let indexed = documents(&sync, "indexed");
    assert!(
        covered > 0,
        "no change was covered by an earlier write (indexed {indexed})"
    );
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    p.drop().await;
}

/// A change that gives a master row another key affects two documents (the old one
/// goes, the new one comes): it is never skipped by its key, even when a remembered
/// write covers the old key, while the plain changes before it are.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_change_in_a_backlog_moves_the_document() {
    let p = Pipeline::shop().await;
    // One partition: batches come in binlog order, so the key changes come after the
    // writes that cover their old keys.
    let toml = p
        .toml
        .replace("topic_partitions = 3", "topic_partitions = 1");
    assert_ne!(toml, p.toml);
    let p = Pipeline { toml, ..p };
    let (_listen, mut sync) = start(&p).await;
    converges(&p, WAIT).await;
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());

    for round in 0..3 {
        p.sql(&format!("UPDATE orders SET status = 'round {round}'"))
            .await;
    }
    // The last changes of the backlog: nothing after them writes order 9001.
    p.sql("UPDATE orders SET id = 9001 WHERE id = 1001").await;
    p.sql("UPDATE orders SET id = 1001 WHERE id = 1004").await;
    // Batches of two events: the first batches' writes (of the final rows, read after
    // the whole backlog) cover the later changes of the same orders.
    let toml = p.toml.replace("[sync]\n", "[sync]\nflush_max_events = 2\n");
    let mut sync = p.spawn_with("sync", &[], &toml);
    sync.wait_healthy(WAIT);
    converges(&p, WAIT).await;
    let docs = p.docs(&p.alias);
    assert!(
        docs.contains_key("9001") && !docs.contains_key("1004"),
        "{docs:#?}"
    );
    assert!(
        skipped(&sync, "covered") > 0,
        "no change was skipped by its key"
    );
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    p.drop().await;
}

/// `mee_sync_events_skipped_total` of `reason`, summed over generations.
fn skipped(sync: &ServiceProcess, reason: &str) -> u64 {
    counter(
        sync,
        "mee_sync_events_skipped_total",
        &format!("reason=\"{reason}\""),
    )
}

/// `mee_sync_documents_total` of `outcome`, summed over generations.
fn documents(sync: &ServiceProcess, outcome: &str) -> u64 {
    counter(
        sync,
        "mee_sync_documents_total",
        &format!("outcome=\"{outcome}\""),
    )
}

/// The counter `name`'s series with `label`, summed.
fn counter(sync: &ServiceProcess, name: &str, label: &str) -> u64 {
    let (_, body) = sync.get("/metrics").expect("metrics");
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
