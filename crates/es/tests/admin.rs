//! Index and alias administration against the local stack's Elasticsearch API.

use mee_core::Transient;
use mee_es::elasticsearch::Elasticsearch;
use mee_es::elasticsearch::indices::IndicesGetSettingsParts;
use mee_es::{BulkAction, BulkConfig, BulkOp, BulkWriter};
use mee_test_support::{StackEnv, unique_name};
use serde_json::{Value, json};

fn client() -> Elasticsearch {
    let env = StackEnv::load();
    let cfg = env.app_config(&[], &unique_name("r"));
    mee_es::client(&cfg.elasticsearch).expect("client")
}

async fn write_docs(client: &Elasticsearch, idx: &str, n: usize) {
    let ops = (0..n)
        .map(|i| BulkOp {
            index: idx.into(),
            id: i.to_string(),
            routing: None,
            version: 1,
            action: BulkAction::Index {
                source: json!({"i": i}).to_string(),
            },
        })
        .collect();
    let out = BulkWriter::new(client.clone(), BulkConfig::default())
        .write(ops)
        .await
        .expect("write");
    assert_eq!(out.indexed, n as u64, "{out:?}");
    mee_es::refresh(client, idx).await.expect("refresh");
}

#[tokio::test]
async fn create_exists_delete() {
    let client = client();
    let name = unique_name("adm");
    assert!(!mee_es::index_exists(&client, &name).await.expect("exists"));
    let settings = json!({"index": {"number_of_shards": 1}});
    let mappings = json!({"properties": {"n": {"type": "long"}}});
    mee_es::create_index(&client, &name, Some(&settings), Some(&mappings))
        .await
        .expect("create");
    assert!(mee_es::index_exists(&client, &name).await.expect("exists"));
    assert_eq!(mee_es::count(&client, &name).await.expect("count"), 0);

    // Creating it again is a definite error that names the index.
    let err = mee_es::create_index(&client, &name, None, None)
        .await
        .expect_err("exists already");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    mee_es::delete_index(&client, &name).await.expect("delete");
    assert!(!mee_es::index_exists(&client, &name).await.expect("exists"));
    // Already gone is fine.
    mee_es::delete_index(&client, &name)
        .await
        .expect("delete again");
}

#[tokio::test]
async fn put_settings() {
    let client = client();
    let name = unique_name("adm");
    mee_es::create_index(&client, &name, None, None)
        .await
        .expect("create");
    mee_es::put_index_settings(
        &client,
        &name,
        &json!({"index": {"refresh_interval": "-1", "number_of_replicas": 0}}),
    )
    .await
    .expect("put settings");
    let got: Value = client
        .indices()
        .get_settings(IndicesGetSettingsParts::Index(&[&name]))
        .send()
        .await
        .expect("get settings")
        .json()
        .await
        .expect("json");
    let index = &got[&name]["settings"]["index"];
    assert_eq!(index["refresh_interval"], "-1", "{got}");
    assert_eq!(index["number_of_replicas"], "0", "{got}");

    let err = mee_es::put_index_settings(&client, &unique_name("none"), &json!({"index": {}}))
        .await
        .expect_err("no such index");
    assert_eq!(err.status(), Some(404), "{err}");
    mee_es::delete_index(&client, &name).await.expect("delete");
}

#[tokio::test]
async fn alias_moves_from_one_generation_to_the_next() {
    let client = client();
    let alias = unique_name("alias");
    let (a, b) = (format!("{alias}_1"), format!("{alias}_2"));
    for idx in [&a, &b] {
        mee_es::create_index(&client, idx, None, None)
            .await
            .expect("create");
    }
    write_docs(&client, &a, 2).await;
    write_docs(&client, &b, 3).await;

    assert_eq!(
        mee_es::alias_targets(&client, &alias)
            .await
            .expect("targets"),
        Vec::<String>::new()
    );
    // First generation: nothing to remove.
    mee_es::swap_alias(&client, &alias, &[], &a)
        .await
        .expect("add");
    assert_eq!(
        mee_es::alias_targets(&client, &alias)
            .await
            .expect("targets"),
        [a.as_str()]
    );
    assert_eq!(mee_es::count(&client, &alias).await.expect("count"), 2);
    // An alias is not a concrete index.
    assert!(
        !mee_es::alias_is_concrete_index(&client, &alias)
            .await
            .expect("concrete?")
    );
    assert!(!mee_es::index_exists(&client, &alias).await.expect("exists"));
    // Deleting through the alias name is refused and deletes nothing.
    mee_es::delete_index(&client, &alias)
        .await
        .expect_err("an alias is not an index");
    assert!(mee_es::index_exists(&client, &a).await.expect("exists"));

    mee_es::swap_alias(&client, &alias, std::slice::from_ref(&a), &b)
        .await
        .expect("swap");
    assert_eq!(
        mee_es::alias_targets(&client, &alias)
            .await
            .expect("targets"),
        [b.as_str()]
    );
    assert_eq!(mee_es::count(&client, &alias).await.expect("count"), 3);

    // A stale swap (the alias is no longer on `a`) fails and changes nothing.
    let err = mee_es::swap_alias(&client, &alias, std::slice::from_ref(&a), &a)
        .await
        .expect_err("stale");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains(&alias), "{err}");
    assert_eq!(
        mee_es::alias_targets(&client, &alias)
            .await
            .expect("targets"),
        [b.as_str()]
    );

    for idx in [&a, &b] {
        mee_es::delete_index(&client, idx).await.expect("delete");
    }
    assert_eq!(
        mee_es::alias_targets(&client, &alias)
            .await
            .expect("targets"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_concrete_index_in_the_way_of_an_alias() {
    let client = client();
    let name = unique_name("taken");
    mee_es::create_index(&client, &name, None, None)
        .await
        .expect("create");
    assert!(
        mee_es::alias_is_concrete_index(&client, &name)
            .await
            .expect("concrete?")
    );
    assert_eq!(
        mee_es::alias_targets(&client, &name)
            .await
            .expect("targets"),
        Vec::<String>::new()
    );
    mee_es::delete_index(&client, &name).await.expect("delete");
    assert!(
        !mee_es::alias_is_concrete_index(&client, &name)
            .await
            .expect("concrete?")
    );
}
