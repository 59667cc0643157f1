//! Redis adapter: the connection used for generation metadata and `listen` positions,
//! and the key layout under the configured prefix.

mod error;
mod generation;
mod position;

pub use error::RedisError;
pub use generation::{GenerationStore, LockToken};
pub use position::PositionStore;

use mee_core::config::RedisConfig;
use mee_core::secret::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

pub use redis;

/// A connection manager (reconnects by itself) to the configured Redis, after a PING.
pub async fn connect(cfg: &RedisConfig) -> Result<ConnectionManager, RedisError> {
    let shown = redact_url(cfg.url.expose());
    let client = redis::Client::open(cfg.url.expose()).map_err(|source| RedisError::Request {
        url: shown.clone(),
        what: "open",
        source,
    })?;
    // Few internal retries: callers retry with their own capped backoff and logging.
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|source| RedisError::Request {
            url: shown.clone(),
            what: "connect",
            source,
        })?;
    let _: () = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|source| RedisError::Request {
            url: shown,
            what: "PING",
            source,
        })?;
    Ok(conn)
}

/// Keys we own, all under `<prefix>:`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Any key of ours: `<prefix>:<parts joined by ':'>`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        assert_eq!(Keys::new("mee").key(&["task", "orders"]), "mee:task:orders");
    }
}
