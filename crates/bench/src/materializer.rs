//! Materializer throughput: documents/s over a fixture of N orders, each with 3 items
//! (a nested list) and a customer (a lookup), against a plain mysql_async client that
//! runs the same three queries per page and only collects the rows.

use crate::report::{self, Row};
use mee_core::handler::Handler;
use mee_core::materialize::Materializer;
use mee_mysql::MySqlSource;
use mee_mysql::mysql_async::prelude::Queryable;
use mee_mysql::mysql_async::{self, Value};
use mee_test_support::StackEnv;
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of master rows (orders) in the fixture.
    #[arg(long, default_value_t = 1_000_000)]
    masters: u64,
    /// Masters per page, as `update` reads them.
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Timed rounds of each side; the best round counts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

const HANDLER: &str = r#"
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

pub async fn run(args: Args) -> anyhow::Result<()> {
    let env = StackEnv::load();
    let schema = format!("mee_bench_mat_{}", args.masters);
    ensure_fixture(&env, &schema, args.masters).await?;
    let cfg = env.app_config(&[("bench", &schema)], "mee_bench");
    let handler = Handler::parse("bench.yml", HANDLER)?;
    let source = MySqlSource::new(&cfg, ["bench"])?;
    let pool = mee_mysql::pool("bench", &cfg.mysql["bench"])?;

    let mut best_ours = f64::MAX;
    let mut best_raw = f64::MAX;
    let mut rss_at_tenth = f64::NAN;
    let mut docs = 0;
    for round in 0..args.rounds {
        let (secs, n, tenth) = ours(&handler, &source, args.page_size, args.masters / 10).await?;
        if round == 0 {
            rss_at_tenth = tenth;
        }
        docs = n;
        best_ours = best_ours.min(secs);
        let (secs, rows) = raw(&pool, args.page_size).await?;
        anyhow::ensure!(
            rows == n,
            "baseline read {rows} masters, the materializer {n}"
        );
        best_raw = best_raw.min(secs);
        eprintln!(
            "round {round}: materializer {:.1} s, baseline {:.1} s",
            best_ours, best_raw
        );
    }
    let rss_end = report::peak_rss_mib();
    source.close().await;
    pool.disconnect().await.ok();

    let ours_rate = docs as f64 / best_ours;
    let raw_rate = docs as f64 / best_raw;
    report::write(
        "materializer",
        &format!(
            "{docs} masters (orders), 3 nested items each, one customer lookup; pages of {}; \
             best of {} rounds. The materializer is driven as `update` drives it: the next \
             page's masters are read while this page's documents are built, and the items \
             and nested list of a page (which depend only on the master) are read concurrently. Baseline: a plain \
             mysql_async client running the same three queries per page, one after the other, \
             and collecting the rows. Both in one process, with mimalloc. Peak RSS is the \
             process's VmHWM.",
            args.page_size, args.rounds
        ),
        &[
            Row {
                figure: "documents/s".into(),
                measured: format!("{ours_rate:.0}"),
                baseline: format!("{raw_rate:.0} masters/s"),
                ratio: format!("{:.2} (goal ≥ 0.70)", ours_rate / raw_rate),
            },
            Row {
                figure: "peak RSS, MiB".into(),
                measured: format!("{rss_end:.1} after {docs} masters"),
                baseline: format!("{rss_at_tenth:.1} after {} masters", args.masters / 10),
                ratio: format!("{:.2} (flat = 1.00)", rss_end / rss_at_tenth),
            },
        ],
    )
}

/// Materialize every document; returns (seconds, documents, peak RSS when `tenth`
/// masters were done).
async fn ours(
    handler: &Handler,
    source: &MySqlSource,
    page_size: usize,
    tenth: u64,
) -> anyhow::Result<(f64, u64, f64)> {
    let m = Materializer::new(handler);
    let start = Instant::now();
    let mut docs = 0u64;
    let mut rss_tenth = f64::NAN;
    // As `update` drives it: the next page's masters are read while this page's
    // documents are built.
    let mut masters = m.masters(source, None, page_size).await?;
    while !masters.is_empty() {
        let after = masters.last_key.clone();
        let (page, next) = tokio::join!(
            m.build(source, masters),
            m.masters(source, after.as_deref(), page_size)
        );
        let page = page?;
        if docs == 0
            && let Some(d) = page.documents.first()
        {
            // The documents are the real thing: 3 nested items and the customer.
            let source = d.source_value();
            let items = source
                .get("items")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            anyhow::ensure!(items == 3, "first document has {items} items: {source}");
            anyhow::ensure!(source.get("customer_name").is_some_and(|v| v.is_string()));
        }
        docs += page.documents.len() as u64;
        if rss_tenth.is_nan() && docs >= tenth {
            rss_tenth = report::peak_rss_mib();
        }
        masters = next?;
    }
    Ok((start.elapsed().as_secs_f64(), docs, rss_tenth))
}

/// The same queries, rows collected and dropped; returns (seconds, masters).
async fn raw(pool: &mysql_async::Pool, page_size: usize) -> anyhow::Result<(f64, u64)> {
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
async fn ensure_fixture(env: &StackEnv, schema: &str, masters: u64) -> anyhow::Result<()> {
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
