//! The shop fixture shared by the `materializer` and `update` benchmarks: N orders
//! (masters), 3 items each (a nested list), 10,000 customers (a lookup), in schema
//! `mee_bench_mat_<N>` (kept across runs), the handler that indexes it, and the raw
//! read baseline: a plain mysql_async client running the same statements.

use mee_mysql::mysql_async::prelude::Queryable;
use mee_mysql::mysql_async::{self, Value};
use mee_test_support::StackEnv;
use std::collections::BTreeSet;
use std::time::Instant;

/// The handler: top-level key (the alias) [`ALIAS`], logical database `bench`.
pub const HANDLER: &str = r#"
bench_orders:
  - key: orders
    database: bench
    table: orders
    document_id: "%id"
    statement: "select * from orders where id > %__last.id:(0)"
    mapping:
      - id
      - status
      - total
      - created_at
      - note
      - db_field:
          - key: items
            database: bench
            table: order_items
            statement: "select * from order_items where order_id = %__parent.id"
            parent_query: {id: "%order_id"}
            mapping: [sku, qty, price]
        es_field: items
        type: nested
  - key: customers
    database: bench
    table: customers
    statement: "select * from customers where id = %__master.customer_id"
    mapping:
      - {db_field: name, es_field: customer_name}
      - {db_field: email, es_field: customer_email}
"#;

/// The handler's top-level key.
pub const ALIAS: &str = "bench_orders";

/// The handler with another alias (top-level key).
pub fn handler_with_alias(alias: &str) -> String {
    let yaml = HANDLER.replacen(&format!("\n{ALIAS}:\n"), &format!("\n{alias}:\n"), 1);
    assert!(yaml.contains(&format!("\n{alias}:\n")), "alias replaced");
    yaml
}

/// The fixture's schema for `masters` orders.
pub fn schema(masters: u64) -> String {
    format!("mee_bench_mat_{masters}")
}

/// The same statements as the materializer sends for the handler, one page after the
/// other on one connection, rows collected and dropped; returns (seconds, masters).
pub async fn raw_read(pool: &mysql_async::Pool, page_size: usize) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut conn = pool.get_conn().await?;
    let mut last: i64 = 0;
    let mut masters = 0u64;
    loop {
        let rows: Vec<mysql_async::Row> = conn
            .exec(
                "select * from orders where id > ? ORDER BY `id` LIMIT ?",
                (last, page_size as u64),
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        masters += rows.len() as u64;
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.get::<i64, _>("id").unwrap_or(0))
            .collect();
        let customers: BTreeSet<i64> = rows
            .iter()
            .map(|r| r.get::<i64, _>("customer_id").unwrap_or(0))
            .collect();
        last = *ids.last().unwrap_or(&last);
        let items: Vec<mysql_async::Row> = conn
            .exec(
                in_query("select * from order_items where order_id IN", ids.len()),
                padded(&ids),
            )
            .await?;
        let customers: Vec<i64> = customers.into_iter().collect();
        let found: Vec<mysql_async::Row> = conn
            .exec(
                in_query("select * from customers where id IN", customers.len()),
                padded(&customers),
            )
            .await?;
        drop((items, found));
    }
    Ok((start.elapsed().as_secs_f64(), masters))
}

/// `<head> (?, ...)` padded to a power of two, as the materializer sends it.
fn in_query(head: &str, n: usize) -> String {
    format!("{head} ({})", vec!["?"; n.next_power_of_two()].join(", "))
}

fn padded(values: &[i64]) -> Vec<Value> {
    let mut v: Vec<Value> = values.iter().map(|i| Value::Int(*i)).collect();
    while v.len() < values.len().next_power_of_two() {
        v.push(v[v.len() - 1].clone());
    }
    v
}

/// Create `schema` with `masters` orders unless it already holds them.
pub async fn ensure(env: &StackEnv, schema: &str, masters: u64) -> anyhow::Result<()> {
    let mut conn = env.admin_conn().await;
    let existing: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM `{schema}`.orders"))
        .await
        .unwrap_or(None);
    if existing == Some(masters) {
        eprintln!("fixture {schema} already holds {masters} orders");
        return Ok(());
    }
    eprintln!(
        "creating fixture {schema}: {masters} orders, {} items",
        masters * 3
    );
    let start = Instant::now();
    // The fixture is not replicated: keep it out of the binlog.
    conn.query_drop("SET SESSION sql_log_bin = 0").await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await?;
    conn.query_drop(format!("CREATE DATABASE `{schema}`"))
        .await?;
    conn.query_drop(format!("USE `{schema}`")).await?;
    conn.query_drop(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(128));
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL,
           status VARCHAR(16) NOT NULL, total DECIMAL(10,2) NOT NULL, created_at DATETIME NOT NULL,
           note VARCHAR(100));
         CREATE TABLE order_items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL,
           sku VARCHAR(32) NOT NULL, qty INT NOT NULL, price DECIMAL(10,2) NOT NULL, KEY (order_id));
         INSERT INTO customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com')
           FROM seq_1_to_10000;",
    )
    .await?;
    conn.query_drop(format!(
        "INSERT INTO orders SELECT seq, 1 + seq % 10000, ELT(1 + seq % 3, 'new', 'paid', 'shipped'),
           (seq % 100000) / 100, TIMESTAMP('2024-01-01') + INTERVAL (seq % 31536000) SECOND,
           CONCAT('order note number ', seq) FROM seq_1_to_{masters}"
    ))
    .await?;
    conn.query_drop(format!(
        "INSERT INTO order_items SELECT seq, 1 + (seq - 1) DIV 3, CONCAT('SKU-', seq % 5000),
           1 + seq % 4, (seq % 10000) / 100 FROM seq_1_to_{}",
        masters * 3
    ))
    .await?;
    eprintln!("fixture ready in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
