//! `sync` latency and catch-up: the real `listen`, `update` and `sync` binaries (release
//! builds, child processes) on the shop fixture (orders with 3 nested items each and a
//! customer lookup), under names of their own (Redis prefix, topic pattern, task,
//! alias), deleted afterwards.
//!
//! - (a) Steady rate: a writer commits `UPDATE orders SET status = 's<seq>' WHERE id =
//!   <rotating id>` (one autocommitted row per change, paced by a ticker) and the
//!   latency from the commit (the statement's return) to the document being visible is
//!   measured: in the bulk sink, the first receipt of the document's id after the
//!   commit (every write is the whole document rebuilt from MySQL); in the local
//!   stack's Elasticsearch API, a sample of the changes polled with a realtime
//!   `_mget` until `_source.status` is that change's or a later one, and a smaller
//!   sample polled with `_search` (visible only after a refresh). Then
//!   higher rates, shorter, on the Elasticsearch API, until p99 reaches 1 s.
//! - (b) Catch-up: with `sync` stopped, a backlog of row changes (10k-row UPDATEs) is
//!   published by `listen`; `sync` is started into the sink and timed until its group's
//!   lag is 0. Baseline: a plain consumer reading the same topic from its start with a
//!   fresh group and bulk-writing, per message, the pre-built document of that order
//!   (the same documents `sync` writes) to the sink, with the same documents per
//!   request and requests in flight.

mod catch_up;
mod stack;
mod steady;
mod tap;
mod visible;

use crate::common::{es_name, http_client, load_average, warn_if_crowded};
use crate::fixture;
use crate::report::{self, Row};
use anyhow::ensure;
use catch_up::catch_up;
use mee_bench::sink::BulkSink;
use mee_test_support::StackEnv;
use stack::{Bins, Stack, admin_pool};
use std::sync::Arc;
use std::time::Duration;
use steady::{Receipts, Steady, Target, least_masters, ms, pct, steady};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Orders of the fixture of the steady runs (at least twice --rate, and each probe
    /// rate); each order is updated once every masters/rate seconds. The emulator scans
    /// the whole index for each `_search` (about 0.1 s of its CPU at 10,000 orders), so
    /// a larger index makes the bench's own search polling take CPU from what it
    /// measures.
    #[arg(long, default_value_t = 2_500)]
    masters: u64,
    /// Row changes per second of the steady runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of the steady runs.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Higher rates tried on the Elasticsearch API, in order, until p99 reaches 1 s.
    #[arg(long, value_delimiter = ',', default_value = "1500,2500")]
    probe_rates: Vec<u64>,
    /// Lower rates tried, in order, when the steady rate misses p99 < 1 s there.
    #[arg(long, value_delimiter = ',', default_value = "500,250,100")]
    lower_rates: Vec<u64>,
    /// Seconds of each probe.
    #[arg(long, default_value_t = 20)]
    probe_secs: u64,
    /// The index's `refresh_interval` in the runs on the Elasticsearch API (what a
    /// handler's `settings` would set): a change becomes searchable at the next refresh,
    /// so Elasticsearch's default (1s) alone can take all of the 1 s target.
    #[arg(long, default_value = "500ms")]
    refresh_interval: String,
    /// Row changes in the catch-up backlog.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Orders of the catch-up fixture (the backlog updates each of them backlog/N times).
    #[arg(long, default_value_t = 100_000)]
    backlog_masters: u64,
    /// Skip (a) or (b).
    #[arg(long)]
    only: Option<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Steady,
    Catchup,
}

/// Latency target of (a), ms.
pub(super) const TARGET_MS: f64 = 1000.0;
/// How long a change may take to become visible before it counts as lost.
pub(super) const GIVE_UP: Duration = Duration::from_secs(15);

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rate > 0 && args.secs > 0,
        "--rate and --secs must be positive"
    );
    let env = StackEnv::load();
    let bins = Bins::find()?;
    let es_name = es_name(&env.es_url).await?;
    warn_if_crowded(&env.es_url).await;
    let load_before = load_average();
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    if args.only != Some(Part::Catchup) {
        // Checked before any run, not when a probe comes to it.
        let es_rates = args.probe_rates.iter().chain(&args.lower_rates);
        let least = es_rates
            .map(|r| least_masters(*r, false))
            .fold(least_masters(args.rate, true), u64::max);
        ensure!(
            args.masters >= least,
            "--masters {} is too few for the rates asked: pass {least} or more",
            args.masters
        );
        fixture::ensure(&env, &fixture::schema(args.masters), args.masters).await?;
        let pool = admin_pool(&env);
        // (a) into the sink.
        let sink = BulkSink::start().await?;
        let receipts: Receipts = Arc::default();
        {
            let r = receipts.clone();
            sink.on_document(move |_, id, at| {
                if let Ok(id) = id.parse::<u64>() {
                    r.lock().unwrap().entry(id).or_default().push(at);
                }
            });
        }
        let mut stack = Stack::start(&env, &bins, args.masters, &sink.url()).await?;
        let outcome = async {
            stack.start_sync().await?;
            let target = Target::Sink(receipts.clone());
            steady(
                &stack,
                &pool,
                args.masters,
                args.rate,
                args.secs,
                0,
                &target,
            )
            .await
        }
        .await;
        stack.stop(&env).await;
        sink.stop().await;
        let s = outcome?;
        rows.extend(s.rows("bulk sink (received)", &s.lat));
        notes.push(s.note("bulk sink"));

        // (a) into the local Elasticsearch API, then higher rates.
        let mut stack = Stack::start(&env, &bins, args.masters, &env.es_url).await?;
        let outcome = async {
            stack.start_sync().await?;
            let http = http_client()?;
            let url = format!("{}/{}/_settings", env.es_url, stack.alias);
            let body = serde_json::json!({"index": {"refresh_interval": args.refresh_interval}});
            let resp = http
                .put(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            ensure!(
                resp.status().is_success(),
                "setting refresh_interval {}: {}",
                args.refresh_interval,
                resp.text().await.unwrap_or_default()
            );
            let target = Target::Es {
                http,
                base: env.es_url.clone(),
                alias: stack.alias.clone(),
            };
            let mut runs = vec![
                steady(
                    &stack,
                    &pool,
                    args.masters,
                    args.rate,
                    args.secs,
                    0,
                    &target,
                )
                .await?,
            ];
            let mut seq = args.rate * args.secs;
            // Up from the steady rate while p99 holds, or down until it holds.
            let up = runs[0].p99(&runs[0].lat) < TARGET_MS;
            let rates = if up {
                &args.probe_rates
            } else {
                &args.lower_rates
            };
            for &rate in rates {
                // Let `sync` finish the previous run's changes first.
                if let Err(e) = stack.wait_drained(Duration::from_secs(300)).await {
                    eprintln!("not trying {rate}/s: {e:#}");
                    break;
                }
                let r = steady(
                    &stack,
                    &pool,
                    args.masters,
                    rate,
                    args.probe_secs,
                    seq,
                    &target,
                )
                .await?;
                seq += rate * args.probe_secs;
                let held = r.p99(&r.lat) < TARGET_MS;
                runs.push(r);
                if held != up {
                    break;
                }
            }
            anyhow::Ok(runs)
        }
        .await;
        stack.stop(&env).await;
        let runs = outcome?;
        let first = &runs[0];
        rows.extend(first.rows(&format!("{es_name} (realtime GET)"), &first.lat));
        rows.extend(first.rows(&format!("{es_name} (search, after refresh)"), &first.search));
        notes.push(first.note(&es_name));
        let held: Vec<&Steady> = runs.iter().filter(|r| r.p99(&r.lat) < TARGET_MS).collect();
        let tried: Vec<String> = runs
            .iter()
            .map(|r| {
                format!(
                    "{}/s for {:.0} s (writes): achieved {:.0}/s, p50 {} p99 {} max {} (CPU {})",
                    r.rate,
                    r.commit_span,
                    r.achieved(),
                    ms(pct(&r.lat, 0.50)),
                    ms(pct(&r.lat, 0.99)),
                    ms(pct(&r.lat, 1.0)),
                    r.cpu_text()
                )
            })
            .collect();
        rows.push(Row {
            figure: format!("highest steady rate into {es_name} with p99 (realtime GET) < 1 s"),
            measured: held.iter().map(|r| r.rate).max().map_or_else(
                || {
                    format!(
                        "none of {}",
                        runs.iter()
                            .map(|r| format!("{}/s", r.rate))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                |r| {
                    let missed = runs
                        .iter()
                        .filter(|x| x.p99(&x.lat) >= TARGET_MS && x.rate > r)
                        .map(|x| x.rate)
                        .min();
                    match missed {
                        Some(m) => format!("{r}/s ({m}/s did not hold)"),
                        None => format!("≥ {r}/s (highest tried)"),
                    }
                },
            ),
            baseline: "p99 < 1 s".into(),
            ratio: "—".into(),
        });
        notes.push(format!("Rates tried on {es_name}: {}.", tried.join("; ")));
        pool.disconnect().await.ok();
    }

    if args.only != Some(Part::Steady) {
        fixture::ensure(
            &env,
            &fixture::schema(args.backlog_masters),
            args.backlog_masters,
        )
        .await?;
        let c = catch_up(&env, &bins, args.backlog_masters, args.backlog).await?;
        let ours = c.events as f64 / c.secs;
        let base = c.base_events as f64 / c.base_secs;
        rows.push(Row {
            figure: format!("catch-up of {} events → bulk sink: events/s", c.events),
            measured: format!("{ours:.0}"),
            baseline: format!("{base:.0} (consume + bulk pre-built docs)"),
            ratio: format!("{:.2} (goal ≥ 0.50)", ours / base),
        });
        rows.push(Row {
            figure: "… `sync` time in `_bulk` requests (mee_sync_bulk_seconds), s".into(),
            measured: format!("{:.1} of {:.1}", c.bulk_secs, c.secs),
            baseline: format!("{:.1} (baseline run)", c.base_secs),
            ratio: "—".into(),
        });
        rows.push(Row {
            figure: "… CPU of `sync` and mariadbd during the catch-up, s".into(),
            measured: format!("{:.1} + {:.1}", c.sync_cpu, c.mysql_cpu),
            baseline: format!("{:.1} (baseline run, wall)", c.base_secs),
            ratio: "—".into(),
        });
        rows.push(Row {
            figure: "… `sync` peak RSS (VmHWM), MiB".into(),
            measured: format!("{:.1}", c.sync_rss_mib),
            baseline: "—".into(),
            ratio: "—".into(),
        });
        notes.push(format!(
            "Catch-up: {events} events ({rounds} rounds of UPDATEs of 10,000 orders each over \
             the {masters}-order fixture) published by `listen` in {publish:.1} s, then \
             `sync` started into the sink and timed from spawning it to its group's lag being \
             0 ({docs} documents received; {covered} changes not rebuilt because a write from an \
             earlier batch, read after a consistent snapshot, already included them); {batches} batches of {per:.0} events on average, \
             {bulks} `_bulk` requests taking {bulk:.1} s in total. Baseline: a plain rdkafka \
             consumer (fresh group, from the topic's start) reading the same {base_events} \
             messages and posting the pre-built document of each message's order, {docs_per} \
             per `_bulk` request, {conc} in flight, timed from creating the consumer to the \
             last response.",
            events = c.events,
            rounds = c.rounds,
            masters = args.backlog_masters,
            publish = c.publish_secs,
            docs = c.docs,
            covered = c.covered,
            batches = c.batches,
            per = c.batch_events_avg,
            bulks = c.bulks,
            bulk = c.bulk_secs,
            base_events = c.base_events,
            docs_per = c.docs_per_request,
            conc = c.concurrency,
        ));
    }

    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    report::write(
        "sync",
        &format!(
            "`listen`, `update` and `sync` (release builds, child processes, default \
             `[sync]` settings) on the shop fixture (orders, 3 nested items each, one \
             customer lookup). Latency = from a row change's commit (the autocommitted \
             UPDATE's return, one row per change, paced by a ticker) to visible: in the \
             bulk sink, its first receipt of that order's document after the commit; in \
             {es_name}, a realtime `GET` (50 changes a second, polled by `_mget` every 25 ms) \
             or a `_search` by id (5 a second, visible after a refresh, `refresh_interval` \
             {refresh}; polled every 100 ms once retrievable) until the document carries that \
             change or a later one. A change not visible \
             within {give_up} s counts as lost (infinite). Latencies have no baseline: the \
             baseline column is the 1 s target. {notes} Everything (MariaDB, the \
             Kafka and Elasticsearch API emulator, the services, the bench) shares {cpus} \
             CPUs; 1-minute load average {load_before} before, {load_after} after.",
            give_up = GIVE_UP.as_secs(),
            refresh = args.refresh_interval,
            notes = notes.join(" "),
            load_after = load_average(),
        ),
        &rows,
    )
}
