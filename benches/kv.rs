//! KV get/set throughput per backend (memory, sled, SQLite), single caller.
//!
//! Run: `cargo bench --bench kv`. Persistent backends sync every acknowledged write, so
//! their `set` measures a durable write.
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
    let backends: Vec<(&str, Arc<dyn KvStore>)> = vec![
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
    let value = "x".repeat(256);
    for (name, kv) in &backends {
        rt.block_on(async {
            for i in 0..1000 {
                kv.set(&format!("key:{i:05}"), &value, None).await.unwrap();
            }
        });
        let mut group = c.benchmark_group(format!("kv_{name}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        group.bench_function("get", |b| {
            b.iter(|| {
                i = (i + 1) % 1000;
                rt.block_on(kv.get(&format!("key:{i:05}"))).unwrap()
            })
        });
        let mut j = 0u64;
        group.bench_function("set_256B", |b| {
            b.iter(|| {
                j += 1;
                rt.block_on(kv.set(&format!("new:{j}"), &value, None))
                    .unwrap()
            })
        });
        group.bench_function("scan_prefix_100", |b| {
            b.iter(|| rt.block_on(kv.scan_prefix("key:001")).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
