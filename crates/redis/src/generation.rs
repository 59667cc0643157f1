//! Generation metadata of each task, and the lease that keeps two `update` runs of one
//! task apart. Keys, all under the configured prefix:
//!
//! - `<prefix>:task:<task>:generations` — a hash: field = generation id
//!   (`YYYYMMDDhhmmssSSS`, UTC), value = the generation's JSON
//!   ([`mee_core::generation::Generation`]).
//! - `<prefix>:task:<task>:lock` — the `update` lease: a random token, set with
//!   `SET NX PX <ttl>`; renewed (`PEXPIRE`) and released (`DEL`) only by the holder of
//!   the token, checked atomically in a Lua script. A crashed holder's lease expires
//!   after its ttl.

use crate::{Keys, RedisError};
use mee_core::generation::Generation;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::fmt;

/// Renew the lease if `ARGV[1]` still holds it: 1 when renewed, 0 otherwise.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Delete the lease if `ARGV[1]` still holds it: 1 when released, 0 otherwise.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

/// Proof of holding a task's `update` lease. Not `Clone`: releasing consumes it.
#[derive(PartialEq, Eq)]
pub struct LockToken(String);

impl LockToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockToken({})", self.0)
    }
}

/// A token no other process or call uses: per-process random hasher keys over the
/// time, a sequence number and the process id.
fn new_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let mut words = [0u64; 2];
    for w in &mut words {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(seq);
        h.write_u32(pid);
        *w = h.finish();
    }
    format!("{:016x}{:016x}-{pid}-{seq}", words[0], words[1])
}

#[derive(Clone)]
pub struct GenerationStore {
    conn: ConnectionManager,
    keys: Keys,
}

impl fmt::Debug for GenerationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerationStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl GenerationStore {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// `<prefix>:task:<task>:generations`.
    pub fn generations_key(&self, task: &str) -> String {
        self.keys.key(&["task", task, "generations"])
    }

    /// `<prefix>:task:<task>:lock`.
    pub fn lock_key(&self, task: &str) -> String {
        self.keys.key(&["task", task, "lock"])
    }

    /// Store `g` (insert or replace) under its task and id.
    pub async fn put(&mut self, g: &Generation) -> Result<(), RedisError> {
        let key = self.generations_key(&g.task);
        self.conn
            .hset::<_, _, _, ()>(&key, &g.id, g.to_json())
            .await
            .map_err(|source| RedisError::Key {
                key,
                what: "HSET generation",
                source,
            })
    }

    pub async fn get(&mut self, task: &str, id: &str) -> Result<Option<Generation>, RedisError> {
        let key = self.generations_key(task);
        let raw: Option<String> =
            self.conn
                .hget(&key, id)
                .await
                .map_err(|source| RedisError::Key {
                    key: key.clone(),
                    what: "HGET generation",
                    source,
                })?;
        raw.map(|text| parse(&key, task, id, &text)).transpose()
    }

    /// Every generation of `task`, oldest (lowest id) first.
    pub async fn list(&mut self, task: &str) -> Result<Vec<Generation>, RedisError> {
        let key = self.generations_key(task);
        let raw: HashMap<String, String> =
            self.conn
                .hgetall(&key)
                .await
                .map_err(|source| RedisError::Key {
                    key: key.clone(),
                    what: "HGETALL generations",
                    source,
                })?;
        let mut out = raw
            .iter()
            .map(|(id, text)| parse(&key, task, id, text))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Forget generation `id` of `task` (nothing happens when it is not there).
    pub async fn remove(&mut self, task: &str, id: &str) -> Result<(), RedisError> {
        let key = self.generations_key(task);
        self.conn
            .hdel::<_, _, ()>(&key, id)
            .await
            .map_err(|source| RedisError::Key {
                key,
                what: "HDEL generation",
                source,
            })
    }

    /// Take the `update` lease of `task` for `ttl_ms` (> 0); `None` while someone else
    /// holds it.
    pub async fn acquire_lock(
        &mut self,
        task: &str,
        ttl_ms: u64,
    ) -> Result<Option<LockToken>, RedisError> {
        let key = self.lock_key(task);
        let token = new_token();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn)
            .await
            .map_err(|source| RedisError::Key {
                key,
                what: "SET NX PX lock",
                source,
            })?;
        Ok(set.map(|_| LockToken(token)))
    }

    /// Extend the lease to `ttl_ms` from now; `false` when `token` no longer holds it
    /// (it expired, and maybe someone else took it).
    pub async fn renew_lock(
        &mut self,
        task: &str,
        token: &LockToken,
        ttl_ms: u64,
    ) -> Result<bool, RedisError> {
        let key = self.lock_key(task);
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(&key)
            .arg(token.as_str())
            .arg(ttl_ms)
            .query_async(&mut self.conn)
            .await
            .map_err(|source| RedisError::Key {
                key,
                what: "renew lock",
                source,
            })?;
        Ok(renewed == 1)
    }

    /// Give the lease up, if `token` still holds it; a lease someone else holds now is
    /// left alone.
    pub async fn release_lock(&mut self, task: &str, token: LockToken) -> Result<(), RedisError> {
        let key = self.lock_key(task);
        let released: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&key)
            .arg(token.as_str())
            .query_async(&mut self.conn)
            .await
            .map_err(|source| RedisError::Key {
                key: key.clone(),
                what: "release lock",
                source,
            })?;
        if released != 1 {
            tracing::warn!(%key, "the update lock had expired before it was released");
        }
        Ok(())
    }
}

/// A stored generation, which must be of `task` and stored under its own id.
fn parse(key: &str, task: &str, id: &str, text: &str) -> Result<Generation, RedisError> {
    let corrupt = |message: String| RedisError::Corrupt {
        key: key.to_string(),
        message: format!("field `{id}`: {message}"),
    };
    let g = Generation::from_json(text).map_err(corrupt)?;
    if g.id != id || g.task != task {
        return Err(corrupt(format!(
            "holds generation {} of task {}",
            g.id, g.task
        )));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mee_core::generation::Generation;

    #[test]
    fn tokens_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.len() > 32, "{a}");
    }

    #[test]
    fn parse_names_key_and_field() {
        let g = Generation::new("orders", "orders", vec![], String::new(), String::new(), 0)
            .expect("valid");
        assert_eq!(
            parse("k", "orders", &g.id, &g.to_json()).ok(),
            Some(g.clone())
        );
        let err = parse("k", "orders", "x", "{").expect_err("bad json");
        assert!(err.to_string().contains("redis key k"), "{err}");
        assert!(err.to_string().contains("field `x`"), "{err}");
        let err = parse("k", "orders", "20000101000000000", &g.to_json()).expect_err("wrong id");
        assert!(err.to_string().contains("holds generation"), "{err}");
        let err = parse("k", "other", &g.id, &g.to_json()).expect_err("wrong task");
        assert!(err.to_string().contains("of task orders"), "{err}");
    }
}
