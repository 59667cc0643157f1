//! The cluster's index and alias state, and the admin calls: root, indices, aliases,
//! `_settings`, `_refresh`, `_count`.

use super::{EsError, Shared, json};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Indices by name. No documents: per index, ops counted and what it was created with.
#[derive(Debug, Default, Clone)]
pub(super) struct Cluster {
    indices: BTreeMap<String, Index>,
}

#[derive(Debug, Default, Clone)]
struct Index {
    aliases: BTreeSet<String>,
    /// As given at creation, not normalized as Elasticsearch does; `_settings`
    /// updates are acknowledged, not stored.
    settings: Value,
    /// As given at creation.
    mappings: Value,
    indexed: u64,
    deleted: u64,
}

impl Cluster {
    /// The concrete index a bulk op on `name` writes to: the index, the one index of
    /// an alias, or (when `creates`) a new index.
    pub(super) fn resolve_write(&mut self, name: &str, creates: bool) -> Result<String, EsError> {
        if self.indices.contains_key(name) {
            return Ok(name.to_owned());
        }
        let holders: Vec<&String> = self.holders(name).collect();
        match holders[..] {
            [index] => return Ok(index.clone()),
            [_, _, ..] => {
                return Err(EsError::bad_request(format!(
                    "no write index is defined for alias [{name}]. The write index may be \
                     explicitly disabled using is_write_index=false or the alias points to \
                     multiple indices without one being designated as a write index"
                )));
            }
            [] => {}
        }
        if !creates {
            return Err(EsError::index_not_found(name));
        }
        check_index_name(name)?;
        self.indices.insert(
            name.to_owned(),
            Index {
                settings: json!({}),
                mappings: json!({}),
                ..Index::default()
            },
        );
        Ok(name.to_owned())
    }

    pub(super) fn add_counts(&mut self, index: &str, indexed: u64, deleted: u64) {
        if let Some(ix) = self.indices.get_mut(index) {
            ix.indexed += indexed;
            ix.deleted += deleted;
        }
    }

    /// The indices holding `alias`.
    fn holders<'a>(&'a self, alias: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.indices
            .iter()
            .filter(move |(_, ix)| ix.aliases.contains(alias))
            .map(|(name, _)| name)
    }

    /// The concrete indices of a comma-separated list of indices and aliases.
    fn resolve(&self, names: &str) -> Result<BTreeSet<String>, EsError> {
        let mut out = BTreeSet::new();
        for name in names.split(',') {
            if self.indices.contains_key(name) {
                out.insert(name.to_owned());
                continue;
            }
            let before = out.len();
            out.extend(self.holders(name).cloned());
            if out.len() == before {
                return Err(EsError::index_not_found(name));
            }
        }
        Ok(out)
    }

    /// Concrete indices matching `pattern` (`*` globs), at least one.
    fn expand(&self, pattern: &str) -> Result<Vec<String>, EsError> {
        let found: Vec<String> = self
            .indices
            .keys()
            .filter(|name| glob(pattern, name))
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(EsError::index_not_found(pattern));
        }
        Ok(found)
    }

    fn apply(&mut self, action: AliasAction) -> Result<(), EsError> {
        match action {
            AliasAction::Add(a) => {
                let aliases = one_or_many(a.alias, a.aliases, "alias")?;
                for pattern in one_or_many(a.index, a.indices, "index")? {
                    for index in self.expand(&pattern)? {
                        for alias in &aliases {
                            if self.indices.contains_key(alias) || alias.contains('*') {
                                return Err(EsError::new(
                                    StatusCode::BAD_REQUEST,
                                    "invalid_alias_name_exception",
                                    format!(
                                        "Invalid alias name [{alias}]: an index or data stream \
                                         exists with the same name as the alias, or it has a *"
                                    ),
                                ));
                            }
                            let ix = self.indices.get_mut(&index).expect("expanded");
                            ix.aliases.insert(alias.clone());
                        }
                    }
                }
            }
            AliasAction::Remove(a) => {
                let aliases = one_or_many(a.alias, a.aliases, "alias")?;
                let mut removed = 0;
                for pattern in one_or_many(a.index, a.indices, "index")? {
                    for index in self.expand(&pattern)? {
                        let ix = self.indices.get_mut(&index).expect("expanded");
                        let before = ix.aliases.len();
                        ix.aliases
                            .retain(|have| !aliases.iter().any(|pat| glob(pat, have)));
                        removed += before - ix.aliases.len();
                    }
                }
                if removed == 0 {
                    return Err(EsError::new(
                        StatusCode::NOT_FOUND,
                        "aliases_not_found_exception",
                        format!("aliases [{}] missing", aliases.join(",")),
                    ));
                }
            }
            AliasAction::RemoveIndex(a) => {
                for pattern in one_or_many(a.index, a.indices, "index")? {
                    for index in self.expand(&pattern)? {
                        self.indices.remove(&index);
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) async fn root() -> Response {
    json(
        StatusCode::OK,
        r#"{"name":"mee-bench-sink","cluster_name":"mee-bench-sink","version":{"number":"8.15.0","distribution":"elasticsearch"},"tagline":"You Know, for Search"}"#,
    )
}

/// `PUT /<index>` with optional `settings`, `mappings` and `aliases` (no alias options).
pub(super) async fn create_index(
    State(shared): State<Arc<Shared>>,
    Path(index): Path<String>,
    body: Bytes,
) -> Result<Response, EsError> {
    let mut body = object(&body)?;
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "settings" | "mappings" | "aliases"))
    {
        return Err(EsError::new(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            format!("unknown key [{key}] for create index"),
        ));
    }
    let mut aliases = BTreeSet::new();
    match body.remove("aliases") {
        None => {}
        Some(Value::Object(m)) => {
            for (alias, options) in m {
                if options != json!({}) {
                    return Err(EsError::bad_request(format!(
                        "the bench sink does not support options of alias [{alias}]"
                    )));
                }
                aliases.insert(alias);
            }
        }
        Some(_) => return Err(EsError::bad_request("[aliases] must be an object")),
    }
    let mut cluster = shared.cluster();
    check_index_name(&index)?;
    if cluster.indices.contains_key(&index) {
        return Err(EsError {
            index: Some(index.clone()),
            ..EsError::new(
                StatusCode::BAD_REQUEST,
                "resource_already_exists_exception",
                format!("index [{index}/sink] already exists"),
            )
        });
    }
    if cluster.holders(&index).next().is_some() {
        return Err(invalid_index_name(&index, "already exists as alias"));
    }
    if let Some(alias) = aliases.iter().find(|a| cluster.indices.contains_key(*a)) {
        return Err(EsError::new(
            StatusCode::BAD_REQUEST,
            "invalid_alias_name_exception",
            format!(
                "Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias"
            ),
        ));
    }
    cluster.indices.insert(
        index.clone(),
        Index {
            aliases,
            settings: body.remove("settings").unwrap_or_else(|| json!({})),
            mappings: body.remove("mappings").unwrap_or_else(|| json!({})),
            ..Index::default()
        },
    );
    Ok(ok(
        json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
    ))
}

/// `GET|HEAD /<indices or aliases>`
pub(super) async fn get_index(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
) -> Result<Response, EsError> {
    let cluster = shared.cluster();
    let mut out = Map::new();
    for name in cluster.resolve(&names)? {
        let ix = &cluster.indices[&name];
        let aliases: Map<String, Value> =
            ix.aliases.iter().map(|a| (a.clone(), json!({}))).collect();
        out.insert(
            name,
            json!({"aliases": aliases, "mappings": ix.mappings, "settings": ix.settings}),
        );
    }
    Ok(ok(Value::Object(out)))
}

/// `DELETE /<indices>`: concrete names only, as Elasticsearch 8 by default.
pub(super) async fn delete_index(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
) -> Result<Response, EsError> {
    let mut cluster = shared.cluster();
    for name in names.split(',') {
        if cluster.indices.contains_key(name) {
            continue;
        }
        if cluster.holders(name).next().is_some() {
            return Err(EsError::bad_request(format!(
                "The provided expression [{name}] matches an alias, specify the corresponding \
                 concrete indices instead."
            )));
        }
        return Err(EsError::index_not_found(name));
    }
    for name in names.split(',') {
        cluster.indices.remove(name);
    }
    Ok(ok(json!({"acknowledged": true})))
}

/// `PUT /<index>/_settings`: acknowledged, not stored.
pub(super) async fn put_settings(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
    body: Bytes,
) -> Result<Response, EsError> {
    if object(&body)?.is_empty() {
        return Err(EsError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no settings to update;",
        ));
    }
    shared.cluster().resolve(&names)?;
    Ok(ok(json!({"acknowledged": true})))
}

/// `GET|POST /<index>/_refresh`: documents are "searchable" once received.
pub(super) async fn refresh(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
) -> Result<Response, EsError> {
    let n = shared.cluster().resolve(&names)?.len();
    Ok(ok(
        json!({"_shards": {"total": n, "successful": n, "failed": 0}}),
    ))
}

/// `GET /<index>/_count`: `index`/`create` ops received minus `delete` ops.
pub(super) async fn count(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
) -> Result<Response, EsError> {
    let cluster = shared.cluster();
    let indices = cluster.resolve(&names)?;
    let count: u64 = indices
        .iter()
        .map(|name| {
            let ix = &cluster.indices[name];
            ix.indexed.saturating_sub(ix.deleted)
        })
        .sum();
    let n = indices.len();
    Ok(ok(
        json!({"count": count, "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0}}),
    ))
}

/// `GET|HEAD /_alias/<aliases>`
pub(super) async fn get_alias(
    State(shared): State<Arc<Shared>>,
    Path(names): Path<String>,
) -> Response {
    let cluster = shared.cluster();
    let mut out: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut missing = Vec::new();
    for alias in names.split(',') {
        let mut found = false;
        for index in cluster.holders(alias) {
            found = true;
            out.entry(index)
                .or_default()
                .insert(alias.to_owned(), json!({}));
        }
        if !found {
            missing.push(alias);
        }
    }
    if !missing.is_empty() {
        let what = if missing.len() == 1 {
            "alias"
        } else {
            "aliases"
        };
        let error = format!("{what} [{}] missing", missing.join(","));
        return json(
            StatusCode::NOT_FOUND,
            json!({"error": error, "status": 404}).to_string(),
        );
    }
    let out: Map<String, Value> = out
        .into_iter()
        .map(|(index, aliases)| (index.to_owned(), json!({"aliases": aliases})))
        .collect();
    ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasesBody {
    actions: Vec<AliasAction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AliasAction {
    Add(AliasTarget),
    Remove(AliasTarget),
    RemoveIndex(IndexTarget),
}

/// No alias options (`filter`, `routing`, `is_write_index`, ...): refused, not faked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasTarget {
    index: Option<String>,
    indices: Option<Vec<String>>,
    alias: Option<String>,
    aliases: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexTarget {
    index: Option<String>,
    indices: Option<Vec<String>>,
}

/// `POST /_aliases`: all actions or none.
pub(super) async fn update_aliases(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, EsError> {
    let body: AliasesBody = serde_json::from_slice(&body)
        .map_err(|e| EsError::bad_request(format!("[aliases] {e}")))?;
    let mut cluster = shared.cluster();
    let mut next = cluster.clone();
    for action in body.actions {
        next.apply(action)?;
    }
    *cluster = next;
    Ok(ok(json!({"acknowledged": true, "errors": false})))
}

fn ok(body: Value) -> Response {
    json(StatusCode::OK, body.to_string())
}

/// A request body that must be a JSON object, if any.
fn object(body: &[u8]) -> Result<Map<String, Value>, EsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    serde_json::from_slice(body).map_err(|e| {
        EsError::new(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            format!("request body is not a JSON object: {e}"),
        )
    })
}

fn one_or_many(
    one: Option<String>,
    many: Option<Vec<String>>,
    what: &str,
) -> Result<Vec<String>, EsError> {
    let all: Vec<String> = one.into_iter().chain(many.into_iter().flatten()).collect();
    if all.is_empty() {
        return Err(EsError::bad_request(format!(
            "One of [{what}] or [{what}{}] is required",
            if what == "index" { "ices" } else { "es" }
        )));
    }
    Ok(all)
}

/// Elasticsearch's rules for index names.
fn check_index_name(name: &str) -> Result<(), EsError> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.chars().any(|c| c.is_uppercase()) {
        "must be lowercase"
    } else if name.starts_with(['_', '-', '+']) {
        "must not start with '_', '-', or '+'"
    } else if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        r#"must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?, #, :]"#
    } else if name == "." || name == ".." {
        "must not be '.' or '..'"
    } else if name.len() > 255 {
        "index name is too long"
    } else {
        return Ok(());
    };
    Err(invalid_index_name(name, why))
}

fn invalid_index_name(name: &str, why: &str) -> EsError {
    EsError {
        index: Some(name.to_owned()),
        ..EsError::new(
            StatusCode::BAD_REQUEST,
            "invalid_index_name_exception",
            format!("Invalid index name [{name}], {why}"),
        )
    }
}

/// `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("*", "x"));
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*c", "ac"));
        assert!(!glob("a*a", "a"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxcyyb"));
    }
}
