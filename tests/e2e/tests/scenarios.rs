//! End-to-end scenarios: a steady stream; a rebuild under load with searches running;
//! kill -9 of each service at random moments; two `sync` processes with one stopped.
//! Each ends with `update --verify` finding no drift.

use mee_test_support::workload::{Rng, shop_change};
use mee_test_support::{Pipeline, SearchLoop, ServiceProcess};
use std::ops::Range;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Changes per scenario: a CI-sized default, ten times more with `MEE_E2E_LONG=1`.
fn changes() -> u64 {
    if std::env::var("MEE_E2E_LONG").is_ok_and(|v| v == "1") {
        3000
    } else {
        300
    }
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("MEE_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: MEE_E2E_SEED={seed}");
    seed
}

/// The shop fixture plus `extra_orders` generated orders (so a load takes a while).
async fn shop(extra_orders: u64) -> Pipeline {
    let p = Pipeline::shop().await;
    if extra_orders > 0 {
        p.sql(&format!(
            "INSERT INTO orders (id, customer_id, status, total, created_at) \
             SELECT 10000 + seq, 1 + seq % 2, 'paid', seq % 1000, '2024-01-01 00:00:00' \
             FROM seq_1_to_{extra_orders}"
        ))
        .await;
    }
    p
}

fn up(p: &Pipeline, service: &str, extra: &[&str]) -> ServiceProcess {
    let mut s = p.spawn(service, extra);
    s.wait_healthy(WAIT);
    s
}

/// listen, the first generation, sync.
async fn running(p: &Pipeline) -> (ServiceProcess, ServiceProcess) {
    let listen = up(p, "listen", &[]);
    let (status, log) = p.update(&[], Duration::from_secs(120));
    assert!(status.success(), "{log}");
    (listen, up(p, "sync", &[]))
}

/// Random changes number `steps` in the background.
fn workload(p: &Pipeline, seed: u64, steps: Range<u64>) -> tokio::task::JoinHandle<()> {
    let p = p.handle();
    tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        for i in steps {
            p.sql(&shop_change(&mut rng, i)).await;
        }
    })
}

/// `update --verify` finds nothing missing, extra or different.
fn verify_clean(p: &Pipeline) {
    let (status, out, err) = p.verify(&[], Duration::from_secs(180));
    assert!(
        status.success() && out.contains(": 0 missing, 0 extra, 0 different"),
        "verify found drift:\n{out}\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_stream_verifies_clean() {
    let p = shop(0).await;
    let (_listen, _sync) = running(&p).await;
    workload(&p, seed("steady"), 0..changes())
        .await
        .expect("workload");
    verify_clean(&p);
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_under_load_has_no_failed_search_and_verifies_clean() {
    let p = shop(5000).await;
    let (_listen, _sync) = running(&p).await;
    let writer = workload(&p, seed("rebuild"), 0..changes());
    let searcher = SearchLoop::start(&p);
    let before = p.alias_targets();
    let (status, log) = p.update(&[], Duration::from_secs(180));
    assert!(status.success(), "{log}");
    writer.await.expect("workload");
    let (searches, bad) = searcher.stop();
    assert!(searches > 10, "only {searches} searches ran");
    assert!(
        bad.is_empty(),
        "{} of {searches} searches failed or were empty: {:?}",
        bad.len(),
        bad.first()
    );
    assert_ne!(
        p.alias_targets(),
        before,
        "the alias moved to the new generation"
    );
    verify_clean(&p);
    p.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_each_service_at_random_moments_verifies_clean() {
    let p = shop(20_000).await;
    let p = Pipeline {
        toml: format!("{}[update]\npage_size = 100\nlock_ttl_ms = 2000\n", p.toml),
        ..p
    };
    let (mut listen, mut sync) = running(&p).await;
    let s = seed("kill");
    let mut rng = Rng::new(s);
    let writer = workload(&p, s, 0..changes());

    tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
    listen.kill();
    tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
    let _listen = up(&p, "listen", &[]);

    tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
    sync.kill();
    tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
    let _sync = up(&p, "sync", &[]);

    // A rebuild killed during its load, then resumed.
    let mut update = p.spawn("update", &[]);
    let start = Instant::now();
    let kill_after = 200 + rng.below(2000);
    while start.elapsed() < Duration::from_millis(kill_after) {
        if update.try_exit().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    update.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await; // its lock expires
    let (status, log) = p.update(&["--resume"], Duration::from_secs(180));
    assert!(status.success(), "{log}");

    writer.await.expect("workload");
    verify_clean(&p);
    p.drop().await;
}

/// Two `sync` processes share the partitions (a rebalance in the middle of the
/// stream); then one stops at a random moment and the other takes its partitions
/// while changes keep coming.
///
/// It stops with SIGTERM and so leaves the group at once. After a kill -9 a real broker
/// moves the partitions once `session.timeout.ms` (10 s) passes without a heartbeat, but
/// the local Kafka emulator never expires a session: a killed member keeps its
/// partitions there. A killed `sync` that is restarted is covered above.
///
/// The second starts once the first has its partitions: when two consumers join
/// together, the local emulator's group coordinator sometimes never answers their
/// JoinGroup requests and the group stays `PreparingRebalance` for good (about one run
/// in ten of this test did; `cargo run -p mee-kafka --example join_race` shows it
/// without Mee code). A broker answers both.
#[tokio::test(flavor = "multi_thread")]
async fn two_syncs_one_stopped_midway_verifies_clean() {
    let p = shop(0).await;
    let (_listen, mut first) = running(&p).await;
    let s = seed("two-syncs");
    let mut rng = Rng::new(s);
    let half = changes() / 2;
    let writer = workload(&p, s, 0..half);
    // A rebalance in the middle of the stream, not two members joining at once.
    p.wait_group_stable(1, WAIT);
    let _second = up(&p, "sync", &[]);
    p.wait_group_stable(2, WAIT);
    tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
    assert!(first.terminate(WAIT).success(), "{}", first.stderr());
    writer.await.expect("workload");
    workload(&p, s.wrapping_add(1), half..2 * half)
        .await
        .expect("workload");
    verify_clean(&p);
    p.drop().await;
}
