//! `snapshot_position` against the local stack's MariaDB: a consistent snapshot's
//! binlog position covers what was committed before it and nothing committed after.

use mee_mysql::mysql_async::prelude::Queryable;
use mee_test_support::{StackEnv, TestDatabase, unique_name};

#[tokio::test]
async fn snapshot_position_is_past_every_committed_write_and_ends_its_transaction() {
    let env = StackEnv::load();
    let db = TestDatabase::create(&env, "snap").await;
    db.exec(
        &env,
        "CREATE TABLE items (id BIGINT PRIMARY KEY, title VARCHAR(64) NOT NULL)",
    )
    .await;
    let cfg = env.app_config(&[("shop", &db.name)], &unique_name("r"));
    let mut conn = mee_mysql::connect("shop", &cfg.mysql["shop"])
        .await
        .expect("connect");

    let first = mee_mysql::snapshot_position(&mut conn, "shop")
        .await
        .expect("snapshot")
        .expect("MariaDB reports the snapshot's binlog position");
    db.exec(&env, "INSERT INTO items VALUES (1, 'one')").await;
    // The insert is committed: its events end at or before the binlog's end now.
    let written = mee_mysql::binlog_position(&mut conn, "shop")
        .await
        .expect("position");
    let second = mee_mysql::snapshot_position(&mut conn, "shop")
        .await
        .expect("snapshot")
        .expect("position");
    let version = |p: &mee_core::BinlogPosition| p.version().expect("version");
    assert!(version(&second) > version(&first), "{first} then {second}");
    assert!(
        version(&second) >= version(&written),
        "{written} then {second}"
    );

    // The snapshot's transaction is over: a write made afterwards is seen at once.
    db.exec(&env, "INSERT INTO items VALUES (2, 'two')").await;
    let n: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("count");
    assert_eq!(n, Some(2));
    conn.disconnect().await.expect("disconnect");
}
