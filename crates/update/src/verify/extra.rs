//! Pass 2, index → MySQL: every `_id` of the index (a scroll sorted by `_doc`, no
//! sources), inverted through the master's `document_id` template to master keys that
//! are looked up. Documents without a master row, or under a routing the document does
//! not have, become suspects.

use super::{Kind, RECHECK_BATCH, Suspect, Verifier};
use anyhow::Context;
use mee_core::materialize::IdInverter;
use mee_core::value::Cell;
use mee_es::IdScroll;
use std::collections::HashMap;

/// How long the cluster keeps the id scroll between two pages.
const SCROLL_KEEP_ALIVE: &str = "5m";

impl Verifier<'_> {
    /// Index → MySQL: documents without a master row. `Some(why)` when the
    /// `document_id` template cannot be inverted, so they cannot be found.
    pub(super) async fn index_pass(&mut self) -> anyhow::Result<Option<String>> {
        // Everything written so far becomes visible to the scroll (searches see the
        // index as of its last refresh).
        if let Err(e) = self
            .retry("refresh the index", || mee_es::refresh(self.es, self.index))
            .await
        {
            self.note(format!(
                "could not refresh the index ({e:#}): documents written since its last refresh \
                 were not looked at for having no master row"
            ));
        }
        let inverter = match IdInverter::new(self.handler) {
            Ok(i) => i,
            Err(why) => {
                let count = self
                    .retry("count the index's documents", || {
                        mee_es::count(self.es, self.index)
                    })
                    .await?;
                return Ok(Some(format!(
                    "documents without a master row cannot be found: {why}. The index holds {count} \
                     documents; {} of the {} built from MySQL were found in it",
                    self.t.found, self.t.checked
                )));
            }
        };
        let mut scroll = IdScroll::new(
            self.es.clone(),
            self.index,
            self.cfg.update.page_size,
            SCROLL_KEEP_ALIVE,
        );
        loop {
            if let Err(e) = self.interrupted() {
                scroll.close().await;
                return Err(e);
            }
            let Some(hits) = scroll
                .next_page()
                .await
                .context("listing the index's document ids")?
            else {
                break;
            };
            self.t.scanned += hits.len() as u64;
            let candidates: Vec<Vec<Vec<Cell>>> =
                hits.iter().map(|h| inverter.keys(&h.id)).collect();
            let all: Vec<Vec<Cell>> = candidates.iter().flatten().cloned().collect();
            let refs = if all.is_empty() {
                Vec::new()
            } else {
                self.retry("read master rows", || {
                    self.m.document_refs(self.source, &all)
                })
                .await?
                .0
            };
            let routing_by_id: HashMap<&str, Option<&str>> = refs
                .iter()
                .map(|r| (r.id.as_str(), r.routing.as_deref()))
                .collect();
            for (hit, keys) in hits.into_iter().zip(candidates) {
                let extra = match routing_by_id.get(hit.id.as_str()) {
                    None => true,
                    // A copy under a routing the document does not have (when the
                    // cluster tells the routing of hits).
                    Some(routing) => hit.routing.is_some() && hit.routing.as_deref() != *routing,
                };
                if extra {
                    self.suspects.push(Suspect {
                        id: hit.id,
                        keys,
                        routing: hit.routing,
                        kind: Kind::Extra,
                    });
                }
            }
            if self.suspects.len() >= RECHECK_BATCH {
                self.recheck().await?;
            }
        }
        self.recheck().await?;
        Ok(None)
    }
}
