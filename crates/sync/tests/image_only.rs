//! A handler whose document is the master row alone is synced from the change events'
//! images: it keeps working with MySQL cut away from `sync`.

use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_mysql::MySqlSource;
use mee_test_support::{Pipeline, TcpProxy, workspace_root};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

const HANDLER: &str = "\
products:
  mappings:
    properties:
      price: {type: double}
  order:
    - key: products
      database: shop
      table: products
      document_id: \"p_%id\"
      statement: \"select * from products where id > %__last.id:(0)\"
      mapping:
        - id
        - title
        - {db_field: category_id, es_field: category, null_value: 0}
        - price
";

#[tokio::test(flavor = "multi_thread")]
async fn a_master_only_handler_needs_no_mysql_in_sync() {
    let fixture =
        std::fs::read_to_string(workspace_root().join("crates/mysql/tests/fixtures/shop.sql"))
            .expect("fixture")
            + "ALTER TABLE products ADD COLUMN price DECIMAL(8,2) NOT NULL DEFAULT 1.50;";
    let p = Pipeline::new(&fixture, HANDLER, "products").await;
    let mut listen = p.spawn("listen", &[]);
    listen.wait_healthy(WAIT);
    let (status, log) = p.update(&[], Duration::from_secs(60));
    assert!(status.success(), "{log}");

    // sync reaches MySQL only through a proxy, cut once it is up.
    let proxy = TcpProxy::start(&format!("{}:{}", p.env.mysql_host, p.env.mysql_port)).await;
    let toml = p.toml.replace(
        &format!("port = {}", p.env.mysql_port),
        &format!("port = {}", proxy.addr.port()),
    );
    assert_ne!(toml, p.toml);
    let mut sync = p.spawn_with("sync", &[], &toml);
    sync.wait_healthy(WAIT);
    proxy.cut();

    p.sql(
        "INSERT INTO products VALUES (10, 'Kettle', NULL, 19.99);\
         UPDATE products SET title = 'Claw hammer', price = 7.25 WHERE id = 2;\
         DELETE FROM products WHERE id = 3;\
         UPDATE products SET id = 11 WHERE id = 1;",
    )
    .await;

    // What the materializer builds from MySQL now (directly, not through the proxy).
    let handler = Handler::parse(
        "h.yml",
        &std::fs::read_to_string(&p.handler).expect("handler"),
    )
    .expect("handler");
    let m = Materializer::new(&handler);
    assert!(m.image_only());
    let source = MySqlSource::new(&p.cfg(), ["shop"]).expect("pools");
    let want: std::collections::BTreeMap<String, serde_json::Value> = m
        .page(&source, None, 100)
        .await
        .expect("materialize")
        .documents
        .into_iter()
        .map(|d| (d.id.clone(), d.source_value()))
        .collect();
    source.close().await;
    assert!(want.contains_key("p_11") && !want.contains_key("p_1") && !want.contains_key("p_3"));
    p.wait_docs(WAIT, "documents built from the events alone", |d| {
        *d == want
    });
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    p.drop().await;
}
