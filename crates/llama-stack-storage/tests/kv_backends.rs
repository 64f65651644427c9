//! Runs the [`KvStore`](llama_stack_core::storage::KvStore) conformance suite against
//! every key-value backend compiled in: one test function per backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "conformance/kv.rs"]
mod conformance_kv;

use std::sync::Arc;

use conformance_kv::{run_kv_suite, selected};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_memory_conforms() {
    if !selected("kv_memory") {
        return;
    }
    run_kv_suite(Arc::new(llama_stack_storage::kv::MemoryKvStore::new())).await;
}

#[cfg(feature = "kv-sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_sled_conforms() {
    if !selected("kv_sled") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = llama_stack_storage::kv::SledKvStore::open(dir.path().join("sled"))
        .await
        .unwrap();
    run_kv_suite(Arc::new(store)).await;
}

#[cfg(feature = "kv-sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_sqlite_conforms() {
    if !selected("kv_sqlite") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = llama_stack_storage::kv::SqliteKvStore::open(dir.path().join("kvstore.db"))
        .await
        .unwrap();
    run_kv_suite(Arc::new(store)).await;
}

/// `kv_sqlite`'s change token: unchanged by reads, changed by every write through this
/// handle, through another handle on the same file (another connection or process), and,
/// for `:memory:`, through the handle itself. (Another handle's write of a value equal to
/// the stored one may leave it unchanged: the contents are.)
#[cfg(feature = "kv-sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_sqlite_change_token_follows_every_writer() {
    use llama_stack_core::storage::KvStore;
    use llama_stack_storage::kv::SqliteKvStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kvstore.db");
    let a = SqliteKvStore::open(&path).await.unwrap();
    let b = SqliteKvStore::open(&path).await.unwrap();
    let t0 = a.change_token().expect("kv_sqlite gives a token");
    assert_eq!(a.change_token(), Some(t0));

    // Reads leave it alone.
    a.get("k").await.unwrap();
    a.scan_prefix("").await.unwrap();
    b.scan_range("a", "z").await.unwrap();
    assert_eq!(a.change_token(), Some(t0));

    // Every kind of write, by either handle, moves it; and it then stays put.
    let mut last = t0;
    for step in 0..10 {
        let writer = if step % 2 == 0 { &a } else { &b };
        match step / 2 {
            0 => writer.set("k", &format!("v{step}"), None).await.unwrap(),
            1 => assert!(writer
                .set_if_absent(&format!("n{step}"), "v", None)
                .await
                .unwrap()),
            2 => {
                writer.increment("c", 1, None).await.unwrap();
            }
            3 => writer.delete(&format!("n{}", step - 4)).await.unwrap(),
            _ => writer
                .set(
                    "k",
                    &format!("w{step}"),
                    Some(std::time::Duration::from_secs(60)),
                )
                .await
                .unwrap(),
        }
        let now = a.change_token().unwrap();
        assert_ne!(now, last, "step {step}: a write did not change the token");
        assert_eq!(b.change_token().map(|_| ()), Some(()));
        assert_eq!(
            a.change_token(),
            Some(now),
            "step {step}: token moved without a write"
        );
        last = now;
    }
    // A write refused by `set_if_absent` changes nothing it could miss.
    assert!(!b.set_if_absent("k", "x", None).await.unwrap());
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some("w9"));

    let memory = SqliteKvStore::open(":memory:").await.unwrap();
    let m0 = memory.change_token().unwrap();
    memory.get("k").await.unwrap();
    assert_eq!(memory.change_token(), Some(m0));
    memory.set("k", "v", None).await.unwrap();
    assert_ne!(memory.change_token(), Some(m0));
}

#[cfg(any(feature = "kv-postgres", feature = "kv-redis"))]
#[path = "support/services.rs"]
mod services;

#[cfg(feature = "kv-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_postgres_conforms() {
    if !selected("kv_postgres") || !services::postgres_available("kv_postgres_conforms") {
        return;
    }
    // A fresh table per run, dropped afterwards.
    let table = format!("kv_conformance_{}", services::unique_suffix());
    let cfg = postgres_kv_config(&table);
    let store = llama_stack_storage::kv::PostgresKvStore::open(&cfg)
        .await
        .unwrap();
    run_kv_suite(Arc::new(store)).await;
    drop_postgres_table(&table).await;
}

#[cfg(feature = "kv-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_postgres_sweeps_expired_rows() {
    use llama_stack_core::storage::KvStore;

    if !selected("kv_postgres") || !services::postgres_available("kv_postgres_sweeps_expired_rows")
    {
        return;
    }
    let table = format!("kv_sweep_{}", services::unique_suffix());
    let cfg = postgres_kv_config(&table);
    let store = llama_stack_storage::kv::PostgresKvStore::open(&cfg)
        .await
        .unwrap();
    store
        .set("short", "1", Some(std::time::Duration::from_millis(20)))
        .await
        .unwrap();
    store.set("kept", "2", None).await.unwrap();
    store
        .set("later", "3", Some(std::time::Duration::from_secs(600)))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    let rows = raw_count(&table).await;
    assert_eq!(rows, 2, "only the expired row is deleted");
    assert_eq!(store.get("kept").await.unwrap().as_deref(), Some("2"));
    assert_eq!(store.get("later").await.unwrap().as_deref(), Some("3"));
    drop(store);
    drop_postgres_table(&table).await;
}

/// `kv_postgres` on the shared test database, in `table`.
#[cfg(feature = "kv-postgres")]
fn postgres_kv_config(table: &str) -> llama_stack_storage::config::KvPostgresConfig {
    llama_stack_storage::config::KvPostgresConfig {
        host: services::HOST.into(),
        port: llama_stack_storage::config::Port(services::PG_PORT),
        db: services::PG_DB.into(),
        user: services::PG_USER.into(),
        password: None,
        ssl_mode: None,
        ca_cert_path: None,
        table_name: table.to_string(),
        namespace: None,
    }
}

/// A raw client on the shared test database and its connection task.
#[cfg(feature = "kv-postgres")]
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

/// Rows in `table`, counted with a raw client.
#[cfg(feature = "kv-postgres")]
async fn raw_count(table: &str) -> i64 {
    let (client, task) = raw_postgres().await;
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = task.await;
    n
}

/// Drops `table` from the shared test database.
#[cfg(feature = "kv-postgres")]
async fn drop_postgres_table(table: &str) {
    let (client, task) = raw_postgres().await;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
}

#[cfg(feature = "kv-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_redis_conforms() {
    use llama_stack_core::storage::{KvStore, NamespacedKv};
    use llama_stack_storage::config::{KvRedisConfig, Port};

    if !selected("kv_redis") || !services::redis_available("kv_redis_conforms") {
        return;
    }
    let cfg = KvRedisConfig {
        host: services::HOST.into(),
        port: Port(services::REDIS_PORT),
        password: None,
        namespace: None,
    };
    let store: Arc<dyn KvStore> = Arc::new(
        llama_stack_storage::kv::RedisKvStore::open(&cfg)
            .await
            .unwrap(),
    );
    // Every check's namespace lives under one fresh run namespace, deleted afterwards.
    let run = Arc::new(NamespacedKv::new(
        store,
        &format!("kv-conformance-{}", services::unique_suffix()),
    ));
    run_kv_suite(run.clone()).await;
    for (key, _) in run.scan_prefix("").await.unwrap() {
        run.delete(&key).await.unwrap();
    }
    assert!(run.scan_prefix("").await.unwrap().is_empty());
}
