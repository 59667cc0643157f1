//! Materializer throughput: documents/s over a fixture of N orders, each with 3 items
//! (a nested list) and a customer (a lookup), against a plain mysql_async client that
//! runs the same three queries per page and only collects the rows.

use crate::fixture;
use crate::report::{self, Row};
use mee_core::handler::Handler;
use mee_core::materialize::{Document, Materializer};
use mee_mysql::MySqlSource;
use mee_test_support::StackEnv;
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

pub async fn run(args: Args) -> anyhow::Result<()> {
    let env = StackEnv::load();
    let schema = fixture::schema(args.masters);
    fixture::ensure(&env, &schema, args.masters).await?;
    let cfg = env.app_config(&[("bench", &schema)], "mee_bench");
    let handler = Handler::parse("bench.yml", fixture::HANDLER)?;
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
        let (secs, rows) = fixture::raw_read(&pool, args.page_size).await?;
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
    let start = Instant::now();
    let mut docs = 0u64;
    let mut rss_tenth = f64::NAN;
    each_page(handler, source, page_size, |documents| {
        if docs == 0
            && let Some(d) = documents.first()
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
        docs += documents.len() as u64;
        if rss_tenth.is_nan() && docs >= tenth {
            rss_tenth = report::peak_rss_mib();
        }
        Ok(())
    })
    .await?;
    Ok((start.elapsed().as_secs_f64(), docs, rss_tenth))
}

/// Materialize every document of `handler`, page by page, handing each page's
/// documents to `f`. As `update` drives the materializer: the next page's masters are
/// read while this page's documents are built.
pub async fn each_page(
    handler: &Handler,
    source: &MySqlSource,
    page_size: usize,
    mut f: impl FnMut(Vec<Document>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let m = Materializer::new(handler);
    let mut masters = m.masters(source, None, page_size).await?;
    while !masters.is_empty() {
        let after = masters.last_key.clone();
        let (page, next) = tokio::join!(
            m.build(source, masters),
            m.masters(source, after.as_deref(), page_size)
        );
        f(page?.documents)?;
        masters = next?;
    }
    Ok(())
}
