//! The bulk writer against the local stack's Elasticsearch API: versioned writes,
//! conflicts, deletes, rejected documents, chunking and concurrent callers.

use mee_es::elasticsearch::{Elasticsearch, GetParts};
use mee_es::{BulkAction, BulkConfig, BulkOp, BulkWriter};
use mee_test_support::{StackEnv, unique_name};
use serde_json::{Value, json};

fn client() -> Elasticsearch {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r"));
    mee_es::client(&cfg.elasticsearch).expect("client")
}

/// A fresh index where `n` is a `long`.
async fn index_with_long_n(client: &Elasticsearch) -> String {
    let name = unique_name("bulk");
    let mappings = json!({"properties": {"n": {"type": "long"}, "title": {"type": "keyword"}}});
    mee_es::create_index(client, &name, None, Some(&mappings))
        .await
        .expect("create index");
    name
}

fn index(idx: &str, id: &str, version: u64, source: Value) -> BulkOp {
    BulkOp {
        index: idx.into(),
        id: id.into(),
        routing: None,
        version,
        action: BulkAction::Index {
            source: source.to_string(),
        },
    }
}

fn delete(idx: &str, id: &str, version: u64) -> BulkOp {
    BulkOp {
        index: idx.into(),
        id: id.into(),
        routing: None,
        version,
        action: BulkAction::Delete,
    }
}

async fn get_doc(client: &Elasticsearch, idx: &str, id: &str) -> Value {
    client
        .get(GetParts::IndexId(idx, id))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("get json")
}

#[tokio::test]
async fn versions_conflicts_and_deletes() {
    let client = client();
    let idx = index_with_long_n(&client).await;
    let writer = BulkWriter::new(client.clone(), BulkConfig::default());

    let out = writer
        .write(vec![
            index(&idx, "1", 5, json!({"title": "v5", "n": 5})),
            index(&idx, "2", 5, json!({"title": "two", "n": 2})),
            // Deleting a document that is not there is done, not an error.
            delete(&idx, "missing", 5),
        ])
        .await
        .expect("write");
    assert_eq!(
        (out.indexed, out.deleted, out.conflicts),
        (2, 1, 0),
        "{out:?}"
    );
    assert!(out.rejected.is_empty(), "{out:?}");
    assert_eq!((out.requests, out.retries), (1, 0));
    assert_eq!(out.latencies.len(), 1);

    // An older version is a conflict, counted as done, and changes nothing.
    let out = writer
        .write(vec![index(&idx, "1", 3, json!({"title": "v3", "n": 3}))])
        .await
        .expect("write");
    assert_eq!((out.indexed, out.conflicts), (0, 1), "{out:?}");
    // Replaying the same version is a conflict too.
    let out = writer
        .write(vec![index(&idx, "1", 5, json!({"title": "v5", "n": 5}))])
        .await
        .expect("write");
    assert_eq!(out.conflicts, 1, "{out:?}");
    // A newer version wins.
    let out = writer
        .write(vec![
            index(&idx, "1", 7, json!({"title": "v7", "n": 7})),
            delete(&idx, "2", 6),
            // An old delete loses against a newer document.
            delete(&idx, "1", 6),
        ])
        .await
        .expect("write");
    assert_eq!(
        (out.indexed, out.deleted, out.conflicts),
        (1, 1, 1),
        "{out:?}"
    );

    let doc = get_doc(&client, &idx, "1").await;
    assert_eq!(doc["_version"], 7, "{doc}");
    assert_eq!(doc["_source"]["title"], "v7", "{doc}");
    assert_eq!(get_doc(&client, &idx, "2").await["found"], false);
    mee_es::refresh(&client, &idx).await.expect("refresh");
    assert_eq!(mee_es::count(&client, &idx).await.expect("count"), 1);
    mee_es::delete_index(&client, &idx).await.expect("delete");
}

#[tokio::test]
async fn routing_and_awkward_ids() {
    let client = client();
    let idx = index_with_long_n(&client).await;
    let writer = BulkWriter::new(client.clone(), BulkConfig::default());
    let id = "say \"hi\" / 名前 😀";
    let out = writer
        .write(vec![BulkOp {
            routing: Some("customer-7".into()),
            ..index(&idx, id, 1, json!({"title": "quoted", "n": 1}))
        }])
        .await
        .expect("write");
    assert_eq!(out.indexed, 1, "{out:?}");
    let doc: Value = client
        .get(GetParts::IndexId(&idx, id))
        .routing("customer-7")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["_id"], id, "{doc}");
    assert_eq!(doc["_routing"], "customer-7", "{doc}");
    mee_es::delete_index(&client, &idx).await.expect("delete");
}

#[tokio::test]
async fn a_rejected_document_does_not_stop_the_batch() {
    let client = client();
    let idx = index_with_long_n(&client).await;
    let writer = BulkWriter::new(client.clone(), BulkConfig::default());
    let bad = index(&idx, "2", 1, json!({"title": "bad", "n": "abc"}));
    let out = writer
        .write(vec![
            index(&idx, "1", 1, json!({"title": "ok", "n": 1})),
            bad.clone(),
            index(&idx, "3", 1, json!({"title": "ok", "n": 3})),
            // Refused before sending: Elasticsearch would fail the whole request.
            index(&idx, "", 1, json!({"n": 4})),
        ])
        .await
        .expect("write");
    assert_eq!(out.indexed, 2, "{out:?}");
    assert_eq!(out.rejected.len(), 2, "{out:?}");
    let local = &out.rejected[0];
    assert_eq!((local.op.id.as_str(), local.status), ("", 400), "{local:?}");
    assert!(local.reason.starts_with("mee: "), "{local:?}");
    let rejected = &out.rejected[1];
    assert_eq!(rejected.op, bad);
    assert_eq!(rejected.status, 400);
    assert!(rejected.reason.contains("[n]"), "{}", rejected.reason);
    mee_es::refresh(&client, &idx).await.expect("refresh");
    assert_eq!(mee_es::count(&client, &idx).await.expect("count"), 2);
    mee_es::delete_index(&client, &idx).await.expect("delete");
}

#[tokio::test]
async fn splits_by_docs_and_by_bytes() {
    let client = client();
    let idx = index_with_long_n(&client).await;

    let by_docs = BulkWriter::new(
        client.clone(),
        BulkConfig {
            max_docs: 10,
            ..BulkConfig::default()
        },
    );
    let ops: Vec<BulkOp> = (0..25)
        .map(|i| index(&idx, &format!("d{i}"), 1, json!({"n": i})))
        .collect();
    let out = by_docs.write(ops).await.expect("write");
    assert_eq!((out.indexed, out.requests), (25, 3), "{out:?}");

    let by_bytes = BulkWriter::new(
        client.clone(),
        BulkConfig {
            max_bytes: 1024,
            ..BulkConfig::default()
        },
    );
    // About 450 bytes per operation: two fit in 1024 bytes, a 2000-byte one goes alone.
    let text = "x".repeat(350);
    let mut ops: Vec<BulkOp> = (0..6)
        .map(|i| index(&idx, &format!("b{i}"), 1, json!({"n": i, "title": text})))
        .collect();
    ops.insert(
        2,
        index(&idx, "big", 1, json!({"n": 0, "title": "y".repeat(2000)})),
    );
    let out = by_bytes.write(ops).await.expect("write");
    assert_eq!((out.indexed, out.requests), (7, 4), "{out:?}");
    assert_eq!(out.latencies.len(), 4);

    mee_es::refresh(&client, &idx).await.expect("refresh");
    assert_eq!(mee_es::count(&client, &idx).await.expect("count"), 32);
    mee_es::delete_index(&client, &idx).await.expect("delete");
}

#[tokio::test]
async fn concurrent_callers_share_one_writer() {
    let client = client();
    let idx = index_with_long_n(&client).await;
    let writer = BulkWriter::new(
        client.clone(),
        BulkConfig {
            max_docs: 7,
            concurrency: 2,
            ..BulkConfig::default()
        },
    );
    let mut tasks = Vec::new();
    for caller in 0..6 {
        let writer = writer.clone();
        let idx = idx.clone();
        tasks.push(tokio::spawn(async move {
            let ops = (0..40)
                .map(|i| index(&idx, &format!("c{caller}-{i}"), 1, json!({"n": i})))
                .collect();
            writer.write(ops).await
        }));
    }
    for task in tasks {
        let out = task.await.expect("task").expect("write");
        assert_eq!((out.indexed, out.requests), (40, 6), "{out:?}");
    }
    mee_es::refresh(&client, &idx).await.expect("refresh");
    assert_eq!(mee_es::count(&client, &idx).await.expect("count"), 240);
    mee_es::delete_index(&client, &idx).await.expect("delete");
}

#[tokio::test]
async fn an_empty_write_sends_nothing() {
    let writer = BulkWriter::new(client(), BulkConfig::default());
    let out = writer.write(Vec::new()).await.expect("write");
    assert_eq!(out, Default::default());
}
