//! The materializer against the local stack's MariaDB: the shipped example handlers
//! over fixture databases, compared with golden documents; every column type; query
//! counts (no N+1); keys that no longer match; hostile values; and the property that
//! paging gives the same documents as asking for the keys.
//!
//! `UPDATE_GOLDEN=1 cargo test -p mee-mysql --test materialize` rewrites the goldens.

use mee_core::handler::Handler;
use mee_core::materialize::{Document, Materializer, QueryStats};
use mee_core::value::Cell;
use mee_mysql::MySqlSource;
use mee_test_support::{StackEnv, TestDatabase, unique_name, workspace_root};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Fixture databases for a handler: one fresh schema per logical database.
struct Fixture {
    env: StackEnv,
    dbs: Vec<(String, TestDatabase)>,
    handler: Handler,
    source: MySqlSource,
}

impl Fixture {
    async fn new(handler_yaml: &str, logical: &[&str]) -> Self {
        let env = StackEnv::load();
        let mut dbs = Vec::new();
        for name in logical {
            let db = TestDatabase::create(&env, "mat").await;
            let sql = std::fs::read_to_string(fixtures().join(format!("{name}.sql")))
                .unwrap_or_else(|e| panic!("fixture {name}.sql: {e}"));
            db.exec(&env, &sql).await;
            dbs.push((name.to_string(), db));
        }
        let pairs: Vec<(&str, &str)> = dbs
            .iter()
            .map(|(l, d)| (l.as_str(), d.name.as_str()))
            .collect();
        let cfg = env.app_config(&pairs, &unique_name("r"));
        let handler = Handler::parse("handler.yml", handler_yaml).unwrap_or_else(|e| panic!("{e}"));
        let source = MySqlSource::new(&cfg, logical.iter().copied()).expect("pools");
        Self {
            env,
            dbs,
            handler,
            source,
        }
    }

    async fn shipped(name: &str, logical: &[&str]) -> Self {
        let path = workspace_root().join("conf/handlers").join(name);
        Self::new(&std::fs::read_to_string(path).expect("handler"), logical).await
    }

    fn db(&self, logical: &str) -> &TestDatabase {
        &self
            .dbs
            .iter()
            .find(|(l, _)| l == logical)
            .expect("fixture db")
            .1
    }

    /// Every document, page by page.
    async fn scan(&self, page_size: usize) -> (Vec<Document>, QueryStats) {
        let m = Materializer::new(&self.handler);
        let mut after: Option<Vec<Cell>> = None;
        let mut docs = Vec::new();
        let mut stats = QueryStats::default();
        loop {
            let page = m
                .page(&self.source, after.as_deref(), page_size)
                .await
                .expect("page");
            stats += page.stats;
            docs.extend(page.documents);
            match page.last_key {
                Some(k) => after = Some(k),
                None => return (docs, stats),
            }
        }
    }

    async fn drop(self) {
        self.source.close().await;
        for (_, db) in self.dbs {
            db.drop(&self.env).await;
        }
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn as_json(docs: &[Document]) -> Value {
    Value::Array(
        docs.iter()
            .map(|d| json!({"_id": d.id, "routing": d.routing, "_source": d.source_value()}))
            .collect(),
    )
}

fn assert_golden(name: &str, docs: &[Document]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let got = serde_json::to_string_pretty(&as_json(docs)).expect("json") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(got, want, "documents differ from {}", path.display());
}

#[tokio::test]
async fn carteam_user_cross_database_chain() {
    let f = Fixture::shipped("carteam_user.yml", &["carteam_service", "admin_service"]).await;
    let (docs, stats) = f.scan(2).await;
    assert_golden("carteam_user.json", &docs);
    // users 1,3,4,5 pass role_id = 1; pages of 2 → 2 pages + the empty last page.
    assert_eq!(docs.len(), 4);
    assert_eq!(stats.unbatched, 0, "{stats:?}");
    // Per non-empty page: master + relations_1 + admin_users + credit.
    assert_eq!(stats.queries, 2 * 4 + 1, "{stats:?}");
    f.drop().await;
}

#[tokio::test]
async fn vehicle_nested_and_lookup() {
    let f = Fixture::shipped("vehicle.yml", &["certify_service", "track_service"]).await;
    let (docs, stats) = f.scan(100).await;
    assert_golden("vehicle.json", &docs);
    assert_eq!(docs.len(), 4);
    assert_eq!(
        docs[2].source_value()["vehicle_monitors"],
        json!([]),
        "no rows: an empty array"
    );
    assert_eq!(
        stats.queries,
        3 + 1,
        "master, monitors, type, then the empty page: {stats:?}"
    );
    f.drop().await;
}

#[tokio::test]
async fn orders_three_level_chain() {
    let f = Fixture::shipped("orders.yml", &["shop"]).await;
    let (docs, stats) = f.scan(10).await;
    assert_golden("orders.json", &docs);
    assert_eq!(docs.len(), 3, "the deleted order fails the master WHERE");
    // orders, order_items, products, categories, customers — one query each.
    assert_eq!((stats.queries, stats.unbatched), (5 + 1, 0), "{stats:?}");
    f.drop().await;
}

#[tokio::test]
async fn keys_report_masters_that_are_gone_or_filtered() {
    let f = Fixture::shipped("carteam_user.yml", &["carteam_service", "admin_service"]).await;
    let m = Materializer::new(&f.handler);
    let keys = vec![
        vec![Cell::Int(1)],
        vec![Cell::Int(2)],
        vec![Cell::Int(77)],
        vec![Cell::Int(1)],
    ];
    let got = m.keys(&f.source, &keys).await.expect("keys");
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0].id, "carteam_user_1");
    assert_eq!(
        got.missing,
        [vec![Cell::Int(2)], vec![Cell::Int(77)]],
        "role 2 and absent"
    );
    f.drop().await;
}

#[tokio::test]
async fn hostile_values_are_bound_not_spliced() {
    let f = Fixture::shipped("carteam_user.yml", &["carteam_service", "admin_service"]).await;
    let m = Materializer::new(&f.handler);
    let evil = "x' OR '1'='1'; DROP TABLE users; -- /*";
    let got = m
        .keys(&f.source, &[vec![Cell::Bytes(evil.as_bytes().to_vec())]])
        .await
        .expect("keys");
    // Spliced into the SQL, `OR '1'='1'` would match every user; bound, it is one odd string.
    assert!(got.documents.is_empty(), "the string matches no id");
    // The table is still there, and the value with quotes from the fixture survived.
    let (docs, _) = f.scan(10).await;
    assert_eq!(docs.len(), 4);
    let dara = docs
        .iter()
        .find(|d| d.id == "carteam_user_4")
        .expect("doc 4");
    assert_eq!(
        dara.source_value()["auditor_name"],
        json!("Auditor O'Neil; --")
    );
    f.drop().await;
}

const ALL_TYPES: &str = r#"
all_types:
  mappings:
    properties:
      dec_num: {type: double}
  t:
    - key: t
      database: shop
      table: all_types
      document_id: "%id"
      statement: "select * from all_types where id > %__last.id:(0)"
      mapping:
        - id
        - i8
        - u16
        - i32
        - u64
        - f32
        - f64
        - dec
        - {db_field: dec, es_field: dec_num}
        - d
        - dt
        - ts
        - tm
        - y
        - b
        - e
        - s
        - c
        - vc
        - tx
        - bin
        - vbin
        - bl
        - js
        - {field: nul, null_value: "n/a"}
"#;

#[tokio::test]
async fn every_column_type_converts() {
    let f = Fixture::new(ALL_TYPES, &["shop"]).await;
    f.db("shop")
        .exec(
            &f.env,
            "CREATE TABLE all_types (
               id INT PRIMARY KEY, i8 TINYINT, u16 SMALLINT UNSIGNED, i32 INT,
               u64 BIGINT UNSIGNED, f32 FLOAT, f64 DOUBLE, `dec` DECIMAL(12,3),
               d DATE, dt DATETIME(3), ts TIMESTAMP(6) NULL, tm TIME(2), y YEAR, b BIT(12),
               e ENUM('red','green'), s SET('a','b','c'), c CHAR(3), vc VARCHAR(20),
               tx TEXT, bin BINARY(4), vbin VARBINARY(8), bl BLOB, js JSON, nul INT);
             INSERT INTO all_types VALUES
               (1, -128, 65535, -2147483648, 18446744073709551615, 0.1, 2.718281828459045,
                12345.670, '2024-02-29', '2024-02-29 23:59:59.123', '2024-02-29 23:59:59.654321',
                '-838:59:59.50', 2024, b'101000000001', 'green', 'a,c', 'abc', 'héllo ✓',
                'line1\nline2', x'00ff1000', x'deadbeef', x'000102', '{\"k\": [1, \"two\", null]}', NULL),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7);",
        )
        .await;
    let (docs, _) = f.scan(10).await;
    assert_golden("all_types.json", &docs);
    let s = &docs[0].source_value();
    assert_eq!(s["u64"], json!(u64::MAX));
    assert_eq!(s["dec"], json!("12345.670"));
    assert_eq!(s["dec_num"], json!(12345.67));
    assert_eq!(s["ts"], json!("2024-02-29T23:59:59.654321Z"));
    assert_eq!(s["js"], json!({"k": [1, "two", null]}));
    assert_eq!(s["bin"], json!("AP8QAA=="));
    assert_eq!(docs[1].source_value()["nul"], json!(7));
    assert_eq!(s["nul"], json!("n/a"));
    f.drop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Paging with any page size gives the same documents as asking for any subset
    /// of the keys at once.
    #[test]
    fn pages_equal_keys(page_size in 1usize..6, pick in proptest::collection::vec(any::<bool>(), 4)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let f = Fixture::shipped("orders.yml", &["shop"]).await;
            let (paged, _) = f.scan(page_size).await;
            let (all, _) = f.scan(100).await;
            assert_eq!(as_json(&paged), as_json(&all));
            let chosen: Vec<&Document> = paged.iter().zip(&pick).filter(|(_, p)| **p).map(|(d, _)| d).collect();
            let keys: Vec<Vec<Cell>> = chosen.iter().map(|d| d.key.clone()).collect();
            let got = Materializer::new(&f.handler).keys(&f.source, &keys).await.expect("keys");
            let want: Vec<Document> = chosen.into_iter().cloned().collect();
            assert_eq!(as_json(&got.documents), as_json(&want));
            assert!(got.missing.is_empty());
            f.drop().await;
        });
    }
}
