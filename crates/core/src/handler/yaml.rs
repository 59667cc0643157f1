//! A YAML tree that remembers where each node is, so every config error can point at
//! `file:line:col`. Anchors and aliases are resolved by the loader (an alias is a copy
//! of its anchor's subtree, with the anchor's positions).

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::Value;

/// 1-based line and column of a node in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order: (key, position of the key, value).
    Map(Vec<(String, Pos, Node)>),
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (`1` and `"1"` alike), for values that are names or templates.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document. An empty input is a `Null` node.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| SyntaxError {
        pos: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    match docs.len() {
        0 => Ok(Node {
            pos: Pos { line: 1, col: 1 },
            kind: Kind::Null,
        }),
        1 => convert(&docs[0]),
        _ => Err(SyntaxError {
            pos: pos_of(&docs[1]),
            message: "a handler file holds one YAML document; found a second one (---)".into(),
        }),
    }
}

fn pos_of(n: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: n.span.start.line(),
        col: n.span.start.col() + 1,
    }
}

fn convert(n: &MarkedYaml<'_>) -> Result<Node, SyntaxError> {
    let pos = pos_of(n);
    let kind = match &n.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => Kind::Str(text.to_string()),
        YamlData::Sequence(items) => {
            Kind::Seq(items.iter().map(convert).collect::<Result<_, _>>()?)
        }
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match &k.data {
                    YamlData::Value(s) => match scalar(s) {
                        Kind::Str(s) => s,
                        Kind::Int(i) => i.to_string(),
                        Kind::Bool(b) => b.to_string(),
                        Kind::Float(f) => f.to_string(),
                        _ => String::new(),
                    },
                    YamlData::Representation(text, _, _) => text.to_string(),
                    _ => {
                        return Err(SyntaxError {
                            pos: pos_of(k),
                            message: "mapping keys must be plain names".into(),
                        });
                    }
                };
                entries.push((key, pos_of(k), convert(v)?));
            }
            Kind::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Alias(_) => {
            return Err(SyntaxError {
                pos,
                message: "unresolved alias: define the anchor (&name) before using it (*name)"
                    .into(),
            });
        }
        YamlData::BadValue => {
            return Err(SyntaxError {
                pos,
                message: "value cannot be read".into(),
            });
        }
    };
    Ok(Node { pos, kind })
}

fn scalar(s: &Scalar<'_>) -> Kind {
    match s {
        Scalar::Null => Kind::Null,
        Scalar::Boolean(b) => Kind::Bool(*b),
        Scalar::Integer(i) => Kind::Int(*i),
        Scalar::FloatingPoint(f) => Kind::Float(f.into_inner()),
        Scalar::String(s) => Kind::Str(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_aliases() {
        let text = "a: &x\n  - k: 1\nb:\n  c: *x\n";
        let root = parse(text).expect("valid");
        let Kind::Map(entries) = &root.kind else {
            panic!("map")
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1, Pos { line: 1, col: 1 });
        let Kind::Map(b) = &entries[1].2.kind else {
            panic!("map")
        };
        let Kind::Seq(aliased) = &b[0].2.kind else {
            panic!("alias resolved to a list")
        };
        assert_eq!(
            aliased[0].pos.line, 2,
            "an alias keeps the anchor's positions"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.pos.line >= 1, "{err:?}");
    }
}
