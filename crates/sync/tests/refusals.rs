//! What `sync` refuses and reports, with `listen` and `update` as real processes: a
//! document Elasticsearch rejects goes to the dead-letter topic; TRUNCATE and DDL that
//! may drop a column of a table the task reads are reported (log and metric) as needing
//! a rebuild. Each time the stream goes on.

mod common;

use common::{WAIT, read_dlq, running_shop, start};
use mee_core::dead_letter::DeadLetterKind;
use mee_test_support::{Pipeline, ServiceProcess};

#[tokio::test(flavor = "multi_thread")]
async fn a_document_elasticsearch_rejects_is_dead_lettered_and_the_stream_goes_on() {
    // `status` is mapped as a number: the rebuild loads only order 1002 (status '7')
    // and dead-letters 1001 and 1004.
    let p = Pipeline::shop_with_refused_orders().await;
    let (_listen, sync) = start(&p).await;
    p.sql("UPDATE orders SET status = 'paid' WHERE id = 1002")
        .await;
    p.sql("UPDATE orders SET status = '9' WHERE id = 1001")
        .await;
    p.wait_docs(WAIT, "the change after the rejected one", |d| {
        d.get("1001").is_some_and(|d| d["status"] == "9")
    });
    let dead = ["outcome=\"dead_lettered\""];
    assert_eq!(wait_metric(&sync, "mee_sync_documents_total", &dead, 1), 1);
    assert_eq!(
        p.docs(&p.alias)["1002"]["status"],
        "7",
        "the refused write left the older document"
    );
    // The same order again (its partition, after the refused change): written.
    p.sql("UPDATE orders SET status = '8' WHERE id = 1002")
        .await;
    p.wait_docs(WAIT, "the order's next change", |d| {
        d.get("1002").is_some_and(|d| d["status"] == "8")
    });

    let letters = read_dlq(&p, 3);
    let ours: Vec<_> = letters
        .iter()
        .filter(|l| l.document_id.as_deref() == Some("1002"))
        .collect();
    assert_eq!(ours.len(), 1, "{letters:?}");
    let letter = ours[0];
    assert_eq!(letter.kind, DeadLetterKind::RejectedDocument);
    assert_eq!(letter.status, Some(400), "{letter:?}");
    assert!(!letter.reason.is_empty());
    assert!(
        letter
            .document
            .as_ref()
            .is_some_and(|d| d["status"] == "paid"),
        "the refused document is in the letter: {letter:?}"
    );
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_and_column_dropping_ddl_are_reported_and_the_stream_goes_on() {
    let (p, _listen, mut sync) = running_shop().await;
    // Adding a column changes nothing the documents show; dropping one may.
    p.sql("ALTER TABLE customers ADD COLUMN phone VARCHAR(20)")
        .await;
    p.sql("ALTER TABLE customers DROP COLUMN phone").await;
    p.sql("TRUNCATE TABLE order_items").await;
    p.sql("UPDATE orders SET status = 'after-truncate' WHERE id = 1001")
        .await;
    p.wait_docs(WAIT, "the change after the TRUNCATE", |d| {
        d.get("1001")
            .is_some_and(|d| d["status"] == "after-truncate")
    });
    // Each statement reaches every partition; the one on partition 0 may come later.
    let needed = "mee_sync_rebuild_needed_total";
    let truncated = ["table=\"order_items\"", "type=\"truncate\""];
    assert_eq!(wait_metric(&sync, needed, &truncated, 1), 1);
    let dropped = ["table=\"customers\"", "type=\"ddl\""];
    assert_eq!(wait_metric(&sync, needed, &dropped, 1), 1);
    // The other partitions' copies of the three statements are only counted.
    let copies = 3 * (p.cfg().kafka.topic_partitions as u64 - 1);
    let copy = ["reason=\"ddl_copy\""];
    assert_eq!(
        wait_metric(&sync, "mee_sync_events_skipped_total", &copy, copies),
        copies
    );
    let added = ["reason=\"ddl\""];
    assert_eq!(
        wait_metric(&sync, "mee_sync_events_skipped_total", &added, 1),
        1
    );

    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    let log = sync.stderr();
    // Once each (a retried batch may log its statements again).
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("on a table this task reads"))
        .collect();
    let rebuild = format!(
        "Run `update -c <handler.yml> -n {}` to rebuild the index",
        p.task
    );
    assert!(
        errors.iter().any(|l| l.contains("TRUNCATE on a table")),
        "{log}"
    );
    assert!(
        errors.iter().any(|l| l.contains("DROP COLUMN phone")),
        "{log}"
    );
    assert!(!errors.iter().any(|l| l.contains("ADD COLUMN")), "{log}");
    assert!(errors.iter().all(|l| l.contains(&rebuild)), "{log}");
    p.drop().await;
}

/// The sum of `name`'s samples that have all of `labels` (`key="value"`), once it is
/// `want` or [`WAIT`] passed.
fn wait_metric(sync: &ServiceProcess, name: &str, labels: &[&str], want: u64) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let (_, body) = sync.get("/metrics").expect("metrics");
        let n = body
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if n == want || start.elapsed() > WAIT {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
