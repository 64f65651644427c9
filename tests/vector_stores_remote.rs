//! The vector_io conformance suite against vector databases that run as servers:
//! `remote::pgvector` (PostgreSQL on 127.0.0.1:5432 with the pgvector extension, a fresh
//! database per run) and `remote::chromadb` (the Chroma server at
//! `LLAMA_STACK_TEST_CHROMA_URL`, which `.ci/run` starts with
//! `tests/python/chroma_server.sh`). Without a server a test prints "skip"; under
//! `CI=true` it fails instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod vector_io_conformance;

use std::time::{SystemTime, UNIX_EPOCH};

use llama_stack::core::api::vector_io::*;
use llama_stack::{ErrorKind, Stack};
use serde_json::json;
use vector_io_conformance::{config, model_present, target};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (locally) or fails (under CI) when a server is missing.
fn missing(what: &str) {
    if in_ci() {
        panic!("{what} (CI must provide it)");
    }
    eprintln!("skip: {what}");
}

const ADMIN: &str = "host=127.0.0.1 port=5432 dbname=test user=postgres";

/// A fresh database for one run, dropped when the guard goes.
struct FreshDb {
    name: String,
}

impl FreshDb {
    async fn create(tag: &str) -> Option<FreshDb> {
        let Ok((client, conn)) = tokio_postgres::connect(ADMIN, tokio_postgres::NoTls).await else {
            missing("PostgreSQL is not reachable on 127.0.0.1:5432");
            return None;
        };
        let task = tokio::spawn(conn);
        let available = client
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
                &[],
            )
            .await
            .unwrap()
            .is_some();
        if !available {
            missing("the pgvector extension is not installed (.ci/pgvector.sh installs it)");
            return None;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("ls_vs_{tag}_{}_{nanos}", std::process::id());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        Some(FreshDb { name })
    }

    async fn drop_now(self) {
        let (client, conn) = tokio_postgres::connect(ADMIN, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    }
}

fn pgvector_config(db: &str, extra: &str) -> String {
    format!(
        r#"  - provider_id: pgvector
    provider_type: remote::pgvector
    config:
      host: 127.0.0.1
      port: 5432
      db: {db}
      user: postgres
      password: unused-with-trust-auth
{extra}"#
    )
}

/// The suite on pgvector with HNSW, vector store records in the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_pgvector() {
    if !model_present() {
        return;
    }
    let Some(db) = FreshDb::create("hnsw").await else {
        return;
    };
    {
        let (t, _dir) = target(
            "remote::pgvector",
            "pgvector",
            &pgvector_config(&db.name, ""),
            0.95,
        );
        vector_io_conformance::run_all(&t).await;
    }
    db.drop_now().await;
}

/// The suite on pgvector with IVFFlat and records in the stack's KV store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_pgvector_ivfflat() {
    if !model_present() {
        return;
    }
    let Some(db) = FreshDb::create("ivf").await else {
        return;
    };
    {
        let extra = r#"      vector_index: {type: IVFFlat, lists: 4, probes: 4}
      persistence: {backend: kv_default, namespace: "vector_io::pgvector"}"#;
        let (t, _dir) = target(
            "remote::pgvector (IVFFlat)",
            "pgvector",
            &pgvector_config(&db.name, extra),
            0.9,
        );
        vector_io_conformance::run_all(&t).await;
    }
    db.drop_now().await;
}

/// Unreachable servers and bad settings fail at build time with the config path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_and_chroma_config_errors() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"  - provider_id: pgvector
    provider_type: remote::pgvector
    config: {host: 127.0.0.1, port: 1, db: test, user: postgres}"#,
            "providers.vector_io[0].config",
        ),
        (
            r#"  - provider_id: pgvector
    provider_type: remote::pgvector
    config: {host: 127.0.0.1, db: test, distance_metric: MANHATTAN}"#,
            "distance_metric",
        ),
        (
            r#"  - provider_id: chroma
    provider_type: remote::chromadb
    config: {url: null, persistence: {backend: kv_default, namespace: c}}"#,
            "url",
        ),
        (
            r#"  - provider_id: chroma
    provider_type: remote::chromadb
    config: {url: "http://127.0.0.1:1", persistence: {backend: kv_default, namespace: c}}"#,
            "providers.vector_io[0].config",
        ),
    ];
    for (vector_io, needle) in cases {
        let e = Stack::builder()
            .config_yaml(config(dir.path(), vector_io, ""))
            .build()
            .await
            .err()
            .unwrap_or_else(|| panic!("{vector_io} built"));
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

/// The suite on a Chroma server (vector search only: Chroma has no ranked keyword search).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_chromadb() {
    if !model_present() {
        return;
    }
    let Some(url) = std::env::var("LLAMA_STACK_TEST_CHROMA_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        missing("LLAMA_STACK_TEST_CHROMA_URL is not set (tests/python/chroma_server.sh start)");
        return;
    };
    let vector_io = format!(
        r#"  - provider_id: chroma
    provider_type: remote::chromadb
    config:
      url: {url}
      persistence: {{backend: kv_default, namespace: "vector_io::chroma"}}"#
    );
    let (mut t, _dir) = target("remote::chromadb", "chroma", &vector_io, 0.95);
    t.keyword = false;
    vector_io_conformance::run_all(&t).await;

    // Keyword search is refused with a clear error, not an empty page.
    let stack = (t.build)().await;
    let store = stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some("chroma".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = stack
        .vector_io()
        .search(
            &store.id,
            serde_json::from_value(json!({"query": "anything", "search_mode": "keyword"})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("keyword"), "{e}");
    stack
        .vector_io()
        .delete_vector_store(&store.id)
        .await
        .unwrap();
}
