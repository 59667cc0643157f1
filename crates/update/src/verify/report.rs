//! What `--verify` prints: a line per drifted document (the first ones of each kind,
//! with the differing fields of the first different ones), then the totals and notes.

use super::verdict::Verdict;
use super::{Suspect, Verifier};
use anyhow::bail;
use mee_core::materialize::Document;

/// Different documents whose differing fields are listed.
const DIFFS_SHOWN: u64 = 5;
/// Ids listed per kind of drift; the rest are only counted.
const IDS_SHOWN: u64 = 100;

impl Verifier<'_> {
    /// Count a re-checked suspect by its verdict, and list it while few of its kind
    /// were; `doc` is what MySQL builds for its id now.
    pub(super) fn report(&mut self, s: &Suspect, verdict: &Verdict, doc: Option<&Document>) {
        match verdict {
            Verdict::Settled => self.t.in_flight += 1,
            Verdict::Missing => {
                self.t.missing += 1;
                if self.t.missing <= IDS_SHOWN {
                    println!("missing    {}", s.id);
                }
            }
            Verdict::Different(diffs) => {
                self.t.different += 1;
                if self.t.different <= IDS_SHOWN {
                    println!("different  {}", s.id);
                }
                if self.t.different <= DIFFS_SHOWN {
                    for d in diffs {
                        println!("    {d}");
                    }
                }
            }
            Verdict::Extra { routing } => {
                self.t.extra += 1;
                if self.t.extra <= IDS_SHOWN {
                    match (routing, doc) {
                        (Some(r), Some(d)) => println!(
                            "extra      {} (a copy under routing {r}; the document's routing is {})",
                            s.id,
                            d.routing.as_deref().unwrap_or("none")
                        ),
                        _ => println!("extra      {} (no master row in MySQL)", s.id),
                    }
                }
            }
        }
    }

    /// Print the totals; `Err` when drift remains.
    pub(super) fn summary(&self, extras_unchecked: Option<String>) -> anyhow::Result<()> {
        let t = &self.t;
        println!(
            "checked {} documents: {} missing, {} extra, {} different",
            t.checked, t.missing, t.extra, t.different
        );
        let scanned = match &extras_unchecked {
            Some(_) => "index not scanned".to_string(),
            None => format!("{} ids read from the index", t.scanned),
        };
        println!(
            "  {} built from MySQL, {scanned}, {} re-checked after the sync lag ({} were \
             changes in flight)",
            t.checked, t.rechecked, t.in_flight
        );
        if let Some(why) = &extras_unchecked {
            println!("note: {why}");
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        if [t.missing, t.extra, t.different]
            .iter()
            .any(|n| *n > IDS_SHOWN)
        {
            println!(
                "note: only the first {IDS_SHOWN} ids of each kind are listed, and the fields of \
                 the first {DIFFS_SHOWN} different documents"
            );
        }
        let drift = t.missing + t.extra + t.different;
        if self.writer.is_some() {
            println!(
                "repaired {} of {drift} documents: {} indexed, {} deleted, {} already had a newer \
                 write, {} refused",
                drift.saturating_sub(t.refused),
                t.indexed,
                t.deleted,
                t.conflicts,
                t.refused
            );
            if t.refused > 0 {
                bail!(
                    "{} documents could not be repaired: Elasticsearch refused them (reasons above)",
                    t.refused
                );
            }
            return Ok(());
        }
        if drift > 0 {
            bail!(
                "drift: {drift} documents of index {} differ from MySQL ({} missing, {} extra, {} \
                 different); `--verify --repair` writes them again",
                self.index,
                t.missing,
                t.extra,
                t.different
            );
        }
        Ok(())
    }
}
