//! KV get/set/scan latency per backend, single caller: memory, sled and SQLite, plus
//! PostgreSQL and Redis with the `postgres-redis` feature (127.0.0.1:5432 db `test` user
//! `postgres`, 127.0.0.1:6379; a backend whose server is down is skipped with a message).
//!
//! Run: `cargo bench --bench kv` (local backends) or
//! `cargo bench --bench kv --features postgres-redis`. Persistent backends sync every
//! acknowledged write, so their `set` measures a durable write. Throughput under
//! concurrency and the comparison with raw clients are in `benches/storage.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llama_stack::core::storage::KvStore;
use llama_stack_storage::kv::{MemoryKvStore, SledKvStore, SqliteKvStore};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backends: Vec<(&str, Arc<dyn KvStore>)> = vec![
        ("memory", Arc::new(MemoryKvStore::new())),
        (
            "sled",
            Arc::new(
                rt.block_on(SledKvStore::open(dir.path().join("sled")))
                    .unwrap(),
            ),
        ),
        (
            "sqlite",
            Arc::new(
                rt.block_on(SqliteKvStore::open(dir.path().join("kv.db")))
                    .unwrap(),
            ),
        ),
    ];
    #[cfg(feature = "postgres-redis")]
    let pg_table = format!("bench_kv_criterion_{}", std::process::id());
    #[cfg(feature = "postgres-redis")]
    server_backends(&rt, &pg_table, &mut backends);
    // Keys carry the process id so runs against a shared server never collide; writes to
    // the servers expire after ten minutes.
    let p = format!("bench{}:", std::process::id());
    let ttl = Some(std::time::Duration::from_secs(600));
    let value = "x".repeat(256);
    for (name, kv) in &backends {
        rt.block_on(async {
            for i in 0..1000 {
                kv.set(&format!("{p}key:{i:05}"), &value, ttl)
                    .await
                    .unwrap();
            }
        });
        let mut group = c.benchmark_group(format!("kv_{name}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        group.bench_function("get", |b| {
            b.iter(|| {
                i = (i + 1) % 1000;
                rt.block_on(kv.get(&format!("{p}key:{i:05}"))).unwrap()
            })
        });
        let mut j = 0u64;
        group.bench_function("set_256B", |b| {
            b.iter(|| {
                j += 1;
                rt.block_on(kv.set(&format!("{p}new:{j}"), &value, ttl))
                    .unwrap()
            })
        });
        group.bench_function("scan_prefix_100", |b| {
            b.iter(|| rt.block_on(kv.scan_prefix(&format!("{p}key:001"))).unwrap())
        });
        group.finish();
    }
    #[cfg(feature = "postgres-redis")]
    rt.block_on(drop_pg_table(&pg_table));
}

/// Adds `kv_postgres` (in its own table) and `kv_redis` when their servers answer.
#[cfg(feature = "postgres-redis")]
fn server_backends(
    rt: &tokio::runtime::Runtime,
    pg_table: &str,
    backends: &mut Vec<(&'static str, Arc<dyn KvStore>)>,
) {
    use llama_stack_storage::config::{KvPostgresConfig, KvRedisConfig, Port, SslMode};
    use llama_stack_storage::kv::{PostgresKvStore, RedisKvStore};
    let pg = KvPostgresConfig {
        host: "127.0.0.1".into(),
        port: Port(5432),
        db: "test".into(),
        user: "postgres".into(),
        password: None,
        ssl_mode: Some(SslMode::Disable),
        ca_cert_path: None,
        table_name: pg_table.to_string(),
        namespace: None,
    };
    match rt.block_on(PostgresKvStore::open(&pg)) {
        Ok(store) => backends.push(("postgres", Arc::new(store))),
        Err(e) => eprintln!("kv_postgres skipped: {e}"),
    }
    let redis = KvRedisConfig {
        host: "127.0.0.1".into(),
        port: Port(6379),
        password: None,
        namespace: None,
    };
    match rt.block_on(RedisKvStore::open(&redis)) {
        Ok(store) => backends.push(("redis", Arc::new(store))),
        Err(e) => eprintln!("kv_redis skipped: {e}"),
    }
}

/// Drops the benchmark's PostgreSQL table.
#[cfg(feature = "postgres-redis")]
async fn drop_pg_table(table: &str) {
    let dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres";
    if let Ok((client, conn)) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
            .await;
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
