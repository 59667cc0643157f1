//! Pass 1, MySQL → index: every master row materialized, page by page in primary-key
//! order, and the same ids read back with `_mget`. Documents missing from the index
//! or different from MySQL become suspects.

use super::verdict::differences;
use super::{Kind, MGET_CHUNK, RECHECK_BATCH, Suspect, Verifier};
use mee_core::materialize::Document;
use mee_es::DocRef;

impl Verifier<'_> {
    /// MySQL → index: missing and different documents.
    pub(super) async fn mysql_pass(&mut self) -> anyhow::Result<()> {
        let page_size = self.cfg.update.page_size;
        let mut masters = self
            .retry("read master rows", || {
                self.m.masters(self.source, None, page_size)
            })
            .await?;
        while !masters.is_empty() {
            self.interrupted()?;
            let next_after = masters.last_key.clone();
            let (page, next) = tokio::join!(
                self.retry("read items", || self.m.build(self.source, masters.clone())),
                self.retry("read master rows", || {
                    self.m
                        .masters(self.source, next_after.as_deref(), page_size)
                })
            );
            self.check_page(page?.documents).await?;
            if self.suspects.len() >= RECHECK_BATCH {
                self.recheck().await?;
            }
            masters = next?;
        }
        self.recheck().await
    }

    /// Read a page's documents back from the index; those missing or different are
    /// suspects.
    async fn check_page(&mut self, docs: Vec<Document>) -> anyhow::Result<()> {
        self.t.checked += docs.len() as u64;
        for chunk in docs.chunks(MGET_CHUNK) {
            let refs: Vec<DocRef<'_>> = chunk
                .iter()
                .map(|d| DocRef {
                    id: &d.id,
                    routing: d.routing.as_deref(),
                })
                .collect();
            let stored = self.read_back(&refs).await?;
            for (d, stored) in chunk.iter().zip(stored) {
                let kind = match stored {
                    None => Kind::Missing,
                    Some(s) => {
                        self.t.found += 1;
                        if differences(&s, d, 1).is_empty() {
                            continue;
                        }
                        Kind::Different
                    }
                };
                self.suspects.push(Suspect {
                    id: d.id.clone(),
                    keys: vec![d.key.clone()],
                    routing: d.routing.clone(),
                    kind,
                });
            }
        }
        Ok(())
    }
}
