//! The checked form of a handler config.

use super::placeholder::{Placeholder, Ref, scan_template};
use super::statement::Statement;
use super::yaml::Pos;
use serde_json::Value;

/// One index, as a handler file describes it.
#[derive(Debug, Clone)]
pub struct Handler {
    /// The index alias users search; generations are `<alias>_<timestamp>`.
    pub alias: String,
    /// Mee's `<type_name>` level, accepted and ignored (ES has no types since 7).
    pub type_name: Option<String>,
    /// Index settings for a new generation (our extension).
    pub settings: Option<Value>,
    /// Index mappings for a new generation (our extension).
    pub mappings: Option<Value>,
    /// The document's items; `group.items[group.master]` is the master item.
    pub group: Group,
    /// Primary key columns of the master table (`primary_key`, default `[id]`).
    pub primary_key: Vec<String>,
    /// The YAML text, kept so a generation can carry its own copy.
    pub source: String,
}

/// Items that together build one JSON object: the document, or one element of a
/// nested array.
#[derive(Debug, Clone)]
pub struct Group {
    pub items: Vec<Item>,
    /// Index of the item whose rows make the objects (the one with `document_id`).
    pub master: usize,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub database: String,
    pub table: String,
    pub statement: Statement,
    pub document_id: Option<Template>,
    pub routing: Option<Template>,
    /// ES field → value template: finds the documents this row feeds (Mee's `query`).
    pub query: Vec<(String, Template)>,
    /// As `query`, for the document holding a nested element.
    pub parent_query: Vec<(String, Template)>,
    /// Column → accepted values; a binlog row failing it is irrelevant.
    pub filter: Vec<(String, Vec<Value>)>,
    pub fields: Vec<Field>,
    /// Key path in the file, e.g. `index_vehicle.vehicle[2]`.
    pub path: String,
    pub pos: Pos,
    /// Where the statement text starts, for errors about it.
    pub statement_pos: Pos,
}

/// One entry of an item's `mapping`.
#[derive(Debug, Clone)]
pub enum Field {
    Column {
        column: String,
        es_field: String,
        /// Written when the item has no row, or the column is NULL.
        null_value: Option<Value>,
        /// The ES mapping says the field is numeric: DECIMAL goes out as a number.
        decimal_as_number: bool,
    },
    Nested {
        es_field: String,
        group: Group,
    },
}

/// A value template such as `carteam_user_%id`: text with `%column` placeholders
/// filled from the current row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pub placeholders: Vec<Placeholder>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let placeholders = scan_template(text)?;
        if let Some(p) = placeholders
            .iter()
            .find(|p| !matches!(p.reference, Ref::Current(_)))
        {
            return Err(format!(
                "`{}`: a template can only use columns of its own row (`%column`)",
                p.reference
            ));
        }
        Ok(Self {
            text: text.to_string(),
            placeholders,
        })
    }

    /// The columns the template reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.placeholders.iter().map(|p| p.reference.column())
    }

    /// Fill in the placeholders; `column` gives a column's text (None: missing).
    pub fn render(&self, column: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::with_capacity(self.text.len() + 8);
        let mut at = 0;
        for p in &self.placeholders {
            out.push_str(&self.text[at..p.start]);
            out.push_str(&column(p.reference.column())?);
            at = p.end;
        }
        out.push_str(&self.text[at..]);
        Some(out)
    }
}

impl Group {
    pub fn master_item(&self) -> &Item {
        &self.items[self.master]
    }
}

impl Handler {
    pub fn master(&self) -> &Item {
        self.group.master_item()
    }

    /// Every item, depth first, in file order.
    pub fn all_items(&self) -> Vec<&Item> {
        fn walk<'a>(g: &'a Group, out: &mut Vec<&'a Item>) {
            for item in &g.items {
                out.push(item);
                for f in &item.fields {
                    if let Field::Nested { group, .. } = f {
                        walk(group, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.group, &mut out);
        out
    }
}
