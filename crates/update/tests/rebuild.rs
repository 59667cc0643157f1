//! `update` as a real process against the local stack: a rebuild of the shipped
//! `orders` handler over the shop fixture, generations and the alias, an interrupted
//! load, and documents Elasticsearch refuses.

use mee_core::dead_letter::DeadLetter;
use mee_core::generation::{Generation, GenerationState};
use mee_test_support::{Pipeline, orders_golden};
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);

async fn generations(p: &Pipeline) -> Vec<Generation> {
    let cfg = p.cfg();
    let conn = mee_redis::connect(&cfg.redis).await.expect("redis");
    let mut store = mee_redis::GenerationStore::new(conn, mee_redis::Keys::new(&p.prefix));
    store.list(&p.task).await.expect("list")
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilds_swap_the_alias_and_retire_the_old_generation() {
    let p = Pipeline::shop().await;
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    assert_eq!(
        p.docs(&p.alias),
        orders_golden(),
        "documents equal the goldens"
    );
    let first = p.alias_targets();
    assert_eq!(first.len(), 1);
    assert!(first[0].starts_with(&format!("{}_", p.alias)), "{first:?}");
    let gens = generations(&p).await;
    assert_eq!(gens.len(), 1);
    assert_eq!(gens[0].state, GenerationState::Live);
    assert_eq!(gens[0].counters.masters_read, 3, "orders passing the WHERE");

    // Again: a new index behind the alias; the first is retired and kept (keep_generations 1).
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    let second = p.alias_targets();
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert_eq!(p.docs(&p.alias), orders_golden());
    let states: Vec<GenerationState> = generations(&p).await.iter().map(|g| g.state).collect();
    assert_eq!(states, [GenerationState::Retired, GenerationState::Live]);
    assert_eq!(p.es("HEAD", &format!("/{}", first[0]), None).0, 200, "kept");

    // A third time: the oldest generation is deleted, index and record.
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    assert_eq!(
        p.es("HEAD", &format!("/{}", first[0]), None).0,
        404,
        "deleted"
    );
    assert_eq!(generations(&p).await.len(), 2);
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_named_like_the_alias_is_refused_before_building() {
    let p = Pipeline::shop().await;
    let (status, _) = p.es(
        "PUT",
        &format!("/{}", p.alias),
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200);
    let (status, log) = p.update(&[], MIN);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("is an index, not an alias"), "{log}");
    assert!(generations(&p).await.is_empty(), "nothing was started");
    p.es("DELETE", &format!("/{}", p.alias), None);
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_load_is_resumed_or_dropped_and_the_alias_never_moves() {
    let p = Pipeline::shop().await;
    // 30,000 more orders, read 50 per page: the load takes long enough to kill it.
    p.sql(
        "INSERT INTO orders (id, customer_id, status, total, created_at) \
         SELECT 10000 + seq, 1 + seq % 2, 'paid', seq % 1000, '2024-01-01 00:00:00' \
         FROM seq_1_to_30000",
    )
    .await;
    let toml_small_pages = format!("{}[update]\npage_size = 50\nlock_ttl_ms = 2000\n", p.toml);
    let p = Pipeline {
        toml: toml_small_pages,
        ..p
    };
    let mut run = p.spawn("update", &[]);
    // Kill -9 once the first pages are saved.
    let start = std::time::Instant::now();
    loop {
        let g = generations(&p).await;
        if g.first().is_some_and(|g| g.counters.masters_read >= 500) {
            break;
        }
        assert!(
            start.elapsed() < MIN,
            "load did not start:\n{}",
            run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.kill();
    assert!(
        p.alias_targets().is_empty(),
        "the alias never points at a half-built index"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // the killed run's lock expires
    let unfinished = generations(&p).await;
    assert_eq!(unfinished[0].state, GenerationState::Building);

    // Without a choice: refused, with what to do.
    let (status, log) = p.update(&[], MIN);
    assert_eq!(status.code(), Some(1));
    assert!(
        log.contains("--resume") && log.contains("--drop-unfinished"),
        "{log}"
    );

    // --resume finishes the same generation.
    let (status, log) = p.update(&["--resume"], Duration::from_secs(300));
    assert!(status.success(), "{log}");
    let g = generations(&p).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].id, unfinished[0].id);
    assert_eq!(g[0].state, GenerationState::Live);
    assert_eq!(p.alias_targets(), [g[0].index.clone()]);
    let (_, count) = p.es("GET", &format!("/{}/_count", p.alias), None);
    assert_eq!(count["count"], 30_003);

    // An unfinished generation dropped: its index and record are gone.
    let mut run = p.spawn("update", &["--no-swap"]);
    assert!(
        run.wait_exit(Duration::from_secs(300)).success(),
        "{}",
        run.stderr()
    );
    let building = generations(&p).await;
    let pending = building.last().expect("the --no-swap generation");
    assert_eq!(pending.state, GenerationState::CatchingUp);
    let (status, log) = p.update(
        &["--drop-unfinished", "--no-swap"],
        Duration::from_secs(300),
    );
    assert!(status.success(), "{log}");
    assert_eq!(p.es("HEAD", &format!("/{}", pending.index), None).0, 404);
    assert!(!generations(&p).await.iter().any(|g| g.id == pending.id));
    assert_eq!(
        p.alias_targets(),
        [g[0].index.clone()],
        "the alias did not move"
    );
    p.drop().await;
}

/// Killed after recording a new generation but before committing its consumer group:
/// `sync` never consumes such a generation, so `--resume` must not wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn resume_replaces_a_generation_whose_set_up_was_interrupted() {
    let p = Pipeline::shop().await;
    let half_made = Generation::new(
        &p.task,
        &p.alias,
        vec![p.topic()],
        std::fs::read_to_string(&p.handler).expect("handler"),
        p.handler.display().to_string(),
        1_700_000_000_000,
    )
    .expect("a generation");
    assert!(half_made.offsets_mark.is_empty());
    let cfg = p.cfg();
    let conn = mee_redis::connect(&cfg.redis).await.expect("redis");
    let mut store = mee_redis::GenerationStore::new(conn, mee_redis::Keys::new(&p.prefix));
    store.put(&half_made).await.expect("put");

    let (status, log) = p.update(&["--resume"], MIN);
    assert!(status.success(), "{log}");
    assert!(log.contains("set-up was interrupted"), "{log}");
    let gens = generations(&p).await;
    assert_eq!(gens.len(), 1, "the half-made generation is gone: {gens:?}");
    assert_ne!(gens[0].id, half_made.id);
    assert_eq!(gens[0].state, GenerationState::Live);
    assert!(!gens[0].offsets_mark.is_empty());
    assert_eq!(p.docs(&p.alias), orders_golden());
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_elasticsearch_refuses_go_to_the_dead_letter_topic() {
    let p = Pipeline::shop_with_refused_orders().await;
    let (status, log) = p.update(&[], MIN);
    assert!(status.success(), "{log}");
    let docs = p.docs(&p.alias);
    assert_eq!(docs.keys().collect::<Vec<_>>(), ["1002"], "the rest load");
    let g = &generations(&p).await[0];
    assert_eq!(g.counters.documents_rejected, 2);

    let letters = read_topic(&p, &format!("{}.dlq", p.task), 2);
    let mut ids: Vec<String> = letters
        .iter()
        .filter_map(|l| l.document_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1001", "1004"]);
    for l in &letters {
        assert_eq!(l.status, Some(400), "{l:?}");
        assert!(
            l.reason.contains("status") || l.reason.contains("parse"),
            "{}",
            l.reason
        );
        assert_eq!(l.generation, g.id);
        assert!(l.document.is_some());
    }
    p.drop().await;
}

fn read_topic(p: &Pipeline, topic: &str, want: usize) -> Vec<DeadLetter> {
    use mee_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use mee_kafka::rdkafka::message::Message;
    let cfg = p.cfg();
    let mut c = mee_kafka::client_config(&cfg.kafka);
    c.set("group.id", mee_test_support::unique_name("g"))
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    while out.len() < want && start.elapsed() < Duration::from_secs(30) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            out.push(serde_json::from_slice(m.payload().expect("payload")).expect("letter"));
        }
    }
    out
}
