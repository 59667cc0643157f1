//! The shop fixture, the shipped `orders` handler over it, and the documents the
//! materializer builds from them (the goldens): what most pipeline tests start from.

use crate::workspace_root;
use serde_json::Value;
use std::collections::BTreeMap;

/// The text of a file of the workspace, e.g. `conf/handlers/orders.yml`.
pub fn workspace_file(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).expect(path)
}

/// The shop fixture: the tables and rows of logical database `shop`.
pub fn shop_fixture() -> String {
    workspace_file("crates/mysql/tests/fixtures/shop.sql")
}

/// The shipped `orders` handler (its alias: `orders`).
pub fn orders_handler() -> String {
    workspace_file("conf/handlers/orders.yml")
}

/// The materializer's golden documents of the `orders` handler over the shop fixture,
/// `_id` → `_source`.
pub fn orders_golden() -> BTreeMap<String, Value> {
    let docs: Vec<Value> =
        serde_json::from_str(&workspace_file("crates/mysql/tests/golden/orders.json"))
            .expect("golden");
    docs.into_iter()
        .map(|d| {
            (
                d["_id"].as_str().expect("id").to_string(),
                d["_source"].clone(),
            )
        })
        .collect()
}
