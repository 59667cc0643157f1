//! The generation store and the `update` lease against the local stack's Redis; every
//! test has its own key prefix.

use mee_core::generation::{Generation, GenerationState, PartitionOffset};
use mee_redis::redis::AsyncCommands;
use mee_redis::{GenerationStore, Keys, RedisError};
use mee_test_support::{StackEnv, unique_name};

async fn store() -> (GenerationStore, mee_redis::redis::aio::ConnectionManager) {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("gen"));
    let conn = mee_redis::connect(&cfg.redis).await.expect("connect");
    (
        GenerationStore::new(conn.clone(), Keys::new(&cfg.redis.key_prefix)),
        conn,
    )
}

fn generation(task: &str, ms: u64) -> Generation {
    Generation::new(
        task,
        "orders",
        vec!["mee.shop".into()],
        "orders: []\n".into(),
        "conf/handlers/orders.yml".into(),
        ms,
    )
    .expect("valid generation")
}

#[tokio::test]
async fn put_get_list_in_id_order_and_remove() {
    let (mut store, mut conn) = store().await;
    let task = "orders";
    assert!(store.list(task).await.expect("list").is_empty());
    assert_eq!(
        store.get(task, "20260101000000000").await.expect("get"),
        None
    );

    // Put newest first: list still returns them oldest first.
    let times = [1_800_000_000_000, 1_700_000_000_000, 1_750_000_000_000];
    for ms in times {
        store.put(&generation(task, ms)).await.expect("put");
    }
    let mut other = generation("other_task", 1_600_000_000_000);
    other.state = GenerationState::Live;
    store.put(&other).await.expect("put other task");

    let listed = store.list(task).await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "20231114221320000",
            "20250615150640000",
            "20270115080000000"
        ]
    );

    // A put replaces; get reads it back exactly.
    let mut g = listed[1].clone();
    g.offsets_mark = vec![PartitionOffset {
        topic: "mee.shop".into(),
        partition: 1,
        offset: 17,
    }];
    g.counters.documents_written = 5;
    g.set_state(GenerationState::CatchingUp, 1_750_000_001_000)
        .expect("forward");
    store.put(&g).await.expect("replace");
    assert_eq!(store.get(task, &g.id).await.expect("get"), Some(g.clone()));
    assert_eq!(store.list(task).await.expect("list").len(), 3);

    // Stored where the layout says.
    let key = store.generations_key(task);
    assert!(key.ends_with(":task:orders:generations"), "{key}");
    let raw: Option<String> = conn.hget(&key, &g.id).await.expect("hget");
    assert_eq!(raw, Some(g.to_json()));

    store.remove(task, &g.id).await.expect("remove");
    store
        .remove(task, &g.id)
        .await
        .expect("removing again is fine");
    assert_eq!(store.get(task, &g.id).await.expect("get"), None);
    assert_eq!(store.list(task).await.expect("list").len(), 2);
    assert_eq!(
        store.list("other_task").await.expect("other"),
        vec![other.clone()],
        "tasks are separate"
    );

    for t in [task, "other_task"] {
        let _: () = conn.del(store.generations_key(t)).await.expect("cleanup");
    }
}

#[tokio::test]
async fn a_corrupt_value_names_its_key_and_field() {
    let (mut store, mut conn) = store().await;
    let task = "orders";
    let good = generation(task, 1_700_000_000_000);
    store.put(&good).await.expect("put");
    let key = store.generations_key(task);
    let _: () = conn
        .hset(&key, "20240101000000000", "{\"format\":1,\"oops\":true}")
        .await
        .expect("hset");

    let err = store.list(task).await.expect_err("corrupt");
    assert!(matches!(err, RedisError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&key), "{text}");
    assert!(text.contains("20240101000000000"), "{text}");
    let err = store
        .get(task, "20240101000000000")
        .await
        .expect_err("corrupt");
    assert!(err.to_string().contains(&key), "{err}");
    assert!(!mee_core::Transient::is_transient(&err));
    assert_eq!(
        store.get(task, &good.id).await.expect("others still read"),
        Some(good)
    );

    let _: () = conn.del(&key).await.expect("cleanup");
}

#[tokio::test]
async fn the_lock_excludes_and_is_released_by_its_token_only() {
    let (mut a, mut conn) = store().await;
    let mut b = a.clone();
    let task = "orders";

    let held = a
        .acquire_lock(task, 30_000)
        .await
        .expect("acquire")
        .expect("free at first");
    assert_eq!(
        b.acquire_lock(task, 30_000).await.expect("acquire"),
        None,
        "held by a"
    );
    let stored: Option<String> = conn.get(a.lock_key(task)).await.expect("get");
    assert_eq!(stored.as_deref(), Some(held.as_str()));
    assert!(a.lock_key(task).ends_with(":task:orders:lock"));

    // Another task's lock is independent.
    let other = b
        .acquire_lock("other_task", 30_000)
        .await
        .expect("acquire")
        .expect("other task is free");

    // Renew extends the ttl for the holder only.
    let _: () = conn
        .pexpire(a.lock_key(task), 1_000)
        .await
        .expect("shorten");
    assert!(a.renew_lock(task, &held, 60_000).await.expect("renew"));
    let ttl: i64 = conn.pttl(a.lock_key(task)).await.expect("pttl");
    assert!(ttl > 30_000, "renewed to 60 s: {ttl}");

    // A stale holder (its lease expired and someone else took it) can neither renew
    // nor release the new holder's lease.
    let stale = a
        .acquire_lock("stale_task", 50)
        .await
        .expect("acquire")
        .expect("free");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let fresh = b
        .acquire_lock("stale_task", 30_000)
        .await
        .expect("acquire")
        .expect("expired lease is free");
    assert!(
        !a.renew_lock("stale_task", &stale, 30_000)
            .await
            .expect("renew")
    );
    a.release_lock("stale_task", stale)
        .await
        .expect("release of a lost lease is not an error");
    let stored: Option<String> = conn.get(a.lock_key("stale_task")).await.expect("get");
    assert_eq!(
        stored.as_deref(),
        Some(fresh.as_str()),
        "the new holder keeps it"
    );

    // The holder releases; then b may take it.
    a.release_lock(task, held).await.expect("release");
    let taken = b
        .acquire_lock(task, 30_000)
        .await
        .expect("acquire")
        .expect("free after release");

    for (t, token) in [(task, taken), ("other_task", other), ("stale_task", fresh)] {
        b.release_lock(t, token).await.expect("release");
        let exists: bool = conn.exists(b.lock_key(t)).await.expect("exists");
        assert!(!exists, "{t} released");
    }
}
