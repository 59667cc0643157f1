//! Smoke test against the local stack's MariaDB: the replication user connects,
//! reads rows, sees the binlog settings, and reads our insert back from the binlog.

use futures_util::StreamExt;
use mee_mysql::mysql_async::binlog::events::{EventData, RowsEventData};
use mee_mysql::mysql_async::prelude::Queryable;
use mee_mysql::mysql_async::{BinlogStreamRequest, Value};
use mee_test_support::{StackEnv, TestDatabase, unique_name};
use std::time::Duration;

#[tokio::test]
async fn connects_selects_and_reads_binlog_rows() {
    let env = StackEnv::load();
    let db = TestDatabase::create(&env, "mysql").await;
    db.exec(
        &env,
        "CREATE TABLE items (id BIGINT PRIMARY KEY, title VARCHAR(64) NOT NULL);\
         INSERT INTO items VALUES (1, 'first')",
    )
    .await;
    let cfg = env.app_config(&[("shop", &db.name)], &unique_name("r"));
    let mysql_cfg = &cfg.mysql["shop"];

    // The least-privileged user can read rows and the binlog settings.
    let mut conn = mee_mysql::connect("shop", mysql_cfg)
        .await
        .expect("connect");
    let title: Option<String> = conn
        .exec_first("SELECT title FROM items WHERE id = ?", (1,))
        .await
        .expect("select");
    assert_eq!(title.as_deref(), Some("first"));
    let info = mee_mysql::server_info(&mut conn, "shop")
        .await
        .expect("server info");
    assert!(info.log_bin, "{info:?}");
    assert_eq!(info.binlog_format, "ROW");
    assert_eq!(info.binlog_row_image, "FULL");
    assert_eq!(info.binlog_row_metadata.as_deref(), Some("FULL"));
    let start = mee_mysql::binlog_position(&mut conn, "shop")
        .await
        .expect("position");
    assert!(start.version().is_ok(), "{start}");
    conn.disconnect().await.expect("disconnect");

    // An insert after `start` comes back from the binlog as a rows event.
    db.exec(&env, "INSERT INTO items VALUES (2, 'from the binlog')")
        .await;
    let conn = mee_mysql::connect("shop", mysql_cfg)
        .await
        .expect("connect");
    let request = BinlogStreamRequest::new(mysql_cfg.server_id.expect("server id"))
        .with_filename(start.file.as_bytes())
        .with_pos(start.offset);
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .expect("binlog stream");
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            let event = event.expect("binlog event");
            // MariaDB writes v1 rows events, MySQL 8 v2.
            let Ok(Some(EventData::RowsEvent(
                rows @ (RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_)),
            ))) = event.read_data()
            else {
                continue;
            };
            let tme = stream
                .get_tme(rows.table_id())
                .expect("table map precedes rows");
            if tme.database_name() != db.name.as_str() || tme.table_name() != "items" {
                continue;
            }
            {
                let row = rows.rows(tme).next().expect("one row");
                let (_, after) = row.expect("decodable row");
                let after = after.expect("an insert has an after image");
                let names: Vec<String> = after
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                let values: Vec<Value> = (0..names.len())
                    .map(|i| {
                        after
                            .as_ref(i)
                            .cloned()
                            .expect("value")
                            .try_into()
                            .expect("plain value")
                    })
                    .collect();
                return (names, values);
            }
        }
        panic!("binlog stream ended");
    })
    .await
    .expect("our insert appears in the binlog within 20 s");
    assert_eq!(
        found.0,
        ["id", "title"],
        "column names come from FULL row metadata"
    );
    assert_eq!(
        found.1,
        [Value::Int(2), Value::Bytes(b"from the binlog".to_vec())]
    );
    stream.close().await.ok();
    db.drop(&env).await;
}

#[tokio::test]
async fn wrong_password_is_a_definite_error() {
    use mee_core::{Secret, Transient};
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[("shop", "mysql")], &unique_name("r"));
    let mysql_cfg = cfg.mysql.get_mut("shop").expect("section");
    mysql_cfg.password = Secret::new("definitely-wrong");
    let err = mee_mysql::connect("shop", mysql_cfg)
        .await
        .expect_err("bad password");
    assert_eq!(err.server_code(), Some(1045), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(!err.to_string().contains("definitely-wrong"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    use mee_core::Transient;
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[("shop", "mysql")], &unique_name("r"));
    let mysql_cfg = cfg.mysql.get_mut("shop").expect("section");
    mysql_cfg.port = 1; // nothing listens there
    let err = mee_mysql::connect("shop", mysql_cfg)
        .await
        .expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
}
