//! Comparing a stored document with the materialized one, field by field.

use serde_json::{Number, Value};
use std::fmt;

/// One field whose value differs. `None`: the field is absent on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// `status`, `items[0].quantity`; `_routing` for the routing; `(document)` for the
    /// whole source when one side is not an object.
    pub path: String,
    pub es: Option<Value>,
    pub mysql: Option<Value>,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: es={} mysql={}",
            self.path,
            shown(self.es.as_ref()),
            shown(self.mysql.as_ref())
        )
    }
}

/// Longest value shown in a diff line, in characters.
const SHOWN_MAX: usize = 120;

fn shown(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "<absent>".into();
    };
    let text = v.to_string();
    if text.chars().count() <= SHOWN_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(SHOWN_MAX).collect();
    cut.push_str("...");
    cut
}

/// Whether two JSON values are the same document content. Numbers compare by value
/// (`42.5` and `42.50`, `3` and `3.0` are the same); everything else exactly; object
/// key order does not matter.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| same(v, other)))
        }
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The fields where `es` differs from `mysql`, depth first by field name (fields only
/// `es` has come last), at most `max`.
pub fn diff(es: &Value, mysql: &Value, max: usize) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk("", Some(es), Some(mysql), max, &mut out);
    out
}

fn walk(
    path: &str,
    es: Option<&Value>,
    mysql: Option<&Value>,
    max: usize,
    out: &mut Vec<FieldDiff>,
) {
    if out.len() >= max {
        return;
    }
    match (es, mysql) {
        (Some(Value::Object(e)), Some(Value::Object(m))) => {
            for (k, mv) in m {
                walk(&join(path, k), e.get(k), Some(mv), max, out);
            }
            for (k, ev) in e {
                if !m.contains_key(k) {
                    walk(&join(path, k), Some(ev), None, max, out);
                }
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(m))) => {
            for i in 0..e.len().max(m.len()) {
                walk(&format!("{path}[{i}]"), e.get(i), m.get(i), max, out);
            }
        }
        (Some(e), Some(m)) if same(e, m) => {}
        (None, None) => {}
        (e, m) => out.push(FieldDiff {
            path: if path.is_empty() {
                "(document)".into()
            } else {
                path.to_string()
            },
            es: e.cloned(),
            mysql: m.cloned(),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        let a: Value = serde_json::from_str(r#"{"total": 42.5, "n": 3}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"n": 3.0, "total": 42.50}"#).unwrap();
        assert!(same(&a, &b));
        assert!(diff(&a, &b, 10).is_empty());
        assert!(!same(&json!(1), &json!(2)));
        assert!(!same(&json!("1"), &json!(1)), "a string is not a number");
        assert!(same(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!same(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn diffs_name_nested_paths_and_absent_fields() {
        let es = json!({"status": "paid", "items": [{"q": 1}, {"q": 2}], "old": true});
        let mysql = json!({"status": "new", "items": [{"q": 1}, {"q": 3}, {"q": 4}], "x": null});
        let d: Vec<String> = diff(&es, &mysql, 10)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            [
                "items[1].q: es=2 mysql=3",
                r#"items[2]: es=<absent> mysql={"q":4}"#,
                r#"status: es="paid" mysql="new""#,
                "x: es=<absent> mysql=null",
                "old: es=true mysql=<absent>",
            ]
        );
        assert_eq!(diff(&es, &mysql, 2).len(), 2, "capped");
        assert_eq!(
            diff(&json!(null), &json!({"a": 1}), 5)[0].path,
            "(document)"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let d = FieldDiff {
            path: "t".into(),
            es: Some(json!("x".repeat(500))),
            mysql: None,
        };
        let s = d.to_string();
        assert!(
            s.len() < 200 && s.contains("...") && s.ends_with("mysql=<absent>"),
            "{s}"
        );
    }
}
