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

use crate::fixture;
use crate::materializer;
use crate::report::{self, Row};
use anyhow::{Context, bail, ensure};
use mee_bench::bulk_baseline;
use mee_bench::sink::BulkSink;
use mee_core::AppConfig;
use mee_core::handler::Handler;
use mee_kafka::rdkafka::admin::{AdminClient, AdminOptions};
use mee_kafka::rdkafka::client::DefaultClientContext;
use mee_mysql::MySqlSource;
use mee_test_support::StackEnv;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The load settings `update` creates its index with (no refresh, no replicas, a long
/// `gc_deletes`); the scratch index of the bulk baseline gets the same.
fn load_settings() -> Value {
    json!({"index": {"refresh_interval": "-1", "number_of_replicas": 0, "gc_deletes": "24h"}})
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

/// The 1-minute load average, as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// What one `update` run took.
#[derive(Debug, Clone)]
struct Rebuild {
    /// Wall time from spawning the process to its exit.
    secs: f64,
    /// Peak RSS of the process, MiB.
    rss_mib: f64,
    /// CPU time of the process (user + system), seconds.
    cpu_secs: f64,
    phases: Phases,
}

/// Where a run's time went, from its log timestamps.
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// Start to the `new generation` log line: connecting, creating the index, topics
    /// and consumer group.
    setup: f64,
    /// `new generation` to `load complete`.
    load: f64,
    /// `load complete` to exit: settings, refresh, lag check, alias swap.
    finish: f64,
}

struct SinkResult {
    masters: u64,
    /// The fastest rebuild.
    best: Rebuild,
    /// The fastest raw read.
    raw_secs: f64,
    /// CPU time of the bench process during the fastest raw read, seconds.
    raw_cpu_secs: f64,
    /// The largest peak RSS of the rebuilds.
    peak_rss: f64,
}

/// `rounds` rebuilds of the `masters` fixture into the sink, and as many raw reads,
/// alternating which goes first.
async fn sink_runs(
    env: &StackEnv,
    bin: &Path,
    sink: &BulkSink,
    masters: u64,
    rounds: usize,
) -> anyhow::Result<SinkResult> {
    let schema = fixture::schema(masters);
    let cfg = env.app_config(&[("bench", &schema)], "mee_bench");
    let pool = mee_mysql::pool("bench", &cfg.mysql["bench"])?;
    let mut best: Option<Rebuild> = None;
    let mut raw_secs = f64::MAX;
    let mut raw_cpu_secs = f64::NAN;
    let mut peak_rss = 0f64;
    for round in 0..rounds {
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                let cpu = cpu_secs("self");
                let (secs, rows) = fixture::raw_read(&pool, cfg.update.page_size).await?;
                let cpu = cpu_secs("self").zip(cpu).map_or(f64::NAN, |(b, a)| b - a);
                ensure!(
                    rows == masters,
                    "the raw read returned {rows} masters of {masters}"
                );
                eprintln!(
                    "sink {masters}, round {round}: raw read {secs:.2} s, client CPU {cpu:.2} s"
                );
                if secs < raw_secs {
                    raw_secs = secs;
                    raw_cpu_secs = cpu;
                }
            } else {
                let before = sink.stats().docs_indexed;
                let r = rebuild(env, bin, &sink.url(), masters).await?;
                let received = sink.stats().docs_indexed - before;
                ensure!(
                    received == masters,
                    "the sink received {received} documents of {masters}"
                );
                eprintln!(
                    "sink {masters}, round {round}: update {:.2} s (setup {:.2}, load {:.2}, \
                     finish {:.2}), CPU {:.2} s, peak RSS {:.1} MiB",
                    r.secs, r.phases.setup, r.phases.load, r.phases.finish, r.cpu_secs, r.rss_mib
                );
                peak_rss = peak_rss.max(r.rss_mib);
                if best.as_ref().is_none_or(|b| r.secs < b.secs) {
                    best = Some(r);
                }
            }
        }
    }
    pool.disconnect().await.ok();
    Ok(SinkResult {
        masters,
        best: best.expect("at least one round"),
        raw_secs,
        raw_cpu_secs,
        peak_rss,
    })
}

struct EsResult {
    masters: u64,
    best: Rebuild,
    /// The best raw bulk rate, documents/s.
    raw_rate: f64,
    peak_rss: f64,
    page_size: usize,
    docs_per_request: usize,
    concurrency: usize,
}

/// `rounds` rebuilds of the `masters` fixture into the stack's Elasticsearch API, and
/// as many raw bulk loads of the same documents, alternating which goes first. Every
/// index is deleted as soon as it is measured: the emulator keeps them in memory.
async fn es_runs(
    env: &StackEnv,
    bin: &Path,
    masters: u64,
    rounds: usize,
) -> anyhow::Result<EsResult> {
    let schema = fixture::schema(masters);
    let cfg = env.app_config(&[("bench", &schema)], "mee_bench");
    let bulk = cfg.elasticsearch.bulk.clone();
    // The same documents, built by the materializer before any clock starts.
    let handler = Handler::parse("bench.yml", fixture::HANDLER)?;
    let source = MySqlSource::new(&cfg, ["bench"])?;
    let mut docs: Vec<(String, String)> = Vec::with_capacity(masters as usize);
    materializer::each_page(&handler, &source, cfg.update.page_size, |page| {
        docs.extend(page.into_iter().map(|d| (d.id, d.source)));
        Ok(())
    })
    .await?;
    source.close().await;
    ensure!(
        docs.len() as u64 == masters,
        "built {} documents of {masters}",
        docs.len()
    );
    let http = http_client()?;
    let mut best: Option<Rebuild> = None;
    let mut raw_rate = 0f64;
    let mut peak_rss = 0f64;
    for round in 0..rounds {
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                let index = unique("mee_bench_upd_raw");
                let body = json!({"settings": load_settings()});
                let (status, answer) =
                    es_call(&http, &env.es_url, "PUT", &format!("/{index}"), Some(&body)).await?;
                ensure!(status == 200, "PUT /{index}: {status} {answer}");
                let result = bulk_baseline::raw_bulk_rate(
                    &env.es_url,
                    &index,
                    &docs,
                    bulk.max_docs,
                    bulk.concurrency,
                )
                .await;
                let count = count(&http, &env.es_url, &index).await;
                delete_index(&http, &env.es_url, &index).await;
                let (rate, elapsed) = result?;
                ensure!(
                    count.as_ref().ok() == Some(&masters),
                    "scratch index {index} holds {count:?} documents of {masters}"
                );
                eprintln!(
                    "{} {masters}, round {round}: raw bulk {:.2} s",
                    env.es_url,
                    elapsed.as_secs_f64()
                );
                raw_rate = raw_rate.max(rate);
            } else {
                let r = rebuild(env, bin, &env.es_url, masters).await?;
                eprintln!(
                    "{} {masters}, round {round}: update {:.2} s (setup {:.2}, load {:.2}, \
                     finish {:.2}), CPU {:.2} s, peak RSS {:.1} MiB",
                    env.es_url,
                    r.secs,
                    r.phases.setup,
                    r.phases.load,
                    r.phases.finish,
                    r.cpu_secs,
                    r.rss_mib
                );
                peak_rss = peak_rss.max(r.rss_mib);
                if best.as_ref().is_none_or(|b| r.secs < b.secs) {
                    best = Some(r);
                }
            }
        }
    }
    Ok(EsResult {
        masters,
        best: best.expect("at least one round"),
        raw_rate,
        peak_rss,
        page_size: cfg.update.page_size,
        docs_per_request: bulk.max_docs,
        concurrency: bulk.concurrency,
    })
}

/// One `update` run of the `masters` fixture into the Elasticsearch API at `es_url`,
/// under names of its own; checks its result line and the index's count, then deletes
/// what it created.
async fn rebuild(
    env: &StackEnv,
    bin: &Path,
    es_url: &str,
    masters: u64,
) -> anyhow::Result<Rebuild> {
    let name = unique("mee_bench_upd");
    let task = format!("{name}_task");
    let alias = format!("{name}_orders");
    let schema = fixture::schema(masters);
    let toml = config_toml(env, &schema, &name, es_url)?;
    let cfg = AppConfig::from_toml_str(&toml, Default::default())?;
    let files = Files::new(&name);
    std::fs::write(&files.config, &toml)?;
    std::fs::write(&files.handler, fixture::handler_with_alias(&alias))?;

    let run = run_update(bin, &files, &task).await;
    let stdout = std::fs::read_to_string(&files.stdout).unwrap_or_default();
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    let generation = stdout
        .split_once("generation ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned);
    let http = http_client()?;
    let counted = count(&http, es_url, &alias).await;
    cleanup(
        env,
        &cfg,
        &http,
        es_url,
        &alias,
        &task,
        generation.as_deref(),
    )
    .await;

    let outcome = run.and_then(|exit| {
        let status = exit.status;
        if !status.success() {
            bail!(
                "update exited with {status}; its log ends:\n{}",
                tail(&log, 30)
            );
        }
        // `task `x`: generation <id> (<index>) is live; N masters, N documents, 0 dead-lettered`
        let expected = format!("is live; {masters} masters, {masters} documents, 0 dead-lettered");
        ensure!(
            stdout.contains(&expected),
            "update's result line is not `... {expected}`: {stdout}"
        );
        ensure!(
            counted.as_ref().ok() == Some(&masters),
            "the alias {alias} counts {counted:?} documents of {masters}"
        );
        let phases = phases(&log, exit.started, exit.ended)?;
        Ok(Rebuild {
            secs: exit.secs,
            rss_mib: exit.rss_mib,
            cpu_secs: exit.cpu_secs,
            phases,
        })
    });
    if outcome.is_ok() {
        files.remove();
    } else {
        eprintln!(
            "kept {} and {} for inspection",
            files.config.display(),
            files.log.display()
        );
    }
    outcome
}

/// The app config of one run: the fixture as logical database `bench`, a key prefix
/// and change topics of its own, Elasticsearch at `es_url`, JSON logs.
pub(crate) fn config_toml(
    env: &StackEnv,
    schema: &str,
    name: &str,
    es_url: &str,
) -> anyhow::Result<String> {
    let toml = env.app_config_toml(&[("bench", schema)], name);
    let es_section = format!("[elasticsearch]\nurl = \"{}\"\n", env.es_url);
    ensure!(
        toml.contains(&es_section) && toml.contains("[kafka]\n"),
        "unexpected app config layout from test-support:\n{toml}"
    );
    Ok(toml
        .replace(
            &es_section,
            &format!("[elasticsearch]\nurl = \"{es_url}\"\n"),
        )
        .replace(
            "[kafka]\n",
            &format!("[kafka]\ntopic_pattern = \"{name}.{{database}}\"\n"),
        )
        + "[telemetry]\nlog_level = \"info\"\nlog_format = \"json\"\n")
}

/// The temporary files of one run.
struct Files {
    config: PathBuf,
    handler: PathBuf,
    stdout: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir();
        Self {
            config: dir.join(format!("{name}.toml")),
            handler: dir.join(format!("{name}.yml")),
            stdout: dir.join(format!("{name}.out")),
            log: dir.join(format!("{name}.log")),
        }
    }

    fn remove(&self) {
        for f in [&self.config, &self.handler, &self.stdout, &self.log] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// How an `update` process ended.
struct Exit {
    status: ExitStatus,
    /// Wall time from spawning it to its exit.
    secs: f64,
    /// Peak RSS (VmHWM), MiB.
    rss_mib: f64,
    /// User + system CPU time, seconds.
    cpu_secs: f64,
    /// Wall-clock times it started and ended.
    started: SystemTime,
    ended: SystemTime,
}

/// Run `update -c <handler> -n <task> --config <config>` to its exit, watching its
/// peak RSS and CPU time in `/proc` every 100 ms.
async fn run_update(bin: &Path, files: &Files, task: &str) -> anyhow::Result<Exit> {
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&files.handler)
        .arg("-n")
        .arg(task)
        .arg("--config")
        .arg(&files.config)
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&files.stdout)?)
        .stderr(std::fs::File::create(&files.log)?);
    let started = SystemTime::now();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().to_string();
    let mut waiter = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        (status, Instant::now(), SystemTime::now())
    });
    let mut peak_kb = 0u64;
    let mut cpu = 0f64;
    let (status, end, ended) = loop {
        if let Some(kb) = vm_hwm_kb(&pid) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(c) = cpu_secs(&pid) {
            cpu = cpu.max(c);
        }
        tokio::select! {
            done = &mut waiter => break done?,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    Ok(Exit {
        status: status?,
        secs: (end - start).as_secs_f64(),
        rss_mib: peak_kb as f64 / 1024.0,
        cpu_secs: cpu,
        started,
        ended,
    })
}

/// VmHWM (peak RSS) of a running process (`self` or a pid), kB.
fn vm_hwm_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of a running process (`self` or a pid), seconds: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The run's phases from its JSON log lines' timestamps.
fn phases(log: &str, started: SystemTime, ended: SystemTime) -> anyhow::Result<Phases> {
    let at = |message: &str| -> anyhow::Result<f64> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with(message))
            })
            .and_then(|v| v.get("timestamp")?.as_str().and_then(rfc3339_secs))
            .with_context(|| format!("no `{message}` line with a timestamp in update's log"))
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let generation = at("new generation")?;
    let loaded = at("load complete")?;
    Ok(Phases {
        setup: generation - secs(started),
        load: loaded - generation,
        finish: secs(ended) - loaded,
    })
}

/// Seconds since the epoch of a UTC RFC 3339 timestamp (`2026-01-02T03:04:05.678901Z`).
fn rfc3339_secs(t: &str) -> Option<f64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.splitn(3, ':');
    let (hh, mm) = (
        h.next()?.parse::<f64>().ok()?,
        h.next()?.parse::<f64>().ok()?,
    );
    let ss = h.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// Delete what a run created: its indices (whatever the alias points at, and any
/// `<alias>_*` left by a failed run), change and dead-letter topics, consumer group and
/// Redis keys. Failures are reported, not fatal.
pub(crate) async fn cleanup(
    env: &StackEnv,
    cfg: &AppConfig,
    http: &reqwest::Client,
    es_url: &str,
    alias: &str,
    task: &str,
    generation: Option<&str>,
) {
    let mut indices = Vec::new();
    for path in [format!("/_alias/{alias}"), format!("/{alias}_*")] {
        if let Ok((200, Value::Object(found))) = es_call(http, es_url, "GET", &path, None).await {
            indices.extend(found.keys().cloned());
        }
    }
    if let Some(g) = generation {
        indices.push(mee_core::generation::index_name(alias, g));
    }
    indices.sort();
    indices.dedup();
    for index in indices {
        delete_index(http, es_url, &index).await;
    }
    let topics = [
        cfg.kafka.topic_for("bench"),
        mee_core::dead_letter::dead_letter_topic(task),
    ];
    if let Err(e) = delete_topics(cfg, &topics).await {
        eprintln!("warning: could not delete topics {topics:?}: {e:#}");
    }
    if let Some(g) = generation {
        let group = format!("{task}.{g}");
        if let Err(e) = mee_kafka::delete_group(&cfg.kafka, &group, Duration::from_secs(30)).await {
            eprintln!("warning: could not delete consumer group {group}: {e}");
        }
    }
    let keys = [
        format!("{}:task:{task}:generations", cfg.redis.key_prefix),
        format!("{}:task:{task}:lock", cfg.redis.key_prefix),
    ];
    if let Err(e) = redis_del(&env.redis_url, &keys) {
        eprintln!("warning: could not delete Redis keys {keys:?}: {e:#}");
    }
}

async fn delete_topics(cfg: &AppConfig, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = mee_kafka::client_config(&cfg.kafka).create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &opts).await? {
        if let Err((topic, code)) = result {
            eprintln!("warning: deleting topic {topic}: {code}");
        }
    }
    Ok(())
}

/// `DEL keys...` over RESP, for a `redis://host:port[/db]` URL without credentials.
pub(crate) fn redis_del(url: &str, keys: &[String]) -> anyhow::Result<()> {
    let rest = url.strip_prefix("redis://").context("only redis:// URLs")?;
    ensure!(!rest.contains('@'), "URLs with credentials are not handled");
    let (host, db) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let command = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    let mut expected = 1;
    let mut request = String::new();
    if !db.is_empty() {
        request.push_str(&command(&["SELECT", db]));
        expected += 1;
    }
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    request.push_str(&command(&del));
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while answer.iter().filter(|b| **b == b'\n').count() < expected {
        let n = s.read(&mut buf)?;
        ensure!(n > 0, "Redis closed the connection");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    ensure!(!answer.contains("-ERR"), "Redis answered {answer}");
    Ok(())
}

pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// One request to an Elasticsearch API: (status, JSON body or Null).
pub(crate) async fn es_call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = http.request(method.parse()?, &url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// `GET /<index>/_count` after a refresh.
async fn count(http: &reqwest::Client, base: &str, index: &str) -> anyhow::Result<u64> {
    es_call(http, base, "POST", &format!("/{index}/_refresh"), None).await?;
    let (status, body) = es_call(http, base, "GET", &format!("/{index}/_count"), None).await?;
    ensure!(status == 200, "GET /{index}/_count: {status} {body}");
    body["count"].as_u64().context("no count in the answer")
}

async fn delete_index(http: &reqwest::Client, base: &str, index: &str) {
    match es_call(http, base, "DELETE", &format!("/{index}"), None).await {
        Ok((200 | 404, _)) => {}
        Ok((status, body)) => eprintln!("warning: DELETE /{index}: {status} {body}"),
        Err(e) => eprintln!("warning: DELETE /{index}: {e:#}"),
    }
}

/// The Elasticsearch API's node name (`noida-db` on the local stack).
pub(crate) async fn es_name(base: &str) -> anyhow::Result<String> {
    let (status, body) = es_call(&http_client()?, base, "GET", "/", None).await?;
    ensure!(status == 200, "GET {base}/: {status} {body}");
    Ok(body["name"].as_str().unwrap_or("Elasticsearch").to_owned())
}

/// The `update` binary built beside this one (`scripts/bench` builds both).
fn update_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("update");
    ensure!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p mee-update` (scripts/bench does)",
        bin.display()
    );
    Ok(bin)
}

/// A copy of a binary in the temporary directory, deleted on drop.
struct BinCopy {
    path: PathBuf,
}

impl BinCopy {
    fn of(bin: &Path) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(unique("mee_bench_update_bin"));
        std::fs::copy(bin, &path)
            .with_context(|| format!("copying {} to {}", bin.display(), path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for BinCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A name of lowercase letters, digits and `_`, unique to this process and call.
pub(crate) fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfffff
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::rfc3339_secs;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(rfc3339_secs("2024-02-29T12:00:00Z"), Some(1_709_208_000.0));
        assert_eq!(rfc3339_secs("2024-02-29 12:00:00"), None);
    }
}
