//! From YAML to a checked [`Handler`], collecting every problem on the way.

use super::model::{Field, Group, Handler, Item, Template};
use super::placeholder::Ref;
use super::statement::Statement;
use super::yaml::{self, Kind, Node, Pos};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// One problem in a handler file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub pos: Pos,
    /// Key path, e.g. `index_vehicle.vehicle[2].mapping[1]`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a handler file, printed one per line as
/// `file:line:col: path: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct HandlerError {
    pub file: String,
    pub issues: Vec<Issue>,
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: ", self.file, issue.pos.line, issue.pos.col)?;
            if !issue.path.is_empty() {
                write!(f, "{}: ", issue.path)?;
            }
            write!(f, "{}", issue.message)?;
        }
        Ok(())
    }
}

const ITEM_KEYS: &[&str] = &[
    "key",
    "database",
    "table",
    "statement",
    "document_id",
    "routing",
    "query",
    "parent_query",
    "filter",
    "mapping",
    "primary_key",
];
const FIELD_KEYS: &[&str] = &["db_field", "es_field", "field", "null_value", "type"];
const NUMERIC_ES_TYPES: &[&str] = &[
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
];

impl Handler {
    /// Parse and check a handler. `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Handler, HandlerError> {
        let mut p = Parser::default();
        let handler = match yaml::parse(text) {
            Ok(root) => p.handler(&root, text),
            Err(e) => {
                p.issue(e.pos, "", format!("YAML syntax: {}", e.message));
                None
            }
        };
        match handler {
            Some(h) if p.issues.is_empty() => Ok(h),
            _ => {
                let mut issues = p.issues;
                issues.sort_by_key(|i| (i.pos.line, i.pos.col));
                Err(HandlerError {
                    file: file.to_string(),
                    issues,
                })
            }
        }
    }
}

#[derive(Default)]
struct Parser {
    issues: Vec<Issue>,
    /// Keys of items that could not be built (already reported): references to them
    /// are not reported again.
    unbuilt: HashSet<String>,
}

/// Where an item sits, for checking what its placeholders may refer to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Master,
    Secondary,
    NestedMaster,
    NestedSecondary,
}

impl Parser {
    fn issue(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn handler(&mut self, root: &Node, text: &str) -> Option<Handler> {
        let Kind::Map(entries) = &root.kind else {
            self.issue(root.pos, "", "expected `<index_alias>:` at the top level");
            return None;
        };
        // Top-level keys starting with `__` only hold YAML anchors (Mee's convention).
        let indices: Vec<_> = entries
            .iter()
            .filter(|(k, _, _)| !k.starts_with("__"))
            .collect();
        let Some((alias, _, body)) = indices.first() else {
            self.issue(
                root.pos,
                "",
                "no index alias: expected `<index_alias>:` at the top level",
            );
            return None;
        };
        for (other, pos, _) in indices.iter().skip(1) {
            self.issue(
                *pos,
                other,
                format!("a handler file describes one index; `{alias}` is already defined"),
            );
        }
        let (type_name, settings, mappings, items_node, items_path) =
            self.alias_body(alias, body)?;
        let mut keys = HashMap::new();
        let mut group = self.group(items_node, &items_path, &mappings, "", false, &mut keys)?;

        // The master item: the only one with document_id.
        let masters: Vec<usize> = group
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.document_id.is_some())
            .map(|(n, _)| n)
            .collect();
        match masters.as_slice() {
            [m] => group.master = *m,
            [] => self.issue(
                items_node.pos,
                &items_path,
                "no master item: exactly one item must have `document_id`",
            ),
            [_, rest @ ..] => {
                for m in rest {
                    let item = &group.items[*m];
                    self.issue(
                        item.pos,
                        &item.path,
                        format!(
                            "second master item: only one item may have `document_id` (`{}` has it)",
                            group.items[masters[0]].key
                        ),
                    );
                }
            }
        }
        let primary_key = self.primary_key(items_node, &items_path, group.master);
        self.check_references(&group, &primary_key);
        Some(Handler {
            alias: alias.clone(),
            type_name,
            settings,
            mappings,
            group,
            primary_key,
            source: text.to_string(),
        })
    }

    /// `<alias>: [items]` or `<alias>: {<type>: [items], settings?, mappings?}`.
    #[allow(clippy::type_complexity)]
    fn alias_body<'a>(
        &mut self,
        alias: &str,
        body: &'a Node,
    ) -> Option<(
        Option<String>,
        Option<Value>,
        Option<Value>,
        &'a Node,
        String,
    )> {
        match &body.kind {
            Kind::Seq(_) => Some((None, None, None, body, alias.to_string())),
            Kind::Map(entries) => {
                let mut settings = None;
                let mut mappings = None;
                let mut types = Vec::new();
                for (k, pos, v) in entries {
                    let path = format!("{alias}.{k}");
                    match k.as_str() {
                        "settings" | "mappings" => {
                            if !matches!(v.kind, Kind::Map(_)) {
                                self.issue(
                                    v.pos,
                                    &path,
                                    format!("expected a mapping, found {}", v.describe()),
                                );
                            } else if k == "settings" {
                                settings = Some(v.to_json());
                            } else {
                                mappings = Some(v.to_json());
                            }
                        }
                        _ => types.push((k, *pos, v, path)),
                    }
                }
                match types.as_slice() {
                    [(name, _, v, path)] => {
                        if !matches!(v.kind, Kind::Seq(_)) {
                            self.issue(
                                v.pos,
                                path,
                                format!("expected a list of config items, found {}", v.describe()),
                            );
                            return None;
                        }
                        Some((Some((*name).clone()), settings, mappings, v, path.clone()))
                    }
                    [] => {
                        self.issue(
                            body.pos,
                            alias,
                            "expected a list of config items (optionally under a type name)",
                        );
                        None
                    }
                    [_, rest @ ..] => {
                        for (name, pos, _, path) in rest {
                            self.issue(*pos, path, format!(
                                "unknown key `{name}`: only one type name, `settings` and `mappings` may follow the alias"
                            ));
                        }
                        None
                    }
                }
            }
            _ => {
                self.issue(
                    body.pos,
                    alias,
                    format!("expected a list of config items, found {}", body.describe()),
                );
                None
            }
        }
    }

    /// A list of items. `prefix` locates nested fields in the ES mappings.
    fn group(
        &mut self,
        node: &Node,
        path: &str,
        mappings: &Option<Value>,
        prefix: &str,
        nested: bool,
        keys: &mut HashMap<String, String>,
    ) -> Option<Group> {
        let Kind::Seq(nodes) = &node.kind else {
            self.issue(
                node.pos,
                path,
                format!("expected a list of config items, found {}", node.describe()),
            );
            return None;
        };
        if nodes.is_empty() {
            self.issue(node.pos, path, "the list of config items is empty");
            return None;
        }
        // Items that cannot be built are reported and left out; the rest are still
        // checked, so one run reports every problem.
        let mut items = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(item) = self.item(n, &format!("{path}[{i}]"), mappings, prefix, keys) {
                items.push(item);
            }
        }
        if items.is_empty() {
            return None;
        }
        let master = if nested {
            items
                .iter()
                .position(|i| i.document_id.is_some())
                .unwrap_or(0)
        } else {
            0
        };
        if nested && items[master].parent_query.is_empty() {
            let m = &items[master];
            self.issue(
                m.pos,
                &m.path,
                "a nested item needs `parent_query`: the ES fields that find the document holding its array",
            );
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for item in &items {
            for f in &item.fields {
                let es = match f {
                    Field::Column { es_field, .. } | Field::Nested { es_field, .. } => es_field,
                };
                if let Some(other) = seen.insert(es, &item.key) {
                    self.issue(
                        item.pos,
                        &item.path,
                        format!("es_field `{es}` is also mapped by item `{other}`"),
                    );
                }
            }
        }
        Some(Group { items, master })
    }

    fn item(
        &mut self,
        node: &Node,
        path: &str,
        mappings: &Option<Value>,
        prefix: &str,
        keys: &mut HashMap<String, String>,
    ) -> Option<Item> {
        let Kind::Map(entries) = &node.kind else {
            self.issue(
                node.pos,
                path,
                format!(
                    "expected a config item (a mapping), found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let get = self.known_keys(entries, ITEM_KEYS, path, "an item");
        let mut required = |name: &str| -> Option<String> {
            match get.get(name) {
                Some(v) => match v.scalar_text() {
                    Some(s) if !s.trim().is_empty() => Some(s),
                    _ => {
                        self.issue(
                            v.pos,
                            &format!("{path}.{name}"),
                            format!("expected a non-empty string, found {}", v.describe()),
                        );
                        None
                    }
                },
                None => {
                    self.issue(node.pos, path, format!("missing `{name}`"));
                    None
                }
            }
        };
        let key = required("key");
        let database = required("database");
        let table = required("table");
        let statement_text = required("statement");
        if let Some(k) = &key
            && let Some(first) = keys.insert(k.clone(), path.to_string())
        {
            self.issue(
                node.pos,
                &format!("{path}.key"),
                format!("key `{k}` is already used by {first}"),
            );
        }
        let statement = statement_text.and_then(|s| match Statement::parse(&s) {
            Ok(st) => Some(st),
            Err(e) => {
                let pos = get.get("statement").map_or(node.pos, |n| n.pos);
                self.issue(pos, &format!("{path}.statement"), e);
                None
            }
        });
        let document_id = self.template(
            get.get("document_id").copied(),
            &format!("{path}.document_id"),
        );
        let routing = self.template(get.get("routing").copied(), &format!("{path}.routing"));
        let query = self.template_map(get.get("query").copied(), &format!("{path}.query"));
        let parent_query = self.template_map(
            get.get("parent_query").copied(),
            &format!("{path}.parent_query"),
        );
        let filter = self.filter(get.get("filter").copied(), &format!("{path}.filter"));
        let fields = match get.get("mapping") {
            Some(m) => self.fields(m, &format!("{path}.mapping"), mappings, prefix, keys),
            None => {
                self.issue(node.pos, path, "missing `mapping`");
                Vec::new()
            }
        };
        if database.is_none() || table.is_none() || statement.is_none() {
            if let Some(k) = &key {
                self.unbuilt.insert(k.clone());
            }
            return None;
        }
        Some(Item {
            key: key?,
            database: database?,
            table: table?,
            statement: statement?,
            document_id,
            routing,
            query,
            parent_query,
            filter,
            fields,
            path: path.to_string(),
            pos: node.pos,
            statement_pos: get.get("statement").map_or(node.pos, |n| n.pos),
        })
    }

    /// The entries of a mapping whose keys are in `allowed`; every other key is
    /// reported (Mee's `eval_on_deleted` as not supported yet).
    fn known_keys<'n>(
        &mut self,
        entries: &'n [(String, Pos, Node)],
        allowed: &[&str],
        path: &str,
        what: &str,
    ) -> HashMap<&'n str, &'n Node> {
        let mut get = HashMap::new();
        for (k, pos, v) in entries {
            if allowed.contains(&k.as_str()) {
                get.insert(k.as_str(), v);
            } else if k == "eval_on_deleted" {
                self.issue(
                    *pos,
                    &format!("{path}.{k}"),
                    "`eval_on_deleted` is not supported yet",
                );
            } else {
                self.issue(
                    *pos,
                    &format!("{path}.{k}"),
                    format!("unknown key `{k}`; {what} has: {}", allowed.join(", ")),
                );
            }
        }
        get
    }

    fn template(&mut self, node: Option<&Node>, path: &str) -> Option<Template> {
        let node = node?;
        let Some(text) = node.scalar_text() else {
            self.issue(
                node.pos,
                path,
                format!("expected a string, found {}", node.describe()),
            );
            return None;
        };
        match Template::parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.issue(node.pos, path, e);
                None
            }
        }
    }

    fn template_map(&mut self, node: Option<&Node>, path: &str) -> Vec<(String, Template)> {
        let Some(node) = node else { return Vec::new() };
        let Kind::Map(entries) = &node.kind else {
            self.issue(
                node.pos,
                path,
                format!(
                    "expected `es_field: \"%column\"` pairs, found {}",
                    node.describe()
                ),
            );
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(k, _, v)| {
                Some((k.clone(), self.template(Some(v), &format!("{path}.{k}"))?))
            })
            .collect()
    }

    fn filter(&mut self, node: Option<&Node>, path: &str) -> Vec<(String, Vec<Value>)> {
        let Some(node) = node else { return Vec::new() };
        let Kind::Map(entries) = &node.kind else {
            self.issue(
                node.pos,
                path,
                format!("expected `column: value` pairs, found {}", node.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, _, v) in entries {
            let values = match &v.kind {
                Kind::Seq(items) => items.iter().map(Node::to_json).collect(),
                Kind::Map(_) => {
                    self.issue(
                        v.pos,
                        &format!("{path}.{k}"),
                        "expected a value or a list of values",
                    );
                    continue;
                }
                _ => vec![v.to_json()],
            };
            out.push((k.clone(), values));
        }
        out
    }

    fn fields(
        &mut self,
        node: &Node,
        path: &str,
        mappings: &Option<Value>,
        prefix: &str,
        keys: &mut HashMap<String, String>,
    ) -> Vec<Field> {
        let Kind::Seq(entries) = &node.kind else {
            self.issue(
                node.pos,
                path,
                format!("expected a list of fields, found {}", node.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let path = format!("{path}[{i}]");
            if let Some(column) = e.as_str() {
                out.push(column_field(column, column, None, mappings, prefix));
                continue;
            }
            let Kind::Map(kv) = &e.kind else {
                self.issue(
                    e.pos,
                    &path,
                    format!(
                        "expected a column name or a mapping, found {}",
                        e.describe()
                    ),
                );
                continue;
            };
            let get = self.known_keys(kv, FIELD_KEYS, &path, "a mapping entry");
            let es_field = get.get("es_field").and_then(|n| n.scalar_text());
            match get.get("type").map(|n| n.scalar_text()) {
                Some(Some(t)) if t == "nested" => {
                    let Some(es) = es_field else {
                        self.issue(e.pos, &path, "a nested entry needs `es_field`");
                        continue;
                    };
                    let Some(items) = get.get("db_field") else {
                        self.issue(
                            e.pos,
                            &path,
                            "a nested entry needs `db_field`: the list of its items",
                        );
                        continue;
                    };
                    let nested_prefix = format!("{prefix}{es}.");
                    if let Some(group) = self.group(
                        items,
                        &format!("{path}.db_field"),
                        mappings,
                        &nested_prefix,
                        true,
                        keys,
                    ) {
                        out.push(Field::Nested {
                            es_field: es,
                            group,
                        });
                    }
                    continue;
                }
                Some(_) => {
                    let pos = get.get("type").map_or(e.pos, |n| n.pos);
                    self.issue(
                        pos,
                        &format!("{path}.type"),
                        "the only supported type is `nested`",
                    );
                    continue;
                }
                None => {}
            }
            let column = match (get.get("db_field"), get.get("field")) {
                (Some(_), Some(_)) => {
                    self.issue(
                        e.pos,
                        &path,
                        "use either `db_field` (with `es_field`) or `field`, not both",
                    );
                    continue;
                }
                (Some(n), None) | (None, Some(n)) => match n.scalar_text() {
                    Some(c) => c,
                    None => {
                        self.issue(
                            n.pos,
                            &path,
                            format!("expected a column name, found {}", n.describe()),
                        );
                        continue;
                    }
                },
                (None, None) => {
                    self.issue(e.pos, &path, "missing `db_field` or `field`");
                    continue;
                }
            };
            if column.contains('(') {
                self.issue(e.pos, &path, format!(
                    "functions in db_field (`{column}`) are not supported yet (Mee's sum, min, executeSQL, echo)"
                ));
                continue;
            }
            if get.contains_key("field") && get.contains_key("es_field") {
                self.issue(e.pos, &path, "`field` names both the column and the ES field; drop `es_field` or use `db_field`");
                continue;
            }
            let es = es_field.unwrap_or_else(|| column.clone());
            let null_value = get.get("null_value").map(|n| n.to_json());
            out.push(column_field(&column, &es, null_value, mappings, prefix));
        }
        out
    }

    /// `primary_key` of the master item (default `id`); it may appear nowhere else.
    fn primary_key(&mut self, items_node: &Node, items_path: &str, master: usize) -> Vec<String> {
        let Kind::Seq(nodes) = &items_node.kind else {
            return vec!["id".into()];
        };
        let mut pk = vec!["id".to_string()];
        for (i, n) in nodes.iter().enumerate() {
            let Kind::Map(entries) = &n.kind else {
                continue;
            };
            let Some((_, pos, v)) = entries.iter().find(|(k, _, _)| k == "primary_key") else {
                continue;
            };
            let path = format!("{items_path}[{i}].primary_key");
            if i != master {
                self.issue(
                    *pos,
                    &path,
                    "`primary_key` belongs on the master item (the one with document_id)",
                );
                continue;
            }
            let cols: Option<Vec<String>> = match &v.kind {
                Kind::Seq(items) => items.iter().map(Node::scalar_text).collect(),
                _ => v.scalar_text().map(|s| vec![s]),
            };
            match cols {
                Some(c) if !c.is_empty() => pk = c,
                _ => self.issue(
                    v.pos,
                    &path,
                    "expected a column name or a list of column names",
                ),
            }
        }
        pk
    }

    /// What each statement's placeholders refer to must exist and come earlier.
    fn check_references(&mut self, top: &Group, primary_key: &[String]) {
        let mut visible = Vec::new();
        let mut all_keys = HashSet::new();
        collect_keys(top, &mut all_keys);
        self.check_group(top, false, &mut visible, &all_keys, primary_key);
    }

    fn check_group(
        &mut self,
        group: &Group,
        nested: bool,
        visible: &mut Vec<String>,
        all_keys: &HashSet<String>,
        pk: &[String],
    ) {
        let outer = visible.len();
        for (i, item) in group.items.iter().enumerate() {
            let role = match (nested, i == group.master) {
                (false, true) => Role::Master,
                (false, false) => Role::Secondary,
                (true, true) => Role::NestedMaster,
                (true, false) => Role::NestedSecondary,
            };
            self.check_item(item, role, visible, all_keys, pk);
            visible.push(item.key.clone());
            for f in &item.fields {
                if let Field::Nested { group, .. } = f {
                    let mark = visible.len();
                    self.check_group(group, true, visible, all_keys, pk);
                    visible.truncate(mark);
                }
            }
        }
        if nested {
            visible.truncate(outer);
        }
    }

    fn check_item(
        &mut self,
        item: &Item,
        role: Role,
        visible: &[String],
        all_keys: &HashSet<String>,
        pk: &[String],
    ) {
        let path = format!("{}.statement", item.path);
        let st = &item.statement;
        for p in &st.placeholders {
            let r = &p.reference;
            let problem = match r {
                Ref::Current(_) => Some(format!(
                    "`{r}`: a statement reads other rows only: %__master.col, %__parent.col, %<key>.col"
                )),
                Ref::Last(_) if role != Role::Master => Some(format!(
                    "`{r}`: %__last pages the master statement and may only appear there; \
                     nested lists load all rows of a parent at once, so drop the condition"
                )),
                Ref::Master(_) if role == Role::Master => Some(format!(
                    "`{r}`: the master statement cannot refer to its own row"
                )),
                Ref::Parent(_) if matches!(role, Role::Master | Role::Secondary) => Some(format!(
                    "`{r}`: %__parent is only defined inside a nested list"
                )),
                Ref::Item { key, .. } if role == Role::Master => Some(format!(
                    "`{r}`: the master statement cannot refer to item `{key}`"
                )),
                Ref::Item { key, .. } if *key == item.key => {
                    Some(format!("`{r}`: an item cannot refer to its own row"))
                }
                Ref::Item { key, .. } if !visible.contains(key) && !self.unbuilt.contains(key) => {
                    Some(if all_keys.contains(key) {
                        format!(
                            "`{r}`: item `{key}` is defined later or inside a nested list; only earlier items can be referred to"
                        )
                    } else {
                        format!("`{r}`: there is no item with key `{key}`")
                    })
                }
                _ => None,
            };
            if let Some(message) = problem {
                self.issue(item.statement_pos, &path, message);
            }
        }
        if role == Role::Master {
            if st.has_order_by || st.has_limit {
                self.issue(
                    item.statement_pos,
                    &path,
                    "the master statement is paged by primary key; remove ORDER BY and LIMIT",
                );
            }
            let lasts: Vec<_> = st
                .placeholders
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p.reference, Ref::Last(_)))
                .collect();
            if !lasts.is_empty() && pk.len() != 1 {
                self.issue(item.statement_pos, &path, "%__last works with a single-column primary key; with a composite key drop the condition (paging is automatic)");
            }
            for (i, p) in lasts {
                let bound = st.last_bounds.iter().find(|b| b.placeholder == i);
                let ok = bound.is_some_and(|b| {
                    b.column == p.reference.column() && pk.first().is_some_and(|k| *k == b.column)
                });
                if !ok {
                    self.issue(item.statement_pos, &path, format!(
                        "`{}` must be used as `{col} > {}` at the top level of WHERE, where `{col}` is the primary key ({})",
                        p.reference, p.reference, pk.join(", "), col = p.reference.column()
                    ));
                }
            }
        }
        // A second top-level document_id is reported as a second master item.
        for (name, t) in [
            ("document_id", &item.document_id),
            ("routing", &item.routing),
        ] {
            let reported = name == "document_id" && role == Role::Secondary;
            if t.is_some() && !reported && role != Role::Master && role != Role::NestedMaster {
                self.issue(
                    item.pos,
                    &format!("{}.{name}", item.path),
                    format!("`{name}` is only meaningful on the master item"),
                );
            }
        }
    }
}

fn collect_keys(g: &Group, out: &mut HashSet<String>) {
    for item in &g.items {
        out.insert(item.key.clone());
        for f in &item.fields {
            if let Field::Nested { group, .. } = f {
                collect_keys(group, out);
            }
        }
    }
}

fn column_field(
    column: &str,
    es_field: &str,
    null_value: Option<Value>,
    mappings: &Option<Value>,
    prefix: &str,
) -> Field {
    Field::Column {
        column: column.to_string(),
        es_field: es_field.to_string(),
        null_value,
        decimal_as_number: is_numeric(mappings, &format!("{prefix}{es_field}")),
    }
}

/// Whether `mappings.properties.a.properties.b.type` (for `a.b`) is a numeric type.
fn is_numeric(mappings: &Option<Value>, dotted: &str) -> bool {
    let Some(mut node) = mappings.as_ref() else {
        return false;
    };
    for part in dotted.split('.') {
        match node.get("properties").and_then(|p| p.get(part)) {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| NUMERIC_ES_TYPES.contains(&t))
}
