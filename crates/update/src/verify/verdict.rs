//! What a suspect turns out to be at its re-check, by comparing what MySQL builds for
//! its id now with what the index holds.

use super::compare::{self, FieldDiff};
use super::{Kind, Suspect};
use mee_core::materialize::Document;
use mee_es::StoredDoc;
use serde_json::Value;

/// Field lines listed per different document.
const FIELDS_SHOWN: usize = 20;

/// What the re-check found.
pub(super) enum Verdict {
    /// Equal now: it was a change in flight.
    Settled,
    Missing,
    Different(Vec<FieldDiff>),
    /// A stored copy without a master row (or under a routing the document no longer has).
    Extra {
        routing: Option<String>,
    },
}

/// The routing and source fields where the stored document differs from `doc`.
pub(super) fn differences(stored: &StoredDoc, doc: &Document, max: usize) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    if stored.routing != doc.routing {
        out.push(FieldDiff {
            path: "_routing".into(),
            es: stored.routing.clone().map(Value::String),
            mysql: doc.routing.clone().map(Value::String),
        });
    }
    out.extend(compare::diff(
        &stored.source,
        &doc.source_value(),
        max.saturating_sub(out.len()),
    ));
    out
}

/// What a suspect is after the re-check: `doc` is what MySQL builds for its id now,
/// `stored` what the index holds (looked up with `doc`'s routing, or with the stored
/// copy's for an extra one).
pub(super) fn verdict(s: &Suspect, doc: Option<&Document>, stored: Option<&StoredDoc>) -> Verdict {
    let stored_routing = |st: &StoredDoc| st.routing.clone().or_else(|| s.routing.clone());
    match (doc, stored) {
        (None, None) => Verdict::Settled,
        (None, Some(st)) => Verdict::Extra {
            routing: stored_routing(st),
        },
        (Some(_), None) if s.kind == Kind::Extra => Verdict::Settled,
        (Some(_), None) => Verdict::Missing,
        (Some(d), Some(st)) if s.kind == Kind::Extra && st.routing != d.routing => Verdict::Extra {
            routing: stored_routing(st),
        },
        (Some(d), Some(st)) => {
            let diffs = differences(st, d, FIELDS_SHOWN);
            if diffs.is_empty() {
                Verdict::Settled
            } else {
                Verdict::Different(diffs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mee_core::value::Cell;
    use serde_json::json;

    fn doc(id: &str, routing: Option<&str>, source: Value) -> Document {
        Document {
            key: vec![Cell::Bytes(id.as_bytes().to_vec())],
            id: id.into(),
            routing: routing.map(Into::into),
            source: source.to_string(),
        }
    }

    fn stored(id: &str, routing: Option<&str>, source: Value) -> StoredDoc {
        StoredDoc {
            id: id.into(),
            routing: routing.map(Into::into),
            version: Some(1),
            source,
        }
    }

    fn suspect(kind: Kind, routing: Option<&str>) -> Suspect {
        Suspect {
            id: "1".into(),
            keys: Vec::new(),
            routing: routing.map(Into::into),
            kind,
        }
    }

    #[test]
    fn verdicts_after_the_recheck() {
        let d = doc("1", None, json!({"a": 1}));
        let same = stored("1", None, json!({"a": 1.0}));
        let other = stored("1", None, json!({"a": 2}));
        let missing = suspect(Kind::Missing, None);
        assert!(matches!(
            verdict(&missing, Some(&d), Some(&same)),
            Verdict::Settled
        ));
        assert!(matches!(
            verdict(&missing, Some(&d), None),
            Verdict::Missing
        ));
        match verdict(&missing, Some(&d), Some(&other)) {
            Verdict::Different(diffs) => {
                assert_eq!(diffs[0].to_string(), "a: es=2 mysql=1")
            }
            _ => panic!("different"),
        }
        // The master row went away meanwhile: gone from the index too, or left over.
        assert!(matches!(verdict(&missing, None, None), Verdict::Settled));
        assert!(matches!(
            verdict(&missing, None, Some(&same)),
            Verdict::Extra { routing: None }
        ));
        // An extra document whose master row appeared meanwhile.
        let extra = suspect(Kind::Extra, None);
        assert!(matches!(
            verdict(&extra, Some(&d), Some(&same)),
            Verdict::Settled
        ));
        assert!(matches!(verdict(&extra, Some(&d), None), Verdict::Settled));
        // A copy under a routing the document does not have.
        let routed = doc("1", Some("r1"), json!({"a": 1}));
        let stray = stored("1", Some("r9"), json!({"a": 1}));
        assert!(matches!(
            verdict(&suspect(Kind::Extra, Some("r9")), Some(&routed), Some(&stray)),
            Verdict::Extra { routing: Some(r) } if r == "r9"
        ));
    }

    #[test]
    fn a_routing_difference_is_a_difference() {
        let d = doc("1", Some("a"), json!({"x": 1}));
        let s = stored("1", Some("b"), json!({"x": 1}));
        let diffs: Vec<String> = differences(&s, &d, 5)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(diffs, [r#"_routing: es="b" mysql="a""#]);
    }
}
