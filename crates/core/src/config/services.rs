//! Settings of the `update` and `sync` services (`[update]`, `[sync]`).

use serde::Deserialize;

/// `[update]`: the full rebuild.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Master rows read per keyset page (and documents per page).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Retired generations whose index is kept (for a quick manual roll-back); older
    /// ones are deleted with their consumer groups.
    #[serde(default = "default_keep_generations")]
    pub keep_generations: usize,
    /// How long to wait for `sync` to catch the new generation up before giving up
    /// (the generation stays `catching_up`; `update --resume` waits again).
    #[serde(default = "default_catch_up_timeout_ms")]
    pub catch_up_timeout_ms: u64,
    /// The swap happens once the new generation's consumer lag is at most this many
    /// messages.
    #[serde(default)]
    pub catch_up_max_lag: u64,
    /// `index.gc_deletes` during the load and catch-up: how long Elasticsearch remembers
    /// a deleted document's version. Must be longer than the rebuild, so a row deleted
    /// while the load runs cannot come back. Restored to the handler's value after.
    #[serde(default = "default_load_gc_deletes")]
    pub load_gc_deletes: String,
    /// How long MySQL may keep failing (transiently) during the load before `update`
    /// gives up, leaving the generation to `--resume` or `--drop-unfinished`. 0: never.
    #[serde(default = "default_give_up_after_ms")]
    pub give_up_after_ms: u64,
    /// Lifetime of the task's lock in Redis (renewed while `update` runs): how soon a
    /// killed `update` stops blocking the next one.
    #[serde(default = "default_lock_ttl_ms")]
    pub lock_ttl_ms: u64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            page_size: default_page_size(),
            keep_generations: default_keep_generations(),
            catch_up_timeout_ms: default_catch_up_timeout_ms(),
            catch_up_max_lag: 0,
            load_gc_deletes: default_load_gc_deletes(),
            give_up_after_ms: default_give_up_after_ms(),
            lock_ttl_ms: default_lock_ttl_ms(),
        }
    }
}

/// `[sync]`: applying change events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// A batch is applied when it has this many events...
    #[serde(default = "default_flush_max_events")]
    pub flush_max_events: usize,
    /// ...or this many bytes of events...
    #[serde(default = "default_flush_max_bytes")]
    pub flush_max_bytes: usize,
    /// ...or this long after its first event arrived.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Batches applied at once per generation: the next ones are read, traced and
    /// rebuilt while earlier ones are written. Offsets are still committed in order,
    /// each only after every earlier batch is done. 1: one batch at a time.
    #[serde(default = "default_batches_in_flight")]
    pub batches_in_flight: usize,
    /// How often the task's generations are read from Redis.
    #[serde(default = "default_generations_poll_ms")]
    pub generations_poll_ms: u64,
    /// On SIGTERM, how long the batch in hand may take to finish before it is
    /// abandoned uncommitted.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Documents whose last write's version `sync` remembers (per generation), so that
    /// a change already included in a write built after it was committed is not
    /// rebuilt again (MariaDB only; see the README's "Consistency"). About 100 bytes
    /// each; 0 turns it off.
    #[serde(default = "default_remembered_writes_max_docs")]
    pub remembered_writes_max_docs: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            flush_max_events: default_flush_max_events(),
            flush_max_bytes: default_flush_max_bytes(),
            flush_interval_ms: default_flush_interval_ms(),
            batches_in_flight: default_batches_in_flight(),
            generations_poll_ms: default_generations_poll_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            remembered_writes_max_docs: default_remembered_writes_max_docs(),
        }
    }
}

fn default_page_size() -> usize {
    1000
}
fn default_keep_generations() -> usize {
    1
}
fn default_catch_up_timeout_ms() -> u64 {
    600_000
}
fn default_load_gc_deletes() -> String {
    "24h".into()
}
fn default_give_up_after_ms() -> u64 {
    600_000
}
fn default_lock_ttl_ms() -> u64 {
    30_000
}
fn default_remembered_writes_max_docs() -> usize {
    500_000
}
fn default_flush_max_events() -> usize {
    2000
}
fn default_flush_max_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_flush_interval_ms() -> u64 {
    100
}
fn default_batches_in_flight() -> usize {
    4
}
fn default_generations_poll_ms() -> u64 {
    2000
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

/// Problems as (key, message).
pub(super) fn problems(update: &UpdateConfig, sync: &SyncConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |key: &str, message: &str| out.push((key.to_string(), message.to_string()));
    if !(1..=10_000).contains(&update.page_size) {
        bad("update.page_size", "must be between 1 and 10000");
    }
    if !valid_time_value(&update.load_gc_deletes) {
        bad(
            "update.load_gc_deletes",
            "must be an Elasticsearch time value such as `24h`, `90m` or `3600s`",
        );
    }
    if update.lock_ttl_ms < 1000 {
        bad("update.lock_ttl_ms", "must be at least 1000");
    }
    if sync.flush_max_events == 0 {
        bad("sync.flush_max_events", "must be at least 1");
    }
    if sync.flush_max_bytes < 1024 {
        bad("sync.flush_max_bytes", "must be at least 1024");
    }
    if !(1..=60_000).contains(&sync.flush_interval_ms) {
        bad("sync.flush_interval_ms", "must be between 1 and 60000");
    }
    if !(1..=64).contains(&sync.batches_in_flight) {
        bad("sync.batches_in_flight", "must be between 1 and 64");
    }
    if sync.generations_poll_ms < 100 {
        bad("sync.generations_poll_ms", "must be at least 100");
    }
    out
}

/// `<number><unit>` with an Elasticsearch time unit.
fn valid_time_value(v: &str) -> bool {
    let digits = v.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && ["d", "h", "m", "s", "ms"].contains(&&v[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(problems(&UpdateConfig::default(), &SyncConfig::default()).is_empty());
        let update = UpdateConfig {
            page_size: 0,
            load_gc_deletes: "a day".into(),
            ..UpdateConfig::default()
        };
        let sync = SyncConfig {
            flush_interval_ms: 0,
            batches_in_flight: 0,
            ..SyncConfig::default()
        };
        let keys: Vec<String> = problems(&update, &sync).into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "update.page_size",
                "update.load_gc_deletes",
                "sync.flush_interval_ms",
                "sync.batches_in_flight"
            ]
        );
        assert!(valid_time_value("90m") && valid_time_value("3600s") && !valid_time_value("h"));
    }
}
