//! Elasticsearch adapter: a client built from the app config (URL, basic or API-key
//! auth, TLS, timeout), cluster checks, the bulk writer (versioned whole-document
//! writes with retries, concurrency and rate limits: [`BulkWriter`]), index and alias
//! administration ([`create_index`], [`swap_alias`], ...), and reading documents back
//! ([`mget`], [`IdScroll`]). Works with Elasticsearch 7/8/9 and OpenSearch through their
//! common REST API.

mod admin;
mod bulk;
mod client;
mod error;
mod index;
mod scan;

pub use admin::{
    alias_is_concrete_index, alias_targets, count, create_index, delete_index, index_exists,
    put_index_settings, refresh, swap_alias,
};
pub use bulk::{BulkAction, BulkOp, BulkOutcome, BulkWriter, Rejected};
pub use client::{ClusterInfo, client, cluster_info};
pub use error::EsError;
pub use index::check_index_body;
pub use mee_core::config::BulkConfig;
pub use scan::{DocRef, IdHit, IdScroll, StoredDoc, mget};

pub use elasticsearch;
