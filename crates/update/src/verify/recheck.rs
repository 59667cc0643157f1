//! Re-checking the suspects together, after waiting for the lag: re-materialized from
//! MySQL, read again from the index, judged, reported, and (with `--repair`) written
//! again.

use super::repair::repair_op;
use super::verdict::verdict;
use super::{Kind, MGET_CHUNK, Verifier};
use mee_core::materialize::Document;
use mee_core::value::Cell;
use mee_es::DocRef;
use std::collections::HashMap;

impl Verifier<'_> {
    /// Re-check the suspects after the current lag; report (and repair) what still
    /// differs.
    pub(super) async fn recheck(&mut self) -> anyhow::Result<()> {
        if self.suspects.is_empty() {
            return Ok(());
        }
        let suspects = std::mem::take(&mut self.suspects);
        self.t.rechecked += suspects.len() as u64;
        self.settle(suspects.len()).await?;
        // Read before materializing: any change after it has a higher version.
        let version = match &self.writer {
            Some(_) => Some(self.repair_version().await?),
            None => None,
        };
        let keys: Vec<Vec<Cell>> = suspects.iter().flat_map(|s| s.keys.clone()).collect();
        let truth: HashMap<String, Document> = if keys.is_empty() {
            HashMap::new()
        } else {
            self.retry("read items", || self.m.keys(self.source, &keys))
                .await?
                .documents
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect()
        };
        let mut repairs = Vec::new();
        for chunk in suspects.chunks(MGET_CHUNK) {
            let refs: Vec<DocRef<'_>> = chunk
                .iter()
                .map(|s| DocRef {
                    id: &s.id,
                    routing: match (s.kind, truth.get(&s.id)) {
                        (Kind::Extra, _) | (_, None) => s.routing.as_deref(),
                        (_, Some(d)) => d.routing.as_deref(),
                    },
                })
                .collect();
            let stored = self.read_back(&refs).await?;
            for (s, stored) in chunk.iter().zip(stored) {
                let doc = truth.get(&s.id);
                let verdict = verdict(s, doc, stored.as_ref());
                self.report(s, &verdict, doc);
                if let Some(version) = version {
                    repairs.extend(repair_op(self.index, s, &verdict, doc, version));
                }
            }
        }
        self.write_repairs(repairs).await
    }
}
