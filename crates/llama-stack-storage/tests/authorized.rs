//! [`AuthorizedSqlStore`]: ownership is recorded on write and every row read, updated or
//! deleted is checked against the access policy (auth.md §4.4–4.5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "sql-sqlite")]

use std::sync::Arc;

use llama_stack_core::access::AccessPolicy;
use llama_stack_core::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Order, Row, SqlStore, TableSchema,
};
use llama_stack_core::{ErrorKind, User};
use llama_stack_storage::authorized::AuthorizedSqlStore;
use llama_stack_storage::sql::SqliteSqlStore;
use serde_json::{json, Value};

const TABLE: &str = "records";

struct Fixture {
    store: AuthorizedSqlStore,
    raw: Arc<dyn SqlStore>,
    _dir: tempfile::TempDir,
}

async fn fixture(policy: AccessPolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn SqlStore> = Arc::new(
        SqliteSqlStore::open(dir.path().join("sql.db"))
            .await
            .unwrap(),
    );
    let store = AuthorizedSqlStore::new(raw.clone(), policy);
    store
        .create_table(&TableSchema::new(
            TABLE,
            vec![
                ColumnDef::new("id", ColumnType::Text).primary_key(),
                ColumnDef::new("created_at", ColumnType::Integer),
                ColumnDef::new("body", ColumnType::Json),
            ],
        ))
        .await
        .unwrap();
    Fixture {
        store,
        raw,
        _dir: dir,
    }
}

fn alice() -> User {
    User::new("alice").with_attribute("roles", ["ml"])
}

fn bob() -> User {
    User::new("bob").with_attribute("roles", ["finance"])
}

/// Shares alice's role.
fn carol() -> User {
    User::new("carol").with_attribute("roles", ["ml", "ops"])
}

fn record(id: &str, created_at: i64) -> Row {
    json!({"id": id, "created_at": created_at, "body": {"text": id}})
        .as_object()
        .unwrap()
        .clone()
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

async fn visible(f: &Fixture, user: Option<&User>) -> Vec<String> {
    let page = f
        .store
        .fetch_all(user, TABLE, &FetchQuery::default())
        .await
        .unwrap();
    assert!(!page.has_more);
    ids(&page.rows).into_iter().map(String::from).collect()
}

#[tokio::test]
async fn owners_see_their_rows_and_others_do_not() {
    let f = fixture(AccessPolicy::default()).await;
    f.store
        .insert(Some(&alice()), TABLE, record("a1", 1))
        .await
        .unwrap();
    f.store
        .insert(Some(&bob()), TABLE, record("b1", 2))
        .await
        .unwrap();

    assert_eq!(visible(&f, Some(&alice())).await, ["a1"]);
    assert_eq!(visible(&f, Some(&bob())).await, ["b1"]);
    let hidden = f
        .store
        .fetch_one(Some(&alice()), TABLE, Some(&Filter::eq("id", "b1")))
        .await
        .unwrap();
    assert_eq!(hidden, None);
    // Owner columns are recorded but never returned.
    let mine = f
        .store
        .fetch_one(Some(&alice()), TABLE, Some(&Filter::eq("id", "a1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine, record("a1", 1));
    let raw = f
        .raw
        .fetch_one(TABLE, Some(&Filter::eq("id", "a1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw["owner_principal"], json!("alice"));
    assert_eq!(raw["access_attributes"], json!({"roles": ["ml"]}));
}

#[tokio::test]
async fn shared_role_is_visible_under_the_default_policy() {
    let f = fixture(AccessPolicy::default()).await;
    f.store
        .insert(Some(&alice()), TABLE, record("a1", 1))
        .await
        .unwrap();
    f.store
        .insert(Some(&bob()), TABLE, record("b1", 2))
        .await
        .unwrap();
    assert_eq!(visible(&f, Some(&carol())).await, ["a1"]);
    // The same with the default policy written out as rules.
    let g = fixture(AccessPolicy::default_policy()).await;
    g.store
        .insert(Some(&alice()), TABLE, record("a1", 1))
        .await
        .unwrap();
    g.store
        .insert(Some(&bob()), TABLE, record("b1", 2))
        .await
        .unwrap();
    assert_eq!(visible(&g, Some(&carol())).await, ["a1"]);
}

#[tokio::test]
async fn anonymous_callers_see_only_unowned_rows() {
    let f = fixture(AccessPolicy::default()).await;
    f.store
        .insert(Some(&alice()), TABLE, record("a1", 1))
        .await
        .unwrap();
    f.store
        .insert(None, TABLE, record("anon", 2))
        .await
        .unwrap();
    // A row written around the wrapper (owner NULL) counts as unowned.
    f.raw.insert(TABLE, record("legacy", 3)).await.unwrap();

    assert_eq!(visible(&f, None).await, ["anon", "legacy"]);
    // Unowned rows are readable by everyone under the default policy.
    assert_eq!(visible(&f, Some(&bob())).await, ["anon", "legacy"]);
    assert_eq!(visible(&f, Some(&alice())).await, ["a1", "anon", "legacy"]);
    let raw = f
        .raw
        .fetch_one(TABLE, Some(&Filter::eq("id", "anon")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw["owner_principal"], json!(""));
    assert_eq!(raw["access_attributes"], Value::Null);
}

#[tokio::test]
async fn pages_are_filled_to_the_limit_with_exact_has_more() {
    let f = fixture(AccessPolicy::default()).await;
    // Alice's 5 rows are spread among 40 of bob's.
    for i in 0..45_i64 {
        let (user, id) = if i % 9 == 4 {
            (alice(), format!("a{i:02}"))
        } else {
            (bob(), format!("b{i:02}"))
        };
        f.store
            .insert(Some(&user), TABLE, record(&id, i / 3))
            .await
            .unwrap();
    }
    let mine_desc = ["a40", "a31", "a22", "a13", "a04"];
    for (order, expected) in [
        (None, vec!["a04", "a13", "a22", "a31", "a40"]),
        (Some(Order::Desc), mine_desc.to_vec()),
    ] {
        let mut cursor: Option<Cursor> = None;
        let mut pages = Vec::new();
        loop {
            let q = FetchQuery {
                order_by: order.map(|o| ("created_at".to_string(), o)),
                limit: Some(2),
                cursor: cursor.clone(),
                ..FetchQuery::default()
            };
            let page = f.store.fetch_all(Some(&alice()), TABLE, &q).await.unwrap();
            let got: Vec<String> = ids(&page.rows).into_iter().map(String::from).collect();
            pages.push((got.clone(), page.has_more));
            if !page.has_more {
                break;
            }
            cursor = Some(Cursor {
                key_column: "id".to_string(),
                after: json!(got.last().unwrap()),
            });
        }
        let sizes: Vec<(usize, bool)> = pages.iter().map(|(p, m)| (p.len(), *m)).collect();
        assert_eq!(sizes, [(2, true), (2, true), (1, false)], "{order:?}");
        let all: Vec<String> = pages.into_iter().flat_map(|(p, _)| p).collect();
        assert_eq!(all, expected, "{order:?}");
    }
    // A limit equal to the number of visible rows: full page, nothing more.
    let q = FetchQuery {
        limit: Some(5),
        ..FetchQuery::default()
    };
    let page = f.store.fetch_all(Some(&alice()), TABLE, &q).await.unwrap();
    assert_eq!(page.rows.len(), 5);
    assert!(!page.has_more);
    // fetch_one finds alice's row even though bob's come first.
    let first = f
        .store
        .fetch_one(Some(&alice()), TABLE, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first["id"], json!("a04"));
}

#[tokio::test]
async fn update_and_delete_touch_only_permitted_rows() {
    let f = fixture(AccessPolicy::default()).await;
    f.store
        .insert(Some(&alice()), TABLE, record("a1", 1))
        .await
        .unwrap();
    f.store
        .insert(Some(&alice()), TABLE, record("a2", 1))
        .await
        .unwrap();
    f.store
        .insert(Some(&bob()), TABLE, record("b1", 1))
        .await
        .unwrap();

    let every = Filter::eq("created_at", 1);
    let changed = f
        .store
        .update(
            Some(&bob()),
            TABLE,
            json!({"body": "edited"}).as_object().unwrap().clone(),
            &every,
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let a1 = f
        .raw
        .fetch_one(TABLE, Some(&Filter::eq("id", "a1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a1["body"], json!({"text": "a1"}));
    let b1 = f
        .raw
        .fetch_one(TABLE, Some(&Filter::eq("id", "b1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b1["body"], json!("edited"));

    // Carol shares alice's role: she may update alice's rows (and takes them over, as
    // Llama Stack does).
    let changed = f
        .store
        .update(
            Some(&carol()),
            TABLE,
            json!({"body": "by carol"}).as_object().unwrap().clone(),
            &Filter::eq("id", "a2"),
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let a2 = f
        .raw
        .fetch_one(TABLE, Some(&Filter::eq("id", "a2")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2["owner_principal"], json!("carol"));

    // Anonymous callers cannot touch owned rows.
    assert_eq!(f.store.delete(None, TABLE, &every).await.unwrap(), 0);
    assert_eq!(
        f.store.delete(Some(&bob()), TABLE, &every).await.unwrap(),
        1
    );
    let left = f
        .raw
        .fetch_all(TABLE, &FetchQuery::default())
        .await
        .unwrap()
        .rows;
    assert_eq!(ids(&left), ["a1", "a2"]);
    assert_eq!(
        f.store.delete(Some(&alice()), TABLE, &every).await.unwrap(),
        2
    );
    assert!(f
        .raw
        .fetch_all(TABLE, &FetchQuery::default())
        .await
        .unwrap()
        .rows
        .is_empty());
}

#[tokio::test]
async fn upsert_over_someone_elses_row_is_refused() {
    let f = fixture(AccessPolicy::default()).await;
    f.store
        .upsert(Some(&alice()), TABLE, record("a1", 1), &["id"])
        .await
        .unwrap();
    f.store
        .upsert(Some(&alice()), TABLE, record("a1", 2), &[])
        .await
        .unwrap();
    let err = f
        .store
        .upsert(Some(&bob()), TABLE, record("a1", 3), &["id"])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    let err = f
        .store
        .upsert(None, TABLE, record("a1", 3), &["id"])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let a1 = f
        .store
        .fetch_one(Some(&alice()), TABLE, Some(&Filter::eq("id", "a1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a1["created_at"], json!(2));
    // A plain insert of an existing key is a conflict, whoever owns it.
    let err = f
        .store
        .insert(Some(&bob()), TABLE, record("a1", 4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

#[tokio::test]
async fn callers_cannot_forge_owner_columns() {
    let f = fixture(AccessPolicy::default()).await;
    let mut forged = record("f1", 1);
    forged.insert("owner_principal".into(), json!("alice"));
    forged.insert("access_attributes".into(), json!({"roles": ["ml"]}));
    f.store.insert(Some(&bob()), TABLE, forged).await.unwrap();
    assert_eq!(visible(&f, Some(&bob())).await, ["f1"]);
    assert!(visible(&f, Some(&alice())).await.is_empty());
}

#[tokio::test]
async fn custom_policies_decide_per_row() {
    let policy = AccessPolicy::from_value(&json!([
        {"permit": {"actions": ["read"], "resource": "regex:sql_record::records::public-.*"}},
        {"permit": {"actions": ["read"]}, "when": "user with auditor in roles"},
        {"forbid": {"actions": ["read"], "resource": "sql_record::records::secret"}},
        {"permit": {"actions": ["create", "read", "update", "delete"]}, "when": "user is owner"},
    ]))
    .unwrap();
    let f = fixture(policy).await;
    f.store
        .insert(Some(&alice()), TABLE, record("public-1", 1))
        .await
        .unwrap();
    f.store
        .insert(Some(&alice()), TABLE, record("private", 2))
        .await
        .unwrap();
    f.store
        .insert(Some(&alice()), TABLE, record("secret", 3))
        .await
        .unwrap();
    let auditor = User::new("dana").with_attribute("roles", ["auditor"]);

    assert_eq!(visible(&f, Some(&bob())).await, ["public-1"]);
    assert_eq!(
        visible(&f, Some(&auditor)).await,
        ["private", "public-1", "secret"]
    );
    // The forbid rule comes before the owner rule.
    assert_eq!(visible(&f, Some(&alice())).await, ["private", "public-1"]);
    // Auditors may read but not delete.
    assert_eq!(
        f.store
            .delete(Some(&auditor), TABLE, &Filter::And(vec![]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.store
            .delete(Some(&alice()), TABLE, &Filter::eq("id", "secret"))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn tables_need_one_key_column_and_creation_through_the_wrapper() {
    let f = fixture(AccessPolicy::default()).await;
    let composite = TableSchema::new(
        "pairs",
        vec![
            ColumnDef::new("a", ColumnType::Text).primary_key(),
            ColumnDef::new("b", ColumnType::Text).primary_key(),
        ],
    );
    let err = f.store.create_table(&composite).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    let keyless = TableSchema::new("loose", vec![ColumnDef::new("a", ColumnType::Text)]);
    assert!(f.store.create_table(&keyless).await.is_err());
    // A table created around the wrapper is refused (its key column is unknown).
    f.raw
        .create_table(&TableSchema::new(
            "other",
            vec![ColumnDef::new("id", ColumnType::Text).primary_key()],
        ))
        .await
        .unwrap();
    let err = f
        .store
        .fetch_all(Some(&alice()), "other", &FetchQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    // The owner columns are added to an existing table by a second create (migration).
    let g = AuthorizedSqlStore::new(f.raw.clone(), AccessPolicy::default());
    g.create_table(&TableSchema::new(
        "other",
        vec![ColumnDef::new("id", ColumnType::Text).primary_key()],
    ))
    .await
    .unwrap();
    g.insert(
        Some(&alice()),
        "other",
        json!({"id": "x"}).as_object().unwrap().clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        g.fetch_all(Some(&alice()), "other", &FetchQuery::default())
            .await
            .unwrap()
            .rows
            .len(),
        1
    );
}
