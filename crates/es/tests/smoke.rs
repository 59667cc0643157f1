//! Smoke test against the local stack's Elasticsearch API: create an index, bulk
//! with external versions, search, delete the index.

use mee_es::elasticsearch::http::request::JsonBody;
use mee_es::elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use mee_es::elasticsearch::{BulkParts, SearchParts};
use mee_test_support::{StackEnv, unique_name};
use serde_json::{Value, json};

#[tokio::test]
async fn create_bulk_search() {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r"));
    let client = mee_es::client(&cfg.elasticsearch).expect("client");
    let info = mee_es::cluster_info(&client).await.expect("info");
    assert!(!info.version.is_empty(), "{info:?}");

    let index = unique_name("es");
    let created = client
        .indices()
        .create(IndicesCreateParts::Index(&index))
        .body(
            json!({"mappings": {"properties": {"title": {"type": "text"}, "n": {"type": "long"}}}}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status_code().as_u16(), 200);

    let body: Vec<JsonBody<Value>> = vec![
        json!({"index": {"_id": "1", "version": 10, "version_type": "external"}}).into(),
        json!({"title": "red bicycle", "n": 1}).into(),
        json!({"index": {"_id": "2", "version": 10, "version_type": "external"}}).into(),
        json!({"title": "blue car", "n": 2}).into(),
        // An older version of doc 1: must be rejected with 409, not applied.
        json!({"index": {"_id": "1", "version": 5, "version_type": "external"}}).into(),
        json!({"title": "stale", "n": 0}).into(),
    ];
    let resp = client
        .bulk(BulkParts::Index(&index))
        .refresh(mee_es::elasticsearch::params::Refresh::True)
        .body(body)
        .send()
        .await
        .expect("bulk");
    let resp: Value = resp.json().await.expect("bulk json");
    let statuses: Vec<u64> = resp["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["index"]["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [201, 201, 409], "{resp}");

    let found: Value = client
        .search(SearchParts::Index(&[&index]))
        .body(json!({"query": {"match": {"title": "bicycle"}}}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search json");
    let hits = found["hits"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["_id"], "1");
    assert_eq!(
        hits[0]["_source"]["title"], "red bicycle",
        "the stale write lost"
    );

    client
        .indices()
        .delete(IndicesDeleteParts::Index(&[&index]))
        .send()
        .await
        .expect("delete index");
}

#[tokio::test]
async fn unreachable_cluster_is_transient() {
    use mee_core::Transient;
    let env = StackEnv::load();
    let mut cfg = env.app_config(&[], &unique_name("r"));
    cfg.elasticsearch.url = "http://127.0.0.1:1".into();
    let client = mee_es::client(&cfg.elasticsearch).expect("client");
    let err = mee_es::cluster_info(&client)
        .await
        .expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
}
