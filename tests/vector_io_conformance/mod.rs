//! One conformance suite for every vector_io provider, in library mode: the same
//! documents, queries and checks against each provider's stack.
//!
//! - recall@10 of `query_chunks` against an exact brute-force search over the same
//!   all-MiniLM-L6-v2 embeddings;
//! - attribute filters (selective filters still return up to k matches, all matching);
//! - keyword and hybrid search;
//! - files: every supported format attached, counts, contents, attribute updates,
//!   deletes, failures that leave the store usable;
//! - file batches;
//! - persistence across a rebuild of the stack over the same storage;
//! - per-user isolation;
//! - bad input answered with typed errors.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use llama_stack::core::api::files::{FilePurpose, ListFilesRequest, UploadFileRequest};
use llama_stack::core::api::inference::{EmbeddingVector, EmbeddingsRequest};
use llama_stack::core::api::vector_io::*;
use llama_stack::core::storage::Order;
use llama_stack::{ErrorKind, Stack, User};
use serde_json::{json, Map, Value};

/// Points the hub cache at the shared models (once) and says whether the embedding model is there.
pub fn model_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        let dir = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models/hub")
            });
        std::env::set_var("HF_HUB_CACHE", &dir);
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let present = dir
            .join("models--sentence-transformers--all-MiniLM-L6-v2")
            .is_dir();
        if !present {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!(
                    "the embedding model is missing from {} (CI must have it)",
                    dir.display()
                );
            }
            eprintln!("skip: embedding model not found in {}", dir.display());
        }
        present
    })
}

/// A run config with local embeddings, localfs files and the given vector_io providers.
pub fn config(dir: &Path, vector_io: &str, files_extra: &str) -> String {
    format!(
        r#"version: 2
distro_name: vector-test
providers:
  inference:
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config: {{}}
  files:
  - provider_id: builtin-files
    provider_type: inline::localfs
    config:
      storage_dir: {dir}/files
      metadata_store: {{backend: sql_default, table_name: files_metadata}}
{files_extra}
  vector_io:
{vector_io}
storage:
  backends:
    kv_default: {{type: kv_sqlite, db_path: "{dir}/kv.db"}}
    sql_default: {{type: sql_sqlite, db_path: "{dir}/sql.db"}}
  stores:
    metadata: {{backend: kv_default, namespace: registry}}
    inference: {{backend: sql_default, table_name: inference_store}}
registered_resources:
  models:
  - model_id: sentence-transformers/all-MiniLM-L6-v2
    provider_id: sentence-transformers
    model_type: embedding
    metadata: {{embedding_dimension: 384}}
vector_stores:
  default_embedding_model: {{provider_id: sentence-transformers, model_id: sentence-transformers/all-MiniLM-L6-v2}}
"#,
        dir = dir.display()
    )
}

pub fn target(
    label: &str,
    provider_id: &str,
    vector_io: &str,
    min_recall: f64,
) -> (Target, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let vector_io = vector_io.to_string();
    let build = move || {
        let vector_io = vector_io.clone();
        let yaml = config(
            &path,
            &vector_io.replace("{dir}", &path.display().to_string()),
            "",
        );
        Box::pin(async move { Stack::builder().config_yaml(yaml).build().await.unwrap() })
            as std::pin::Pin<Box<dyn std::future::Future<Output = Stack> + Send>>
    };
    (
        Target {
            label: label.into(),
            provider_id: provider_id.into(),
            build: Box::new(build),
            min_recall,
            keyword: true,
        },
        dir,
    )
}

/// A boxed `bool` future (whether a file's bytes exist in the backend).
pub type BoolFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The Files API of a stack whose files provider has `ttl_secs: 2` and
/// `max_file_size_bytes: 1000`: ids, pages, cursors, purposes, content, deletes, 413,
/// `expires_after`, ownership and expiry (`exists` says whether the backend still holds a
/// file's bytes).
pub async fn files_api(stack: &Stack, exists: &(dyn Fn(String) -> BoolFuture + Sync)) {
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
    assert!(!exists(ids[2].clone()).await, "expired bytes removed");
    assert!(exists(long.id.clone()).await);
}

/// The embedding model every target uses.
pub const EMBED: &str = "sentence-transformers/sentence-transformers/all-MiniLM-L6-v2";
/// Its dimension.
pub const DIM: usize = 384;

/// Builds a stack over fixed storage: calling it twice gives two stacks over the same data.
pub type Builder = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Stack> + Send>> + Send + Sync>;

/// A provider under test.
pub struct Target {
    /// Shown in failures.
    pub label: String,
    /// The vector_io provider id in the config.
    pub provider_id: String,
    /// Builds the stack (same storage every time).
    pub build: Builder,
    /// Least acceptable recall@10 against brute force (1.0 for exact indexes).
    pub min_recall: f64,
    /// Whether the provider has keyword (and hybrid) search.
    pub keyword: bool,
}

const TOPICS: [&str; 6] = [
    "astronomy",
    "cooking",
    "football",
    "medicine",
    "music",
    "sailing",
];

/// A deterministic corpus: sentences about six topics, with attributes.
pub fn corpus(n: usize) -> Vec<(String, Map<String, Value>)> {
    let subjects = [
        (
            "astronomy",
            ["telescope", "galaxy", "comet", "nebula", "orbit"],
        ),
        ("cooking", ["recipe", "oven", "saucepan", "dough", "spices"]),
        (
            "football",
            ["goalkeeper", "penalty", "stadium", "striker", "league"],
        ),
        (
            "medicine",
            ["vaccine", "surgery", "diagnosis", "antibiotic", "clinic"],
        ),
        (
            "music",
            ["symphony", "guitar", "melody", "orchestra", "rhythm"],
        ),
        (
            "sailing",
            ["regatta", "mainsail", "harbour", "keel", "anchor"],
        ),
    ];
    let verbs = [
        "describes",
        "explains",
        "questions",
        "celebrates",
        "compares",
    ];
    let extras = [
        "in the early morning",
        "during a long winter",
        "for curious beginners",
        "with surprising detail",
        "after many years of practice",
        "in a small coastal town",
        "under difficult conditions",
    ];
    (0..n)
        .map(|i| {
            let (topic, words) = subjects[i % subjects.len()];
            let w1 = words[(i / 6) % 5];
            let w2 = words[(i / 30 + 2) % 5];
            let text = format!(
                "Note {i}: this passage {} the {w1} and the {w2} {} (topic {topic}).",
                verbs[(i / 7) % verbs.len()],
                extras[(i / 3) % extras.len()],
            );
            let mut attrs = Map::new();
            attrs.insert("topic".into(), json!(topic));
            attrs.insert("year".into(), json!(2000 + (i % 25) as i64));
            attrs.insert("index".into(), json!(i as i64));
            (text, attrs)
        })
        .collect()
}

async fn embed(stack: &Stack, texts: &[String]) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for batch in texts.chunks(128) {
        let r = stack
            .inference()
            .embeddings(EmbeddingsRequest::new(EMBED, batch.to_vec()))
            .await
            .unwrap();
        for e in r.data {
            let EmbeddingVector::Float(v) = e.embedding else {
                panic!("float embeddings expected")
            };
            out.push(v);
        }
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += f64::from(*x) * f64::from(*y);
        na += f64::from(*x).powi(2);
        nb += f64::from(*y).powi(2);
    }
    d / (na.sqrt() * nb.sqrt())
}

fn brute_force(
    query: &[f32],
    docs: &[Vec<f32>],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut scored: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, d)| (i, cosine(query, d)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(k).map(|(i, _)| i).collect()
}

async fn create_store(stack: &Stack, t: &Target, name: &str) -> VectorStoreObject {
    stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            name: Some(name.into()),
            provider_id: Some(t.provider_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
}

fn chunk_index(c: &Chunk) -> usize {
    c.metadata["index"].as_i64().unwrap() as usize
}

/// Runs every check on `t`.
pub async fn run_all(t: &Target) {
    let stack = (t.build)().await;
    recall_filters_and_modes(t, &stack).await;
    files_and_formats(t, &stack).await;
    batches(t, &stack).await;
    isolation(t, &stack).await;
    bad_input(t, &stack).await;
    persistence(t, stack).await;
}

/// Inserts a corpus, then measures recall against brute force, filters and modes.
pub async fn recall_filters_and_modes(t: &Target, stack: &Stack) {
    let label = &t.label;
    let store = create_store(stack, t, "recall").await;
    assert_eq!(
        store.metadata["provider_id"],
        json!(t.provider_id),
        "{label}"
    );
    assert_eq!(store.metadata["embedding_model"], json!(EMBED), "{label}");
    assert_eq!(
        store.metadata["embedding_dimension"],
        json!("384"),
        "{label}"
    );

    let docs = corpus(360);
    let texts: Vec<String> = docs.iter().map(|(t, _)| t.clone()).collect();
    let vectors = embed(stack, &texts).await;
    // Half the chunks come with their embedding, half are embedded by the store.
    let chunks: Vec<Chunk> = docs
        .iter()
        .enumerate()
        .map(|(i, (text, attrs))| {
            let mut c = Chunk::new(format!("c{i}"), text.clone());
            c.metadata = attrs.clone();
            if i % 2 == 0 {
                c.embedding = Some(vectors[i].clone());
            }
            c
        })
        .collect();
    for part in chunks.chunks(100) {
        stack
            .vector_io()
            .insert_chunks(InsertChunksRequest {
                vector_store_id: store.id.clone(),
                chunks: part.to_vec(),
                ttl_seconds: None,
            })
            .await
            .unwrap();
    }

    let queries = [
        "a telescope pointed at a distant galaxy",
        "how to bake bread dough in the oven",
        "the striker scored a penalty in the stadium",
        "a new vaccine tested at the clinic",
        "an orchestra playing a symphony",
        "the regatta left the harbour at dawn",
        "spices for a winter recipe",
        "a comet crossing the orbit of a planet",
        "guitar rhythm for beginners",
        "anchor and keel of an old boat",
    ];
    let qvecs = embed(
        stack,
        &queries.iter().map(|q| q.to_string()).collect::<Vec<_>>(),
    )
    .await;
    let (mut hit, mut total) = (0usize, 0usize);
    for (q, qv) in queries.iter().zip(&qvecs) {
        let r = stack
            .vector_io()
            .query_chunks(QueryChunksRequest {
                vector_store_id: store.id.clone(),
                query: ChunkContent::from(*q),
                params: Some(json!({"max_chunks": 10}).as_object().unwrap().clone()),
            })
            .await
            .unwrap();
        assert_eq!(r.chunks.len(), 10, "{label}: {q}");
        assert!(
            r.scores.windows(2).all(|w| w[0] >= w[1] - 1e-6),
            "{label}: scores sorted"
        );
        let exact: HashSet<usize> = brute_force(qv, &vectors, 10, |_| true)
            .into_iter()
            .collect();
        let got: HashSet<usize> = r.chunks.iter().map(chunk_index).collect();
        hit += exact.intersection(&got).count();
        total += 10;
        // Returned chunks carry the stored embedding.
        let top = &r.chunks[0];
        assert_eq!(top.embedding.as_ref().map(Vec::len), Some(DIM), "{label}");
        assert!(
            (r.scores[0] as f64 - cosine(qv, top.embedding.as_ref().unwrap())).abs() < 1e-3,
            "{label}: score is cosine similarity"
        );
    }
    let recall = hit as f64 / total as f64;
    assert!(
        recall >= t.min_recall,
        "{label}: recall@10 {recall} < {}",
        t.min_recall
    );

    // A selective filter still yields k matches, all of them matching, and the right ones.
    let filter = AttributeFilter::from_value(&json!({
        "type": "and",
        "filters": [
            {"type": "eq", "key": "topic", "value": "sailing"},
            {"type": "gte", "key": "year", "value": 2015}
        ]
    }))
    .unwrap();
    let q = "a telescope pointed at a distant galaxy";
    let mut req = SearchVectorStoreRequest::new(q);
    req.filters = Some(filter.clone());
    req.max_num_results = Some(5);
    let r = stack.vector_io().search(&store.id, req).await.unwrap();
    assert_eq!(r.data.len(), 5, "{label}: filtered search fills k");
    let keep = |i: usize| filter.matches(&docs[i].1);
    let exact: HashSet<usize> = brute_force(&qvecs[0], &vectors, 5, keep)
        .into_iter()
        .collect();
    for hit in &r.data {
        assert_eq!(hit.attributes["topic"], json!("sailing"), "{label}");
        assert!(hit.attributes["year"].as_i64().unwrap() >= 2015, "{label}");
        assert_eq!(hit.content[0].kind, "text");
    }
    let got: HashSet<usize> = r
        .data
        .iter()
        .map(|h| h.attributes["index"].as_i64().unwrap() as usize)
        .collect();
    assert!(
        exact.intersection(&got).count() >= 4,
        "{label}: filtered results {got:?} vs exact {exact:?}"
    );
    assert_eq!(r.search_query, vec![q.to_string()]);

    // in / nin / or filters.
    let mut req = SearchVectorStoreRequest::new("music and food");
    req.filters = Some(
        AttributeFilter::from_value(
            &json!({"type": "in", "key": "topic", "value": ["music", "cooking"]}),
        )
        .unwrap(),
    );
    req.max_num_results = Some(20);
    let r = stack.vector_io().search(&store.id, req).await.unwrap();
    assert_eq!(r.data.len(), 20, "{label}");
    assert!(r
        .data
        .iter()
        .all(|h| ["music", "cooking"].contains(&h.attributes["topic"].as_str().unwrap())));
    let mut req = SearchVectorStoreRequest::new("music and food");
    req.filters = Some(AttributeFilter::from_value(&json!({"type": "nin", "key": "topic", "value": ["music", "cooking", "sailing", "football", "medicine"]})).unwrap());
    let r = stack.vector_io().search(&store.id, req).await.unwrap();
    assert!(
        r.data
            .iter()
            .all(|h| h.attributes["topic"] == json!("astronomy")),
        "{label}"
    );

    // Score threshold drops weak hits.
    let mut req = SearchVectorStoreRequest::new(q);
    req.ranking_options = Some(RankingOptions {
        score_threshold: Some(0.99),
        ..Default::default()
    });
    let r = stack.vector_io().search(&store.id, req).await.unwrap();
    assert!(r.data.iter().all(|h| h.score >= 0.99), "{label}");

    if t.keyword {
        // A word that occurs in one chunk only ranks that chunk first.
        stack
            .vector_io()
            .insert_chunks(InsertChunksRequest {
                vector_store_id: store.id.clone(),
                chunks: vec![Chunk::new(
                    "rare",
                    "The xylophonist tuned a quetzalcoatlus-shaped instrument.",
                )
                .with_metadata("topic", "music")
                .with_metadata("index", 9999)],
                ttl_seconds: None,
            })
            .await
            .unwrap();
        let mut req = SearchVectorStoreRequest::new("quetzalcoatlus");
        req.search_mode = Some("keyword".into());
        let r = stack.vector_io().search(&store.id, req).await.unwrap();
        assert_eq!(
            r.data[0].attributes["index"],
            json!(9999),
            "{label}: keyword"
        );
        assert!(r.data[0].score > 0.0);
        // Query syntax of the full-text engine never errors.
        let mut req = SearchVectorStoreRequest::new("\"foo\" AND (bar* OR -baz: NEAR(");
        req.search_mode = Some("keyword".into());
        stack.vector_io().search(&store.id, req).await.unwrap();
        // Hybrid: both signals, each fusion.
        for ranker in [
            json!({"ranker": "rrf", "impact_factor": 30.0}),
            json!({"ranker": "weighted", "alpha": 0.3}),
        ] {
            let mut req = SearchVectorStoreRequest::new("xylophonist quetzalcoatlus instrument");
            req.search_mode = Some("hybrid".into());
            req.ranking_options = Some(serde_json::from_value(ranker).unwrap());
            let r = stack.vector_io().search(&store.id, req).await.unwrap();
            assert_eq!(
                r.data[0].attributes["index"],
                json!(9999),
                "{label}: hybrid"
            );
            assert_eq!(r.data.len(), 10);
        }
        // Keyword with a filter that excludes the best match.
        let mut req = SearchVectorStoreRequest::new("quetzalcoatlus");
        req.search_mode = Some("keyword".into());
        req.filters = Some(AttributeFilter::eq("topic", "cooking"));
        let r = stack.vector_io().search(&store.id, req).await.unwrap();
        assert!(r
            .data
            .iter()
            .all(|h| h.attributes["topic"] == json!("cooking")));
    }

    // Replacing a chunk by id.
    let mut c = Chunk::new("c0", "completely different text about volcano eruptions");
    c.metadata = docs[0].1.clone();
    stack
        .vector_io()
        .insert_chunks(InsertChunksRequest {
            vector_store_id: store.id.clone(),
            chunks: vec![c],
            ttl_seconds: None,
        })
        .await
        .unwrap();
    let r = stack
        .vector_io()
        .query_chunks(QueryChunksRequest {
            vector_store_id: store.id.clone(),
            query: "volcano eruptions".into(),
            params: None,
        })
        .await
        .unwrap();
    assert_eq!(r.chunks[0].chunk_id, "c0", "{label}");
    assert_eq!(
        r.chunks[0].content.text(),
        "completely different text about volcano eruptions"
    );
    assert_eq!(r.chunks.len(), 3, "default max_chunks");

    let list = stack
        .vector_io()
        .list_vector_stores(Default::default())
        .await
        .unwrap();
    assert!(list.data.iter().any(|s| s.id == store.id), "{label}");
}

/// A minimal one-page PDF showing `text`.
pub fn pdf(text: &str) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(
        dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"},
    );
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let content = Content {
        operations: vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![50.into(), 700.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ],
    };
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! {"Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1},
        ),
    );
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

async fn upload(stack: &Stack, name: &str, bytes: Vec<u8>) -> String {
    stack
        .files()
        .upload(UploadFileRequest::new(name, bytes, FilePurpose::Assistants))
        .await
        .unwrap()
        .id
}

/// Attaching every supported format, counts, contents, updates, deletes and failures.
pub async fn files_and_formats(t: &Target, stack: &Stack) {
    let label = &t.label;
    let store = create_store(stack, t, "files").await;
    let long: String = (0..400)
        .map(|i| format!("Paragraph {i} about migrating salmon and river dams. "))
        .collect();
    let docs: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notes.txt", b"The lighthouse keeper polished the brass lamp every evening.".to_vec(), "lighthouse keeper polishing brass"),
        ("guide.md", b"# Beekeeping\n\nA **hive** needs a queen, workers and drones.".to_vec(), "queen bee hive"),
        ("page.html", b"<html><head><style>.x{color:red}</style><script>var hidden=1;</script></head><body><h1>Glaciers</h1><p>Glaciers carve valleys over millennia.</p></body></html>".to_vec(), "glaciers carving valleys"),
        ("data.json", br#"{"city": "Reykjavik", "fact": "geothermal water heats most homes"}"#.to_vec(), "geothermal heating in Reykjavik"),
        ("table.csv", b"animal,habitat\npenguin,antarctic ice\ncamel,desert dunes\n".to_vec(), "penguin habitat"),
        ("report.pdf", pdf("Volcanic ash grounded flights across the continent."), "volcanic ash flights"),
        ("long.txt", long.into_bytes(), "salmon migration and river dams"),
    ];
    let mut ids = HashMap::new();
    for (name, bytes, _) in &docs {
        let id = upload(stack, name, bytes.clone()).await;
        let mut attrs = Map::new();
        attrs.insert("source".into(), json!(name));
        let f = stack
            .vector_io()
            .attach_file(
                &store.id,
                AttachFileRequest {
                    file_id: id.clone(),
                    attributes: Some(attrs),
                    chunking_strategy: Some(ChunkingStrategy::fixed(100, 20)),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            f.status,
            VectorStoreFileStatus::Completed,
            "{label}: {name}: {:?}",
            f.last_error
        );
        assert!(f.usage_bytes > 0);
        assert_eq!(f.vector_store_id, store.id);
        ids.insert(*name, id);
    }
    for (name, _, query) in &docs {
        let mut req = SearchVectorStoreRequest::new(*query);
        req.max_num_results = Some(3);
        let r = stack.vector_io().search(&store.id, req).await.unwrap();
        let top = &r.data[0];
        assert_eq!(
            &top.filename,
            name,
            "{label}: '{query}' found {:?}",
            r.data.iter().map(|d| &d.filename).collect::<Vec<_>>()
        );
        assert_eq!(top.file_id, ids[name]);
        assert_eq!(top.attributes["source"], json!(name));
    }
    // HTML scripts and styles are not indexed.
    let c = stack
        .vector_io()
        .file_content(
            &store.id,
            &ids["page.html"],
            FileContentRequest {
                include_embeddings: true,
                include_metadata: true,
            },
        )
        .await
        .unwrap();
    let text: String = c.data.iter().map(|d| d.text.clone()).collect();
    assert!(
        text.contains("Glaciers carve valleys")
            && !text.contains("hidden")
            && !text.contains("color"),
        "{label}: {text}"
    );
    assert_eq!(c.data[0].embedding.as_ref().map(Vec::len), Some(DIM));
    let meta = c.data[0].chunk_metadata.as_ref().unwrap();
    assert_eq!(meta.document_id.as_deref(), Some(ids["page.html"].as_str()));
    assert!(meta.content_token_count.unwrap() > 0);
    // The long file is chunked in windows of at most 100 tokens, in order.
    let c = stack
        .vector_io()
        .file_content(&store.id, &ids["long.txt"], Default::default())
        .await
        .unwrap();
    assert!(c.data.len() > 20, "{label}: {} chunks", c.data.len());
    assert!(c.data[0].text.starts_with("Paragraph 0"));
    assert!(c.data[0].embedding.is_none() && c.data[0].metadata.is_none());

    // Counts and lists.
    let s = stack.vector_io().get_vector_store(&store.id).await.unwrap();
    assert_eq!(s.file_counts.completed, docs.len() as u64, "{label}");
    assert_eq!(s.file_counts.total, docs.len() as u64);
    assert!(s.usage_bytes > 0);
    let page = stack
        .vector_io()
        .list_files(
            &store.id,
            ListVectorStoreFilesRequest {
                limit: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 3);
    assert!(page.has_more);

    // Attribute updates reach the chunks.
    let mut attrs = Map::new();
    attrs.insert("reviewed".into(), json!(true));
    let f = stack
        .vector_io()
        .update_file(
            &store.id,
            &ids["notes.txt"],
            UpdateVectorStoreFileRequest { attributes: attrs },
        )
        .await
        .unwrap();
    assert_eq!(f.attributes["reviewed"], json!(true));
    let mut req = SearchVectorStoreRequest::new("brass lamp");
    req.filters = Some(AttributeFilter::eq("reviewed", true));
    let r = stack.vector_io().search(&store.id, req).await.unwrap();
    assert!(!r.data.is_empty(), "{label}");
    assert!(r.data.iter().all(|h| h.file_id == ids["notes.txt"]));
    assert_eq!(r.data[0].attributes["filename"], json!("notes.txt"));

    // A file that cannot be parsed fails with last_error; the store keeps working.
    let bad = upload(stack, "blob.bin", (0u8..=255).cycle().take(4096).collect()).await;
    let f = stack
        .vector_io()
        .attach_file(&store.id, AttachFileRequest::new(bad.clone()))
        .await
        .unwrap();
    assert_eq!(f.status, VectorStoreFileStatus::Failed, "{label}");
    assert_eq!(f.last_error.as_ref().unwrap().code, "unsupported_file");
    let again = stack.vector_io().get_file(&store.id, &bad).await.unwrap();
    assert_eq!(again.status, VectorStoreFileStatus::Failed);
    assert!(again.last_error.is_some(), "last_error is kept");
    let corrupt = upload(
        stack,
        "broken.pdf",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog".to_vec(),
    )
    .await;
    let f = stack
        .vector_io()
        .attach_file(&store.id, AttachFileRequest::new(corrupt))
        .await
        .unwrap();
    assert_eq!(f.status, VectorStoreFileStatus::Failed, "{label}");
    assert_eq!(f.last_error.as_ref().unwrap().code, "invalid_file");
    let s = stack.vector_io().get_vector_store(&store.id).await.unwrap();
    assert_eq!(s.file_counts.failed, 2);
    let failed = stack
        .vector_io()
        .list_files(
            &store.id,
            ListVectorStoreFilesRequest {
                filter: Some(VectorStoreFileStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.data.len(), 2);
    let r = stack
        .vector_io()
        .search(&store.id, SearchVectorStoreRequest::new("penguin"))
        .await
        .unwrap();
    assert_eq!(r.data[0].filename, "table.csv");

    // Attaching again returns the existing file.
    let f = stack
        .vector_io()
        .attach_file(&store.id, AttachFileRequest::new(ids["guide.md"].clone()))
        .await
        .unwrap();
    assert_eq!(f.status, VectorStoreFileStatus::Completed);

    // Removing a file removes its chunks.
    stack
        .vector_io()
        .delete_file(&store.id, &ids["table.csv"])
        .await
        .unwrap();
    let r = stack
        .vector_io()
        .search(&store.id, SearchVectorStoreRequest::new("penguin habitat"))
        .await
        .unwrap();
    assert!(r.data.iter().all(|h| h.filename != "table.csv"), "{label}");
    let e = stack
        .vector_io()
        .get_file(&store.id, &ids["table.csv"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // The uploaded file itself is still there.
    stack.files().get(&ids["table.csv"]).await.unwrap();

    // Deleting the store removes it; its files stay.
    stack
        .vector_io()
        .delete_vector_store(&store.id)
        .await
        .unwrap();
    let e = stack
        .vector_io()
        .get_vector_store(&store.id)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{label}");
    let e = stack
        .vector_io()
        .search(&store.id, SearchVectorStoreRequest::new("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    stack.files().get(&ids["notes.txt"]).await.unwrap();
}

/// File batches: background ingestion, counts, listing, cancel of a finished batch.
pub async fn batches(t: &Target, stack: &Stack) {
    let label = &t.label;
    let store = create_store(stack, t, "batches").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            upload(
                stack,
                &format!("b{i}.txt"),
                format!("Batch document {i} about kite surfing number {i}.").into_bytes(),
            )
            .await,
        );
    }
    ids.push(upload(stack, "bad.bin", vec![0u8, 159, 146, 150, 255, 0, 1]).await);
    let b = stack
        .vector_io()
        .create_file_batch(
            &store.id,
            CreateFileBatchRequest {
                file_ids: ids.clone(),
                attributes: None,
                chunking_strategy: None,
            },
        )
        .await
        .unwrap();
    assert!(b.id.starts_with("batch_"));
    assert_eq!(b.file_counts.total, 6);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let b = stack
            .vector_io()
            .get_file_batch(&store.id, &b.id)
            .await
            .unwrap();
        if b.status != FileBatchStatus::InProgress {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{label}: batch still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.status, FileBatchStatus::Completed, "{label}");
    assert_eq!(done.file_counts.completed, 5);
    assert_eq!(done.file_counts.failed, 1);
    let files = stack
        .vector_io()
        .list_file_batch_files(&store.id, &b.id, Default::default())
        .await
        .unwrap();
    assert_eq!(files.data.len(), 6);
    let e = stack
        .vector_io()
        .cancel_file_batch(&store.id, &b.id)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{label}");
    let r = stack
        .vector_io()
        .search(
            &store.id,
            SearchVectorStoreRequest::new("kite surfing document 3"),
        )
        .await
        .unwrap();
    assert_eq!(r.data.len(), 5);
    let e = stack
        .vector_io()
        .get_file_batch(&store.id, "batch_nope")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// One user's stores and files are invisible to another.
pub async fn isolation(t: &Target, stack: &Stack) {
    let label = &t.label;
    let alice = stack.as_user(User::new("alice"));
    let bob = stack.as_user(User::new("bob"));
    let s = alice
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some(t.provider_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let f = alice
        .files()
        .upload(UploadFileRequest::new(
            "secret.txt",
            b"alice's secret recipe".to_vec(),
            FilePurpose::Assistants,
        ))
        .await
        .unwrap();
    let e = bob.vector_io().get_vector_store(&s.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{label}");
    let e = bob
        .vector_io()
        .search(&s.id, SearchVectorStoreRequest::new("recipe"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!bob
        .vector_io()
        .list_vector_stores(Default::default())
        .await
        .unwrap()
        .data
        .iter()
        .any(|v| v.id == s.id));
    assert_eq!(
        bob.files().get(&f.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!bob
        .files()
        .list(ListFilesRequest::default())
        .await
        .unwrap()
        .data
        .iter()
        .any(|x| x.id == f.id));
    // Bob cannot attach Alice's file to his own store.
    let bs = bob
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some(t.provider_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = bob
        .vector_io()
        .attach_file(&bs.id, AttachFileRequest::new(f.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{label}");
    let a = alice
        .vector_io()
        .attach_file(&s.id, AttachFileRequest::new(f.id.clone()))
        .await
        .unwrap();
    assert_eq!(a.status, VectorStoreFileStatus::Completed);
}

/// Bad input gets typed errors and changes nothing.
pub async fn bad_input(t: &Target, stack: &Stack) {
    let label = &t.label;
    let vio = stack.vector_io();
    let store = create_store(stack, t, "bad").await;
    let kind = |r: llama_stack::Result<SearchResponse>| r.unwrap_err().kind();
    let mut req = SearchVectorStoreRequest::new("x");
    req.search_mode = Some("semantic".into());
    assert_eq!(
        kind(vio.search(&store.id, req).await),
        ErrorKind::InvalidRequest,
        "{label}"
    );
    let mut req = SearchVectorStoreRequest::new("x");
    req.max_num_results = Some(0);
    assert_eq!(
        kind(vio.search(&store.id, req).await),
        ErrorKind::InvalidRequest
    );
    let mut req = SearchVectorStoreRequest::new("x");
    req.filters = Some(AttributeFilter::In(Comparison {
        key: "k".into(),
        value: json!(3),
    }));
    assert_eq!(
        kind(vio.search(&store.id, req).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(
            vio.search(&store.id, SearchVectorStoreRequest::new("   "))
                .await
        ),
        ErrorKind::InvalidRequest
    );
    let mut req = SearchVectorStoreRequest::new("x");
    req.rewrite_query = true;
    assert_eq!(
        kind(vio.search(&store.id, req).await),
        ErrorKind::InvalidRequest,
        "no rewrite model configured"
    );
    assert_eq!(
        kind(
            vio.search("vs_missing", SearchVectorStoreRequest::new("x"))
                .await
        ),
        ErrorKind::NotFound
    );

    let mut wrong = Chunk::new("w", "wrong size");
    wrong.embedding = Some(vec![0.1; 10]);
    let e = vio
        .insert_chunks(InsertChunksRequest {
            vector_store_id: store.id.clone(),
            chunks: vec![wrong],
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{label}");
    assert!(e.message().contains("384"), "{e}");
    let e = vio
        .insert_chunks(InsertChunksRequest {
            vector_store_id: store.id.clone(),
            chunks: vec![Chunk::new("a", "x"), Chunk::new("a", "y")],
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);

    let e = vio
        .create_vector_store(CreateVectorStoreRequest {
            embedding_model: Some("nope/model".into()),
            provider_id: Some(t.provider_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{label}");
    let e = vio
        .create_vector_store(CreateVectorStoreRequest {
            embedding_dimension: Some(768),
            provider_id: Some(t.provider_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidRequest,
        "dimension mismatch with the model"
    );
    assert!(e.message().contains("384"), "{e}");
    let e = vio
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some("no-such-provider".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = vio
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some(t.provider_id.clone()),
            chunking_strategy: Some(ChunkingStrategy::fixed(50, 10)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);

    let e = vio
        .attach_file(
            &store.id,
            AttachFileRequest::new("file-00000000000000000000000000000000"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{label}");
    let e = vio.get_file(&store.id, "file-nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = stack
        .files()
        .upload(UploadFileRequest::new(
            "empty.txt",
            Vec::new(),
            FilePurpose::Assistants,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = vio
        .update_vector_store(
            &store.id,
            UpdateVectorStoreRequest {
                metadata: Some(json!({"provider_id": "other"}).as_object().unwrap().clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    // The store is unchanged and usable.
    let s = vio
        .update_vector_store(
            &store.id,
            UpdateVectorStoreRequest {
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(s.name.as_deref(), Some("renamed"));
    assert_eq!(s.metadata["provider_id"], json!(t.provider_id));
    assert_eq!(s.file_counts.total, 0);
}

/// Everything survives a rebuild of the stack over the same storage.
pub async fn persistence(t: &Target, stack: Stack) {
    let label = &t.label;
    let store = create_store(&stack, t, "persist").await;
    let f = upload(
        &stack,
        "persist.md",
        b"# Tides\n\nThe moon pulls the oceans into tides twice a day.".to_vec(),
    )
    .await;
    stack
        .vector_io()
        .attach_file(&store.id, AttachFileRequest::new(f.clone()))
        .await
        .unwrap();
    let before = stack
        .vector_io()
        .search(
            &store.id,
            SearchVectorStoreRequest::new("why are there tides"),
        )
        .await
        .unwrap();
    let stores_before = stack
        .vector_io()
        .list_vector_stores(Default::default())
        .await
        .unwrap();
    drop(stack);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stack = (t.build)().await;
    let after = stack
        .vector_io()
        .search(
            &store.id,
            SearchVectorStoreRequest::new("why are there tides"),
        )
        .await
        .unwrap();
    assert_eq!(before.data.len(), after.data.len(), "{label}");
    assert_eq!(before.data[0].file_id, after.data[0].file_id);
    assert!((before.data[0].score - after.data[0].score).abs() < 1e-4);
    let stores_after = stack
        .vector_io()
        .list_vector_stores(Default::default())
        .await
        .unwrap();
    assert_eq!(
        stores_before.data.iter().map(|s| &s.id).collect::<Vec<_>>(),
        stores_after.data.iter().map(|s| &s.id).collect::<Vec<_>>(),
        "{label}"
    );
    let file = stack.vector_io().get_file(&store.id, &f).await.unwrap();
    assert_eq!(file.status, VectorStoreFileStatus::Completed);
    assert_eq!(
        stack.files().content(&f).await.unwrap().filename,
        "persist.md"
    );
}
