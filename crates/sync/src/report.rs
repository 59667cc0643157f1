//! What applying a batch did, for the metrics.

use std::time::Duration;

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BatchReport {
    /// Change events read, per (table, type).
    pub consumed: Vec<(String, &'static str, u64)>,
    /// Events that affected no document, per reason.
    pub skipped: Vec<(&'static str, u64)>,
    /// (table, type) of TRUNCATE/DDL on tables the handler reads.
    pub rebuild_needed: Vec<(String, &'static str)>,
    pub indexed: u64,
    pub deleted: u64,
    pub conflicts: u64,
    pub dead_lettered: u64,
    /// Documents not rebuilt: a write this process made already included their changes.
    pub covered: u64,
    pub bulk_latencies: Vec<Duration>,
    /// Time spent per stage: filter (skipping what the handler does not read), trace (finding the affected documents), search
    /// (items found by `query`), build (reading them from MySQL), queue (waiting for
    /// the earlier batches' writes), write (Elasticsearch), dead_letter.
    pub stages: Vec<(&'static str, Duration)>,
    /// Commit time of the newest event in the batch.
    pub newest_commit_ms: Option<u64>,
}

impl BatchReport {
    pub(crate) fn consumed(&mut self, table: &str, kind: &'static str) {
        match self
            .consumed
            .iter_mut()
            .find(|(t, k, _)| t == table && *k == kind)
        {
            Some((_, _, n)) => *n += 1,
            None => self.consumed.push((table.to_string(), kind, 1)),
        }
    }

    pub(crate) fn skipped(&mut self, reason: &'static str) {
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason, 1)),
        }
    }
}
