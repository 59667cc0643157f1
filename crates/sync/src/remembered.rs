//! The versions of the documents this process wrote lately, so that a change an
//! earlier write already included is not rebuilt from MySQL again.
//!
//! A document written with version V was built from MySQL reads that began after a
//! consistent snapshot at binlog position V, so it includes every change before V: an
//! event for it with a lower version needs no new write. Only writes Elasticsearch
//! took (or refused as older than the one it has) are remembered; forgetting one is
//! always safe (the document is rebuilt, as without this).

use mee_core::value::{Cell, MatchKey};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Mutex;

/// A document's master key. Most are one column: kept inline, a lookup compares it
/// without following a pointer (one cache miss per probe instead of two).
pub(crate) type DocKey = SmallVec<[MatchKey; 1]>;

/// The [`DocKey`] of a master key's values.
pub(crate) fn doc_key(cells: &[Cell]) -> DocKey {
    cells.iter().map(Cell::match_key).collect()
}

/// The match key of a master row from the values of its key columns; `None` when one
/// is missing or NULL (a NULL key names no row).
pub(crate) fn master_key<'v>(
    values: impl Iterator<Item = Option<&'v serde_json::Value>>,
) -> Option<DocKey> {
    values
        .map(|v| {
            v.filter(|v| !v.is_null())
                .map(|v| mee_core::materialize::json_cell(v).match_key())
        })
        .collect()
}

#[derive(Debug)]
pub(crate) struct RememberedWrites {
    max_docs: usize,
    versions: Mutex<HashMap<DocKey, u64>>,
}

impl RememberedWrites {
    /// Remember up to `max_docs` documents (0: none); when full, start again empty.
    pub fn new(max_docs: usize) -> Self {
        Self {
            max_docs,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a remembered write of `key` already includes a change of `version`.
    pub fn covers(&self, key: &[MatchKey], version: u64) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|&written| version < written)
    }

    /// Remember that each `key` was written with `version` (the newest version wins).
    pub fn remember(&self, keys: impl IntoIterator<Item = DocKey>, version: u64) {
        if self.max_docs == 0 {
            return;
        }
        let mut versions = self.lock();
        for key in keys {
            if versions.len() >= self.max_docs && !versions.contains_key(&key) {
                versions.clear();
            }
            let v = versions.entry(key).or_insert(version);
            *v = (*v).max(version);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DocKey, u64>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: i128) -> DocKey {
        smallvec::smallvec![MatchKey::Int(n)]
    }

    #[test]
    fn covers_only_changes_older_than_the_write() {
        let r = RememberedWrites::new(10);
        r.remember([key(1)], 100);
        assert!(r.covers(&key(1), 99));
        assert!(
            !r.covers(&key(1), 100),
            "a change at the snapshot's position itself"
        );
        assert!(!r.covers(&key(1), 101));
        assert!(!r.covers(&key(2), 1), "never written");
    }

    #[test]
    fn zero_remembers_nothing_and_a_full_memory_starts_again() {
        let off = RememberedWrites::new(0);
        off.remember([key(1)], 100);
        assert!(!off.covers(&key(1), 1));
        let r = RememberedWrites::new(2);
        r.remember([key(1), key(2)], 100);
        r.remember([key(2)], 200);
        assert!(
            r.covers(&key(1), 1),
            "updating a known key keeps the others"
        );
        r.remember([key(3)], 300);
        assert!(!r.covers(&key(1), 1), "forgotten when full");
        assert!(r.covers(&key(3), 299));
    }

    proptest! {
        /// Whatever the order writes are remembered in, a key covers exactly the
        /// changes older than its newest write.
        #[test]
        fn the_newest_write_wins(writes in prop::collection::vec((0i128..5, 1u64..1000), 1..50),
                                 probe in 0u64..1001) {
            let r = RememberedWrites::new(100);
            for (k, v) in &writes {
                r.remember([key(*k)], *v);
            }
            for k in 0..5 {
                let newest = writes.iter().filter(|(wk, _)| *wk == k).map(|(_, v)| *v).max();
                prop_assert_eq!(r.covers(&key(k), probe), newest.is_some_and(|n| probe < n));
            }
        }
    }

    #[test]
    fn a_master_key_needs_every_column_and_no_null() {
        let (id, region) = (serde_json::json!(1001), serde_json::json!("eu"));
        let key = master_key([Some(&id), Some(&region)].into_iter()).expect("key");
        assert_eq!(key.len(), 2);
        assert_eq!(
            master_key([Some(&id), Some(&region)].into_iter()),
            Some(key)
        );
        assert_ne!(
            master_key([Some(&region), Some(&id)].into_iter()),
            master_key([Some(&id), Some(&region)].into_iter())
        );
        assert_eq!(master_key([Some(&id), None].into_iter()), None);
        assert_eq!(
            master_key([Some(&id), Some(&serde_json::Value::Null)].into_iter()),
            None
        );
    }
}
