//! `listen` as a real process against the local stack's MariaDB and Kafka API.

mod common;

use common::{BIN, ITEMS, World, metric};
use mee_core::event::{ChangeEvent, ChangeKind};
use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_mysql::MySqlSource;
use mee_redis::redis::AsyncCommands;
use mee_test_support::{ServiceProcess, TestDatabase, unique_name};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn row_changes_reach_kafka_with_images_positions_and_order() {
    let w = World::new(&format!(
        "{ITEMS}; CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)"
    ))
    .await;
    let mut p = w.listen(&[]);
    w.sql(
        "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2);
         START TRANSACTION;
         UPDATE items SET qty = 10 WHERE id = 1;
         DELETE FROM items WHERE id = 2;
         INSERT INTO items VALUES (3, 'three', NULL);
         INSERT INTO notes VALUES (1, 'in the same transaction');
         COMMIT;
         UPDATE items SET qty = qty + 1;",
    )
    .await;
    // 7 changes: the last UPDATE leaves id 3 (NULL + 1 is NULL) unchanged, unlogged.
    let with_partitions = w.consume_with_partitions(|e| e.len() >= 7, Some(&p));
    // Every change of one row is on one partition, in binlog order.
    let mut partition_of = std::collections::HashMap::new();
    let mut last_version = std::collections::HashMap::new();
    for (e, partition) in &with_partitions {
        let key = e.message_key();
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(*partition),
            *partition,
            "{key}"
        );
        let prev = last_version.insert(key.clone(), e.version).unwrap_or(0);
        assert!(
            prev <= e.version,
            "{key}: version {} after {prev}",
            e.version
        );
    }
    let note = with_partitions
        .iter()
        .find(|(e, _)| e.table == "notes")
        .expect("notes row");
    assert_eq!(
        note.0.index_in_tx, 3,
        "fourth change of the two-table transaction"
    );
    let mut events: Vec<ChangeEvent> = with_partitions
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.table == "items")
        .collect();
    events.sort_by_key(|e| (e.version, e.index_in_tx));
    events.truncate(5);
    let kinds: Vec<(ChangeKind, i64)> = events
        .iter()
        .map(|e| (e.kind, e.key["id"].as_i64().expect("id")))
        .collect();
    // One partition per key keeps each row's order; across keys, sort by version.
    let mut by_version = events.clone();
    by_version.sort_by_key(|e| (e.version, e.index_in_tx));
    let ordered: Vec<(ChangeKind, i64)> = by_version
        .iter()
        .map(|e| (e.kind, e.key["id"].as_i64().expect("id")))
        .collect();
    assert_eq!(
        ordered,
        [
            (ChangeKind::Insert, 1),
            (ChangeKind::Insert, 2),
            (ChangeKind::Update, 1),
            (ChangeKind::Delete, 2),
            (ChangeKind::Insert, 3)
        ],
        "{kinds:?}"
    );
    let update = &by_version[2];
    assert_eq!(update.before.as_ref().expect("before")["qty"], json!(1));
    assert_eq!(update.after.as_ref().expect("after")["qty"], json!(10));
    assert_eq!(update.after.as_ref().expect("after")["title"], json!("one"));
    let delete = &by_version[3];
    assert!(delete.after.is_none() && delete.before.is_some());
    assert_eq!(
        by_version[4].after.as_ref().expect("after")["qty"],
        json!(null)
    );
    assert_eq!(update.index_in_tx, 0);
    let summary: Vec<_> = by_version
        .iter()
        .map(|e| {
            (
                e.kind,
                e.key["id"].clone(),
                e.index_in_tx,
                e.position.to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_version[4].index_in_tx, 2,
        "third change of its transaction: {summary:#?}"
    );
    assert!(update.commit_ts_ms > 1_700_000_000_000);
    assert_eq!(update.version, update.position.version().expect("version"));
    // MariaDB sends its GTIDs: the three changes of the transaction share one.
    let gtid = update.position.gtid.clone().expect("a GTID from MariaDB");
    assert!(gtid.starts_with("0-1-"), "{gtid}");
    assert_eq!(by_version[4].position.gtid.as_deref(), Some(gtid.as_str()));
    assert_ne!(by_version[0].position.gtid.as_deref(), Some(gtid.as_str()));
    assert!(by_version.windows(2).all(|p| p[0].version <= p[1].version));

    assert!(
        p.terminate(Duration::from_secs(15)).success(),
        "{}",
        p.stderr()
    );
    let saved = w
        .saved_position()
        .await
        .expect("position saved on shutdown");
    let saved: mee_core::BinlogPosition = serde_json::from_str(&saved).expect("position json");
    let last = &by_version[4].position;
    assert!(
        saved.binlog_cmp(last) == Some(std::cmp::Ordering::Greater),
        "saved {saved} is past the last event {last}"
    );
    w.drop().await;
}

#[tokio::test]
async fn restart_resumes_without_gaps() {
    let w = World::new(ITEMS).await;
    let mut p = w.listen(&[]);
    w.sql("INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
        .await;
    w.consume(|e| e.len() >= 2);
    // Give the saver a moment, then kill without a clean stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(p);
    w.sql("INSERT INTO items VALUES (3, 'c', 3); UPDATE items SET qty = 20 WHERE id = 2")
        .await;
    p = w.listen(&[]);
    w.sql("INSERT INTO items VALUES (4, 'd', 4)").await;
    // Every change is there (duplicates allowed): wait until all have been read.
    let wanted = [
        (1, ChangeKind::Insert),
        (2, ChangeKind::Insert),
        (3, ChangeKind::Insert),
        (2, ChangeKind::Update),
        (4, ChangeKind::Insert),
    ];
    let has = |events: &[ChangeEvent], (id, kind): (i64, ChangeKind)| {
        events
            .iter()
            .any(|e| e.key["id"] == json!(id) && e.kind == kind)
    };
    let events = w.consume_watching(|e| wanted.iter().all(|w| has(e, *w)), Some(&p));
    assert!(wanted.iter().all(|w| has(&events, *w)));
    assert!(p.terminate(Duration::from_secs(15)).success());
    w.drop().await;
}

#[tokio::test]
async fn ddl_is_published_and_later_rows_have_the_new_shape() {
    let w = World::new(ITEMS).await;
    let mut p = w.listen(&[]);
    w.sql(
        "INSERT INTO items VALUES (1, 'a', 1);
         ALTER TABLE items ADD COLUMN color VARCHAR(8) DEFAULT 'red';
         INSERT INTO items (id, title) VALUES (2, 'b');
         TRUNCATE TABLE items;",
    )
    .await;
    // DDL goes to every partition: wait for it on all three and for the later row.
    let events = w.consume_watching(
        |e| {
            e.iter().filter(|x| x.kind == ChangeKind::Truncate).count() == 3
                && e.iter().any(|x| x.key.get("id") == Some(&json!(2)))
        },
        Some(&p),
    );
    let ddl = events
        .iter()
        .find(|e| e.kind == ChangeKind::Ddl)
        .expect("ddl event");
    assert_eq!(ddl.table, "items");
    assert!(
        ddl.statement
            .as_deref()
            .unwrap_or_default()
            .contains("ADD COLUMN color"),
        "{events:#?}"
    );
    let second = events
        .iter()
        .find(|e| e.kind == ChangeKind::Insert && e.key["id"] == json!(2))
        .unwrap_or_else(|| panic!("row after the DDL: {events:#?}"));
    assert_eq!(second.after.as_ref().expect("after")["color"], json!("red"));
    let first = events
        .iter()
        .find(|e| e.key.get("id") == Some(&json!(1)))
        .expect("row before");
    assert!(first.after.as_ref().expect("after").get("color").is_none());
    assert!(
        p.terminate(Duration::from_secs(15)).success(),
        "{}",
        p.stderr()
    );
    w.drop().await;
}

/// The materializer's handler for `all_types`: every column, same names.
/// Negative TIME(1|2) values with a fraction are left out: mysql_common (0.37, 0.38)
/// decodes them wrongly from the binlog (an unsigned underflow); see the README.
const ALL_TYPES_HANDLER: &str = r#"
t:
  - key: t
    database: shop
    table: all_types
    document_id: "%id"
    statement: "select * from all_types where id > %__last.id:(0)"
    mapping: [id, i8, u16, m24, i32, u64, f32, f64, dec, d, dt, ts, tm, tm2, y, b, e, s, c, vc, tx, bin, vbin, bl, js, nul]
"#;

#[tokio::test]
async fn every_column_type_matches_the_materializer() {
    let w = World::new(
        "CREATE TABLE all_types (
           id INT PRIMARY KEY, i8 TINYINT, u16 SMALLINT UNSIGNED, m24 MEDIUMINT UNSIGNED, i32 INT,
           u64 BIGINT UNSIGNED, f32 FLOAT, f64 DOUBLE, `dec` DECIMAL(12,3),
           d DATE, dt DATETIME(3), ts TIMESTAMP(6) NULL, tm TIME(6), tm2 TIME(2), y YEAR, b BIT(12),
           e ENUM('red','green'), s SET('a','b','c'), c CHAR(3), vc VARCHAR(20),
           tx TEXT, bin BINARY(4), vbin VARBINARY(8), bl BLOB, js JSON, nul INT)",
    )
    .await;
    let mut p = w.listen(&[]);
    w.sql(
        "INSERT INTO all_types VALUES
           (1, -128, 65535, 16777215, -2147483648, 18446744073709551615, 0.1, 2.718281828459045,
            12345.670, '2024-02-29', '2024-02-29 23:59:59.123', '2024-02-29 23:59:59.654321',
            '-838:59:59.500000', '12:00:00.50', 2024, b'101000000001', 'green', 'a,c', 'abc', 'héllo ✓',
            'line1\\nline2', x'00ff1000', x'deadbeef', x'000102', '{\"k\": [1, \"two\", null]}', NULL),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7)",
    )
    .await;
    let mut events = w.consume_watching(|e| e.len() >= 2, Some(&p));
    events.sort_by_key(|e| e.key["id"].as_i64());
    let handler = Handler::parse("t.yml", ALL_TYPES_HANDLER).expect("handler");
    let source = MySqlSource::new(&w.cfg(), ["shop"]).expect("pool");
    let page = Materializer::new(&handler)
        .page(&source, None, 10)
        .await
        .expect("page");
    for (event, doc) in events.iter().zip(&page.documents) {
        let from_binlog = serde_json::Value::Object(event.after.clone().expect("after"));
        assert_eq!(from_binlog, doc.source_value(), "row {}", doc.id);
    }
    source.close().await;
    assert!(p.terminate(Duration::from_secs(15)).success());
    w.drop().await;
}

#[tokio::test]
async fn a_purged_position_is_refused_with_what_to_do() {
    let w = World::new(ITEMS).await;
    let mut conn = mee_redis::connect(&w.cfg().redis).await.expect("redis");
    let key = format!("{}:listen:shop:position", w.prefix);
    let _: () = conn
        .set(&key, r#"{"file":"mariadb-bin.000000","offset":4}"#)
        .await
        .expect("set");
    let mut p = ServiceProcess::spawn(BIN, &["-d", "shop"], &w.toml, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let stderr = p.stderr();
    assert!(stderr.contains("mariadb-bin.000000:4 is gone"), "{stderr}");
    assert!(stderr.contains("run `update`"), "{stderr}");
    assert!(stderr.contains("--from now"), "{stderr}");
    w.drop().await;
}

#[tokio::test]
async fn a_user_without_replication_privileges_is_told_what_to_grant() {
    let w = World::new(ITEMS).await;
    let user = unique_name("u");
    w.sql(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw-{user}'; GRANT SELECT ON *.* TO '{user}'@'127.0.0.1'"
    ))
    .await;
    let toml = w
        .toml
        .replace(
            &format!("user = \"{}\"", w.env.mysql_user),
            &format!("user = \"{user}\""),
        )
        .replace(
            &format!("password = \"{}\"", w.env.mysql_password),
            &format!("password = \"pw-{user}\""),
        );
    let mut p = ServiceProcess::spawn(BIN, &["-d", "shop"], &toml, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let stderr = p.stderr();
    assert!(
        stderr.contains("lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE ON *.*"),
        "{stderr}"
    );
    assert!(stderr.contains("lacks REPLICATION CLIENT"), "{stderr}");
    assert!(
        !stderr.contains(&format!("pw-{user}")),
        "no password in the log: {stderr}"
    );
    w.sql(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
    w.drop().await;
}

#[tokio::test]
async fn killed_mid_stream_every_change_arrives_and_duplicates_are_counted() {
    let w = World::new("CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL)").await;
    let p = w.listen(&[]);
    // 100k changes in 100 transactions of 1,000 rows, written while listen runs.
    const CHANGES: usize = 100_000;
    let writer = {
        let env = w.env.clone();
        let name = w.db.name.clone();
        tokio::spawn(async move {
            let db = TestDatabase { name };
            for i in 0..CHANGES / 1000 {
                db.exec(
                    &env,
                    &format!(
                        "INSERT INTO big SELECT seq, seq FROM seq_{}_to_{}",
                        i * 1000 + 1,
                        (i + 1) * 1000
                    ),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Kill -9 once part of the stream is out, then start again.
    let start = Instant::now();
    loop {
        let (_, body) = p.get("/metrics").expect("metrics");
        let n = metric(&body, "mee_listen_events_published_total").unwrap_or(0.0);
        if n >= 20_000.0 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(p); // SIGKILL
    writer.await.expect("writer");
    let mut p = w.listen(&[]);
    let events = w.consume_watching(
        |e| {
            let ids: std::collections::HashSet<i64> =
                e.iter().filter_map(|x| x.key["id"].as_i64()).collect();
            ids.len() == CHANGES
        },
        Some(&p),
    );
    let duplicates = events.len() - CHANGES;
    let (_, body) = p.get("/metrics").expect("metrics");
    let counted = metric(&body, "mee_listen_duplicates_after_restart_total").expect("metric");
    eprintln!(
        "{CHANGES} changes, {duplicates} duplicates in the topic, {counted} counted by listen"
    );
    // Events in flight at the kill may be counted without having reached Kafka before.
    assert!(
        duplicates == 0 || counted > 0.0,
        "{duplicates} duplicates, none counted: {body}"
    );
    assert!(p.terminate(Duration::from_secs(15)).success());
    w.drop().await;
}

#[tokio::test]
async fn a_killed_connection_is_resumed_from_the_confirmed_position() {
    let w = World::new(ITEMS).await;
    let mut p = w.listen(&[]);
    w.sql("INSERT INTO items VALUES (1, 'a', 1)").await;
    w.consume(|e| !e.is_empty());
    // Kill listen's replication connection on the server.
    let mut admin = w.env.admin_conn().await;
    use mee_mysql::mysql_async::prelude::Queryable;
    let ids: Vec<u64> = admin
        .query(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}' AND COMMAND LIKE 'Binlog Dump%'",
            w.env.mysql_user
        ))
        .await
        .expect("processlist");
    assert!(!ids.is_empty(), "a binlog dump connection exists");
    for id in ids {
        let _ = admin.query_drop(format!("KILL {id}")).await;
    }
    w.sql("INSERT INTO items VALUES (2, 'b', 2)").await;
    let events = w.consume_watching(
        |e| {
            [1, 2]
                .iter()
                .all(|id| e.iter().any(|x| x.key["id"] == json!(id)))
        },
        Some(&p),
    );
    assert_eq!(
        events.len(),
        2,
        "nothing lost, nothing doubled: {events:#?}"
    );
    assert!(
        p.terminate(Duration::from_secs(15)).success(),
        "{}",
        p.stderr()
    );
    w.drop().await;
}
