//! Handler parsing: the shipped examples parse; bad files give golden error lists.

use super::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(path: &Path) -> Result<Handler, HandlerError> {
    let text = std::fs::read_to_string(path).expect("read handler");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    Handler::parse(&name, &text)
}

#[test]
fn shipped_handlers_parse() {
    for name in ["carteam_user.yml", "vehicle.yml", "orders.yml"] {
        let path = root().join("conf/handlers").join(name);
        load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn carteam_user_shape() {
    let h = load(&root().join("conf/handlers/carteam_user.yml")).expect("valid");
    assert_eq!(h.alias, "index_carteam_user");
    assert_eq!(h.type_name.as_deref(), Some("user"));
    assert_eq!(h.master().key, "users");
    assert_eq!(h.primary_key, ["id"]);
    let keys: Vec<&str> = h.group.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["users", "relations_1", "admin_users", "credit"]);
    let credit = &h.group.items[3];
    assert_eq!(
        credit.filter,
        [("status".to_string(), vec![serde_json::json!(0)])]
    );
    match &credit.fields[0] {
        Field::Column {
            column,
            es_field,
            null_value,
            ..
        } => {
            assert_eq!(
                (column.as_str(), es_field.as_str()),
                ("credit_line", "credit_line")
            );
            assert_eq!(null_value, &Some(serde_json::json!(0)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn anchors_nested_groups_and_mappings() {
    let h = load(&root().join("conf/handlers/vehicle.yml")).expect("valid");
    assert_eq!(h.alias, "index_vehicle", "`__` keys only hold anchors");
    assert!(h.settings.is_some() && h.mappings.is_some());
    let nested = h.master().fields.iter().find_map(|f| match f {
        Field::Nested { es_field, group } => Some((es_field, group)),
        _ => None,
    });
    let (es_field, group) = nested.expect("nested field");
    assert_eq!(es_field, "vehicle_monitors");
    assert_eq!(group.master_item().key, "vehicle_monitor");
    assert_eq!(group.master_item().parent_query.len(), 1);
}

#[test]
fn decimal_fields_follow_the_es_mapping() {
    let h = load(&root().join("conf/handlers/orders.yml")).expect("valid");
    let numeric = |fields: &[Field], name: &str| {
        fields.iter().find_map(|f| match f {
            Field::Column {
                es_field,
                decimal_as_number,
                ..
            } if es_field == name => Some(*decimal_as_number),
            _ => None,
        })
    };
    assert_eq!(numeric(&h.master().fields, "total"), Some(true));
    let Some(Field::Nested { group, .. }) = h
        .master()
        .fields
        .iter()
        .find(|f| matches!(f, Field::Nested { .. }))
    else {
        panic!("nested items")
    };
    assert_eq!(numeric(&group.items[0].fields, "price"), Some(false));
    assert_eq!(h.all_items().len(), 5);
}

#[test]
fn templates_render_from_the_row() {
    let t = Template::parse("carteam_user_%id").expect("valid");
    let got = t.render(&|c| (c == "id").then(|| "42".to_string()));
    assert_eq!(got.as_deref(), Some("carteam_user_42"));
    assert!(Template::parse("x_%__master.id").is_err());
}

/// Every `tests/handlers/*.yml` fails with exactly the errors in its `.txt`.
/// Set `UPDATE_GOLDEN=1` to rewrite the `.txt` files after a deliberate change.
#[test]
fn bad_handlers_match_golden_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/handlers");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let err = match load(&path) {
            Ok(_) => panic!("{} should not parse", path.display()),
            Err(e) => e.to_string() + "\n",
        };
        let golden = path.with_extension("txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &err).expect("write golden");
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", golden.display()));
        assert_eq!(err, want, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} golden cases found");
}
