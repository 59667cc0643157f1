//! Elasticsearch adapter: a client built from the app config (URL, basic or API-key
//! auth, TLS, timeout) and cluster checks. Works with Elasticsearch 7/8/9 and
//! OpenSearch through their common REST API.

mod client;
mod error;
mod index;

pub use client::{ClusterInfo, client, cluster_info};
pub use error::EsError;
pub use index::check_index_body;

pub use elasticsearch;
