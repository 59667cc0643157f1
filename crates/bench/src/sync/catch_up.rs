//! (b) The catch-up run: a backlog published by `listen` with `sync` stopped, then
//! `sync` timed until its group's lag is 0; and its baseline, a plain consumer
//! bulk-writing pre-built documents.

use super::stack::{Bins, Stack};
use super::steady::key_id;
use crate::common::{cpu_secs, server_pid, vm_hwm_kb};
use crate::fixture;
use crate::materializer;
use anyhow::ensure;
use mee_bench::sink::BulkSink;
use mee_core::AppConfig;
use mee_core::handler::Handler;
use mee_kafka::rdkafka::Message as _;
use mee_kafka::rdkafka::consumer::Consumer;
use mee_mysql::MySqlSource;
use mee_mysql::mysql_async::prelude::Queryable;
use mee_test_support::StackEnv;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What the catch-up run measured.
pub(super) struct CatchUp {
    pub(super) events: u64,
    pub(super) rounds: u64,
    pub(super) publish_secs: f64,
    pub(super) secs: f64,
    pub(super) docs: u64,
    /// Documents not rebuilt: an earlier write of this run already included the change.
    pub(super) covered: f64,
    pub(super) batches: f64,
    pub(super) batch_events_avg: f64,
    pub(super) bulks: f64,
    pub(super) bulk_secs: f64,
    pub(super) base_events: u64,
    pub(super) base_secs: f64,
    pub(super) docs_per_request: usize,
    pub(super) concurrency: usize,
    /// CPU seconds of `sync` and of mariadbd during the catch-up.
    pub(super) sync_cpu: f64,
    pub(super) mysql_cpu: f64,
    /// `sync`'s peak RSS (VmHWM), MiB.
    pub(super) sync_rss_mib: f64,
}

pub(super) async fn catch_up(
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
    // A value no earlier run left in the shared fixture: an UPDATE to the same value
    // changes no row and writes no event.
    let run = std::process::id() % 100_000;
    for round in 0..rounds {
        let mut a = 1;
        while a <= masters {
            conn.query_drop(format!(
                "UPDATE `{}`.orders SET status = 'b{run}.{round}' WHERE id BETWEEN {a} AND {}",
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
    let mysql_cpu = || server_pid("mariadb").and_then(cpu_secs).unwrap_or(f64::NAN);
    let mysql_before = mysql_cpu();
    let noida_cpu = || server_pid("noida").and_then(cpu_secs).unwrap_or(f64::NAN);
    let noida_before = noida_cpu();
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
    let noida_used = noida_cpu() - noida_before;
    let sync_rss_mib = stack
        .sync
        .as_ref()
        .and_then(|p| vm_hwm_kb(&p.pid().to_string()))
        .map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    eprintln!(
        "{}: CPU during the catch-up: sync {sync_cpu:.1} s, mariadbd {mysql_used:.1} s, \
         noida-db {noida_used:.1} s; \
         sync's peak RSS {sync_rss_mib:.1} MiB",
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
    // Covered: changes skipped by their key alone, and affected documents not rebuilt.
    let covered: f64 = metrics
        .lines()
        .filter(|l| {
            (l.starts_with("mee_sync_documents_total{") && l.contains("outcome=\"covered\""))
                || (l.starts_with("mee_sync_events_skipped_total{")
                    && l.contains("reason=\"covered\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let batches = metric("mee_sync_batch_events_count");
    let batch_events_avg = metric("mee_sync_batch_events_sum") / batches;
    let bulks = metric("mee_sync_bulk_seconds_count");
    let bulk_secs = metric("mee_sync_bulk_seconds_sum");
    let stages: Vec<String> = [
        "filter", "trace", "search", "build", "queue", "write", "wait",
    ]
    .iter()
    .map(|stage| {
        let label = format!("stage=\"{stage}\"");
        let secs: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("mee_sync_stage_seconds_sum") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        // An empty sum is -0.0.
        format!("{stage} {:.1} s", secs.max(0.0))
    })
    .collect();
    eprintln!(
        "{}: time per stage, summed over batches: {}",
        stack.name,
        stages.join(", ")
    );
    eprintln!(
        "{}: sync caught up {events} events in {secs:.1} s ({:.0}/s), {docs_received} docs, {covered} changes not rebuilt (covered); \
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
    let noida_before = noida_cpu();
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
    let base_noida = noida_cpu() - noida_before;
    let base_secs = result?;
    eprintln!(
        "{}: baseline consumed and posted {total} in {base_secs:.1} s ({:.0}/s); \
         noida-db CPU {base_noida:.1} s",
        stack.name,
        total as f64 / base_secs
    );
    Ok(CatchUp {
        events,
        rounds,
        publish_secs,
        secs,
        docs: docs_received,
        covered,
        batches,
        batch_events_avg,
        bulks,
        bulk_secs,
        base_events: total,
        base_secs,
        docs_per_request: bulk.max_docs,
        concurrency: bulk.concurrency,
        sync_cpu,
        mysql_cpu: mysql_used,
        sync_rss_mib,
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
