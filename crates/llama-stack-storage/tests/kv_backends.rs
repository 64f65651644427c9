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
