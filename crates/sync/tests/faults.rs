//! `sync` under faults, with `listen` and `update` as real processes: replays, a
//! kill -9 mid-stream, Elasticsearch, MySQL or Redis unreachable, a malformed message,
//! two processes sharing the partitions, and a rebuild while changes stream.

mod common;

use common::{WAIT, converges, generations, read_dlq, running_shop, start};
use mee_core::dead_letter::DeadLetterKind;
use mee_kafka::rdkafka::producer::FutureRecord;
use mee_test_support::workload::{Rng, shop_change};
use mee_test_support::{Pipeline, SearchLoop, ServiceProcess, TcpProxy};
use std::time::{Duration, Instant};

/// `n` random changes from step `from`, one statement batch at a time.
async fn workload(p: &Pipeline, seed: u64, from: u64, n: u64) {
    let mut rng = Rng::new(seed);
    for i in from..from + n {
        p.sql(&shop_change(&mut rng, i)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_from_the_start_changes_nothing() {
    let (p, _listen, mut sync) = running_shop().await;
    workload(&p, 7, 0, 60).await;
    converges(&p, WAIT).await;
    let before = p.docs(&p.alias);

    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    let g = &generations(&p).await[0];
    mee_kafka::reset_group_to_start(&p.cfg().kafka, &g.group, &g.topics, WAIT)
        .await
        .expect("reset");
    let mut sync = p.spawn("sync", &[]);
    sync.wait_healthy(WAIT);
    let cfg = p.cfg();
    let start = Instant::now();
    loop {
        let lag = mee_kafka::group_lag(&cfg.kafka, &g.group, &g.topics, WAIT)
            .await
            .expect("lag");
        if lag.total == 0 {
            break;
        }
        assert!(start.elapsed() < WAIT, "replay not done: lag {}", lag.total);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        p.docs(&p.alias),
        before,
        "a replay leaves the index as it was"
    );
    let (_, metrics) = sync.get("/metrics").expect("metrics");
    assert!(
        metrics.contains("outcome=\"conflict\""),
        "replayed writes are version conflicts:\n{metrics}"
    );
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_a_stream_it_converges() {
    let (p, _listen, mut sync) = running_shop().await;
    let writer = {
        let p2 = p.handle();
        tokio::spawn(async move { workload(&p2, 11, 0, 400).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sync.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sync = p.spawn("sync", &[]);
    sync.wait_healthy(WAIT);
    writer.await.expect("workload");
    converges(&p, Duration::from_secs(60)).await;
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticsearch_away_for_30_seconds_loses_nothing() {
    let p = Pipeline::shop().await;
    let (_listen, mut direct_sync) = start(&p).await;
    assert!(direct_sync.terminate(WAIT).success());
    let proxy = TcpProxy::start(p.env.es_url.trim_start_matches("http://")).await;
    let toml = p.toml.replace(&p.env.es_url, &proxy.url());
    let mut sync = p.spawn_with("sync", &[], &toml);
    sync.wait_healthy(WAIT);

    workload(&p, 13, 0, 40).await;
    proxy.cut();
    workload(&p, 14, 40, 80).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (status, _) = sync.get("/healthz").expect("sync is alive");
    assert!(status == 200 || status == 503);
    assert_eq!(
        up(&sync, "elasticsearch"),
        Some(0),
        "Elasticsearch is down for the metrics"
    );
    // Nothing written, nothing committed: the group lags (asked every 5 s).
    assert!(
        consumer_lag(&sync).is_some_and(|n| n > 0),
        "{:?}",
        consumer_lag(&sync)
    );
    proxy.restore();
    workload(&p, 15, 120, 40).await;
    converges(&p, Duration::from_secs(60)).await;
    // Set at each poll of the generations (2 s), and of the lag (5 s).
    let start = Instant::now();
    while up(&sync, "elasticsearch") != Some(1) || consumer_lag(&sync) != Some(0) {
        assert!(
            start.elapsed() < WAIT,
            "Elasticsearch is not back for the metrics, or the lag not 0: {:?}",
            consumer_lag(&sync)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    let log = sync.stderr();
    assert!(
        log.contains("elasticsearch bulk failing") && log.contains("recovered"),
        "{log}"
    );
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_and_redis_away_mid_stream_lose_nothing() {
    let p = Pipeline::shop().await;
    let (_listen, mut direct_sync) = start(&p).await;
    assert!(direct_sync.terminate(WAIT).success());
    // `sync` reaches MySQL and Redis through proxies; `listen` does not.
    let mysql = TcpProxy::start(&format!("{}:{}", p.env.mysql_host, p.env.mysql_port)).await;
    let redis_addr = p.env.redis_url.trim_start_matches("redis://");
    let redis = TcpProxy::start(redis_addr.trim_end_matches('/')).await;
    let port = |proxy: &TcpProxy| proxy.url().rsplit(':').next().expect("port").to_string();
    let toml = p
        .toml
        .replace(
            &format!("port = {}\n", p.env.mysql_port),
            &format!("port = {}\n", port(&mysql)),
        )
        .replace(
            &p.env.redis_url,
            &format!("redis://127.0.0.1:{}/", port(&redis)),
        );
    let mut sync = p.spawn_with("sync", &[], &toml);
    sync.wait_healthy(WAIT);

    workload(&p, 21, 0, 40).await;
    mysql.cut();
    redis.cut();
    workload(&p, 22, 40, 80).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(sync.get("/healthz").is_some(), "sync is alive");
    assert_eq!(up(&sync, "mysql"), Some(0), "MySQL is down for the metrics");
    assert_eq!(up(&sync, "redis"), Some(0), "Redis is down for the metrics");
    mysql.restore();
    redis.restore();
    workload(&p, 23, 120, 40).await;
    converges(&p, Duration::from_secs(60)).await;
    let start = Instant::now();
    while up(&sync, "mysql") != Some(1) || up(&sync, "redis") != Some(1) {
        assert!(
            start.elapsed() < WAIT,
            "MySQL or Redis not back for the metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sync.terminate(WAIT).success(), "{}", sync.stderr());
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_dead_lettered_and_the_stream_goes_on() {
    let (p, _listen, _sync) = running_shop().await;
    let cfg = p.cfg();
    let producer = mee_kafka::producer(&cfg.kafka).expect("producer");
    producer
        .send(
            FutureRecord::to(&p.topic())
                .payload("{not json")
                .key("shop.orders:1001"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    p.sql("UPDATE orders SET status = 'after-garbage' WHERE id = 1001")
        .await;
    p.wait_docs(WAIT, "the change after the bad message", |d| {
        d.get("1001")
            .is_some_and(|d| d["status"] == "after-garbage")
    });
    let letters = read_dlq(&p, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::UnreadableEvent);
    assert_eq!(letters[0].message.as_deref(), Some("{not json"));
    assert!(
        letters[0]
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with(&p.topic()))
    );
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_the_partitions_through_a_rebalance() {
    let (p, _listen, mut first) = running_shop().await;
    let writer = {
        let p2 = p.handle();
        tokio::spawn(async move { workload(&p2, 17, 0, 300).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut second = p.spawn("sync", &[]);
    second.wait_healthy(WAIT);
    p.wait_group_stable(2, WAIT);
    // SIGTERM: it leaves the group, so the other takes its partitions at once (the local
    // Kafka emulator never expires the session of a killed member).
    assert!(first.terminate(WAIT).success(), "{}", first.stderr());
    writer.await.expect("workload");
    workload(&p, 18, 300, 100).await;
    converges(&p, Duration::from_secs(60)).await;
    assert!(second.terminate(WAIT).success(), "{}", second.stderr());
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_while_changes_stream_swaps_without_failed_searches() {
    let (p, _listen, sync) = running_shop().await;
    let old = generations(&p).await[0].id.clone();
    let writer = {
        let p2 = p.handle();
        tokio::spawn(async move { workload(&p2, 19, 0, 300).await })
    };
    // Search the alias all along: no failed and no empty answer.
    let searcher = SearchLoop::start(&p);
    let before = p.alias_targets();
    let (status, log) = p.update(&[], Duration::from_secs(120));
    assert!(status.success(), "{log}");
    writer.await.expect("workload");
    let (searches, bad) = searcher.stop();
    assert!(searches > 10, "only {searches} searches");
    assert!(
        bad.is_empty(),
        "failed or empty searches during the swap: {bad:?}"
    );
    assert_ne!(p.alias_targets(), before, "the alias moved");
    // The new generation is consumed (without a restart), the retired one stopped.
    converges(&p, Duration::from_secs(60)).await;
    let start = Instant::now();
    let retired = |log: &str| {
        log.lines().any(|l| {
            l.contains("generation retired or removed: stopping its consumer") && l.contains(&old)
        })
    };
    while !retired(&sync.stderr()) && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(retired(&sync.stderr()), "{}", sync.stderr());
    p.drop().await;
}

/// `mee_dependency_up` of `dependency`.
fn up(sync: &ServiceProcess, dependency: &str) -> Option<u8> {
    let (_, body) = sync.get("/metrics")?;
    let line = format!("mee_dependency_up{{dependency=\"{dependency}\",service=\"sync\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
}

/// `mee_sync_consumer_lag_messages`, over the generations; `None` before it is set.
fn consumer_lag(sync: &ServiceProcess) -> Option<i64> {
    let (_, body) = sync.get("/metrics")?;
    let values: Vec<i64> = body
        .lines()
        .filter(|l| l.starts_with("mee_sync_consumer_lag_messages{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_an_unfinished_generation_while_sync_runs_leaves_no_index_behind() {
    let (p, _listen, _sync) = running_shop().await;
    let (status, log) = p.update(&["--no-swap"], Duration::from_secs(60));
    assert!(status.success(), "{log}");
    let pending = generations(&p).await.last().cloned().expect("generation");
    // Changes keep coming while it is dropped: sync writes into it until it stops.
    let writer = {
        let p2 = p.handle();
        tokio::spawn(async move { workload(&p2, 23, 0, 150).await })
    };
    let (status, log) = p.update(
        &["--drop-unfinished", "--no-swap"],
        Duration::from_secs(120),
    );
    assert!(status.success(), "{log}");
    writer.await.expect("workload");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        p.es("HEAD", &format!("/{}", pending.index), None).0,
        404,
        "the dropped index stays gone"
    );
    assert!(!generations(&p).await.iter().any(|g| g.id == pending.id));
    converges(&p, Duration::from_secs(60)).await;
    p.drop().await;
}
