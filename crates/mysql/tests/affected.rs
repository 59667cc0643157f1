//! The materializer's inverse against the local stack's MariaDB: which documents of
//! the shipped `orders` handler a changed row of each table feeds.

use mee_core::handler::Handler;
use mee_core::materialize::{AffectedKey, Materializer, RowChange};
use mee_core::value::Cell;
use mee_mysql::MySqlSource;
use mee_test_support::{StackEnv, TestDatabase, unique_name, workspace_root};
use serde_json::{Map, Value, json};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn keys(found: &[AffectedKey]) -> Vec<(i64, u64)> {
    found
        .iter()
        .map(|a| match a.key.as_slice() {
            [Cell::Int(i)] => (*i, a.version),
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn changed_rows_reach_their_documents() {
    let env = StackEnv::load();
    let db = TestDatabase::create(&env, "inv").await;
    let sql =
        std::fs::read_to_string(workspace_root().join("crates/mysql/tests/fixtures/shop.sql"))
            .expect("fixture");
    db.exec(&env, &sql).await;
    let cfg = env.app_config(&[("shop", db.name.as_str())], &unique_name("r"));
    let yaml = std::fs::read_to_string(workspace_root().join("conf/handlers/orders.yml"))
        .expect("handler");
    let handler = Handler::parse("orders.yml", &yaml).expect("handler");
    let source = MySqlSource::new(&cfg, ["shop"]).expect("pools");
    let m = Materializer::new(&handler);
    assert!(m.untraceable().is_empty(), "{:?}", m.untraceable());

    let change = |table: &'static str,
                  before: Option<&'static Map<String, Value>>,
                  after,
                  version| RowChange {
        database: "shop",
        table,
        before,
        after,
        version,
    };
    let run = |changes: Vec<RowChange<'static>>| {
        let (m, source) = (&m, &source);
        async move { keys(&m.affected(source, &changes).await.expect("affected").keys) }
    };
    let leak = |v: Value| -> &'static Map<String, Value> { Box::leak(Box::new(obj(v))) };

    // A master row: its own key, no query.
    let found = m
        .affected(
            &source,
            &[change(
                "orders",
                None,
                Some(leak(json!({"id": 1005, "customer_id": 1}))),
                7,
            )],
        )
        .await
        .expect("affected");
    assert_eq!(keys(&found.keys), vec![(1005, 7)]);
    assert!(found.queries.is_empty());
    assert_eq!(found.stats.queries, 0);

    // A nested child carries its parent's key: no query. Moving to another parent
    // affects both.
    assert_eq!(
        run(vec![change(
            "order_items",
            Some(leak(json!({"id": 1, "order_id": 1001}))),
            Some(leak(json!({"id": 1, "order_id": 1002}))),
            9
        )])
        .await,
        vec![(1001, 9), (1002, 9)]
    );

    // A many-to-one lookup: every order of the customer.
    assert_eq!(
        run(vec![change(
            "customers",
            None,
            Some(leak(json!({"id": 1, "name": "Ann"}))),
            11
        )])
        .await,
        vec![(1001, 11), (1003, 11)]
    );

    // Two levels down: a product reaches the orders whose items use it.
    assert_eq!(
        run(vec![change(
            "products",
            Some(leak(json!({"id": 3}))),
            None,
            12
        )])
        .await,
        vec![(1003, 12), (1004, 12)]
    );

    // Three levels: a category → its products → their order items → orders. The
    // newest version wins when two changes reach one document.
    assert_eq!(
        run(vec![
            change(
                "categories",
                None,
                Some(leak(json!({"id": 1, "name": "novels"}))),
                20
            ),
            change(
                "order_items",
                None,
                Some(leak(json!({"id": 9, "order_id": 1001}))),
                25
            ),
        ])
        .await,
        vec![(1001, 25)]
    );

    // A table the handler does not read, and NULL links, reach nothing.
    assert!(!m.reads_table("shop", "audit_log"));
    assert_eq!(
        run(vec![
            change("audit_log", None, Some(leak(json!({"id": 1}))), 30),
            change("products", None, Some(leak(json!({"id": null}))), 31),
        ])
        .await,
        vec![]
    );
    source.close().await;
    db.drop(&env).await;
}

#[test]
fn a_lookup_without_a_link_is_reported() {
    let yaml = r#"
idx:
  order:
    - key: m
      database: shop
      table: orders
      document_id: "%id"
      statement: "select * from orders"
      mapping: [id]
    - key: settings
      database: shop
      table: settings
      statement: "select * from settings where name = 'site'"
      mapping: [value]
"#;
    let handler = Handler::parse("h.yml", yaml).expect("handler");
    let problems = Materializer::new(&handler).untraceable();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("item `settings` (shop.settings)"),
        "{}",
        problems[0]
    );
}

#[test]
fn only_a_lone_master_row_with_select_star_and_no_condition_is_image_only() {
    let handler = |statement: &str, extra_item: bool| {
        let mut yaml = format!(
            "idx:\n  order:\n    - key: m\n      database: shop\n      table: products\n      \
             document_id: \"%id\"\n      statement: \"{statement}\"\n      mapping: [id, title]\n"
        );
        if extra_item {
            yaml.push_str(
                "    - key: c\n      database: shop\n      table: categories\n      \
                 statement: \"select name from categories where id = %__master.category_id\"\n      \
                 mapping: [name]\n",
            );
        }
        Handler::parse("h.yml", &yaml).expect("handler")
    };
    let image_only = |h: &Handler| Materializer::new(h).image_only();
    assert!(image_only(&handler("select * from products", false)));
    assert!(image_only(&handler(
        "select * from products where id > %__last.id:(0)",
        false
    )));
    // MySQL must decide: a condition, chosen columns, or another item.
    assert!(!image_only(&handler(
        "select * from products where title <> 'x'",
        false
    )));
    assert!(!image_only(&handler(
        "select id, title from products",
        false
    )));
    assert!(!image_only(&handler("select * from products", true)));
}
