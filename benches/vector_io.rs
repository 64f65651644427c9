//! Vector stores: ingest throughput through the library (chunks embedded with
//! all-MiniLM-L6-v2 by the store's model, then stored) and, per vector index, load time,
//! search latency p50/p99 (k = 10) and recall@10 against exact brute force at 10k and 100k
//! chunks, on real MiniLM embeddings of a generated corpus.
//!
//! Run: `cargo bench --bench vector_io --features remote-vector-io` (release profile).
//! Providers: `inline::sqlite-vec`, `inline::faiss` (HNSW) always; `remote::pgvector` when
//! PostgreSQL with pgvector answers on 127.0.0.1:5432 (a fresh database per run);
//! `remote::chromadb` when `LLAMA_STACK_TEST_CHROMA_URL` is set. Environment:
//! `VECTOR_BENCH_SIZES` (default `10000,100000`), `VECTOR_BENCH_QUERIES` (default 200),
//! `VECTOR_BENCH_INGEST` (chunks for the ingest run, default 2000; 0 skips it),
//! `VECTOR_BENCH_INDEXES` (comma list among `sqlite_vec,faiss_hnsw,pgvector_hnsw,chromadb`;
//! default all available). The corpus embeddings are computed once and cached under the
//! target directory (`vector-bench/minilm-<n>.f32`); the query embeddings are written
//! beside them (`queries-<q>.f32`) for `benches/vector_io_side_by_side.py`. Prints one
//! `name value unit` line per measurement.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use llama_stack::core::api::inference::{EmbeddingVector, EmbeddingsRequest};
use llama_stack::core::api::vector_io::{Chunk, CreateVectorStoreRequest, InsertChunksRequest};
use llama_stack::prelude::*;
use llama_stack_providers::vector_io::index::VectorIndex;

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
use process::cpu_seconds;

const EMBED: &str = "sentence-transformers/sentence-transformers/all-MiniLM-L6-v2";
const DIM: usize = 384;
const K: usize = 10;

const SUBJECTS: [&str; 24] = [
    "The harbour master",
    "A young botanist",
    "The night nurse",
    "Our accountant",
    "The ferry captain",
    "A retired teacher",
    "The lighthouse keeper",
    "My neighbour",
    "The head chef",
    "A museum guide",
    "The bus driver",
    "An old fisherman",
    "The school librarian",
    "A street musician",
    "The city planner",
    "A wildlife ranger",
    "The bakery owner",
    "A software tester",
    "The mountain guide",
    "A beekeeper",
    "The radio host",
    "A glassblower",
    "The train conductor",
    "A cartographer",
];
const VERBS: [&str; 16] = [
    "repaired",
    "photographed",
    "described",
    "painted",
    "measured",
    "cleaned",
    "studied",
    "sold",
    "borrowed",
    "inspected",
    "catalogued",
    "rebuilt",
    "decorated",
    "weighed",
    "delivered",
    "sketched",
];
const OBJECTS: [&str; 32] = [
    "a copper kettle",
    "the broken telescope",
    "three wooden chairs",
    "a map of the coast",
    "the village clock",
    "a jar of honey",
    "the red bicycle",
    "a stack of letters",
    "the garden fence",
    "an iron anchor",
    "the violin case",
    "a basket of apples",
    "the stone bridge",
    "a pair of boots",
    "the weather vane",
    "a box of seeds",
    "the sailing boat",
    "a brass compass",
    "the old piano",
    "a bundle of maps",
    "the glass lantern",
    "a loaf of rye bread",
    "the church bell",
    "a set of chisels",
    "the fishing nets",
    "a crate of oranges",
    "the wind turbine",
    "a leather satchel",
    "the tram tracks",
    "a clay teapot",
    "the solar panels",
    "a pile of firewood",
];
const PLACES: [&str; 20] = [
    "near the harbour",
    "in the market square",
    "behind the library",
    "at the train station",
    "on the hill",
    "by the river",
    "in the old mill",
    "at the airport",
    "in the greenhouse",
    "under the bridge",
    "at the museum",
    "in the school yard",
    "on the pier",
    "in the bakery",
    "at the hospital",
    "in the forest",
    "on the rooftop",
    "at the festival",
    "in the workshop",
    "by the lake",
];
const TIMES: [&str; 12] = [
    "before sunrise",
    "during the storm",
    "last winter",
    "on Monday",
    "after lunch",
    "at midnight",
    "in early spring",
    "during the holidays",
    "yesterday evening",
    "every Sunday",
    "in the heat wave",
    "after the flood",
];

/// Sentence `i` of the corpus (distinct for every `i` below 24·16·32·20·12).
fn sentence(i: usize) -> String {
    let mut n = i;
    let mut pick = |len: usize| {
        let v = n % len;
        n /= len;
        v
    };
    let s = SUBJECTS[pick(SUBJECTS.len())];
    let v = VERBS[pick(VERBS.len())];
    let o = OBJECTS[pick(OBJECTS.len())];
    let p = PLACES[pick(PLACES.len())];
    let t = TIMES[pick(TIMES.len())];
    format!("{s} {v} {o} {p} {t}.")
}

/// Query `j`: a paraphrase-like sentence from the same vocabulary, not in the corpus order.
fn query(j: usize) -> String {
    let i = j.wrapping_mul(2_654_435_761) % (24 * 16 * 32 * 20 * 12);
    let s = sentence(i);
    format!("Who {}", s.split_once(' ').map_or(s.as_str(), |x| x.1))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")))
        .join("vector-bench")
}

async fn embed(stack: &Stack, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(128) {
        let r = stack
            .inference()
            .embeddings(EmbeddingsRequest::new(EMBED, batch.to_vec()))
            .await?;
        for d in r.data {
            match d.embedding {
                EmbeddingVector::Float(v) => out.push(v),
                EmbeddingVector::Base64(_) => unreachable!("float requested"),
            }
        }
    }
    Ok(out)
}

/// The corpus embeddings (computed once, cached as little-endian f32s).
async fn corpus_embeddings(stack: &Stack, n: usize) -> Result<Vec<Vec<f32>>> {
    let dir = target_dir();
    std::fs::create_dir_all(&dir).ok();
    let path = dir.join(format!("minilm-{n}.f32"));
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == n * DIM * 4 {
            return Ok(bytes
                .chunks_exact(DIM * 4)
                .map(|row| {
                    row.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                })
                .collect());
        }
    }
    let texts: Vec<String> = (0..n).map(sentence).collect();
    let c0 = cpu_seconds();
    let t = Instant::now();
    let vectors = embed(stack, &texts).await?;
    let wall = t.elapsed().as_secs_f64();
    println!(
        "corpus_embedding {:.0} sentences/s ({:.0} sentences/CPU-s, {n} sentences)",
        n as f64 / wall,
        n as f64 / (cpu_seconds() - c0)
    );
    let bytes: Vec<u8> = vectors
        .iter()
        .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    std::fs::write(&path, bytes).ok();
    Ok(vectors)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact top-k ids (normalised vectors: dot = cosine).
fn exact_top_k(corpus: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(usize, f32)> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| (i, dot(v, q)))
        .collect();
    scored.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().map(|(i, _)| i).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Loads `corpus[..n]` into a fresh store of `index`, then times the queries.
async fn bench_index(
    name: &str,
    index: &dyn VectorIndex,
    corpus: &[Vec<f32>],
    loaded: &mut usize,
    n: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> Result<()> {
    let store = "bench";
    if *loaded == 0 {
        index.create_store(store, DIM).await?;
    }
    let c0 = cpu_seconds();
    let t = Instant::now();
    for start in (*loaded..n).step_by(1000) {
        let end = (start + 1000).min(n);
        let chunks: Vec<Chunk> = (start..end)
            .map(|i| {
                let mut c = Chunk::new(format!("c{i}"), sentence(i));
                c.embedding = Some(corpus[i].clone());
                c
            })
            .collect();
        index.upsert(store, &chunks).await?;
    }
    let added = n - *loaded;
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{name}_load_{n} {:.0} chunks/s ({added} chunks in {wall:.1} s, {:.1} CPU-s in this process)",
        added as f64 / wall,
        cpu_seconds() - c0
    );
    *loaded = n;
    // Warm-up, then timed queries.
    for q in queries.iter().take(5) {
        index.query_vector(store, q, K, None).await?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut hits = 0usize;
    for (q, truth) in queries.iter().zip(truth) {
        let t = Instant::now();
        let found = index.query_vector(store, q, K, None).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let ids: Vec<usize> = found
            .iter()
            .filter_map(|(c, _)| c.chunk_id[1..].parse().ok())
            .collect();
        hits += truth.iter().filter(|i| ids.contains(i)).count();
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{name}_query_{n} p50 {:.2} ms p99 {:.2} ms (k = {K}, {} queries)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    println!(
        "{name}_recall10_{n} {:.4} (against exact search)",
        hits as f64 / (truth.len() * K) as f64
    );
    Ok(())
}

/// Ingest through the library: chunks without embeddings, embedded by the store's model.
async fn bench_ingest(stack: &Stack, provider: &str, n: usize) -> Result<()> {
    let store = stack
        .vector_io()
        .create_vector_store(CreateVectorStoreRequest {
            provider_id: Some(provider.into()),
            ..Default::default()
        })
        .await?;
    let chunks: Vec<Chunk> = (0..n)
        .map(|i| Chunk::new(format!("c{i}"), sentence(i + 500_000)))
        .collect();
    let c0 = cpu_seconds();
    let t = Instant::now();
    for batch in chunks.chunks(256) {
        stack
            .vector_io()
            .insert_chunks(InsertChunksRequest {
                vector_store_id: store.id.clone(),
                chunks: batch.to_vec(),
                ttl_seconds: None,
            })
            .await?;
    }
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{provider}_ingest {:.0} chunks/s ({:.0} chunks/CPU-s in this process; {n} chunks, embedding included)",
        n as f64 / wall,
        n as f64 / (cpu_seconds() - c0)
    );
    stack.vector_io().delete_vector_store(&store.id).await?;
    Ok(())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn pg_database() -> Option<String> {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres",
        tokio_postgres::NoTls,
    )
    .await
    .ok()?;
    tokio::spawn(conn);
    let name = format!("ls_vector_bench_{}", std::process::id());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .ok()?;
    Some(name)
}

async fn drop_pg_database(name: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres",
        tokio_postgres::NoTls,
    )
    .await
    {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if std::env::var_os("HF_HUB_CACHE").is_none() {
        std::env::set_var(
            "HF_HUB_CACHE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/models/hub"),
        );
    }
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let sizes: Vec<usize> = std::env::var("VECTOR_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let max = sizes.iter().copied().max().unwrap_or(10_000);
    let n_queries = env_usize("VECTOR_BENCH_QUERIES", 200);
    let n_ingest = env_usize("VECTOR_BENCH_INGEST", 2000);
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_database().await;
    let chroma = std::env::var("LLAMA_STACK_TEST_CHROMA_URL").ok();

    // A stack with every provider, for embeddings and the library ingest runs.
    let d = dir.path().display();
    let mut vector_io = format!(
        r#"  - {{provider_id: sqlite-vec, provider_type: inline::sqlite-vec, config: {{db_path: "{d}/vec.db", persistence: {{backend: kv_default, namespace: sv}}}}}}
  - {{provider_id: faiss, provider_type: inline::faiss, config: {{persistence: {{backend: kv_default, namespace: fa}}}}}}
"#
    );
    if let Some(db) = &pg {
        vector_io.push_str(&format!(
            "  - {{provider_id: pgvector, provider_type: remote::pgvector, config: {{host: 127.0.0.1, db: {db}, user: postgres}}}}\n"
        ));
    }
    if let Some(url) = &chroma {
        vector_io.push_str(&format!(
            "  - {{provider_id: chromadb, provider_type: remote::chromadb, config: {{url: \"{url}\", persistence: {{backend: kv_default, namespace: ch}}}}}}\n"
        ));
    }
    let yaml = format!(
        r#"version: 2
distro_name: vector-bench
providers:
  inference:
  - {{provider_id: sentence-transformers, provider_type: inline::sentence-transformers, config: {{}}}}
  vector_io:
{vector_io}storage:
  backends:
    kv_default: {{type: kv_sqlite, db_path: "{d}/kv.db"}}
    sql_default: {{type: sql_sqlite, db_path: "{d}/sql.db"}}
  stores:
    metadata: {{backend: kv_default, namespace: registry}}
registered_resources:
  models:
  - {{model_id: sentence-transformers/all-MiniLM-L6-v2, provider_id: sentence-transformers, model_type: embedding, metadata: {{embedding_dimension: 384}}}}
vector_stores:
  default_embedding_model: {{provider_id: sentence-transformers, model_id: sentence-transformers/all-MiniLM-L6-v2}}
"#
    );
    let stack = Stack::builder().config_yaml(yaml).build().await?;

    let mut providers = vec!["sqlite-vec", "faiss"];
    if pg.is_some() {
        providers.push("pgvector");
    }
    if chroma.is_some() {
        providers.push("chromadb");
    }
    embed(&stack, &["warm up".to_string()]).await?;
    if n_ingest > 0 {
        for p in &providers {
            bench_ingest(&stack, p, n_ingest).await?;
        }
    }

    let corpus = corpus_embeddings(&stack, max).await?;
    let query_texts: Vec<String> = (0..n_queries).map(query).collect();
    let queries = embed(&stack, &query_texts).await?;
    let query_bytes: Vec<u8> = queries
        .iter()
        .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    std::fs::write(
        target_dir().join(format!("queries-{n_queries}.f32")),
        query_bytes,
    )
    .ok();
    let mut truths = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let truth: Vec<Vec<usize>> = queries
            .iter()
            .map(|q| exact_top_k(&corpus[..n], q, K))
            .collect();
        println!(
            "exact_search_{n} {:.2} ms/query (brute force in Rust, for recall)",
            t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64
        );
        truths.push(truth);
    }

    // Each index directly (the part that grows with the store).
    let mut indexes: Vec<(&str, Arc<dyn VectorIndex>)> = Vec::new();
    indexes.push((
        "sqlite_vec",
        Arc::new(
            llama_stack_providers::vector_io::sqlite_vec::SqliteVecIndex::open(
                dir.path().join("bench-sqlite-vec.db"),
            )
            .await?,
        ),
    ));
    let kv = Arc::new(
        llama_stack_storage::kv::SqliteKvStore::open(dir.path().join("bench-faiss-kv.db")).await?,
    );
    indexes.push((
        "faiss_hnsw",
        Arc::new(
            llama_stack_providers::vector_io::faiss::HnswIndex::open(kv, None, Default::default())
                .await?,
        ),
    ));
    if let Some(db) = &pg {
        use llama_stack_providers::vector_io::pgvector::*;
        indexes.push((
            "pgvector_hnsw",
            Arc::new(
                PgVectorIndex::open(PgVectorOptions {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    db: db.clone(),
                    user: "postgres".into(),
                    password: None,
                    distance_metric: DistanceMetric::Cosine,
                    vector_index: PgVectorIndexConfig::default(),
                    pool_size: 4,
                })
                .await?,
            ),
        ));
    }
    if let Some(url) = &chroma {
        use llama_stack_providers::vector_io::chroma::*;
        let index = ChromaIndex::open(ChromaOptions {
            url: url.clone(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            api_key: None,
            timeout: std::time::Duration::from_secs(120),
        })
        .await?;
        index.drop_store("bench").await?;
        indexes.push(("chromadb", Arc::new(index)));
    }
    let only: Option<Vec<String>> = std::env::var("VECTOR_BENCH_INDEXES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    for (name, index) in &indexes {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        let mut loaded = 0;
        for (&n, truth) in sizes.iter().zip(&truths) {
            bench_index(
                name,
                index.as_ref(),
                &corpus,
                &mut loaded,
                n,
                &queries,
                truth,
            )
            .await?;
        }
        index.drop_store("bench").await?;
    }
    drop(indexes);
    drop(stack);
    if let Some(db) = &pg {
        drop_pg_database(db).await;
    }
    Ok(())
}
