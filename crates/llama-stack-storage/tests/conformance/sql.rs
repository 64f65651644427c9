//! The [`SqlStore`] conformance suite, written once and run against every backend by
//! `tests/sql_backends.rs` (one test function per backend).
//!
//! A new backend plugs in with one test function that calls [`run_sql_suite`] with a
//! function opening a new handle on the same database (used to check migrations seen by
//! a second handle). Each check uses fresh table names, so checks and repeated runs on a
//! shared server never interfere. Set `LLAMA_STACK_TEST_BACKEND=sql_sqlite`
//! (comma-separated) to run only some backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use llama_stack_core::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Order, Page, Row, SqlStore, TableSchema,
};
use llama_stack_core::{Error, ErrorKind};
use serde_json::{json, Value};

type Store = Arc<dyn SqlStore>;
type Opener = Arc<dyn Fn() -> BoxFuture<'static, Store> + Send + Sync>;
type Check = fn(Ctx) -> BoxFuture<'static, ()>;

/// What a check gets: a store, a way to open another handle on the same database, and a
/// unique prefix for its table names.
#[derive(Clone)]
struct Ctx {
    store: Store,
    open: Opener,
    prefix: String,
}

impl Ctx {
    fn table(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }
}

/// Whether `backend` is selected by `LLAMA_STACK_TEST_BACKEND` (unset = every backend).
pub(crate) fn selected(backend: &str) -> bool {
    match std::env::var("LLAMA_STACK_TEST_BACKEND") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|b| b.trim() == backend),
        _ => true,
    }
}

/// Runs every check; `open` returns a new handle on the same database each call.
pub(crate) async fn run_sql_suite<F, Fut>(open: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Store> + Send + 'static,
{
    let open: Opener = Arc::new(move || Box::pin(open()));
    let store = open().await;
    let checks: &[(&str, Check)] = &[
        ("create_and_migrate", |c| Box::pin(create_and_migrate(c))),
        ("insert_and_conflict", |c| Box::pin(insert_and_conflict(c))),
        ("insert_many_all_or_none", |c| {
            Box::pin(insert_many_all_or_none(c))
        }),
        ("composite_primary_key", |c| {
            Box::pin(composite_primary_key(c))
        }),
        ("upsert", |c| Box::pin(upsert(c))),
        ("update", |c| Box::pin(update(c))),
        ("filters", |c| Box::pin(filters(c))),
        ("ordering", |c| Box::pin(ordering(c))),
        ("cursor_pagination", |c| Box::pin(cursor_pagination(c))),
        ("unknown_cursor", |c| Box::pin(unknown_cursor(c))),
        ("fetch_one", |c| Box::pin(fetch_one(c))),
        ("delete", |c| Box::pin(delete(c))),
        ("value_round_trips", |c| Box::pin(value_round_trips(c))),
        ("invalid_identifiers_and_columns", |c| {
            Box::pin(invalid_identifiers_and_columns(c))
        }),
        ("concurrent_writes", |c| Box::pin(concurrent_writes(c))),
    ];
    let backend = store.backend();
    for (i, (name, check)) in checks.iter().enumerate() {
        eprintln!("[{backend}] sql check {name}");
        let ctx = Ctx {
            store: store.clone(),
            open: open.clone(),
            prefix: fresh_prefix(i),
        };
        check(ctx).await;
    }
}

fn fresh_prefix(i: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("c{i}_{nanos}_{n}")
}

fn row(v: Value) -> Row {
    v.as_object().expect("a JSON object").clone()
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().expect("string id").to_string())
        .collect()
}

fn all() -> FetchQuery {
    FetchQuery::default()
}

fn filtered(f: Filter) -> FetchQuery {
    FetchQuery {
        filter: Some(f),
        ..FetchQuery::default()
    }
}

fn col(name: &str, ty: ColumnType) -> ColumnDef {
    ColumnDef::new(name, ty)
}

fn id_col() -> ColumnDef {
    ColumnDef::new("id", ColumnType::Text).primary_key()
}

#[track_caller]
fn assert_invalid(result: Result<impl std::fmt::Debug, Error>, mentions: &str) {
    let caller = std::panic::Location::caller();
    match result {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{caller}: {e}");
            assert!(
                e.message().contains(mentions),
                "{caller}: error '{e}' should mention '{mentions}'"
            );
        }
        Ok(v) => {
            panic!("{caller}: expected an invalid-request error mentioning '{mentions}', got {v:?}")
        }
    }
}

async fn create_and_migrate(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("items");
    let v1 = TableSchema::new(&t, vec![id_col(), col("n", ColumnType::Integer)]);
    store.create_table(&v1).await.unwrap();
    store.create_table(&v1).await.unwrap(); // idempotent
    store
        .insert(&t, row(json!({"id": "a", "n": 1})))
        .await
        .unwrap();

    // A second handle (e.g. a restarted process) migrates the table forward.
    let reopened = (ctx.open)().await;
    let mut v2 = v1.clone();
    v2.columns.push(col("note", ColumnType::Text));
    v2.columns.push(col("tags", ColumnType::Json));
    v2.columns.push(col("done", ColumnType::Boolean));
    reopened.create_table(&v2).await.unwrap();
    let a = reopened
        .fetch_one(&t, Some(&Filter::eq("id", "a")))
        .await
        .unwrap();
    assert_eq!(
        a,
        Some(row(
            json!({"id": "a", "n": 1, "note": null, "tags": null, "done": null})
        ))
    );
    reopened
        .insert(
            &t,
            row(json!({"id": "b", "n": 2, "note": "new", "tags": ["x"], "done": true})),
        )
        .await
        .unwrap();
    // The first handle sees and can write the new columns as well.
    store
        .insert(
            &t,
            row(json!({"id": "c", "n": 3, "note": "old handle", "done": false})),
        )
        .await
        .unwrap();
    let rows = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(ids(&rows), ["a", "b", "c"]);
    assert_eq!(rows[1]["tags"], json!(["x"]));
    assert_eq!(rows[1]["done"], json!(true));
    assert_eq!(rows[2]["note"], json!("old handle"));

    // Creating with the old schema again neither fails nor drops the new columns.
    store.create_table(&v1).await.unwrap();
    let b = store
        .fetch_one(&t, Some(&Filter::eq("id", "b")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b["note"], json!("new"));

    // Reopened again: data and columns are all there.
    let third = (ctx.open)().await;
    third.create_table(&v2).await.unwrap();
    assert_eq!(third.fetch_all(&t, &all()).await.unwrap().rows, rows);
}

async fn insert_and_conflict(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("things");
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("name", ColumnType::Text).not_null(),
            col("n", ColumnType::Integer),
        ],
    );
    store.create_table(&schema).await.unwrap();
    store
        .insert(&t, row(json!({"id": "1", "name": "first", "n": 1})))
        .await
        .unwrap();
    let err = store
        .insert(&t, row(json!({"id": "1", "name": "second", "n": 2})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // The existing row is unchanged.
    let one = store
        .fetch_one(&t, Some(&Filter::eq("id", "1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, row(json!({"id": "1", "name": "first", "n": 1})));
    // Missing columns are NULL.
    store
        .insert(&t, row(json!({"id": "2", "name": "no n"})))
        .await
        .unwrap();
    let two = store
        .fetch_one(&t, Some(&Filter::eq("id", "2")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two["n"], Value::Null);
    // A NOT NULL column must be given.
    let err = store.insert(&t, row(json!({"id": "3"}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert_eq!(store.fetch_all(&t, &all()).await.unwrap().rows.len(), 2);
}

async fn insert_many_all_or_none(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("batch");
    let schema = TableSchema::new(&t, vec![id_col(), col("n", ColumnType::Integer).not_null()]);
    store.create_table(&schema).await.unwrap();
    store.insert_many(&t, Vec::new()).await.unwrap();
    let batch: Vec<Row> = (0..50)
        .map(|i| row(json!({"id": format!("{i:02}"), "n": i})))
        .collect();
    store.insert_many(&t, batch).await.unwrap();
    let page = store.fetch_all(&t, &all()).await.unwrap();
    assert_eq!(page.rows.len(), 50);
    // A batch with one conflicting row writes nothing and reports the conflict.
    let bad = vec![
        row(json!({"id": "new-1", "n": 1})),
        row(json!({"id": "07", "n": 7})),
        row(json!({"id": "new-2", "n": 2})),
    ];
    let err = store.insert_many(&t, bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(store
        .fetch_one(&t, Some(&Filter::eq("id", "new-1")))
        .await
        .unwrap()
        .is_none());
    // So does a batch with an invalid row, and the store stays usable.
    let err = store
        .insert_many(
            &t,
            vec![
                row(json!({"id": "new-3", "n": 3})),
                row(json!({"id": "new-4"})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert_eq!(store.fetch_all(&t, &all()).await.unwrap().rows.len(), 50);
    store
        .insert_many(&t, vec![row(json!({"id": "new-5", "n": 5}))])
        .await
        .unwrap();
    assert_eq!(store.fetch_all(&t, &all()).await.unwrap().rows.len(), 51);
}

async fn composite_primary_key(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("members");
    let schema = TableSchema::new(
        &t,
        vec![
            ColumnDef::new("tenant", ColumnType::Text).primary_key(),
            ColumnDef::new("seq", ColumnType::Integer).primary_key(),
            col("value", ColumnType::Json),
        ],
    );
    store.create_table(&schema).await.unwrap();
    store
        .insert(&t, row(json!({"tenant": "a", "seq": 1, "value": 1})))
        .await
        .unwrap();
    store
        .insert(&t, row(json!({"tenant": "a", "seq": 2, "value": 2})))
        .await
        .unwrap();
    store
        .insert(&t, row(json!({"tenant": "b", "seq": 1, "value": 3})))
        .await
        .unwrap();
    let err = store
        .insert(&t, row(json!({"tenant": "a", "seq": 1, "value": 4})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // Upsert on the composite key.
    store
        .upsert(
            &t,
            row(json!({"tenant": "b", "seq": 1, "value": {"v": 5}})),
            &["tenant", "seq"],
        )
        .await
        .unwrap();
    let page = store
        .fetch_all(&t, &filtered(Filter::eq("tenant", "b")))
        .await
        .unwrap();
    assert_eq!(
        page.rows,
        vec![row(json!({"tenant": "b", "seq": 1, "value": {"v": 5}}))]
    );
    assert_eq!(store.fetch_all(&t, &all()).await.unwrap().rows.len(), 3);
}

async fn upsert(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("docs");
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("title", ColumnType::Text),
            col("body", ColumnType::Json),
        ],
    );
    store.create_table(&schema).await.unwrap();
    // Inserts when absent.
    store
        .upsert(
            &t,
            row(json!({"id": "d1", "title": "one", "body": {"v": 1}})),
            &["id"],
        )
        .await
        .unwrap();
    // Updates when present.
    store
        .upsert(
            &t,
            row(json!({"id": "d1", "title": "uno", "body": {"v": 2}})),
            &["id"],
        )
        .await
        .unwrap();
    // Empty conflict columns mean the primary key.
    store
        .upsert(
            &t,
            row(json!({"id": "d1", "title": "eins", "body": {"v": 3}})),
            &[],
        )
        .await
        .unwrap();
    // Columns absent from the row keep their values.
    store
        .upsert(&t, row(json!({"id": "d1", "title": "final"})), &["id"])
        .await
        .unwrap();
    store
        .upsert(&t, row(json!({"id": "d2", "title": "two"})), &["id"])
        .await
        .unwrap();
    let rows = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(
        rows,
        vec![
            row(json!({"id": "d1", "title": "final", "body": {"v": 3}})),
            row(json!({"id": "d2", "title": "two", "body": null})),
        ]
    );
}

async fn update(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("tasks");
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("state", ColumnType::Text),
            col("n", ColumnType::Integer),
            col("meta", ColumnType::Json),
        ],
    );
    store.create_table(&schema).await.unwrap();
    for (id, state, n) in [("t1", "new", 1), ("t2", "new", 2), ("t3", "done", 3)] {
        store
            .insert(&t, row(json!({"id": id, "state": state, "n": n})))
            .await
            .unwrap();
    }
    let changed = store
        .update(
            &t,
            row(json!({"state": "running", "meta": {"by": "w1"}})),
            &Filter::eq("state", "new"),
        )
        .await
        .unwrap();
    assert_eq!(changed, 2);
    let none = store
        .update(&t, row(json!({"state": "x"})), &Filter::eq("state", "nope"))
        .await
        .unwrap();
    assert_eq!(none, 0);
    let changed = store
        .update(&t, row(json!({"n": null})), &Filter::eq("id", "t3"))
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let rows = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(
        rows,
        vec![
            row(json!({"id": "t1", "state": "running", "n": 1, "meta": {"by": "w1"}})),
            row(json!({"id": "t2", "state": "running", "n": 2, "meta": {"by": "w1"}})),
            row(json!({"id": "t3", "state": "done", "n": null, "meta": null})),
        ]
    );
    // Changing a key to one that exists is a conflict.
    let err = store
        .update(&t, row(json!({"id": "t1"})), &Filter::eq("id", "t2"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_invalid(
        store
            .update(&t, row(json!({"nope": 1})), &Filter::eq("id", "t1"))
            .await,
        "nope",
    );
    assert_invalid(
        store
            .update(&t, row(json!({"n": 1})), &Filter::eq("missing_col", "t1"))
            .await,
        "missing_col",
    );
}

async fn filters(ctx: Ctx) {
    let store = ctx.store.clone();
    let t = ctx.table("filters");
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("n", ColumnType::Integer),
            col("x", ColumnType::Float),
            col("s", ColumnType::Text),
            col("b", ColumnType::Boolean),
            col("j", ColumnType::Json),
            col("t", ColumnType::Timestamp),
        ],
    );
    store.create_table(&schema).await.unwrap();
    let rows = [
        json!({"id": "r1", "n": 1, "x": 0.5, "s": "apple", "b": true, "j": {"k": 1}, "t": 1000}),
        json!({"id": "r2", "n": 2, "x": 1.5, "s": "banana", "b": false, "j": [1, 2], "t": 2000}),
        json!({"id": "r3", "n": 3, "x": 2.5, "s": "cherry", "b": true, "j": "text", "t": 3000}),
        json!({"id": "r4", "n": null, "x": null, "s": null, "b": null, "j": null, "t": null}),
        json!({"id": "r5", "n": 5, "x": -1.0, "s": "Äpfel", "b": false, "j": 5, "t": 5000}),
    ];
    for r in rows {
        store.insert(&t, row(r)).await.unwrap();
    }
    let check = |filter: Filter, expected: &'static [&'static str]| {
        let store = store.clone();
        let t = t.clone();
        async move {
            let got = ids(&store
                .fetch_all(&t, &filtered(filter.clone()))
                .await
                .unwrap()
                .rows);
            assert_eq!(got, expected, "filter {filter:?}");
        }
    };
    use Filter::*;
    let s = |v: &str| v.to_string();
    check(Filter::eq("n", 2), &["r2"]).await;
    check(Filter::eq("s", "apple"), &["r1"]).await;
    check(Filter::eq("b", true), &["r1", "r3"]).await;
    check(Filter::eq("b", false), &["r2", "r5"]).await;
    check(Filter::eq("t", 3000), &["r3"]).await;
    check(Filter::eq("x", 1.5), &["r2"]).await;
    check(Filter::eq("j", json!({"k": 1})), &["r1"]).await;
    check(Filter::eq("j", "text"), &["r3"]).await;
    check(Eq(s("n"), Value::Null), &["r4"]).await;
    check(Filter::eq("s", "durian"), &[]).await;
    // Ne is null-safe: a NULL value differs from every value.
    check(Ne(s("n"), json!(2)), &["r1", "r3", "r4", "r5"]).await;
    check(Ne(s("b"), json!(true)), &["r2", "r4", "r5"]).await;
    check(Ne(s("n"), Value::Null), &["r1", "r2", "r3", "r5"]).await;
    // Ordering comparisons never match NULL.
    check(Gt(s("n"), json!(2)), &["r3", "r5"]).await;
    check(Gte(s("n"), json!(2)), &["r2", "r3", "r5"]).await;
    check(Lt(s("n"), json!(3)), &["r1", "r2"]).await;
    check(Lte(s("n"), json!(3)), &["r1", "r2", "r3"]).await;
    check(Gt(s("x"), json!(0.0)), &["r1", "r2", "r3"]).await;
    check(Lt(s("x"), json!(0)), &["r5"]).await;
    check(Gte(s("t"), json!(2000)), &["r2", "r3", "r5"]).await;
    check(Lt(s("s"), json!("b")), &["r1"]).await; // byte order: 'Ä' sorts after 'b'
    check(Gte(s("s"), json!("banana")), &["r2", "r3", "r5"]).await;
    check(
        In(s("n"), vec![json!(1), json!(3), json!(7)]),
        &["r1", "r3"],
    )
    .await;
    check(In(s("n"), vec![]), &[]).await;
    check(
        In(s("s"), vec![json!("banana"), Value::Null]),
        &["r2", "r4"],
    )
    .await;
    check(In(s("id"), vec![json!("r5"), json!("r1")]), &["r1", "r5"]).await;
    check(IsNull(s("s")), &["r4"]).await;
    check(IsNull(s("id")), &[]).await;
    check(
        And(vec![Gt(s("n"), json!(1)), Filter::eq("b", true)]),
        &["r3"],
    )
    .await;
    check(And(vec![]), &["r1", "r2", "r3", "r4", "r5"]).await;
    check(
        Or(vec![Filter::eq("n", 1), Filter::eq("n", 5)]),
        &["r1", "r5"],
    )
    .await;
    check(Or(vec![]), &[]).await;
    // Not is exact negation, including rows where the inner test meets NULL.
    check(Not(Box::new(Filter::eq("n", 2))), &["r1", "r3", "r4", "r5"]).await;
    check(Not(Box::new(Gt(s("n"), json!(2)))), &["r1", "r2", "r4"]).await;
    check(Not(Box::new(IsNull(s("n")))), &["r1", "r2", "r3", "r5"]).await;
    check(
        Not(Box::new(In(s("n"), vec![json!(1), json!(2)]))),
        &["r3", "r4", "r5"],
    )
    .await;
    check(
        Not(Box::new(And(vec![
            Gt(s("n"), json!(1)),
            Lt(s("n"), json!(5)),
        ]))),
        &["r1", "r4", "r5"],
    )
    .await;
    check(
        Not(Box::new(Not(Box::new(Gt(s("n"), json!(2)))))),
        &["r3", "r5"],
    )
    .await;
    check(
        Or(vec![
            Not(Box::new(Filter::eq("b", true))),
            Filter::eq("id", "r1"),
        ]),
        &["r1", "r2", "r4", "r5"],
    )
    .await;
    check(
        And(vec![
            Or(vec![
                Filter::eq("s", "apple"),
                Filter::eq("s", "cherry"),
                IsNull(s("s")),
            ]),
            Not(Box::new(Filter::eq("id", "r3"))),
        ]),
        &["r1", "r4"],
    )
    .await;
    // The same filters drive fetch_one, update and delete.
    let one = store
        .fetch_one(&t, Some(&Gt(s("t"), json!(2500))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one["id"], json!("r3"));
    // Comparing with null is a mistake, not an empty result.
    assert_invalid(
        store
            .fetch_all(&t, &filtered(Gt(s("n"), Value::Null)))
            .await,
        "n",
    );
    // Values must fit the column type.
    assert_invalid(
        store.fetch_all(&t, &filtered(Filter::eq("n", "abc"))).await,
        "n",
    );
}

/// Inserts rows `<prefix>00..` with the given `n` values (and `b` = index is even).
async fn seed_numbers(store: &Store, t: &str, prefix: &str, values: &[Option<i64>]) {
    for (i, v) in values.iter().enumerate() {
        store
            .insert(
                t,
                row(json!({"id": format!("{prefix}{i:02}"), "n": v, "b": i % 2 == 0})),
            )
            .await
            .unwrap();
    }
}

fn number_table(t: &str) -> TableSchema {
    TableSchema::new(
        t,
        vec![
            id_col(),
            col("n", ColumnType::Integer),
            col("b", ColumnType::Boolean),
        ],
    )
}

async fn ordering(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("ordered");
    store.create_table(&number_table(&t)).await.unwrap();
    let values = [3, 1, 2, 1, 3, 2, 1, 0, 2, 3].map(Some);
    // Inserted in a scrambled key order.
    for i in [7, 2, 9, 0, 5, 3, 8, 1, 6, 4] {
        store
            .insert(&t, row(json!({"id": format!("o{i:02}"), "n": values[i]})))
            .await
            .unwrap();
    }
    let mut asc: Vec<(i64, String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.unwrap(), format!("o{i:02}")))
        .collect();
    asc.sort();
    let asc_ids: Vec<String> = asc.iter().map(|(_, id)| id.clone()).collect();
    let desc_ids: Vec<String> = asc_ids.iter().rev().cloned().collect();

    let ordered = |dir: Order, limit: Option<usize>| FetchQuery {
        order_by: Some(("n".to_string(), dir)),
        limit,
        ..FetchQuery::default()
    };
    // Ties are broken by the key, in the same direction.
    let page = store
        .fetch_all(&t, &ordered(Order::Asc, None))
        .await
        .unwrap();
    assert_eq!(ids(&page.rows), asc_ids);
    assert!(!page.has_more);
    let page = store
        .fetch_all(&t, &ordered(Order::Desc, None))
        .await
        .unwrap();
    assert_eq!(ids(&page.rows), desc_ids);
    // Without order_by, rows come in key order.
    let page = store.fetch_all(&t, &all()).await.unwrap();
    let mut by_key: Vec<String> = (0..10).map(|i| format!("o{i:02}")).collect();
    by_key.sort();
    assert_eq!(ids(&page.rows), by_key);
    // Limits.
    let page = store
        .fetch_all(&t, &ordered(Order::Desc, Some(3)))
        .await
        .unwrap();
    assert_eq!(ids(&page.rows), desc_ids[..3]);
    assert!(page.has_more);
    let page = store
        .fetch_all(&t, &ordered(Order::Asc, Some(10)))
        .await
        .unwrap();
    assert_eq!(ids(&page.rows), asc_ids);
    assert!(!page.has_more);
    let page = store
        .fetch_all(&t, &ordered(Order::Asc, Some(0)))
        .await
        .unwrap();
    assert!(page.rows.is_empty());
    assert!(page.has_more);
    // Ordering by the key column itself.
    let q = FetchQuery {
        order_by: Some(("id".to_string(), Order::Desc)),
        ..FetchQuery::default()
    };
    let mut rev = by_key.clone();
    rev.reverse();
    assert_eq!(ids(&store.fetch_all(&t, &q).await.unwrap().rows), rev);
    assert_invalid(store.fetch_all(&t, &ordered_by("nope")).await, "nope");
}

fn ordered_by(column: &str) -> FetchQuery {
    FetchQuery {
        order_by: Some((column.to_string(), Order::Asc)),
        ..FetchQuery::default()
    }
}

/// Follows cursors page by page; checks page sizes and `has_more`; returns all ids.
async fn walk_pages(store: &Store, t: &str, base: &FetchQuery, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..1000 {
        let q = FetchQuery {
            limit: Some(limit),
            cursor: cursor.clone(),
            ..base.clone()
        };
        let Page { rows, has_more } = store.fetch_all(t, &q).await.unwrap();
        assert!(rows.len() <= limit);
        if has_more {
            assert_eq!(rows.len(), limit, "a page followed by more is full");
        }
        seen.extend(ids(&rows));
        if !has_more {
            return seen;
        }
        cursor = Some(Cursor {
            key_column: "id".to_string(),
            after: rows.last().unwrap()["id"].clone(),
        });
    }
    panic!("pagination did not end");
}

async fn cursor_pagination(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("paged");
    store.create_table(&number_table(&t)).await.unwrap();
    // 25 rows, many sharing an order value, some without one.
    let values: Vec<Option<i64>> = (0..25)
        .map(|i| if i % 7 == 3 { None } else { Some(i % 4) })
        .collect();
    seed_numbers(store, &t, "p", &values).await;

    let bases = [
        FetchQuery::default(),
        ordered_by("n"),
        FetchQuery {
            order_by: Some(("n".to_string(), Order::Desc)),
            ..FetchQuery::default()
        },
        FetchQuery {
            filter: Some(Filter::eq("b", true)),
            order_by: Some(("n".to_string(), Order::Desc)),
            ..FetchQuery::default()
        },
        FetchQuery {
            filter: Some(Filter::Ne("n".to_string(), json!(2))),
            order_by: Some(("n".to_string(), Order::Asc)),
            ..FetchQuery::default()
        },
    ];
    for base in &bases {
        let full = ids(&store.fetch_all(&t, base).await.unwrap().rows);
        let distinct: BTreeSet<&String> = full.iter().collect();
        assert_eq!(distinct.len(), full.len());
        for limit in [1, 4, 5, 7, 100] {
            let paged = walk_pages(store, &t, base, limit).await;
            assert_eq!(paged, full, "pages of {limit} for {base:?}");
        }
        // Non-null order values are sorted in the requested direction, ties by key.
        let rows = store.fetch_all(&t, base).await.unwrap().rows;
        let pairs: Vec<(i64, String)> = rows
            .iter()
            .filter_map(|r| Some((r["n"].as_i64()?, r["id"].as_str()?.to_string())))
            .collect();
        let mut sorted = pairs.clone();
        sorted.sort();
        match &base.order_by {
            Some((_, Order::Desc)) => sorted.reverse(),
            Some((_, Order::Asc)) => {}
            None => sorted.sort_by(|a, b| a.1.cmp(&b.1)),
        }
        assert_eq!(pairs, sorted, "order of {base:?}");
    }
    let everything = walk_pages(store, &t, &ordered_by("n"), 3).await;
    assert_eq!(everything.len(), 25);
}

async fn unknown_cursor(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("cursors");
    store.create_table(&number_table(&t)).await.unwrap();
    seed_numbers(store, &t, "u", &[Some(1), Some(2)]).await;
    for base in [FetchQuery::default(), ordered_by("n")] {
        let q = FetchQuery {
            cursor: Some(Cursor {
                key_column: "id".to_string(),
                after: json!("nope"),
            }),
            limit: Some(10),
            ..base
        };
        assert_invalid(store.fetch_all(&t, &q).await, "cursor 'nope' not found");
    }
    let q = FetchQuery {
        cursor: Some(Cursor {
            key_column: "no_such_column".to_string(),
            after: json!("u00"),
        }),
        ..FetchQuery::default()
    };
    assert_invalid(store.fetch_all(&t, &q).await, "no_such_column");
    // A cursor row deleted between pages is reported, not silently restarted.
    let first = store
        .fetch_all(
            &t,
            &FetchQuery {
                limit: Some(1),
                ..ordered_by("n")
            },
        )
        .await
        .unwrap();
    let last = first.rows[0]["id"].clone();
    store
        .delete(&t, &Filter::Eq("id".into(), last.clone()))
        .await
        .unwrap();
    let q = FetchQuery {
        limit: Some(1),
        cursor: Some(Cursor {
            key_column: "id".to_string(),
            after: last,
        }),
        ..ordered_by("n")
    };
    assert_invalid(store.fetch_all(&t, &q).await, "not found");
}

async fn fetch_one(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("single");
    store.create_table(&number_table(&t)).await.unwrap();
    assert_eq!(store.fetch_one(&t, None).await.unwrap(), None);
    seed_numbers(store, &t, "s", &[Some(10), Some(20), None]).await;
    assert!(store.fetch_one(&t, None).await.unwrap().is_some());
    let r = store
        .fetch_one(&t, Some(&Filter::eq("n", 20)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, row(json!({"id": "s01", "n": 20, "b": false})));
    assert_eq!(
        store
            .fetch_one(&t, Some(&Filter::eq("n", 99)))
            .await
            .unwrap(),
        None
    );
    let r = store
        .fetch_one(&t, Some(&Filter::IsNull("n".into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["id"], json!("s02"));
}

async fn delete(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("doomed");
    store.create_table(&number_table(&t)).await.unwrap();
    seed_numbers(store, &t, "d", &[Some(1), Some(2), Some(3), Some(4), None]).await;
    assert_eq!(store.delete(&t, &Filter::eq("id", "d00")).await.unwrap(), 1);
    assert_eq!(store.delete(&t, &Filter::eq("id", "d00")).await.unwrap(), 0);
    assert_eq!(
        store
            .delete(
                &t,
                &Filter::Or(vec![Filter::eq("n", 2), Filter::IsNull("n".into())])
            )
            .await
            .unwrap(),
        2
    );
    let left = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(ids(&left), ["d02", "d03"]);
    assert_invalid(store.delete(&t, &Filter::eq("nope", 1)).await, "nope");
    assert_eq!(store.delete(&t, &Filter::And(vec![])).await.unwrap(), 2);
    assert!(store.fetch_all(&t, &all()).await.unwrap().rows.is_empty());
}

async fn value_round_trips(ctx: Ctx) {
    let store = &ctx.store;
    let t = ctx.table("values");
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("j", ColumnType::Json),
            col("b", ColumnType::Boolean),
            col("x", ColumnType::Float),
            col("n", ColumnType::Integer),
            col("t", ColumnType::Timestamp),
            col("s", ColumnType::Text),
        ],
    );
    store.create_table(&schema).await.unwrap();
    let rows = [
        json!({"id": "v1", "j": {"a": [1, 2, {"b": null}], "c": "ü 🦙", "d": 1.25},
               "b": true, "x": 1.5, "n": -42, "t": 1_700_000_000, "s": "héllo 🦙"}),
        json!({"id": "v2", "j": [], "b": false, "x": 0.0, "n": 0, "t": 0, "s": ""}),
        json!({"id": "v3", "j": "123", "b": null, "x": null, "n": i64::MAX, "t": null, "s": "123"}),
        json!({"id": "v4", "j": 123, "b": true, "x": -2.75e10, "n": i64::MIN, "t": -1, "s": null}),
        json!({"id": "v5", "j": true, "b": false, "x": 3.0, "n": 7, "t": 5, "s": "line1\nline2\t\"q\" 'x'"}),
        json!({"id": "v6", "j": null, "b": null, "x": null, "n": null, "t": null,
               "s": "x'); DROP TABLE values; --"}),
        json!({"id": "v7", "j": {}, "b": true, "x": 0.1, "n": 1, "t": 1, "s": "\u{0}nul"}),
        json!({"id": "ключ 🔑", "j": "", "b": false, "x": 1e-9, "n": 2, "t": 2, "s": "日本語"}),
    ];
    for r in &rows {
        store.insert(&t, row(r.clone())).await.unwrap();
    }
    for r in &rows {
        let got = store
            .fetch_one(&t, Some(&Filter::Eq("id".into(), r["id"].clone())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Value::Object(got), *r);
    }
    // Booleans and JSON filter by value.
    let trues = store
        .fetch_all(&t, &filtered(Filter::eq("b", true)))
        .await
        .unwrap();
    assert_eq!(ids(&trues.rows), ["v1", "v4", "v7"]);
    assert_eq!(
        store.fetch_all(&t, &all()).await.unwrap().rows.len(),
        rows.len()
    );
}

async fn invalid_identifiers_and_columns(ctx: Ctx) {
    let store = &ctx.store;
    for bad in [
        "bad-name",
        "1table",
        "tab le",
        "",
        "a;DROP TABLE x",
        "naïve",
        &"x".repeat(64),
    ] {
        let schema = TableSchema::new(bad, vec![id_col()]);
        assert_invalid(store.create_table(&schema).await, "identifier");
    }
    let t = ctx.table("strict");
    for bad in ["bad col", "col\"", "1st", "a-b"] {
        let schema = TableSchema::new(&t, vec![id_col(), col(bad, ColumnType::Text)]);
        assert_invalid(store.create_table(&schema).await, "identifier");
    }
    let schema = TableSchema::new(
        &t,
        vec![
            id_col(),
            col("n", ColumnType::Integer),
            col("b", ColumnType::Boolean),
        ],
    );
    store.create_table(&schema).await.unwrap();
    store
        .insert(&t, row(json!({"id": "ok", "n": 1, "b": true})))
        .await
        .unwrap();

    assert_invalid(
        store.insert(&t, row(json!({"id": "x", "nope": 1}))).await,
        "nope",
    );
    assert_invalid(
        store
            .insert(&t, row(json!({"id": "x", "bad col": 1})))
            .await,
        "bad col",
    );
    assert_invalid(
        store.insert(&t, row(json!({"id": "x", "n": "abc"}))).await,
        "n",
    );
    assert_invalid(
        store.insert(&t, row(json!({"id": "x", "b": "yes"}))).await,
        "b",
    );
    assert_invalid(
        store.upsert(&t, row(json!({"id": "x"})), &["nope"]).await,
        "nope",
    );
    assert_invalid(
        store.fetch_all(&t, &filtered(Filter::eq("nope", 1))).await,
        "nope",
    );
    assert_invalid(
        store
            .fetch_all(
                &t,
                &filtered(Filter::And(vec![
                    Filter::eq("n", 1),
                    Filter::Not(Box::new(Filter::IsNull("hidden".into()))),
                ])),
            )
            .await,
        "hidden",
    );
    assert_invalid(
        store
            .fetch_all(&t, &filtered(Filter::eq("n) OR (1=1", 1)))
            .await,
        "identifier",
    );
    assert_invalid(
        store
            .fetch_one(&t, Some(&Filter::IsNull("ghost".into())))
            .await,
        "ghost",
    );
    assert_invalid(
        store.fetch_all(&t, &ordered_by("n; DROP TABLE x")).await,
        "identifier",
    );
    assert_invalid(store.fetch_all("no such table", &all()).await, "identifier");
    let missing = ctx.table("missing");
    assert_invalid(store.fetch_all(&missing, &all()).await, &missing);
    assert_invalid(
        store.insert(&missing, row(json!({"id": "x"}))).await,
        &missing,
    );
    // Nothing above changed the table.
    let rows = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(rows, vec![row(json!({"id": "ok", "n": 1, "b": true}))]);
}

async fn concurrent_writes(ctx: Ctx) {
    let store = ctx.store.clone();
    let t = ctx.table("busy");
    store.create_table(&number_table(&t)).await.unwrap();
    // 20 tasks upsert one shared row and one row each.
    let tasks: Vec<_> = (0..20_i64)
        .map(|i| {
            let store = store.clone();
            let t = t.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    store
                        .upsert(
                            &t,
                            row(json!({"id": "shared", "n": i * 10 + round})),
                            &["id"],
                        )
                        .await
                        .unwrap();
                    store
                        .upsert(
                            &t,
                            row(json!({"id": format!("own{i:02}"), "n": round})),
                            &["id"],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rows = store.fetch_all(&t, &all()).await.unwrap().rows;
    assert_eq!(rows.len(), 21);
    let shared = rows.iter().find(|r| r["id"] == json!("shared")).unwrap();
    let n = shared["n"].as_i64().unwrap();
    assert!(
        (0..200).contains(&n) && n % 10 == 2,
        "last write of some task: {n}"
    );
    assert!(rows
        .iter()
        .filter(|r| r["id"] != json!("shared"))
        .all(|r| r["n"] == json!(2)));

    // 20 tasks insert the same key: exactly one wins, the rest conflict.
    let tasks: Vec<_> = (0..20_i64)
        .map(|i| {
            let store = store.clone();
            let t = t.clone();
            tokio::spawn(async move { store.insert(&t, row(json!({"id": "once", "n": i}))).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(won, 1);
}
