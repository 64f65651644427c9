//! The RAG tool (`inline::file-search`, tool group `builtin::file_search` / `builtin::rag`)
//! in library mode, over `inline::localfs` files, `inline::sqlite-vec` and `inline::faiss`
//! stores and the real all-MiniLM-L6-v2 embeddings (without the model the tests print
//! "skip"; under `CI=true` they fail instead).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod vector_io_conformance;

use llama_stack::core::api::tool_runtime::*;
use llama_stack::core::api::vector_io::*;
use llama_stack::{ErrorKind, Stack, User};
use serde_json::{json, Map, Value};
use vector_io_conformance::{config, model_present};

const STORES: &str = r#"  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {dir}/sqlite_vec.db
      persistence: {backend: kv_default, namespace: "vector_io::sqlite_vec"}
  - provider_id: faiss
    provider_type: inline::faiss
    config:
      persistence: {backend: kv_default, namespace: "vector_io::faiss"}
  tool_runtime:
  - provider_id: file-search
    provider_type: inline::rag-runtime
    config: {}"#;

async fn stack(dir: &std::path::Path) -> Stack {
    let d = dir.display().to_string();
    Stack::builder()
        .config_yaml(config(dir, &STORES.replace("{dir}", &d), ""))
        .build()
        .await
        .unwrap()
}

fn meta(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn docs() -> Vec<RagDocument> {
    let mut lighthouse = RagDocument::text(
        "lighthouse-guide",
        "# Lighthouse keeping\n\nThe keeper trims the lamp wick every evening and winds the \
         clockwork that turns the lens. In fog the keeper sounds the horn every thirty seconds.",
    );
    lighthouse.mime_type = Some("text/markdown".into());
    lighthouse.metadata = meta(json!({"topic": "sea", "year": 1890}));
    let mut bread = RagDocument::text(
        "bread",
        "<html><body><h1>Sourdough</h1><p>Feed the starter with flour and water, let the dough \
         rise overnight and bake it in a hot oven until the crust is dark.</p>\
         <script>ignored()</script></body></html>",
    );
    bread.mime_type = Some("text/html".into());
    bread.metadata = meta(json!({"topic": "kitchen"}));
    let mut orbit = RagDocument::text("orbits", "");
    orbit.content = json!([
        {"type": "text", "text": "Planets follow elliptical orbits with the sun at one focus."},
        "A comet's orbit can take it far beyond Neptune."
    ]);
    orbit.metadata = meta(json!({"topic": "space"}));
    vec![lighthouse, bread, orbit]
}

async fn new_store(stack: &Stack, provider: &str) -> String {
    stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some(provider.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

fn query(text: &str, stores: &[&str]) -> RagQueryRequest {
    RagQueryRequest {
        content: json!(text),
        vector_store_ids: stores.iter().map(|s| s.to_string()).collect(),
        query_config: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_then_query_gives_a_cited_context() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path()).await;
    let a = new_store(&stack, "sqlite-vec").await;
    let b = new_store(&stack, "faiss").await;
    let rag = stack.tool_runtime();
    let all = docs();
    rag.rag_insert(RagInsertRequest {
        documents: all[..2].to_vec(),
        vector_store_id: a.clone(),
        chunk_size_in_tokens: 512,
    })
    .await
    .unwrap();
    rag.rag_insert(RagInsertRequest {
        documents: all[2..].to_vec(),
        vector_store_id: b.clone(),
        chunk_size_in_tokens: 128,
    })
    .await
    .unwrap();

    // Each document became one file of the store, with its attributes.
    let files = stack
        .vector_io()
        .list_files(&a, Default::default())
        .await
        .unwrap()
        .data;
    assert_eq!(files.len(), 2);
    assert!(files
        .iter()
        .all(|f| f.status == VectorStoreFileStatus::Completed));
    let guide = files
        .iter()
        .find(|f| f.attributes["rag_document_id"] == "lighthouse-guide")
        .unwrap();
    assert_eq!(guide.attributes["topic"], "sea");
    assert_eq!(guide.attributes["year"], 1890);
    assert_eq!(
        stack.files().get(&guide.id).await.unwrap().filename,
        "lighthouse-guide.md"
    );

    // A query over both stores: the relevant document first, cited.
    let result = rag
        .rag_query(query("what does the keeper do in fog?", &[&a, &b]))
        .await
        .unwrap();
    let text = result.text();
    let citations = result.citations();
    assert!(!citations.is_empty() && citations.len() <= 3, "{text}");
    assert!(
        text.starts_with(&format!(
            "knowledge_search tool found {} chunks:\nBEGIN of knowledge_search tool results.\n",
            citations.len()
        )),
        "{text}"
    );
    assert!(text.contains("Result 1\nContent: "), "{text}");
    assert!(
        text.contains("END of knowledge_search tool results.\n"),
        "{text}"
    );
    assert!(text.contains("what does the keeper do in fog?"), "{text}");
    assert_eq!(
        citations[0].document_id.as_deref(),
        Some("lighthouse-guide")
    );
    assert_eq!(citations[0].vector_store_id, a);
    assert_eq!(citations[0].filename, "lighthouse-guide.md");
    assert_eq!(citations[0].file_id, guide.id);
    assert!(citations[0].text.contains("horn every thirty seconds"));
    assert!(citations.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(result.metadata["document_ids"][0], "lighthouse-guide");
    assert_eq!(
        result.metadata["scores"].as_array().unwrap().len(),
        citations.len()
    );

    // Another query, another winner, from the other store.
    let result = rag
        .rag_query(query("comets and planetary orbits", &[&a, &b]))
        .await
        .unwrap();
    assert_eq!(result.citations()[0].document_id.as_deref(), Some("orbits"));
    assert_eq!(result.citations()[0].vector_store_id, b);

    // max_chunks, the token budget, the template and keyword mode.
    let mut q = query("bread oven", &[&a, &b]);
    q.query_config = Some(RagQueryConfig {
        max_chunks: 1,
        chunk_template: "[{index}] {chunk.content} ({metadata})\n".into(),
        mode: Some("keyword".into()),
        ..Default::default()
    });
    let result = rag.rag_query(q).await.unwrap();
    assert_eq!(result.citations().len(), 1);
    let bread = &result.citations()[0];
    assert_eq!(bread.document_id.as_deref(), Some("bread"));
    // HTML was parsed (no markup, no script) before chunking.
    assert!(bread.text.contains("Feed the starter"), "{}", bread.text);
    assert!(!bread.text.contains("<p>") && !bread.text.contains("ignored()"));
    assert!(result.text().contains("[1] "), "{}", result.text());
    assert!(
        result.text().contains("\"filename\":\"bread.html\""),
        "{}",
        result.text()
    );
    let mut q = query("lighthouse", &[&a]);
    q.query_config = Some(RagQueryConfig {
        max_tokens_in_context: 5,
        ..Default::default()
    });
    let result = rag.rag_query(q).await.unwrap();
    assert!(result.citations().is_empty());
    assert!(
        result.text().contains("found no chunks"),
        "{}",
        result.text()
    );
    let mut q = query("lighthouse lamp", &[&a]);
    q.query_config = Some(RagQueryConfig {
        mode: Some("hybrid".into()),
        ranker: Some(json!({"type": "weighted", "alpha": 0.7})),
        ..Default::default()
    });
    let result = rag.rag_query(q).await.unwrap();
    assert_eq!(
        result.citations()[0].document_id.as_deref(),
        Some("lighthouse-guide")
    );

    // The knowledge_search tool, listed under both group names, gives the same context.
    for group in [FILE_SEARCH_TOOLGROUP, RAG_TOOLGROUP] {
        let tools = rag.list_tools(Some(group)).await.unwrap().data;
        assert_eq!(tools.len(), 1, "{group}");
        assert_eq!(tools[0].name, KNOWLEDGE_SEARCH_TOOL);
        assert_eq!(
            tools[0].toolgroup_id.as_deref(),
            Some(FILE_SEARCH_TOOLGROUP)
        );
    }
    assert_eq!(rag.list_tools(None).await.unwrap().data.len(), 1);
    assert_eq!(
        stack.toolgroups(),
        [(FILE_SEARCH_TOOLGROUP.to_string(), "file-search".to_string())]
    );
    let invoked = rag
        .invoke(InvokeToolRequest {
            tool_name: KNOWLEDGE_SEARCH_TOOL.into(),
            kwargs: meta(
                json!({"query": "what does the keeper do in fog?", "vector_store_ids": [a, b]}),
            ),
            authorization: None,
        })
        .await
        .unwrap();
    assert!(invoked.error_message.is_none());
    let content = invoked.content.unwrap();
    assert!(content[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("knowledge_search tool found "));
    assert_eq!(
        invoked.metadata.unwrap()["document_ids"][0],
        "lighthouse-guide"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_other_users_stores() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path()).await;
    let rag = stack.tool_runtime();
    let store = new_store(&stack, "sqlite-vec").await;
    let insert = |documents: Vec<RagDocument>, size: u32, id: &str| RagInsertRequest {
        documents,
        vector_store_id: id.to_string(),
        chunk_size_in_tokens: size,
    };
    let kind = |r: llama_stack::Result<()>| r.unwrap_err().kind();

    // Insert: unknown store, empty document, unsupported media type, non-text content,
    // chunk size out of range, attributes that vector stores refuse.
    let ok = vec![RagDocument::text("d", "some text")];
    assert_eq!(
        kind(rag.rag_insert(insert(ok.clone(), 512, "vs_nope")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            rag.rag_insert(insert(vec![RagDocument::text("e", "  ")], 512, &store))
                .await
        ),
        ErrorKind::InvalidRequest
    );
    let mut png = RagDocument::text("p", "x");
    png.mime_type = Some("image/png".into());
    assert_eq!(
        kind(rag.rag_insert(insert(vec![png], 512, &store)).await),
        ErrorKind::InvalidRequest
    );
    let mut image = RagDocument::text("i", "x");
    image.content = json!({"type": "image", "image": {"url": "http://x"}});
    assert_eq!(
        kind(rag.rag_insert(insert(vec![image], 512, &store)).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(rag.rag_insert(insert(ok.clone(), 50, &store)).await),
        ErrorKind::InvalidRequest
    );
    let mut nested = RagDocument::text("n", "text");
    nested.metadata = meta(json!({"deep": {"no": 1}}));
    assert_eq!(
        kind(rag.rag_insert(insert(vec![nested], 512, &store)).await),
        ErrorKind::InvalidRequest
    );
    // Nothing was left behind by the failures.
    assert!(stack
        .vector_io()
        .list_files(&store, Default::default())
        .await
        .unwrap()
        .data
        .is_empty());

    // Query: no stores, bad config, unknown store, empty query.
    rag.rag_insert(insert(ok, 512, &store)).await.unwrap();
    let qkind = |r: llama_stack::Result<RagQueryResult>| r.unwrap_err().kind();
    assert_eq!(
        qkind(rag.rag_query(query("x", &[])).await),
        ErrorKind::InvalidRequest
    );
    for bad in [
        json!({"max_chunks": 0}),
        json!({"max_tokens_in_context": 0}),
        json!({"chunk_template": "no content placeholder"}),
        json!({"mode": "fuzzy"}),
        json!({"ranker": {"type": "magic"}}),
    ] {
        let mut q = query("text", &[&store]);
        q.query_config = Some(serde_json::from_value(bad.clone()).unwrap());
        assert_eq!(
            qkind(rag.rag_query(q).await),
            ErrorKind::InvalidRequest,
            "{bad}"
        );
    }
    assert_eq!(
        qkind(rag.rag_query(query("x", &["vs_nope"])).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        qkind(rag.rag_query(query(" ", &[&store])).await),
        ErrorKind::InvalidRequest
    );

    // Tools: unknown tool and group, missing arguments.
    let invoke = |kwargs: Value, name: &str| InvokeToolRequest {
        tool_name: name.into(),
        kwargs: meta(kwargs),
        authorization: None,
    };
    let e = rag
        .invoke(invoke(json!({}), "no_such_tool"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = rag.list_tools(Some("builtin::nothing")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    for kwargs in [
        json!({"vector_store_ids": [store]}),
        json!({"query": "x"}),
        json!({"query": "x", "vector_store_ids": "vs"}),
    ] {
        let e = rag
            .invoke(invoke(kwargs.clone(), KNOWLEDGE_SEARCH_TOOL))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{kwargs}");
    }

    // Another user can neither insert into nor search the store.
    let bob = stack.as_user(User::new("bob"));
    let alice = stack.as_user(User::new("alice"));
    let owned = alice
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some("faiss".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    alice
        .tool_runtime()
        .rag_insert(insert(
            vec![RagDocument::text("secret", "alice's secret recipe")],
            512,
            &owned,
        ))
        .await
        .unwrap();
    let e = bob
        .tool_runtime()
        .rag_query(query("secret recipe", &[&owned]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = bob
        .tool_runtime()
        .rag_insert(insert(
            vec![RagDocument::text("x", "bob's text")],
            512,
            &owned,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let found = alice
        .tool_runtime()
        .rag_query(query("secret recipe", &[&owned]))
        .await
        .unwrap();
    assert_eq!(found.citations()[0].document_id.as_deref(), Some("secret"));
}

/// Without a tool_runtime provider the RAG calls say what to configure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_provider_the_error_says_what_to_add() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let only_stores = STORES
        .split("  tool_runtime:")
        .next()
        .unwrap()
        .replace("{dir}", &d);
    let stack = Stack::builder()
        .config_yaml(config(dir.path(), &only_stores, ""))
        .build()
        .await
        .unwrap();
    let e = stack
        .tool_runtime()
        .rag_query(query("x", &["vs_1"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("inline::file-search"), "{e}");
}
