//! `listen` throughput: events/s from a pre-generated binlog of N row changes to
//! Kafka, beside two baselines on the same binlog in the same run: (a) reading and
//! decoding (and serializing) with no Kafka, (b) producing the same number of
//! pre-built messages of the same average size with no MySQL.

use crate::report::{self, Row};
use mee_core::{AppConfig, BinlogPosition};
use mee_mysql::mysql_async::prelude::Queryable;
use mee_test_support::StackEnv;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Row changes in the pre-generated binlog.
    #[arg(long, default_value_t = 1_000_000)]
    changes: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let env = StackEnv::load();
    let schema = "mee_bench_listen";
    let (from, tenth, until) = generate(&env, schema, args.changes).await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let prefix = format!("mee_bench_listen_{nanos}");
    let toml = env.app_config_toml(&[("bench", schema)], &prefix).replace(
        "[kafka]\n",
        &format!("[kafka]\ntopic_pattern = \"{prefix}.{{database}}\"\n"),
    );
    let cfg = AppConfig::from_toml_str(&toml, Default::default())?;

    // Memory: a backlog of 10% of the changes, then the whole backlog.
    let start = Instant::now();
    let n_tenth = mee_listen::publish_range(&cfg, "bench", &from, &tenth).await?;
    let tenth_secs = start.elapsed().as_secs_f64();
    let rss_tenth = report::peak_rss_mib();

    let start = Instant::now();
    let published = mee_listen::publish_range(&cfg, "bench", &from, &until).await?;
    let ours = start.elapsed().as_secs_f64();
    let rss_all = report::peak_rss_mib();
    anyhow::ensure!(
        published == args.changes,
        "published {published} of {}",
        args.changes
    );

    let start = Instant::now();
    let (read, bytes) = mee_listen::read_range(&cfg, "bench", &from, &until).await?;
    let read_secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(read == args.changes, "read {read} of {}", args.changes);

    let start = Instant::now();
    produce(
        &cfg,
        &format!("{prefix}.raw"),
        args.changes,
        (bytes / read.max(1)) as usize,
    )
    .await?;
    let produce_secs = start.elapsed().as_secs_f64();

    let rate = |n: u64, s: f64| n as f64 / s;
    let ours_rate = rate(published, ours);
    let read_rate = rate(read, read_secs);
    let produce_rate = rate(args.changes, produce_secs);
    let smaller = read_rate.min(produce_rate);
    eprintln!("10% backlog: {n_tenth} events in {tenth_secs:.1} s");
    report::write(
        "listen",
        &format!(
            "{} row changes (1,000-row transactions, 6 columns) from a pre-generated binlog \
             of the local MariaDB to the local Kafka API, {} partitions. Baselines in the same \
             run: (a) the same binlog read, decoded and serialized with no Kafka; (b) {} \
             pre-built messages of the same average size ({} bytes) produced with the same \
             producer settings and no MySQL. Peak RSS is the process's VmHWM after a backlog \
             of 10% and of 100% of the changes.",
            args.changes,
            cfg.kafka.topic_partitions,
            args.changes,
            bytes / read.max(1)
        ),
        &[
            Row {
                figure: "events/s vs (a) read+decode".into(),
                measured: format!("{ours_rate:.0}"),
                baseline: format!("{read_rate:.0}"),
                ratio: format!("{:.2}", ours_rate / read_rate),
            },
            Row {
                figure: "events/s vs (b) produce".into(),
                measured: format!("{ours_rate:.0}"),
                baseline: format!("{produce_rate:.0}"),
                ratio: format!("{:.2}", ours_rate / produce_rate),
            },
            Row {
                figure: "events/s vs the smaller baseline".into(),
                measured: format!("{ours_rate:.0}"),
                baseline: format!("{smaller:.0}"),
                ratio: format!("{:.2} (goal ≥ 0.50)", ours_rate / smaller),
            },
            Row {
                figure: "peak RSS, MiB".into(),
                measured: format!("{rss_all:.1} after a backlog of {}", args.changes),
                baseline: format!("{rss_tenth:.1} after a backlog of {n_tenth}"),
                ratio: format!("{:.2} (bounded = 1.00)", rss_all / rss_tenth),
            },
        ],
    )
}

/// Write `changes` rows in 1,000-row transactions; returns the binlog positions before,
/// after the first 10%, and after all of them.
async fn generate(
    env: &StackEnv,
    schema: &str,
    changes: u64,
) -> anyhow::Result<(BinlogPosition, BinlogPosition, BinlogPosition)> {
    let mut conn = env.admin_conn().await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await?;
    conn.query_drop(format!("CREATE DATABASE `{schema}`"))
        .await?;
    conn.query_drop(format!("USE `{schema}`")).await?;
    conn.query_drop(
        "CREATE TABLE changes (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, \
         status VARCHAR(16) NOT NULL, amount DECIMAL(10,2) NOT NULL, note VARCHAR(64), \
         updated_at DATETIME NOT NULL)",
    )
    .await?;
    let from = mee_mysql::binlog_position(&mut conn, schema).await?;
    let mut tenth = from.clone();
    eprintln!("writing {changes} row changes to the binlog");
    let start = Instant::now();
    let batches = changes.div_ceil(1000);
    for b in 0..batches {
        let lo = b * 1000 + 1;
        let hi = ((b + 1) * 1000).min(changes);
        conn.query_drop(format!(
            "INSERT INTO changes SELECT seq, seq % 10000, ELT(1 + seq % 3, 'new', 'paid', 'shipped'), \
             (seq % 100000) / 100, CONCAT('note ', seq), TIMESTAMP('2024-01-01') + INTERVAL seq SECOND \
             FROM seq_{lo}_to_{hi}"
        ))
        .await?;
        if b + 1 == batches / 10 {
            tenth = mee_mysql::binlog_position(&mut conn, schema).await?;
        }
    }
    let until = mee_mysql::binlog_position(&mut conn, schema).await?;
    eprintln!(
        "binlog ready in {:.0} s: {from} .. {until}",
        start.elapsed().as_secs_f64()
    );
    Ok((from, tenth, until))
}

/// Produce `n` messages of `size` bytes with listen's producer, at most 50,000 in
/// flight, and wait for every delivery.
async fn produce(cfg: &AppConfig, topic: &str, n: u64, size: usize) -> anyhow::Result<()> {
    use mee_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use mee_kafka::rdkafka::producer::FutureRecord;
    mee_kafka::ensure_topic(&cfg.kafka, topic).await?;
    let producer = mee_kafka::producer(&cfg.kafka)?;
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(size.saturating_sub(10)));
    let mut in_flight = VecDeque::new();
    for i in 0..n {
        let key = format!("bench.changes:{i}");
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(d) => {
                    in_flight.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => anyhow::bail!("produce: {e}"),
            }
        }
        if in_flight.len() >= 50_000
            && let Some(d) = in_flight.pop_front()
        {
            d.await?.map_err(|(e, _)| e)?;
        }
    }
    for d in in_flight {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}
