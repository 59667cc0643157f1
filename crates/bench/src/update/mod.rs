//! `update` throughput: the real `update` binary rebuilds the shop fixture (one nested
//! list of 3 items per order, one customer lookup) as a child process, timed from
//! start to exit, against two targets, each beside a baseline measured in the same run:
//!
//! - (a) the bulk sink ([`mee_bench::sink`]), which answers `_bulk` and stores nothing,
//!   at a small and a large number of masters. Baseline: the raw rate at which MySQL
//!   returns the same rows for the same statements ([`fixture::raw_read`]).
//! - (b) the local stack's Elasticsearch API. Baseline: the raw bulk rate of the same
//!   documents, built beforehand, into a scratch index with the same settings, the same
//!   documents per request and requests in flight ([`bulk_baseline::raw_bulk_rate`]).
//!
//! The child's peak RSS is its VmHWM, read from `/proc/<pid>/status` every 100 ms.
//! Each run has its own Redis key prefix, change topic, task and alias; its index,
//! topics, consumer group and Redis keys are deleted afterwards.

mod child;
mod rebuild;
mod runs;

use crate::common::{es_name, load_average, warn_if_crowded};
use crate::fixture;
use crate::report::{self, Row};
use anyhow::ensure;
use child::{BinCopy, update_bin};
use mee_bench::sink::BulkSink;
use mee_test_support::StackEnv;
use runs::{es_runs, sink_runs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Masters of the large rebuild into the bulk sink.
    #[arg(long, default_value_t = 1_000_000)]
    masters: u64,
    /// Masters of the small rebuild into the bulk sink (peak RSS at the small end).
    #[arg(long, default_value_t = 100_000)]
    small_masters: u64,
    /// Masters of the rebuild into the local stack's Elasticsearch API. Its emulator
    /// keeps everything in memory (about 40 times the index size): stay near 100k.
    #[arg(long, default_value_t = 100_000)]
    es_masters: u64,
    /// Timed rounds of each rebuild and its baseline; the best round counts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let env = StackEnv::load();
    // A private copy: a build running meanwhile cannot swap the binary between rounds.
    let bin = BinCopy::of(&update_bin()?)?;
    let bin = bin.path.as_path();
    let mut sizes = vec![args.small_masters, args.masters, args.es_masters];
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        fixture::ensure(&env, &fixture::schema(n), n).await?;
    }
    let es_name = es_name(&env.es_url).await?;
    warn_if_crowded(&env.es_url).await;
    let load_before = load_average();

    // (a) The bulk sink, small then large, each beside the raw read.
    let sink = BulkSink::start().await?;
    let small = sink_runs(&env, bin, &sink, args.small_masters, args.rounds).await?;
    let large = sink_runs(&env, bin, &sink, args.masters, args.rounds).await?;
    sink.stop().await;
    // (b) The local stack's Elasticsearch API, beside the raw bulk rate.
    let es = es_runs(&env, bin, args.es_masters, args.rounds).await?;

    let load_after = load_average();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);

    let ratio = |a: f64, b: f64, goal: &str| format!("{:.2}{goal}", a / b);
    let rate = |n: u64, s: f64| n as f64 / s;
    let mut rows = Vec::new();
    for (r, goal) in [(&large, " (goal ≥ 0.80)"), (&small, "")] {
        let ours = rate(r.masters, r.best.secs);
        let raw = rate(r.masters, r.raw_secs);
        rows.push(Row {
            figure: format!("rebuild → bulk sink, {} masters: docs/s", r.masters),
            measured: format!("{ours:.0}"),
            baseline: format!("{raw:.0} masters/s (raw MySQL read)"),
            ratio: ratio(ours, raw, goal),
        });
        let load = rate(r.masters, r.best.phases.load);
        rows.push(Row {
            figure: format!("… load phase only ({} masters)", r.masters),
            measured: format!("{load:.0}"),
            baseline: format!("{raw:.0} masters/s (raw MySQL read)"),
            ratio: ratio(load, raw, ""),
        });
    }
    rows.push(Row {
        figure: format!("CPU time of `update` (sink, {} masters), s", large.masters),
        measured: format!("{:.1}", large.best.cpu_secs),
        baseline: format!("{:.1} (raw-read client)", large.raw_cpu_secs),
        ratio: ratio(large.best.cpu_secs, large.raw_cpu_secs, ""),
    });
    let ours = rate(es.masters, es.best.secs);
    rows.push(Row {
        figure: format!(
            "rebuild → {es_name} (local ES API), {} masters: docs/s",
            es.masters
        ),
        measured: format!("{ours:.0}"),
        baseline: format!("{:.0} docs/s (raw bulk)", es.raw_rate),
        ratio: ratio(ours, es.raw_rate, " (goal ≥ 0.80)"),
    });
    let load = rate(es.masters, es.best.phases.load);
    rows.push(Row {
        figure: format!("… load phase only ({} masters)", es.masters),
        measured: format!("{load:.0}"),
        baseline: format!("{:.0} docs/s (raw bulk)", es.raw_rate),
        ratio: ratio(load, es.raw_rate, ""),
    });
    rows.push(Row {
        figure: "peak RSS of `update` → bulk sink, MiB".into(),
        measured: format!("{:.1} at {} masters", large.peak_rss, large.masters),
        baseline: format!("{:.1} at {} masters", small.peak_rss, small.masters),
        ratio: ratio(large.peak_rss, small.peak_rss, " (flat = 1.00)"),
    });
    rows.push(Row {
        figure: format!("peak RSS of `update` → {es_name}, MiB"),
        measured: format!("{:.1} at {} masters", es.peak_rss, es.masters),
        baseline: "—".into(),
        ratio: "—".into(),
    });
    let p = &large.best.phases;
    report::write(
        "update",
        &format!(
            "The `update` binary (release build, a child process) rebuilds the shop fixture: \
             orders (masters), 3 nested items each, one customer lookup; pages of {page}, \
             `[elasticsearch.bulk]` defaults ({docs} docs per request, {conc} in flight). \
             docs/s = masters / wall time of the process from start to exit (connecting, \
             creating the index, topics and consumer group, the load, refresh, alias swap; \
             nothing to catch up: no `sync` runs and no rows change). \"Load phase only\" is \
             the time between its `new generation` and `load complete` log lines. Best of \
             {rounds} rounds. (a) Into the bench's bulk sink (answers `_bulk`, stores \
             nothing), beside a plain mysql_async client running the same three statements \
             per page one after the other on one connection and collecting the rows. (b) \
             Into the local stack's Elasticsearch API ({es_name}), beside the same documents, \
             built beforehand, posted as `_bulk` bodies of {docs} with {conc} in flight into a \
             scratch index with the same settings. Peak RSS is the child's VmHWM, polled \
             every 100 ms; the largest over the rounds. Large sink run: {setup:.1} s before \
             the load, {load:.1} s load, {finish:.1} s after it. Everything (MariaDB, the \
             Elasticsearch API emulator, Kafka, `update`, the bench) shares {cpus} CPUs; \
             1-minute load average {load_before} before the run, {load_after} after.",
            page = es.page_size,
            docs = es.docs_per_request,
            conc = es.concurrency,
            rounds = args.rounds,
            setup = p.setup,
            load = p.load,
            finish = p.finish,
        ),
        &rows,
    )
}
