use super::BulkSink;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// `(status, JSON body or Null)`
async fn call(sink: &BulkSink, method: &str, path: &str, body: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client
        .request(method, format!("{}{path}", sink.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON answer")
    };
    (status, value)
}

#[tokio::test]
async fn root_document() {
    let sink = BulkSink::start().await.expect("sink");
    let (status, root) = call(&sink, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert_eq!(root["version"]["number"], "8.15.0");
    assert_eq!(root["tagline"], "You Know, for Search");
    assert_eq!(call(&sink, "HEAD", "/", "").await.0, 200);
    sink.stop().await;
}

#[tokio::test]
async fn bulk_index_create_delete_items_and_counts() {
    let sink = BulkSink::start().await.expect("sink");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hooked = seen.clone();
    sink.on_document(move |index, id, _| {
        hooked.lock().unwrap().push(format!("{index}/{id}"));
    });
    let body = concat!(
        r#"{"index":{"_index":"a","_id":"1","version":7,"version_type":"external"}}"#,
        "\n{\"f\":1}\n",
        r#"{"create":{"_id":"2"}}"#,
        "\n{\"f\":2}\n",
        "\n",
        r#"{"delete":{"_index":"a","_id":"1"}}"#,
        "\n",
        r#"{"index":{"_id":"q\"uote"}}"#,
        "\n  {}\n",
    );
    let (status, resp) = call(&sink, "POST", "/a/_bulk", body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["errors"], false);
    let items = resp["items"].as_array().expect("items");
    assert_eq!(
        items[0],
        json!({"index": {"_index": "a", "_id": "1", "_version": 7, "result": "created", "status": 201}})
    );
    assert_eq!(items[1]["create"]["status"], 201);
    assert_eq!(
        items[2],
        json!({"delete": {"_index": "a", "_id": "1", "_version": 1, "result": "deleted", "status": 200}})
    );
    assert_eq!(items[3]["index"]["_id"], "q\"uote");
    assert_eq!(items.len(), 4);
    assert_eq!(*seen.lock().unwrap(), ["a/1", "a/2", "a/1", "a/q\"uote"]);

    let stats = sink.stats();
    assert_eq!(
        (stats.bulk_requests, stats.docs_indexed, stats.docs_deleted),
        (1, 3, 1)
    );
    assert_eq!(stats.body_bytes, body.len() as u64);
    assert_eq!(stats.bulk_errors, 0);
    // Auto-created by the bulk, as Elasticsearch does.
    assert_eq!(call(&sink, "HEAD", "/a", "").await.0, 200);
    assert_eq!(call(&sink, "GET", "/a/_count", "").await.1["count"], 2);
    sink.stop().await;
}

#[tokio::test]
async fn failed_items_are_reported_per_item() {
    let sink = BulkSink::start().await.expect("sink");
    let body = concat!(
        r#"{"delete":{"_index":"missing","_id":"1"}}"#,
        "\n",
        r#"{"index":{"_index":"b","_id":"1"}}"#,
        "\nnot json\n",
        r#"{"index":{"_index":"Upper","_id":"1"}}"#,
        "\n{}\n",
    );
    let (status, resp) = call(&sink, "POST", "/_bulk", body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["errors"], true);
    let items = &resp["items"];
    assert_eq!(items[0]["delete"]["status"], 404);
    assert_eq!(
        items[0]["delete"]["error"]["type"],
        "index_not_found_exception"
    );
    assert_eq!(items[1]["index"]["status"], 400);
    assert_eq!(
        items[1]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(
        items[2]["index"]["error"]["type"],
        "invalid_index_name_exception"
    );
    let stats = sink.stats();
    assert_eq!((stats.docs_indexed, stats.bulk_errors), (0, 3));
    sink.stop().await;
}

#[tokio::test]
async fn malformed_bulk_bodies_are_refused() {
    let sink = BulkSink::start().await.expect("sink");
    let cases = [
        (
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}\n{}\n",
            "line [1]",
        ), // unclosed
        ("{\"index\":{\"_id\":\"1\"}}\n{}\n", "index is missing"),
        (
            "{\"index\":{\"_index\":\"a\",\"if_seq_no\":1}}\n{}\n",
            "if_seq_no",
        ),
        (
            "{\"update\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n",
            "[update]",
        ),
        ("{\"delete\":{\"_index\":\"a\"}}\n", "id is missing"),
        (
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}",
            "terminated by a newline",
        ),
        (
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n",
            "no source line",
        ),
        ("\n", "no requests added"),
        ("[1]\n", "line [1]"),
    ];
    for (body, reason) in cases {
        let (status, resp) = call(&sink, "POST", "/_bulk", body).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["status"], 400);
        let error = &resp["error"];
        assert!(
            error["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("_exception")),
            "{resp}"
        );
        assert!(
            error["reason"].as_str().unwrap().contains(reason),
            "{body}: {resp}"
        );
        assert_eq!(error["root_cause"][0]["type"], error["type"]);
    }
    let (_, resp) = call(&sink, "POST", "/_bulk", "{\"index\":1}\n").await;
    assert_eq!(resp["error"]["type"], "illegal_argument_exception");
    let stats = sink.stats();
    assert_eq!(stats.bulk_errors, cases.len() as u64 + 1);
    assert_eq!(stats.docs_indexed, 0);
    sink.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404() {
    let sink = BulkSink::start().await.expect("sink");
    for (method, path) in [
        ("GET", "/a/_search"),
        ("POST", "/a/_doc/1"),
        ("GET", "/_cluster/health"),
        ("PUT", "/_bulk"),
        ("POST", "/a/_count"),
        ("GET", "/a/b/c/d"),
    ] {
        let (status, resp) = call(&sink, method, path, "{}").await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(resp["status"], 404);
        assert!(resp["error"].as_str().unwrap().contains(path), "{resp}");
    }
    sink.stop().await;
}

#[tokio::test]
async fn index_and_alias_admin_round_trip() {
    let sink = BulkSink::start().await.expect("sink");
    let create =
        r#"{"settings":{"number_of_shards":1},"mappings":{"properties":{"n":{"type":"long"}}}}"#;
    let (status, resp) = call(&sink, "PUT", "/i1", create).await;
    assert_eq!(status, 200);
    assert_eq!(
        resp,
        json!({"acknowledged": true, "shards_acknowledged": true, "index": "i1"})
    );
    let (status, resp) = call(&sink, "PUT", "/i1", "").await;
    assert_eq!(
        (status, &resp["error"]["type"]),
        (400, &json!("resource_already_exists_exception"))
    );
    assert_eq!(call(&sink, "PUT", "/i2", "").await.0, 200);
    assert_eq!(call(&sink, "PUT", "/_bad", "").await.0, 400);
    assert_eq!(call(&sink, "PUT", "/i3", r#"{"foo":1}"#).await.0, 400);
    let (status, resp) = call(&sink, "GET", "/i1", "").await;
    assert_eq!(status, 200);
    assert_eq!(resp["i1"]["mappings"]["properties"]["n"]["type"], "long");
    assert_eq!(call(&sink, "HEAD", "/nope", "").await.0, 404);
    let (status, resp) = call(&sink, "GET", "/nope", "").await;
    assert_eq!(
        (status, &resp["error"]["type"]),
        (404, &json!("index_not_found_exception"))
    );

    let (status, resp) = call(&sink, "GET", "/_alias/a", "").await;
    assert_eq!(
        (status, resp),
        (404, json!({"error": "alias [a] missing", "status": 404}))
    );
    assert_eq!(call(&sink, "HEAD", "/_alias/a", "").await.0, 404);

    let add = r#"{"actions":[{"add":{"index":"i1","alias":"a"}}]}"#;
    let (status, resp) = call(&sink, "POST", "/_aliases", add).await;
    assert_eq!((status, resp["acknowledged"].clone()), (200, json!(true)));
    let (status, resp) = call(&sink, "GET", "/_alias/a", "").await;
    assert_eq!((status, resp), (200, json!({"i1": {"aliases": {"a": {}}}})));

    // Writes through the alias land in its index.
    let (_, resp) = call(
        &sink,
        "POST",
        "/_bulk",
        "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n",
    )
    .await;
    assert_eq!(resp["items"][0]["index"]["_index"], "i1");
    assert_eq!(call(&sink, "GET", "/a/_count", "").await.1["count"], 1);
    assert_eq!(
        call(
            &sink,
            "PUT",
            "/a/_settings",
            r#"{"index":{"refresh_interval":"1s"}}"#
        )
        .await
        .0,
        200
    );
    assert_eq!(call(&sink, "POST", "/a/_refresh", "").await.0, 200);

    // Swap atomically; a failing action leaves everything as it was.
    let bad = r#"{"actions":[{"remove":{"index":"*","alias":"a"}},{"add":{"index":"nope","alias":"a"}}]}"#;
    assert_eq!(call(&sink, "POST", "/_aliases", bad).await.0, 404);
    let unsupported = r#"{"actions":[{"add":{"index":"i2","alias":"a","is_write_index":true}}]}"#;
    assert_eq!(call(&sink, "POST", "/_aliases", unsupported).await.0, 400);
    assert_eq!(
        call(&sink, "GET", "/_alias/a", "").await.1,
        json!({"i1": {"aliases": {"a": {}}}})
    );
    let swap =
        r#"{"actions":[{"remove":{"index":"*","alias":"a"}},{"add":{"index":"i2","alias":"a"}}]}"#;
    assert_eq!(call(&sink, "POST", "/_aliases", swap).await.0, 200);
    assert_eq!(
        call(&sink, "GET", "/_alias/a", "").await.1,
        json!({"i2": {"aliases": {"a": {}}}})
    );
    assert_eq!(call(&sink, "GET", "/a/_count", "").await.1["count"], 0);

    // An alias is not deleted as an index; its index is, and the alias with it.
    assert_eq!(call(&sink, "DELETE", "/a", "").await.0, 400);
    let (status, resp) = call(&sink, "DELETE", "/i2", "").await;
    assert_eq!((status, resp), (200, json!({"acknowledged": true})));
    assert_eq!(call(&sink, "HEAD", "/i2", "").await.0, 404);
    assert_eq!(call(&sink, "GET", "/_alias/a", "").await.0, 404);
    assert_eq!(call(&sink, "DELETE", "/i2", "").await.0, 404);

    let remove_missing = r#"{"actions":[{"remove":{"index":"i1","alias":"a"}}]}"#;
    let (status, resp) = call(&sink, "POST", "/_aliases", remove_missing).await;
    assert_eq!(
        (status, &resp["error"]["type"]),
        (404, &json!("aliases_not_found_exception"))
    );
    sink.stop().await;
}
