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
//!   `GET /<alias>/_doc/<id>` until `_source.status` is that change's or a later one,
//!   and a smaller sample polled with `_search` (visible only after a refresh). Then
//!   higher rates, shorter, on the Elasticsearch API, until p99 reaches 1 s.
//! - (b) Catch-up: with `sync` stopped, a backlog of row changes (10k-row UPDATEs) is
//!   published by `listen`; `sync` is started into the sink and timed until its group's
//!   lag is 0. Baseline: a plain consumer reading the same topic from its start with a
//!   fresh group and bulk-writing, per message, the pre-built document of that order
//!   (the same documents `sync` writes) to the sink, with the same documents per
//!   request and requests in flight.

use crate::fixture;
use crate::materializer;
use crate::report::{self, Row};
use crate::update::{cleanup, config_toml, es_call, es_name, http_client, redis_del, unique};
use anyhow::{Context, bail, ensure};
use mee_bench::sink::BulkSink;
use mee_core::AppConfig;
use mee_core::handler::Handler;
use mee_kafka::rdkafka::Message as _;
use mee_kafka::rdkafka::consumer::Consumer;
use mee_kafka::rdkafka::{Offset, TopicPartitionList};
use mee_mysql::MySqlSource;
use mee_mysql::mysql_async::{self, prelude::Queryable};
use mee_test_support::{ServiceProcess, StackEnv};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One change: order id, send instant, commit instant, realtime-GET and search latency (s).
type ChangeTiming = (u64, Instant, Instant, Option<f64>, Option<f64>);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Orders of the fixture of the steady runs; each order is updated once every
    /// masters/rate seconds.
    #[arg(long, default_value_t = 10_000)]
    masters: u64,
    /// Row changes per second of the steady runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of the steady runs.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Higher rates tried on the Elasticsearch API, in order, until p99 reaches 1 s.
    #[arg(long, value_delimiter = ',', default_value = "2000,4000")]
    probe_rates: Vec<u64>,
    /// Lower rates tried, in order, when the steady rate misses p99 < 1 s there.
    #[arg(long, value_delimiter = ',', default_value = "500,250,100")]
    lower_rates: Vec<u64>,
    /// Seconds of each probe.
    #[arg(long, default_value_t = 20)]
    probe_secs: u64,
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
const TARGET_MS: f64 = 1000.0;
/// How long a change may take to become visible before it counts as lost.
const GIVE_UP: Duration = Duration::from_secs(15);

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rate > 0 && args.secs > 0,
        "--rate and --secs must be positive"
    );
    let env = StackEnv::load();
    let bins = Bins::find()?;
    let es_name = es_name(&env.es_url).await?;
    let load_before = load_average();
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    if args.only != Some(Part::Catchup) {
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
            let target = Target::Es {
                http: http_client()?,
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
                    "{}/s for {:.0} s (writes): achieved {:.0}/s, p50 {} p99 {} max {}",
                    r.rate,
                    r.commit_span,
                    r.achieved(),
                    ms(pct(&r.lat, 0.50)),
                    ms(pct(&r.lat, 0.99)),
                    ms(pct(&r.lat, 1.0))
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
        notes.push(format!(
            "Catch-up: {events} events ({rounds} rounds of UPDATEs of 10,000 orders each over \
             the {masters}-order fixture) published by `listen` in {publish:.1} s, then \
             `sync` started into the sink and timed from spawning it to its group's lag being \
             0 ({docs} documents received); {batches} batches of {per:.0} events on average, \
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
             {es_name}, a realtime `GET` (every ~50th change) or a `_search` by id (every \
             ~500th, visible after a refresh, `refresh_interval` 1 s) polled every 20 ms \
             until the document carries that change or a later one. A change not visible \
             within {give_up} s counts as lost (infinite). Latencies have no baseline: the \
             baseline column is the 1 s target. {notes} Everything (MariaDB, the \
             Kafka and Elasticsearch API emulator, the services, the bench) shares {cpus} \
             CPUs; 1-minute load average {load_before} before, {load_after} after.",
            give_up = GIVE_UP.as_secs(),
            notes = notes.join(" "),
            load_after = load_average(),
        ),
        &rows,
    )
}

/// Receive instants per order id, from the sink's hook.
type Receipts = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

enum Target {
    Sink(Receipts),
    Es {
        http: reqwest::Client,
        base: String,
        alias: String,
    },
}

/// The service binaries built beside this one.
struct Bins {
    listen: PathBuf,
    update: PathBuf,
    sync: PathBuf,
}

impl Bins {
    fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin = |name: &str| {
            let p = exe.with_file_name(name);
            ensure!(
                p.exists(),
                "{} is missing: `cargo build --release -p mee-listen -p mee-update -p mee-sync` \
                 (scripts/bench sync does)",
                p.display()
            );
            Ok(p)
        };
        Ok(Self {
            listen: bin("listen")?,
            update: bin("update")?,
            sync: bin("sync")?,
        })
    }
}

/// A pool of admin connections (the services' user may only read).
fn admin_pool(env: &StackEnv) -> mysql_async::Pool {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.mysql_host.clone())
        .tcp_port(env.mysql_port)
        .user(Some(env.mysql_admin_user.clone()))
        .pass(Some(env.mysql_admin_password.clone()))
        .prefer_socket(false)
        .pool_opts(mysql_async::PoolOpts::default().with_constraints(
            mysql_async::PoolConstraints::new(4, 64).expect("valid constraints"),
        ));
    mysql_async::Pool::new(opts)
}

/// `listen` running, a first generation built by `update` (live), `sync` once started.
struct Stack {
    name: String,
    schema: String,
    task: String,
    alias: String,
    toml: String,
    cfg: AppConfig,
    es_url: String,
    bins_sync: PathBuf,
    listen: Option<ServiceProcess>,
    sync: Option<ServiceProcess>,
    generation: Option<String>,
    files: Vec<PathBuf>,
}

impl Stack {
    async fn start(
        env: &StackEnv,
        bins: &Bins,
        masters: u64,
        es_url: &str,
    ) -> anyhow::Result<Stack> {
        let name = unique("mee_bench_sync");
        let schema = fixture::schema(masters);
        let toml = config_toml(env, &schema, &name, es_url)?;
        let cfg = AppConfig::from_toml_str(&toml, Default::default())?;
        let dir = std::env::temp_dir();
        let (config, handler) = (
            dir.join(format!("{name}.toml")),
            dir.join(format!("{name}.yml")),
        );
        let alias = format!("{name}_orders");
        std::fs::write(&config, &toml)?;
        std::fs::write(&handler, fixture::handler_with_alias(&alias))?;
        let mut stack = Stack {
            task: format!("{name}_task"),
            alias,
            name,
            schema,
            toml,
            cfg,
            es_url: es_url.to_owned(),
            bins_sync: bins.sync.clone(),
            listen: None,
            sync: None,
            generation: None,
            files: vec![config.clone(), handler.clone()],
        };
        let started = async {
            let mut listen = ServiceProcess::spawn(
                &bins.listen.to_string_lossy(),
                &["-d", "bench", "--from", "now"],
                &stack.toml,
                &[],
            );
            tokio::task::block_in_place(|| listen.wait_healthy(Duration::from_secs(60)));
            stack.listen = Some(listen);
            let t = Instant::now();
            let (update, task) = (bins.update.clone(), stack.task.clone());
            let out = tokio::task::spawn_blocking(move || {
                Command::new(update)
                    .arg("-c")
                    .arg(&handler)
                    .arg("-n")
                    .arg(&task)
                    .arg("--config")
                    .arg(&config)
                    .env_remove("RUST_LOG")
                    .output()
            })
            .await??;
            let stdout = String::from_utf8_lossy(&out.stdout);
            stack.generation = stdout
                .split_once("generation ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned);
            if !out.status.success() {
                bail!(
                    "update exited with {}: {stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ensure!(
                stack.generation.is_some(),
                "no generation in update's output: {stdout}"
            );
            eprintln!(
                "{}: listen up, update built generation {} into {es_url} in {:.1} s",
                stack.name,
                stack.generation.as_deref().unwrap_or("?"),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        .await;
        match started {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.stop(env).await;
                Err(e)
            }
        }
    }

    fn topics(&self) -> Vec<String> {
        vec![self.cfg.kafka.topic_for("bench")]
    }

    fn group(&self) -> String {
        format!("{}.{}", self.task, self.generation.as_deref().unwrap_or(""))
    }

    async fn start_sync(&mut self) -> anyhow::Result<()> {
        let mut sync = ServiceProcess::spawn(
            &self.bins_sync.to_string_lossy(),
            &["-n", &self.task],
            &self.toml,
            &[],
        );
        tokio::task::block_in_place(|| sync.wait_healthy(Duration::from_secs(60)));
        self.sync = Some(sync);
        Ok(())
    }

    async fn lag(&self) -> anyhow::Result<u64> {
        Ok(mee_kafka::group_lag(
            &self.cfg.kafka,
            &self.group(),
            &self.topics(),
            Duration::from_secs(10),
        )
        .await?
        .total)
    }

    /// Wait until `sync` has committed everything published so far.
    async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.lag().await? == 0 {
                return Ok(());
            }
            ensure!(
                start.elapsed() < timeout,
                "sync still behind after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stop the services and delete what the run created.
    async fn stop(mut self, env: &StackEnv) {
        for (what, p) in [("sync", self.sync.take()), ("listen", self.listen.take())] {
            if let Some(mut p) = p {
                let log = p.stderr();
                let errors = log
                    .lines()
                    .filter(|l| l.contains("\"ERROR\"") || l.contains("\"level\":\"error\""))
                    .count();
                if errors > 0 {
                    let keep = std::env::temp_dir().join(format!("{}_{what}.log", self.name));
                    let _ = std::fs::write(&keep, &log);
                    eprintln!(
                        "warning: {what} logged {errors} errors; log kept in {}",
                        keep.display()
                    );
                }
                if p.try_exit().is_none() {
                    tokio::task::block_in_place(|| p.terminate(Duration::from_secs(30)));
                }
                drop(p);
            }
        }
        let Ok(http) = http_client() else { return };
        cleanup(
            env,
            &self.cfg,
            &http,
            &self.es_url,
            &self.alias,
            &self.task,
            self.generation.as_deref(),
        )
        .await;
        let key = format!("{}:listen:bench:position", self.cfg.redis.key_prefix);
        if let Err(e) = redis_del(&env.redis_url, &[key]) {
            eprintln!("warning: could not delete listen's position key: {e:#}");
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// One steady run.
struct Steady {
    rate: u64,
    /// Changes committed.
    changes: u64,
    /// First to last commit.
    commit_span: f64,
    /// Latencies (ms, sorted; lost ones infinite) of the measured changes.
    lat: Vec<f64>,
    /// Search-visible latencies (Elasticsearch API only).
    search: Vec<f64>,
    /// Commit → readable from the change topic (every change).
    kafka: Vec<f64>,
}

impl Steady {
    fn achieved(&self) -> f64 {
        self.changes as f64 / self.commit_span.max(1e-9)
    }

    fn p99(&self, v: &[f64]) -> f64 {
        pct(v, 0.99)
    }

    fn rows(&self, target: &str, v: &[f64]) -> Vec<Row> {
        let lost = v.iter().filter(|x| x.is_infinite()).count();
        let lost = if lost > 0 {
            format!(", {lost} lost")
        } else {
            String::new()
        };
        ["p50", "p99", "max"]
            .into_iter()
            .zip([0.50, 0.99, 1.0])
            .map(|(name, q)| {
                let x = pct(v, q);
                Row {
                    figure: format!(
                        "commit → visible, {} changes/s, {target}: {name} ({} samples{lost})",
                        self.rate,
                        v.len()
                    ),
                    measured: ms(x),
                    baseline: "1 s (target)".into(),
                    ratio: if name == "p99" {
                        format!(
                            "{:.2}{}",
                            x / TARGET_MS,
                            if x < TARGET_MS { " (met)" } else { " (missed)" }
                        )
                    } else {
                        format!("{:.2}", x / TARGET_MS)
                    },
                }
            })
            .collect()
    }

    fn note(&self, target: &str) -> String {
        format!(
            "Into {target}: {} changes in {:.1} s (achieved {:.0}/s); of the latency, \
             commit → readable from the change topic (a tap consumer, every change): \
             p50 {}, p99 {}, max {}.",
            self.changes,
            self.commit_span,
            self.achieved(),
            ms(pct(&self.kafka, 0.5)),
            ms(pct(&self.kafka, 0.99)),
            ms(pct(&self.kafka, 1.0)),
        )
    }
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(x: f64) -> String {
    if x.is_infinite() {
        format!("> {} s (lost)", GIVE_UP.as_secs())
    } else if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else {
        format!("{x:.0} ms")
    }
}

/// `rate` changes/s for `secs`, sequence numbers from `seq0`; latencies per `target`.
async fn steady(
    stack: &Stack,
    pool: &mysql_async::Pool,
    masters: u64,
    rate: u64,
    secs: u64,
    seq0: u64,
    target: &Target,
) -> anyhow::Result<Steady> {
    let total = rate * secs;
    ensure!(
        masters >= rate * 2,
        "{masters} orders at {rate}/s: an order would change more than once per 2 s"
    );
    let sql = format!(
        "UPDATE `{}`.orders SET status = ? WHERE id = ?",
        stack.schema
    );
    // ~50 realtime-GET samples/s, a tenth of them also searched.
    let every = (rate / 50).max(1);
    let in_flight = Arc::new(Semaphore::new(64));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut commits: Vec<(u64, Instant, Instant)> = Vec::with_capacity(total as usize);
    let mut lat = Vec::new();
    let mut search = Vec::new();
    let mut collect = |done: anyhow::Result<ChangeTiming>,
                       commits: &mut Vec<(u64, Instant, Instant)>|
     -> anyhow::Result<()> {
        let (id, sent, at, get, srch) = done?;
        commits.push((id, sent, at));
        lat.extend(get);
        search.extend(srch);
        Ok(())
    };
    // A tap on the change topic, from its current end: when each change is readable.
    let tap_receipts: Receipts = Arc::default();
    let tap_group = format!("{}_tap_{seq0}", stack.name);
    let tap = {
        let consumer = mee_kafka::consumer(&stack.cfg.kafka, &tap_group)?;
        let mut tpl = TopicPartitionList::new();
        for p in mee_kafka::end_offsets(&stack.cfg.kafka, &stack.topics(), Duration::from_secs(10))
            .await?
        {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.offset))?;
        }
        consumer.assign(&tpl)?;
        let r = tap_receipts.clone();
        tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => {
                        let at = Instant::now();
                        if let Some(id) = key_id(m.key()) {
                            r.lock().unwrap().entry(id as u64).or_default().push(at);
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };
    eprintln!("{}: {rate} changes/s for {secs} s", stack.name);
    // Sampled changes, polled in bulk (one `_mget` per 25 ms, one `_search` per 100 ms).
    let poller = match target {
        Target::Es { http, base, alias } => {
            let pending: Arc<Mutex<Vec<Sample>>> = Arc::default();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let task = tokio::spawn(poll_visible(
                http.clone(),
                base.clone(),
                alias.clone(),
                pending.clone(),
                done.clone(),
            ));
            Some((pending, done, task))
        }
        Target::Sink(_) => None,
    };
    for k in 0..total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let seq = seq0 + k;
        let id = seq % masters + 1;
        let (pool, sql) = (pool.clone(), sql.clone());
        let probe = (k % every == 0)
            .then(|| {
                poller
                    .as_ref()
                    .map(|p| (p.0.clone(), k % (every * 10) == 0))
            })
            .flatten();
        tasks.spawn(async move {
            let mut conn = pool.get_conn().await?;
            let sent = Instant::now();
            conn.exec_drop(sql, (format!("s{seq}"), id)).await?;
            let at = Instant::now();
            drop(conn);
            drop(permit);
            let (get, srch): (Option<f64>, Option<f64>) = (None, None);
            if let Some((pending, search)) = probe {
                pending.lock().unwrap().push(Sample {
                    id,
                    seq,
                    at,
                    search,
                });
            }
            anyhow::Ok((id, sent, at, get, srch))
        });
        while let Some(done) = tasks.try_join_next() {
            collect(done?, &mut commits)?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(done?, &mut commits)?;
    }
    if let Some((_, done, task)) = poller {
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (g, sr) = task.await?;
        lat = g;
        search = sr;
    }
    let first = commits.iter().map(|c| c.2).min().context("no commits")?;
    let last = commits.iter().map(|c| c.2).max().context("no commits")?;
    if let Target::Sink(receipts) = target {
        // Everything published is applied: the last receipts are in.
        stack.wait_drained(GIVE_UP).await.ok();
        tokio::time::sleep(Duration::from_millis(500)).await;
        lat = first_after(&commits, &receipts.lock().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tap.abort();
    let _ = tap.await;
    let _ = mee_kafka::delete_group(&stack.cfg.kafka, &tap_group, Duration::from_secs(10)).await;
    let mut kafka = first_after(&commits, &tap_receipts.lock().unwrap());
    kafka.sort_by(f64::total_cmp);
    lat.sort_by(f64::total_cmp);
    search.sort_by(f64::total_cmp);
    let s = Steady {
        rate,
        changes: commits.len() as u64,
        commit_span: (last - first).as_secs_f64(),
        lat,
        search,
        kafka,
    };
    eprintln!(
        "{}: {} changes, achieved {:.0}/s; p50 {} p99 {} max {} ({} samples); search p50 {} p99 {}; commit → topic p50 {} p99 {}",
        stack.name,
        s.changes,
        s.achieved(),
        ms(pct(&s.lat, 0.5)),
        ms(pct(&s.lat, 0.99)),
        ms(pct(&s.lat, 1.0)),
        s.lat.len(),
        ms(pct(&s.search, 0.5)),
        ms(pct(&s.search, 0.99)),
        ms(pct(&s.kafka, 0.5)),
        ms(pct(&s.kafka, 0.99)),
    );
    Ok(s)
}

/// Per change `(id, sent, committed)`, ms from its commit (the UPDATE's return) to the
/// first receipt of `id` after the UPDATE was sent, 0 when that came before the return
/// was seen (infinite when none).
fn first_after(
    commits: &[(u64, Instant, Instant)],
    receipts: &HashMap<u64, Vec<Instant>>,
) -> Vec<f64> {
    commits
        .iter()
        .map(|(id, sent, at)| {
            receipts
                .get(id)
                .and_then(|ts| ts.iter().filter(|t| **t >= *sent).min())
                .map_or(f64::INFINITY, |t| {
                    t.saturating_duration_since(*at).as_secs_f64() * 1000.0
                })
        })
        .collect()
}

/// The order id of a change message's key (`bench.orders:<id>`).
fn key_id(key: Option<&[u8]>) -> Option<usize> {
    let key = std::str::from_utf8(key?).ok()?;
    key.rsplit(':')
        .next()?
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// A sampled change: order `id` must carry status `s<seq>` or a later one.
struct Sample {
    id: u64,
    seq: u64,
    at: Instant,
    search: bool,
}

/// Poll the pending samples until each is visible (ms from its commit to the answer
/// that showed it) or [`GIVE_UP`] passed (infinite): all realtime-GET samples with one
/// `_mget` every 25 ms, the search samples with one `_search` by ids every 100 ms.
/// Returns once `done` is set and nothing is pending: (GET, search) latencies.
async fn poll_visible(
    http: reqwest::Client,
    base: String,
    alias: String,
    pending: Arc<Mutex<Vec<Sample>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut got, mut searched) = (Vec::new(), Vec::new());
    // Samples waiting for the GET, then (search samples) for the search.
    let (mut get_q, mut search_q): (Vec<Sample>, Vec<Sample>) = (Vec::new(), Vec::new());
    let seq_of = |v: &Value| {
        v.as_str()
            .and_then(|s| s.strip_prefix('s'))
            .and_then(|n| n.parse::<u64>().ok())
    };
    for round in 0u64.. {
        get_q.append(&mut pending.lock().unwrap());
        if done.load(std::sync::atomic::Ordering::Relaxed)
            && get_q.is_empty()
            && search_q.is_empty()
        {
            break;
        }
        if !get_q.is_empty() {
            let ids: Vec<String> = get_q.iter().map(|s| s.id.to_string()).collect();
            let body = json!({"ids": ids});
            let answer = es_call(
                &http,
                &base,
                "POST",
                &format!("/{alias}/_mget"),
                Some(&body),
            )
            .await
            .ok();
            let now = Instant::now();
            let seen: HashMap<String, u64> = answer
                .map(|(_, v)| v["docs"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default()
                .iter()
                .filter_map(|d| {
                    Some((
                        d["_id"].as_str()?.to_owned(),
                        seq_of(&d["_source"]["status"])?,
                    ))
                })
                .collect();
            let mut keep = Vec::new();
            for s in get_q.drain(..) {
                if seen.get(&s.id.to_string()).is_some_and(|n| *n >= s.seq) {
                    got.push((now - s.at).as_secs_f64() * 1000.0);
                    if s.search {
                        search_q.push(s);
                    }
                } else if now - s.at > GIVE_UP {
                    got.push(f64::INFINITY);
                    if s.search {
                        searched.push(f64::INFINITY);
                    }
                } else {
                    keep.push(s);
                }
            }
            get_q = keep;
        }
        if round % 4 == 0 && !search_q.is_empty() {
            let ids: Vec<String> = search_q.iter().map(|s| s.id.to_string()).collect();
            let body = json!({"size": ids.len(), "query": {"ids": {"values": ids}}});
            let answer = es_call(
                &http,
                &base,
                "POST",
                &format!("/{alias}/_search"),
                Some(&body),
            )
            .await
            .ok();
            let now = Instant::now();
            let seen: HashMap<String, u64> = answer
                .map(|(_, v)| v["hits"]["hits"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default()
                .iter()
                .filter_map(|d| {
                    Some((
                        d["_id"].as_str()?.to_owned(),
                        seq_of(&d["_source"]["status"])?,
                    ))
                })
                .collect();
            search_q.retain(|s| {
                if seen.get(&s.id.to_string()).is_some_and(|n| *n >= s.seq) {
                    searched.push((now - s.at).as_secs_f64() * 1000.0);
                    false
                } else if now - s.at > GIVE_UP {
                    searched.push(f64::INFINITY);
                    false
                } else {
                    true
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (got, searched)
}

/// What the catch-up run measured.
struct CatchUp {
    events: u64,
    rounds: u64,
    publish_secs: f64,
    secs: f64,
    docs: u64,
    batches: f64,
    batch_events_avg: f64,
    bulks: f64,
    bulk_secs: f64,
    base_events: u64,
    base_secs: f64,
    docs_per_request: usize,
    concurrency: usize,
}

async fn catch_up(
    env: &StackEnv,
    bins: &Bins,
    masters: u64,
    backlog: u64,
) -> anyhow::Result<CatchUp> {
    let sink = BulkSink::start().await?;
    let mut stack = Stack::start(env, bins, masters, &sink.url()).await?;
    let outcome = catch_up_in(env, &mut stack, &sink, masters, backlog).await;
    stack.stop(env).await;
    sink.stop().await;
    outcome
}

async fn catch_up_in(
    env: &StackEnv,
    stack: &mut Stack,
    sink: &BulkSink,
    masters: u64,
    backlog: u64,
) -> anyhow::Result<CatchUp> {
    const CHUNK: u64 = 10_000;
    let topics = stack.topics();
    let kafka = stack.cfg.kafka.clone();
    let end = || async {
        anyhow::Ok(
            mee_kafka::end_offsets(&kafka, &topics, Duration::from_secs(10))
                .await?
                .iter()
                .map(|p| p.offset)
                .sum::<i64>(),
        )
    };
    let before = end().await?;
    let rounds = backlog.div_ceil(masters);
    let events = rounds * masters;
    eprintln!(
        "{}: backlog of {events} row changes ({rounds} rounds over {masters} orders)",
        stack.name
    );
    let start = Instant::now();
    let mut conn = env.admin_conn().await;
    for round in 0..rounds {
        let mut a = 1;
        while a <= masters {
            conn.query_drop(format!(
                "UPDATE `{}`.orders SET status = 'b{round}' WHERE id BETWEEN {a} AND {}",
                stack.schema,
                (a + CHUNK - 1).min(masters)
            ))
            .await?;
            a += CHUNK;
        }
    }
    drop(conn);
    let written = start.elapsed().as_secs_f64();
    loop {
        let published = end().await? - before;
        if published as u64 >= events {
            ensure!(
                published as u64 == events,
                "listen published {published} events, expected {events}"
            );
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "listen published {published} of {events} events in 30 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: written in {written:.1} s, published in {publish_secs:.1} s",
        stack.name
    );

    // The baseline's documents: the same ones `sync` builds, by order id.
    let cfg = &stack.cfg.clone();
    let handler = Handler::parse("bench.yml", fixture::HANDLER)?;
    let source = MySqlSource::new(cfg, ["bench"])?;
    let mut docs: Vec<String> = Vec::with_capacity(masters as usize);
    materializer::each_page(&handler, &source, cfg.update.page_size, |page| {
        docs.extend(page.into_iter().map(|d| d.source));
        Ok(())
    })
    .await?;
    source.close().await;
    ensure!(
        docs.len() as u64 == masters,
        "built {} documents",
        docs.len()
    );

    // Ours.
    let received = sink.stats().docs_indexed;
    let mysql_cpu = || mariadb_pid().and_then(cpu_secs).unwrap_or(f64::NAN);
    let mysql_before = mysql_cpu();
    let start = Instant::now();
    stack.start_sync().await?;
    stack.wait_drained(Duration::from_secs(1800)).await?;
    let secs = start.elapsed().as_secs_f64();
    let sync_cpu = stack
        .sync
        .as_ref()
        .and_then(|p| cpu_secs(p.pid()))
        .unwrap_or(f64::NAN);
    let mysql_used = mysql_cpu() - mysql_before;
    eprintln!(
        "{}: CPU during the catch-up: sync {sync_cpu:.1} s, mariadbd {mysql_used:.1} s",
        stack.name
    );
    let docs_received = sink.stats().docs_indexed - received;
    let metrics = stack
        .sync
        .as_ref()
        .and_then(|s| s.get("/metrics"))
        .map(|(_, body)| body)
        .unwrap_or_default();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let batches = metric("mee_sync_batch_events_count");
    let batch_events_avg = metric("mee_sync_batch_events_sum") / batches;
    let bulks = metric("mee_sync_bulk_seconds_count");
    let bulk_secs = metric("mee_sync_bulk_seconds_sum");
    let stages: Vec<String> = ["parse", "trace", "build", "write", "wait"]
        .iter()
        .map(|stage| {
            let label = format!("stage=\"{stage}\"");
            let secs: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("mee_sync_stage_seconds_sum") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            format!("{stage} {secs:.1} s")
        })
        .collect();
    eprintln!(
        "{}: time per stage, summed over batches: {}",
        stack.name,
        stages.join(", ")
    );
    eprintln!(
        "{}: sync caught up {events} events in {secs:.1} s ({:.0}/s), {docs_received} docs; \
         {batches} batches, {bulks} bulks, {bulk_secs:.1} s in bulk",
        stack.name,
        events as f64 / secs
    );
    // Stop sync now: the baseline gets the machine to itself, as sync did.
    if let Some(mut p) = stack.sync.take()
        && p.try_exit().is_none()
    {
        tokio::task::block_in_place(|| p.terminate(Duration::from_secs(30)));
    }

    // The baseline.
    let index =
        mee_core::generation::index_name(&stack.alias, stack.generation.as_deref().unwrap_or(""));
    let bulk = cfg.elasticsearch.bulk.clone();
    let group = format!("{}_baseline", stack.name);
    let total = end().await? as u64;
    let result = baseline(
        cfg,
        &group,
        &topics[0],
        total,
        &docs,
        &sink.url(),
        &index,
        bulk.max_docs,
        bulk.concurrency,
    )
    .await;
    if let Err(e) = mee_kafka::delete_group(&cfg.kafka, &group, Duration::from_secs(30)).await {
        eprintln!("warning: could not delete consumer group {group}: {e}");
    }
    let base_secs = result?;
    eprintln!(
        "{}: baseline consumed and posted {total} in {base_secs:.1} s ({:.0}/s)",
        stack.name,
        total as f64 / base_secs
    );
    Ok(CatchUp {
        events,
        rounds,
        publish_secs,
        secs,
        docs: docs_received,
        batches,
        batch_events_avg,
        bulks,
        bulk_secs,
        base_events: total,
        base_secs,
        docs_per_request: bulk.max_docs,
        concurrency: bulk.concurrency,
    })
}

/// Consume `total` messages of `topic` from its start with a fresh group; per message,
/// the pre-built document of its order (key `bench.orders:<id>`) goes into a `_bulk`
/// body of `per_request`, `in_flight` requests at a time. Seconds from creating the
/// consumer to the last response.
#[allow(clippy::too_many_arguments)]
async fn baseline(
    cfg: &AppConfig,
    group: &str,
    topic: &str,
    total: u64,
    docs: &[String],
    url: &str,
    index: &str,
    per_request: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let endpoint = format!("{}/_bulk", url.trim_end_matches('/'));
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut posts = tokio::task::JoinSet::new();
    let action_head = format!(r#"{{"index":{{"_index":{},"_id":""#, json!(index));
    let start = Instant::now();
    let consumer = mee_kafka::consumer(&cfg.kafka, group)?;
    consumer.subscribe(&[topic])?;
    let mut body = Vec::with_capacity(per_request * (docs[0].len() + 80));
    let mut in_body = 0;
    let mut seen = 0u64;
    let mut unkeyed = 0u64;
    while seen < total {
        let msg = consumer.recv().await?;
        seen += 1;
        let id = key_id(msg.key()).filter(|n| (1..=docs.len()).contains(n));
        let id = id.unwrap_or_else(|| {
            unkeyed += 1;
            (seen as usize % docs.len()) + 1
        });
        body.extend_from_slice(action_head.as_bytes());
        body.extend_from_slice(id.to_string().as_bytes());
        body.extend_from_slice(b"\"}}\n");
        body.extend_from_slice(docs[id - 1].as_bytes());
        body.push(b'\n');
        in_body += 1;
        if in_body == per_request || seen == total {
            let permit = slots.clone().acquire_owned().await?;
            let (http, endpoint) = (http.clone(), endpoint.clone());
            let cap = body.capacity();
            let b = std::mem::replace(&mut body, Vec::with_capacity(cap));
            in_body = 0;
            posts.spawn(async move {
                let resp = http
                    .post(&endpoint)
                    .header("content-type", "application/x-ndjson")
                    .body(b)
                    .send()
                    .await?;
                let status = resp.status();
                let answer: Value = serde_json::from_slice(&resp.bytes().await?)?;
                drop(permit);
                ensure!(
                    status.is_success() && answer["errors"] == json!(false),
                    "bulk answered {status}"
                );
                anyhow::Ok(())
            });
            while let Some(done) = posts.try_join_next() {
                done??;
            }
        }
    }
    while let Some(done) = posts.join_next().await {
        done??;
    }
    let secs = start.elapsed().as_secs_f64();
    if unkeyed > 0 {
        eprintln!("warning: {unkeyed} messages without an order id in their key");
    }
    Ok(secs)
}

/// The 1-minute load average, as text.
/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The local stack's MariaDB server process id.
fn mariadb_pid() -> Option<u32> {
    let path = mee_test_support::workspace_root().join(".dev/mariadb/mariadb.pid");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
