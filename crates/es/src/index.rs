//! Checking index settings and mappings against the cluster before building an index.

use crate::EsError;
use crate::admin::{create_index_as, delete_index_as};
use elasticsearch::Elasticsearch;
use serde_json::Value;

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
    let what = format!("create scratch index {name}");
    create_index_as(what, client, &name, settings, mappings).await?;
    delete_index_as(format!("delete scratch index {name}"), client, &name).await
}
