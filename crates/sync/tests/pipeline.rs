//! `listen`, `update` and `sync` as real processes against the local stack: row
//! changes of every kind reach the right documents, and the index ends equal to what
//! the materializer builds from MySQL.

mod common;

use common::{WAIT, expected, running_shop};
use serde_json::Value;
use std::collections::BTreeMap;

fn field<'a>(docs: &'a BTreeMap<String, Value>, id: &str, f: &str) -> Option<&'a Value> {
    docs.get(id).and_then(|d| d.get(f))
}

fn item_ids(docs: &BTreeMap<String, Value>, id: &str) -> Vec<i64> {
    docs.get(id)
        .and_then(|d| d["items"].as_array())
        .map(|a| a.iter().filter_map(|i| i["item_id"].as_i64()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_change_reaches_its_documents() {
    let (p, _listen, sync) = running_shop().await;

    // Master insert (with a nested child), update, and the customer lookup.
    p.sql(
        "INSERT INTO orders VALUES (1005, 2, 'new', 5.00, '2024-07-01 00:00:00');\
         INSERT INTO order_items VALUES (5, 1005, 1, 1, 5.00);",
    )
    .await;
    p.wait_docs(WAIT, "master insert", |d| {
        field(d, "1005", "customer_name") == Some(&Value::from("Bob")) && item_ids(d, "1005") == [5]
    });
    p.sql("UPDATE orders SET status = 'paid' WHERE id = 1005")
        .await;
    p.wait_docs(WAIT, "master update", |d| {
        field(d, "1005", "status") == Some(&Value::from("paid"))
    });

    // A secondary row reaches every document that shows it.
    p.sql("UPDATE customers SET name = 'Annie' WHERE id = 1")
        .await;
    p.wait_docs(WAIT, "lookup update", |d| {
        field(d, "1001", "customer_name") == Some(&Value::from("Annie"))
    });
    // Two levels down: a category name in every order line using it.
    p.sql("UPDATE categories SET name = 'novels' WHERE id = 1")
        .await;
    p.wait_docs(WAIT, "category update", |d| {
        d["1001"]["items"][0]["category"] == "novels"
    });

    // Nested child insert, update, delete.
    p.sql("INSERT INTO order_items VALUES (6, 1002, 2, 4, 1.00)")
        .await;
    p.wait_docs(WAIT, "child insert", |d| item_ids(d, "1002") == [6]);
    p.sql("UPDATE order_items SET quantity = 9 WHERE id = 6")
        .await;
    p.wait_docs(WAIT, "child update", |d| {
        d["1002"]["items"][0]["quantity"] == 9
    });
    p.sql("DELETE FROM order_items WHERE id = 6").await;
    p.wait_docs(WAIT, "child delete", |d| item_ids(d, "1002").is_empty());

    // A child moves to another parent: removed from one array, added to the other.
    p.sql("UPDATE order_items SET order_id = 1002 WHERE id = 2")
        .await;
    p.wait_docs(WAIT, "child move", |d| {
        item_ids(d, "1001") == [1] && item_ids(d, "1002") == [2]
    });

    // A row leaves the master's WHERE: its document goes; it comes back.
    p.sql("UPDATE orders SET status = 'deleted' WHERE id = 1004")
        .await;
    p.wait_docs(WAIT, "filtered out", |d| !d.contains_key("1004"));
    p.sql("UPDATE orders SET status = 'paid' WHERE id = 1004")
        .await;
    p.wait_docs(WAIT, "back in", |d| d.contains_key("1004"));

    // One transaction touching three tables.
    p.sql(
        "START TRANSACTION;\
         INSERT INTO products VALUES (4, 'Lamp', 2);\
         INSERT INTO order_items VALUES (7, 1004, 4, 1, 20.00);\
         UPDATE orders SET total = 120.00 WHERE id = 1004;\
         COMMIT;",
    )
    .await;
    p.wait_docs(WAIT, "transaction", |d| {
        item_ids(d, "1004").contains(&7) && d["1004"]["total"] == 120.0
    });

    // Master delete.
    p.sql("DELETE FROM order_items WHERE order_id = 1005; DELETE FROM orders WHERE id = 1005")
        .await;
    p.wait_docs(WAIT, "master delete", |d| !d.contains_key("1005"));

    let want = expected(&p).await;
    p.wait_docs(WAIT, "the index equals the materializer's documents", |d| {
        *d == want
    });
    let (_, metrics) = sync.get("/metrics").expect("metrics");
    assert!(metrics.contains("mee_sync_documents_total"), "{metrics}");
    p.drop().await;
}
