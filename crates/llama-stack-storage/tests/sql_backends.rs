//! Runs the [`SqlStore`](llama_stack_core::storage::SqlStore) conformance suite against
//! every SQL backend compiled in: one test function per backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
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

#[cfg(feature = "sql-postgres")]
#[path = "support/services.rs"]
mod services;

/// A client on the shared test database, for setup and cleanup outside the store.
#[cfg(feature = "sql-postgres")]
async fn raw_postgres() -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} dbname={} user={}",
            services::HOST,
            services::PG_PORT,
            services::PG_DB,
            services::PG_USER
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

#[cfg(feature = "sql-postgres")]
fn postgres_config() -> llama_stack_storage::config::SqlPostgresConfig {
    serde_json::from_value(serde_json::json!({
        "host": services::HOST,
        "port": services::PG_PORT.to_string(),
        "db": services::PG_DB,
        "user": services::PG_USER,
        "pool_size": 4,
    }))
    .unwrap()
}

/// The conformance tables: names the suite makes (`c<check>_<nanos>_<n>_<name>`).
#[cfg(feature = "sql-postgres")]
async fn conformance_tables(client: &tokio_postgres::Client) -> std::collections::BTreeSet<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name ~ '^c[0-9]+_[0-9]+_[0-9]+_'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[cfg(feature = "sql-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_postgres_conforms() {
    use std::sync::Arc;

    use llama_stack_core::storage::SqlStore;

    if !conformance_sql::selected("sql_postgres")
        || !services::postgres_available("sql_postgres_conforms")
    {
        return;
    }
    let (client, _task) = raw_postgres().await;
    let before = conformance_tables(&client).await;
    conformance_sql::run_sql_suite(|| async {
        let store = llama_stack_storage::sql::PostgresSqlStore::open(&postgres_config())
            .await
            .unwrap();
        Arc::new(store) as Arc<dyn SqlStore>
    })
    .await;
    // Drop the tables this run made (their names are unique to it).
    for table in conformance_tables(&client).await.difference(&before) {
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\"; \
                 DELETE FROM _llama_stack_schema WHERE table_name = '{table}'"
            ))
            .await
            .unwrap();
    }
}
