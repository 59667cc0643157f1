//! Mee's placeholders: `%col`, `%__last.col:(default)`, `%__master.col`,
//! `%__parent.col`, `%<key>.col:(default)`.
//!
//! In statements they are found outside string literals and comments only (so
//! `LIKE 'a%'` stays text) and always become bound parameters, never SQL text.

use std::fmt;

/// What a placeholder refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ref {
    /// `%col`: a column of the current row.
    Current(String),
    /// `%__last.col`: the last master row of the previous page (keyset paging).
    Last(String),
    /// `%__master.col`: the master row of the document.
    Master(String),
    /// `%__parent.col`: the row the nested list hangs from.
    Parent(String),
    /// `%<key>.col`: the row of another config item.
    Item { key: String, column: String },
}

impl Ref {
    pub fn column(&self) -> &str {
        match self {
            Ref::Current(c) | Ref::Last(c) | Ref::Master(c) | Ref::Parent(c) => c,
            Ref::Item { column, .. } => column,
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Current(c) => write!(f, "%{c}"),
            Ref::Last(c) => write!(f, "%__last.{c}"),
            Ref::Master(c) => write!(f, "%__master.{c}"),
            Ref::Parent(c) => write!(f, "%__parent.{c}"),
            Ref::Item { key, column } => write!(f, "%{key}.{column}"),
        }
    }
}

/// One placeholder and where it sits (byte range) in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub reference: Ref,
    /// The text between `:(` and `)`, used when the referenced row is absent.
    pub default: Option<String>,
    pub start: usize,
    pub end: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    i
}

/// Parse the placeholder starting at `b[start] == b'%'`; `None` when `%` is not
/// followed by a name (a literal percent sign).
fn placeholder_at(text: &str, start: usize) -> Result<Option<Placeholder>, String> {
    let b = text.as_bytes();
    if start + 1 >= b.len() || !is_ident_start(b[start + 1]) {
        return Ok(None);
    }
    let name_end = ident(b, start + 1);
    let name = &text[start + 1..name_end];
    let mut end = name_end;
    let mut column = None;
    if end + 1 < b.len() && b[end] == b'.' && is_ident_start(b[end + 1]) {
        let col_end = ident(b, end + 1);
        column = Some(text[end + 1..col_end].to_string());
        end = col_end;
    }
    let mut default = None;
    if text[end..].starts_with(":(") {
        let close = text[end + 2..]
            .find(')')
            .ok_or_else(|| format!("placeholder at byte {start}: `:(` without a closing `)`"))?;
        default = Some(text[end + 2..end + 2 + close].to_string());
        end = end + 2 + close + 1;
    }
    let reference = match (name, column) {
        ("__last", Some(c)) => Ref::Last(c),
        ("__master", Some(c)) => Ref::Master(c),
        ("__parent", Some(c)) => Ref::Parent(c),
        ("__last" | "__master" | "__parent", None) => {
            return Err(format!("`%{name}` needs a column: `%{name}.<column>`"));
        }
        (n, None) if n.starts_with("__") => {
            return Err(format!(
                "unknown placeholder `%{n}`; the special ones are %__last, %__master and %__parent"
            ));
        }
        (col, None) => Ref::Current(col.to_string()),
        (key, Some(c)) => Ref::Item {
            key: key.to_string(),
            column: c,
        },
    };
    Ok(Some(Placeholder {
        reference,
        default,
        start,
        end,
    }))
}

/// Placeholders in a template such as `document_id: "user_%id"` (every `%name`).
pub fn scan_template(text: &str) -> Result<Vec<Placeholder>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find('%') {
        let start = i + off;
        match placeholder_at(text, start)? {
            Some(p) => {
                i = p.end;
                out.push(p);
            }
            None => i = start + 1,
        }
    }
    Ok(out)
}

/// Placeholders in SQL text, skipping string literals, quoted identifiers and comments.
pub fn scan_sql(sql: &str) -> Result<Vec<Placeholder>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                loop {
                    if i >= b.len() {
                        return Err("unterminated quoted string in statement".into());
                    }
                    if b[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'#' => i = sql[i..].find('\n').map_or(b.len(), |n| i + n),
            b'-' if sql[i..].starts_with("-- ") || sql[i..].starts_with("--\n") => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n)
            }
            b'/' if sql[i..].starts_with("/*") => {
                i = sql[i + 2..]
                    .find("*/")
                    .map(|n| i + 2 + n + 2)
                    .ok_or("unterminated /* comment in statement")?;
            }
            b'%' => match placeholder_at(sql, i)? {
                Some(p) => {
                    i = p.end;
                    out.push(p);
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &[Placeholder]) -> Vec<String> {
        v.iter().map(|p| p.reference.to_string()).collect()
    }

    #[test]
    fn finds_all_forms() {
        let sql = "select * from t where id > %__last.id:(0) and a = %__master.a \
                   and b = %__parent.b and c = %rel.c:(x y)";
        let ps = scan_sql(sql).expect("valid");
        assert_eq!(
            refs(&ps),
            ["%__last.id", "%__master.a", "%__parent.b", "%rel.c"]
        );
        assert_eq!(ps[0].default.as_deref(), Some("0"));
        assert_eq!(ps[3].default.as_deref(), Some("x y"));
        assert_eq!(&sql[ps[1].start..ps[1].end], "%__master.a");
    }

    #[test]
    fn quotes_and_comments_are_not_scanned() {
        let sql = "select * from t where a like 'x%y' and b = \"%q\" -- %c\n and c = %__master.c /* %d */";
        assert_eq!(refs(&scan_sql(sql).expect("valid")), ["%__master.c"]);
        assert_eq!(
            refs(&scan_sql("select 'it''s %x' from t").expect("valid")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn templates() {
        let ps = scan_template("carteam_user_%id").expect("valid");
        assert_eq!(refs(&ps), ["%id"]);
        assert_eq!(ps[0].start, 13);
        assert!(scan_template("100%").expect("valid").is_empty());
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        assert!(scan_sql("select * from t where id = %__master").is_err());
        assert!(scan_sql("select * from t where id > %__last.id:(0").is_err());
        assert!(scan_sql("select * from t where id = %__bogus").is_err());
        assert!(scan_sql("select 'open").is_err());
    }
}
