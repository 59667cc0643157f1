//! Index and alias administration: what `update` needs to build a generation and swap
//! the alias to it. Every error names the index or alias it concerns.

use crate::EsError;
use crate::error::truncate;
use elasticsearch::http::response::Response;
use elasticsearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesGetAliasParts, IndicesGetSettingsParts,
    IndicesPutSettingsParts, IndicesRefreshParts,
};
use elasticsearch::{CountParts, Elasticsearch};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Create a concrete index with these settings and mappings.
pub async fn create_index(
    client: &Elasticsearch,
    name: &str,
    settings: Option<&Value>,
    mappings: Option<&Value>,
) -> Result<(), EsError> {
    let what = format!("create index {name}");
    create_index_as(what, client, name, settings, mappings).await
}

/// [`create_index`], its errors saying it was doing `what`.
pub(crate) async fn create_index_as(
    what: String,
    client: &Elasticsearch,
    name: &str,
    settings: Option<&Value>,
    mappings: Option<&Value>,
) -> Result<(), EsError> {
    let mut body = Map::new();
    if let Some(s) = settings {
        body.insert("settings".into(), s.clone());
    }
    if let Some(m) = mappings {
        body.insert("mappings".into(), m.clone());
    }
    let resp = client
        .indices()
        .create(IndicesCreateParts::Index(name))
        .body(Value::Object(body))
        .send()
        .await;
    expect_ok(what, resp, &[]).await?;
    Ok(())
}

/// Delete a concrete index; an index that is not there is already deleted. Elasticsearch
/// refuses to delete through an alias name.
pub async fn delete_index(client: &Elasticsearch, name: &str) -> Result<(), EsError> {
    delete_index_as(format!("delete index {name}"), client, name).await
}

/// [`delete_index`], its errors saying it was doing `what`.
pub(crate) async fn delete_index_as(
    what: String,
    client: &Elasticsearch,
    name: &str,
) -> Result<(), EsError> {
    let resp = client
        .indices()
        .delete(IndicesDeleteParts::Index(&[name]))
        .send()
        .await;
    expect_ok(what, resp, &[404]).await?;
    Ok(())
}

/// Whether a concrete index (not an alias) has this name.
pub async fn index_exists(client: &Elasticsearch, name: &str) -> Result<bool, EsError> {
    // GET /<name>/_settings answers by concrete index names: through an alias, the
    // keys are the indices behind it, never the alias.
    let what = format!("get settings of {name}");
    let resp = client
        .indices()
        .get_settings(IndicesGetSettingsParts::IndexName(&[name], &["index.uuid"]))
        .send()
        .await;
    let Some(resp) = expect_ok(what.clone(), resp, &[404]).await? else {
        return Ok(false);
    };
    let by_index: Map<String, Value> = json_body(what, resp).await?;
    Ok(by_index.contains_key(name))
}

/// Whether `alias` is taken by a concrete index, so no alias of that name can exist
/// (e.g. an index written before the first generation, or auto-created by a write).
pub async fn alias_is_concrete_index(client: &Elasticsearch, alias: &str) -> Result<bool, EsError> {
    index_exists(client, alias).await
}

/// Update index settings, e.g. `{"index": {"refresh_interval": "1s"}}`.
pub async fn put_index_settings(
    client: &Elasticsearch,
    name: &str,
    settings: &Value,
) -> Result<(), EsError> {
    let resp = client
        .indices()
        .put_settings(IndicesPutSettingsParts::Index(&[name]))
        .body(settings)
        .send()
        .await;
    expect_ok(format!("put settings of index {name}"), resp, &[]).await?;
    Ok(())
}

/// Make everything written so far visible to search.
pub async fn refresh(client: &Elasticsearch, name: &str) -> Result<(), EsError> {
    let resp = client
        .indices()
        .refresh(IndicesRefreshParts::Index(&[name]))
        .send()
        .await;
    expect_ok(format!("refresh {name}"), resp, &[]).await?;
    Ok(())
}

/// The concrete indices an alias points to, sorted; empty if there is no such alias.
pub async fn alias_targets(client: &Elasticsearch, alias: &str) -> Result<Vec<String>, EsError> {
    let what = format!("get alias {alias}");
    let resp = client
        .indices()
        .get_alias(IndicesGetAliasParts::Name(&[alias]))
        .send()
        .await;
    let Some(resp) = expect_ok(what.clone(), resp, &[404]).await? else {
        return Ok(Vec::new());
    };
    let by_index: BTreeMap<String, Value> = json_body(what, resp).await?;
    Ok(by_index
        .into_iter()
        .filter(|(_, v)| v.get("aliases").and_then(|a| a.get(alias)).is_some())
        .map(|(index, _)| index)
        .collect())
}

/// Point `alias` at `add_to` only, removing it from `remove_from`, in one atomic
/// `POST /_aliases` (readers see the old indices or the new one, never neither). For a
/// first generation `remove_from` is empty. Fails, changing nothing, if the alias is
/// not on one of `remove_from` (someone else moved it).
pub async fn swap_alias(
    client: &Elasticsearch,
    alias: &str,
    remove_from: &[String],
    add_to: &str,
) -> Result<(), EsError> {
    let what = format!("move alias {alias} from {remove_from:?} to {add_to}");
    // `must_exist` makes a missing alias fail the whole request; without it, ES 8
    // applies the other actions and reports the failed one in `action_results`.
    let first = update_aliases(client, &alias_actions(alias, remove_from, add_to, true)).await;
    let resp = match expect_ok(what.clone(), first, &[]).await {
        // ES before 7.11 and OpenSearch before 2.12 do not know `must_exist`; there a
        // missing alias fails the whole request anyway.
        Err(EsError::Status {
            status: 400, body, ..
        }) if !remove_from.is_empty() && body.contains("must_exist") => {
            let actions = alias_actions(alias, remove_from, add_to, false);
            let retry = update_aliases(client, &actions).await;
            expect_ok(what.clone(), retry, &[]).await?
        }
        other => other?,
    }
    .expect("no status is accepted as absent");
    let body: Value = json_body(what.clone(), resp).await?;
    if body.get("errors").and_then(Value::as_bool) == Some(true) {
        return Err(EsError::BadResponse {
            what,
            message: format!("some alias actions failed: {body}"),
        });
    }
    Ok(())
}

fn alias_actions(alias: &str, remove_from: &[String], add_to: &str, must_exist: bool) -> Value {
    let mut actions: Vec<Value> = remove_from
        .iter()
        .map(|index| {
            let mut remove = json!({"index": index, "alias": alias});
            if must_exist {
                remove["must_exist"] = Value::Bool(true);
            }
            json!({ "remove": remove })
        })
        .collect();
    actions.push(json!({"add": {"index": add_to, "alias": alias}}));
    json!({ "actions": actions })
}

async fn update_aliases(
    client: &Elasticsearch,
    body: &Value,
) -> Result<Response, elasticsearch::Error> {
    client.indices().update_aliases().body(body).send().await
}

/// The number of documents in an index (or alias), as of the last refresh.
pub async fn count(client: &Elasticsearch, index: &str) -> Result<u64, EsError> {
    #[derive(serde::Deserialize)]
    struct Count {
        count: u64,
    }
    let what = format!("count documents of {index}");
    let resp = client.count(CountParts::Index(&[index])).send().await;
    let resp = expect_ok(what.clone(), resp, &[])
        .await?
        .expect("no status is accepted as absent");
    Ok(json_body::<Count>(what, resp).await?.count)
}

/// A 2xx answer (`Some`), an `absent` status (`None`), or the error.
async fn expect_ok(
    what: String,
    resp: Result<Response, elasticsearch::Error>,
    absent: &[u16],
) -> Result<Option<Response>, EsError> {
    let resp = resp.map_err(|source| EsError::Request {
        what: what.clone(),
        source,
    })?;
    let status = resp.status_code().as_u16();
    if (200..300).contains(&status) {
        return Ok(Some(resp));
    }
    if absent.contains(&status) {
        return Ok(None);
    }
    let body = truncate(resp.text().await.unwrap_or_default(), 2000);
    Err(EsError::Status { what, status, body })
}

async fn json_body<T: DeserializeOwned>(what: String, resp: Response) -> Result<T, EsError> {
    let bytes = resp.bytes().await.map_err(|source| EsError::Request {
        what: what.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| EsError::BadResponse {
        what,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_actions_remove_then_add() {
        let got = alias_actions("shop", &["shop_1".into(), "shop_2".into()], "shop_3", true);
        assert_eq!(
            got,
            json!({"actions": [
                {"remove": {"index": "shop_1", "alias": "shop", "must_exist": true}},
                {"remove": {"index": "shop_2", "alias": "shop", "must_exist": true}},
                {"add": {"index": "shop_3", "alias": "shop"}},
            ]})
        );
        let got = alias_actions("shop", &["shop_1".into()], "shop_3", false);
        assert_eq!(
            got["actions"][0],
            json!({"remove": {"index": "shop_1", "alias": "shop"}})
        );
        let first = alias_actions("shop", &[], "shop_1", true);
        assert_eq!(
            first,
            json!({"actions": [{"add": {"index": "shop_1", "alias": "shop"}}]})
        );
    }
}
