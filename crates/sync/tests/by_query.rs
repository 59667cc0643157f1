//! An item whose statement has no `<column> = %ref` link (here a price tier chosen by
//! a range) is found through its `query` in Elasticsearch: a change to one of its rows
//! reaches exactly the documents that hold it.

mod common;

use common::{WAIT, converges, start};
use mee_test_support::{Pipeline, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;

const HANDLER: &str = "\
orders:
  mappings:
    properties:
      tier_id: {type: long}
  order:
    - key: orders
      database: shop
      table: orders
      document_id: \"o%id\"
      statement: \"select * from orders where id > %__last.id:(0)\"
      mapping:
        - id
        - status
    - key: tiers
      database: shop
      table: tiers
      statement: \"select id, name from tiers where %__master.total between low and high\"
      query: {tier_id: \"%id\"}
      mapping:
        - {db_field: id, es_field: tier_id}
        - {db_field: name, es_field: tier_name}
";

fn tier(docs: &BTreeMap<String, Value>, id: &str) -> Option<String> {
    docs.get(id)?.get("tier_name")?.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_found_by_query_reaches_the_documents_holding_it() {
    let fixture =
        std::fs::read_to_string(workspace_root().join("crates/mysql/tests/fixtures/shop.sql"))
            .expect("fixture")
            + "CREATE TABLE tiers (id INT PRIMARY KEY, name VARCHAR(16) NOT NULL, \
               low DECIMAL(10,2) NOT NULL, high DECIMAL(10,2) NOT NULL);\
               INSERT INTO tiers VALUES (1, 'small', 0, 49.99), (2, 'large', 50, 1000);";
    let p = Pipeline::new(&fixture, HANDLER, "orders").await;
    let (_listen, sync) = start(&p).await;
    p.wait_docs(WAIT, "the first generation", |d| {
        tier(d, "o1004").as_deref() == Some("large") && tier(d, "o1001").as_deref() == Some("small")
    });

    // Renaming a tier reaches every order in it, and only those.
    p.sql("UPDATE tiers SET name = 'big' WHERE id = 2").await;
    p.wait_docs(WAIT, "tier 2 renamed", |d| {
        tier(d, "o1004").as_deref() == Some("big")
    });
    let docs = p.docs(&p.alias);
    assert_eq!(tier(&docs, "o1001").as_deref(), Some("small"), "{docs:?}");
    assert_eq!(tier(&docs, "o1002").as_deref(), Some("small"), "{docs:?}");

    p.sql("UPDATE tiers SET name = 'tiny' WHERE id = 1").await;
    p.wait_docs(WAIT, "tier 1 renamed", |d| {
        ["o1001", "o1002", "o1003"]
            .iter()
            .all(|id| tier(d, id).as_deref() == Some("tiny"))
    });

    // The master's own changes still move a document between tiers; and a tier row
    // deleted leaves its documents without one.
    p.sql("UPDATE orders SET total = 75.00 WHERE id = 1001")
        .await;
    p.wait_docs(WAIT, "order moved to tier 2", |d| {
        tier(d, "o1001").as_deref() == Some("big")
    });
    p.sql("DELETE FROM tiers WHERE id = 2").await;
    p.wait_docs(WAIT, "tier 2 deleted", |d| {
        tier(d, "o1001").is_none() && tier(d, "o1004").is_none()
    });
    converges(&p, WAIT).await;

    let metrics = sync.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    assert!(
        metrics.contains("stage=\"search\""),
        "searches are timed as their own stage"
    );
    p.drop().await;
}
