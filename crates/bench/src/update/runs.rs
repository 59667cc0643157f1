//! The timed rounds against each target: rebuilds into the bulk sink beside the raw
//! MySQL read, and into the Elasticsearch API beside the raw bulk rate.

use super::rebuild::{Rebuild, rebuild};
use crate::common::{count, cpu_secs, delete_index, es_call, http_client, unique};
use crate::fixture;
use crate::materializer;
use anyhow::ensure;
use mee_bench::bulk_baseline;
use mee_bench::sink::BulkSink;
use mee_core::handler::Handler;
use mee_mysql::MySqlSource;
use mee_test_support::StackEnv;
use serde_json::{Value, json};
use std::path::Path;

/// The load settings `update` creates its index with (no refresh, no replicas, a long
/// `gc_deletes`); the scratch index of the bulk baseline gets the same.
fn load_settings() -> Value {
    json!({"index": {"refresh_interval": "-1", "number_of_replicas": 0, "gc_deletes": "24h"}})
}

pub(super) struct SinkResult {
    pub(super) masters: u64,
    /// The fastest rebuild.
    pub(super) best: Rebuild,
    /// The fastest raw read.
    pub(super) raw_secs: f64,
    /// CPU time of the bench process during the fastest raw read, seconds.
    pub(super) raw_cpu_secs: f64,
    /// The largest peak RSS of the rebuilds.
    pub(super) peak_rss: f64,
}

/// `rounds` rebuilds of the `masters` fixture into the sink, and as many raw reads,
/// alternating which goes first.
pub(super) async fn sink_runs(
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

pub(super) struct EsResult {
    pub(super) masters: u64,
    pub(super) best: Rebuild,
    /// The best raw bulk rate, documents/s.
    pub(super) raw_rate: f64,
    pub(super) peak_rss: f64,
    pub(super) page_size: usize,
    pub(super) docs_per_request: usize,
    pub(super) concurrency: usize,
}

/// `rounds` rebuilds of the `masters` fixture into the stack's Elasticsearch API, and
/// as many raw bulk loads of the same documents, alternating which goes first. Every
/// index is deleted as soon as it is measured: the emulator keeps them in memory.
pub(super) async fn es_runs(
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
