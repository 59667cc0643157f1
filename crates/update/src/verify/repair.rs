//! `--repair`: the drifted documents written again, versioned with MySQL's binlog
//! position read before they were re-materialized, so any later change (a higher
//! version) wins and a newer write already there makes it a harmless 409.

use super::verdict::Verdict;
use super::{Suspect, Verifier};
use anyhow::Context;
use mee_core::materialize::Document;
use mee_es::{BulkAction, BulkOp};

impl Verifier<'_> {
    /// The version for repairs: the master database's binlog position now.
    pub(super) async fn repair_version(&self) -> anyhow::Result<u64> {
        let db = &self.handler.master().database;
        let pos = self.binlog_position(db).await?;
        pos.version()
            .with_context(|| format!("binlog position {pos} of `{db}` as a version"))
    }

    /// Write the repairs (with `--repair`); count what Elasticsearch did and list what
    /// it refused.
    pub(super) async fn write_repairs(&mut self, repairs: Vec<BulkOp>) -> anyhow::Result<()> {
        if !repairs.is_empty()
            && let Some(writer) = &self.writer
        {
            let outcome = writer
                .write(repairs)
                .await
                .context("repairing: writing to Elasticsearch")?;
            self.t.indexed += outcome.indexed;
            self.t.deleted += outcome.deleted;
            self.t.conflicts += outcome.conflicts;
            for r in &outcome.rejected {
                self.t.refused += 1;
                println!("refused    {}: HTTP {}: {}", r.op.id, r.status, r.reason);
            }
        }
        Ok(())
    }
}

/// The write that repairs suspect `s` of `index` after its re-check: the document MySQL
/// builds now (`doc`) for a missing or different one, a delete of the stored copy for
/// an extra one; `None` when nothing drifted (or nothing can be built).
pub(super) fn repair_op(
    index: &str,
    s: &Suspect,
    verdict: &Verdict,
    doc: Option<&Document>,
    version: u64,
) -> Option<BulkOp> {
    let op = |action: BulkAction, routing: Option<String>| BulkOp {
        index: index.to_string(),
        id: s.id.clone(),
        routing,
        version,
        action,
    };
    match verdict {
        Verdict::Settled => None,
        Verdict::Missing | Verdict::Different(_) => doc.map(|d| {
            op(
                BulkAction::Index {
                    source: d.source.clone(),
                },
                d.routing.clone(),
            )
        }),
        Verdict::Extra { routing } => Some(op(BulkAction::Delete, routing.clone())),
    }
}
