//! Runs the [`SqlStore`](llama_stack_core::storage::SqlStore) conformance suite against
//! every SQL backend compiled in: one test function per backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "sql-sqlite")]
#[path = "conformance/sql.rs"]
mod conformance_sql;

#[cfg(feature = "sql-sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_sqlite_conforms() {
    use std::sync::Arc;

    use llama_stack_core::storage::SqlStore;

    if !conformance_sql::selected("sql_sqlite") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sql_store.db");
    conformance_sql::run_sql_suite(move || {
        let path = path.clone();
        async move {
            let store = llama_stack_storage::sql::SqliteSqlStore::open(path)
                .await
                .unwrap();
            Arc::new(store) as Arc<dyn SqlStore>
        }
    })
    .await;
}
