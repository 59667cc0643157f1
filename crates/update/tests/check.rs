//! `update -c <handler> --check` as a real process against the local stack.

use mee_test_support::{StackEnv, TestDatabase, orders_handler, shop_fixture, unique_name};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_update");

/// Run `update --check` on handler text with the `shop` database mapped to `schema`.
fn check(env: &StackEnv, schema: &str, handler: &str) -> Output {
    let dir = std::env::temp_dir();
    let name = unique_name("check");
    let cfg = dir.join(format!("{name}.toml"));
    let h = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, env.app_config_toml(&[("shop", schema)], &name)).expect("config");
    std::fs::write(&h, handler).expect("handler");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&h)
        .arg("--check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run update");
    std::fs::remove_file(cfg).ok();
    std::fs::remove_file(h).ok();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn shop(env: &StackEnv) -> TestDatabase {
    let db = TestDatabase::create(env, "check").await;
    db.exec(env, &shop_fixture()).await;
    db
}

#[tokio::test]
async fn valid_handler_passes_preflight() {
    let env = StackEnv::load();
    let db = shop(&env).await;
    let out = check(&env, &db.name, &orders_handler());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("valid: index alias `orders`, 5 items"),
        "{stdout}"
    );
    assert!(stdout.contains("MySQL preflight ok"), "{stdout}");
    assert!(stdout.contains("Elasticsearch preflight ok"), "{stdout}");
    db.drop(&env).await;
}

#[tokio::test]
async fn missing_columns_and_tables_are_listed_together() {
    let env = StackEnv::load();
    let db = shop(&env).await;
    let handler = orders_handler()
        .replace(
            "- {db_field: title, es_field: product_title}",
            "- {db_field: titel, es_field: product_title}",
        )
        .replace("from categories where", "from categoriez where");
    let out = check(&env, &db.name, &handler);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("item `products`: the statement's result has no column `titel` (mapping)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("item `categories`: statement does not prepare"),
        "{stderr}"
    );
    assert!(stderr.contains("categoriez"), "{stderr}");
    db.drop(&env).await;
}

#[tokio::test]
async fn invalid_handler_fails_before_any_io() {
    let env = StackEnv::load();
    // The schema does not exist: pure validation must fail first, on its own.
    let out = check(&env, "no_such_schema", "idx:\n  - key: a\n    table: t\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(":2:5: idx[0]: missing `database`"),
        "{stderr}"
    );
    assert!(stderr.contains("missing `statement`"), "{stderr}");
    assert!(!stderr.contains("preflight"), "{stderr}");
}

#[tokio::test]
async fn mappings_elasticsearch_refuses_are_reported() {
    let env = StackEnv::load();
    let db = shop(&env).await;
    let handler = orders_handler().replace(
        "total: {type: scaled_float, scaling_factor: 100}",
        "total: {type: not_a_type}",
    );
    let out = check(&env, &db.name, &handler);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("index settings/mappings refused"),
        "{stderr}"
    );
    assert!(stderr.contains("not_a_type"), "{stderr}");
    db.drop(&env).await;
}

#[test]
fn an_item_sync_cannot_trace_is_refused() {
    let env = StackEnv::load();
    let handler = r#"
idx:
  order:
    - key: m
      database: shop
      table: orders
      document_id: "%id"
      statement: "select * from orders"
      mapping: [id]
    - key: site
      database: shop
      table: customers
      statement: "select * from customers where name = 'Ann'"
      mapping: [email]
"#;
    let out = check(&env, "mysql", handler);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("item `site` (shop.customers)") && err.contains("sync would refuse it"),
        "{err}"
    );
}
