//! Smoke test against the local stack's Redis.

use mee_redis::redis::AsyncCommands;
use mee_test_support::{StackEnv, unique_name};

#[tokio::test]
async fn set_and_get_under_a_test_prefix() {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("redis"));
    let mut conn = mee_redis::connect(&cfg.redis).await.expect("connect");
    let key = mee_redis::Keys::new(&cfg.redis.key_prefix).key(&["smoke"]);
    let _: () = conn.set(&key, "hello").await.expect("set");
    let got: String = conn.get(&key).await.expect("get");
    assert_eq!(got, "hello");
    let _: () = conn.del(&key).await.expect("del");
}

#[tokio::test]
async fn unreachable_redis_is_transient() {
    use mee_core::Transient;
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[], &unique_name("redis"));
    cfg.redis.url = mee_core::Secret::new("redis://:pw-not-logged@127.0.0.1:1/");
    let err = mee_redis::connect(&cfg.redis)
        .await
        .expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("pw-not-logged"), "{err}");
}
