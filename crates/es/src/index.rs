use crate::EsError;
use elasticsearch::Elasticsearch;
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use serde_json::{Map, Value};

/// Ask the cluster whether it accepts these index settings and mappings, by creating
/// a scratch index `<alias>-mee-check-<n>` with them and deleting it again.
pub async fn check_index_body(
    client: &Elasticsearch,
    alias: &str,
    settings: Option<&Value>,
    mappings: Option<&Value>,
) -> Result<(), EsError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{}-mee-check-{nanos}", alias.to_ascii_lowercase());
    let mut body = Map::new();
    if let Some(s) = settings {
        body.insert("settings".into(), s.clone());
    }
    if let Some(m) = mappings {
        body.insert("mappings".into(), m.clone());
    }
    let created = client
        .indices()
        .create(IndicesCreateParts::Index(&name))
        .body(Value::Object(body))
        .send()
        .await;
    succeeded(format!("create scratch index {name}"), created).await?;
    let deleted = client
        .indices()
        .delete(IndicesDeleteParts::Index(&[&name]))
        .send()
        .await;
    succeeded(format!("delete scratch index {name}"), deleted).await
}

/// A 2xx answer, or the error (with the body Elasticsearch sent).
async fn succeeded(
    what: String,
    resp: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
) -> Result<(), EsError> {
    let resp = resp.map_err(|source| EsError::Request {
        what: what.clone(),
        source,
    })?;
    let status = resp.status_code().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(EsError::Status { what, status, body })
}
