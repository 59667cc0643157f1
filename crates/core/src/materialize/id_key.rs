//! From a document `_id` back to the master key it could come from, by inverting the
//! master's `document_id` template: `update --verify` tells whether a document in the
//! index still has a master row without holding every id in memory, and `sync` turns
//! the documents a `query` search finds into keys to rebuild.
//!
//! Invertible: templates whose placeholders are all primary-key columns, each key
//! column appearing, with text between any two placeholders (`%id`, `user_%id`,
//! `%shop-%no` for a key (shop, no)). The candidates are checked by rendering the id of
//! the master row found again, so an ambiguous split only costs a lookup.

use crate::handler::Handler;
use crate::value::Cell;

/// Most key candidates tried for one id (a separator that also occurs in the values
/// makes several splits possible).
const MAX_CANDIDATES: usize = 16;

#[derive(Debug, Clone)]
pub struct IdInverter {
    /// Text before, between and after the placeholders: `placeholders + 1` pieces.
    literals: Vec<String>,
    /// For each placeholder, its primary-key position.
    columns: Vec<usize>,
    key_len: usize,
}

impl IdInverter {
    /// The inverter for the handler's `document_id`, or why there is none.
    pub fn new(handler: &Handler) -> Result<Self, String> {
        let master = handler.master();
        let Some(t) = &master.document_id else {
            return Err("the master item has no document_id".into());
        };
        let pk = &handler.primary_key;
        let mut literals = Vec::new();
        let mut columns = Vec::new();
        let mut at = 0;
        for p in &t.placeholders {
            let column = p.reference.column();
            let Some(i) = pk.iter().position(|k| k.eq_ignore_ascii_case(column)) else {
                return Err(format!(
                    "document_id `{}` uses `{column}`, which is not a primary key column ({})",
                    t.text,
                    pk.join(", ")
                ));
            };
            literals.push(t.text[at..p.start].to_string());
            columns.push(i);
            at = p.end;
        }
        literals.push(t.text[at..].to_string());
        if let Some(k) = pk
            .iter()
            .enumerate()
            .find(|(i, _)| !columns.contains(i))
            .map(|(_, k)| k)
        {
            return Err(format!(
                "document_id `{}` does not contain the primary key column `{k}`",
                t.text
            ));
        }
        if literals[1..literals.len() - 1].iter().any(String::is_empty) {
            return Err(format!(
                "document_id `{}` has two placeholders with nothing between them",
                t.text
            ));
        }
        Ok(Self {
            literals,
            columns,
            key_len: pk.len(),
        })
    }

    /// The master keys (as text cells, in primary-key order) that could render `id`;
    /// empty when no master row can have this id.
    pub fn keys(&self, id: &str) -> Vec<Vec<Cell>> {
        let first = &self.literals[0];
        let last = &self.literals[self.literals.len() - 1];
        let Some(rest) = id.strip_prefix(first.as_str()) else {
            return Vec::new();
        };
        let Some(body) = rest.strip_suffix(last.as_str()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut values: Vec<Option<&str>> = vec![None; self.key_len];
        self.split(body, 0, &mut values, &mut out);
        out
    }

    /// Assign `text` to placeholders `n..`, trying every occurrence of each separator.
    fn split<'t>(
        &self,
        text: &'t str,
        n: usize,
        values: &mut Vec<Option<&'t str>>,
        out: &mut Vec<Vec<Cell>>,
    ) {
        if out.len() >= MAX_CANDIDATES {
            return;
        }
        let column = self.columns[n];
        if n + 1 == self.columns.len() {
            if let Some(key) = self.assign(values, column, text) {
                out.push(
                    key.iter()
                        .map(|v| Cell::Bytes(v.unwrap_or_default().as_bytes().to_vec()))
                        .collect(),
                );
            }
            return;
        }
        let sep = self.literals[n + 1].as_str();
        for (i, _) in text.match_indices(sep) {
            let Some(next) = self.assign(values, column, &text[..i]) else {
                continue;
            };
            let mut next = next;
            self.split(&text[i + sep.len()..], n + 1, &mut next, out);
        }
    }

    /// `values` with `column` set to `value`; `None` when it already has another value
    /// (a column used twice must agree).
    fn assign<'t>(
        &self,
        values: &[Option<&'t str>],
        column: usize,
        value: &'t str,
    ) -> Option<Vec<Option<&'t str>>> {
        match values[column] {
            Some(v) if v != value => None,
            _ => {
                let mut next = values.to_vec();
                next[column] = Some(value);
                Some(next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(document_id: &str, pk: &str) -> Handler {
        let yaml = format!(
            "users:\n  - key: users\n    database: db\n    table: users\n    document_id: \"{document_id}\"\n    primary_key: {pk}\n    statement: \"select * from users\"\n    mapping:\n      - name\n"
        );
        Handler::parse("h.yml", &yaml).expect("handler")
    }

    fn text(keys: &[Vec<Cell>]) -> Vec<Vec<String>> {
        keys.iter()
            .map(|k| k.iter().map(Cell::to_text).collect())
            .collect()
    }

    #[test]
    fn a_single_key_column_with_prefix_and_suffix() {
        let inv = IdInverter::new(&handler("user_%id!", "id")).expect("invertible");
        assert_eq!(text(&inv.keys("user_42!")), [["42"]]);
        assert!(inv.keys("user_42").is_empty());
        assert!(inv.keys("order_42!").is_empty());
        assert_eq!(text(&inv.keys("user_!")), [[""]]);
        let plain = IdInverter::new(&handler("%id", "id")).expect("invertible");
        assert_eq!(text(&plain.keys("1001")), [["1001"]]);
    }

    #[test]
    fn composite_keys_try_every_split() {
        let inv = IdInverter::new(&handler("%a-%b", "[a, b]")).expect("invertible");
        assert_eq!(text(&inv.keys("x-y")), [["x", "y"]]);
        assert_eq!(text(&inv.keys("x-y-z")), [["x", "y-z"], ["x-y", "z"]]);
        assert!(inv.keys("xyz").is_empty());
        // Reversed order in the template: keys still come in primary-key order.
        let rev = IdInverter::new(&handler("%b/%a", "[a, b]")).expect("invertible");
        assert_eq!(text(&rev.keys("2/1")), [["1", "2"]]);
    }

    #[test]
    fn templates_that_cannot_be_inverted_say_why() {
        let e = IdInverter::new(&handler("%name", "id")).expect_err("not a key column");
        assert!(e.contains("not a primary key column"), "{e}");
        let e = IdInverter::new(&handler("%a", "[a, b]")).expect_err("b missing");
        assert!(e.contains("`b`"), "{e}");
        let e = IdInverter::new(&handler("%a%b", "[a, b]")).expect_err("adjacent");
        assert!(e.contains("nothing between"), "{e}");
    }
}
