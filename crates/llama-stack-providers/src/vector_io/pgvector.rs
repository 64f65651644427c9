//! [`PgVectorIndex`]: the chunks of many vector stores in PostgreSQL with the pgvector
//! extension (`remote::pgvector`).
//!
//! Schema: `llama_stack_vector_stores(id BIGSERIAL PRIMARY KEY, store_id TEXT UNIQUE,
//! dimension INTEGER)` names the stores. Store ids are arbitrary strings and never reach
//! SQL text: a store's table is named after its integer `id` (never reused):
//! `llama_stack_vs_<id>(id BIGSERIAL PRIMARY KEY, chunk_id TEXT UNIQUE, embedding
//! vector(<dimension>), metadata JSONB, chunk TEXT, content TEXT, tokens tsvector)`, where
//! `chunk` is the rest of the chunk as JSON, `content` its text and `tokens` a generated
//! `to_tsvector('english', content)` column. Indexes: HNSW (or IVFFlat) on `embedding`
//! with the operator class of the configured distance, GIN on `tokens`.
//!
//! Searches push the attribute filter into SQL (the same semantics as
//! [`AttributeFilter::matches`]: typed comparisons on JSONB values, strings in byte order),
//! so a filtered search returns up to `k` matches. With pgvector ≥ 0.8 HNSW scans are
//! iterative (`hnsw.iterative_scan = strict_order`); when an index scan still yields fewer
//! than `k` rows for a filtered search, the search is repeated as an exact scan.
//!
//! Scores (higher is better): cosine `1 − d`, inner product `−(d)` (pgvector's `<#>` is the
//! negated inner product), L2 and L1 `1 / (1 + d)`. Keyword scores are `ts_rank_cd`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk, Comparison};
use llama_stack_core::storage::KvStore;
use llama_stack_core::{Error, Result};
use pgvector::Vector;
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::index::{
    check_embedding, chunk_embedding, in_asked_order, is_last_of_its_id,
    without_embedding_and_metadata, Scored, VectorIndex,
};

/// The largest dimension pgvector's `vector` type stores.
const MAX_DIMENSION: usize = 16_000;
/// The largest dimension pgvector indexes (HNSW and IVFFlat); larger stores are scanned.
const MAX_INDEXED_DIMENSION: usize = 2_000;
/// Chunks written per INSERT statement.
const UPSERT_BATCH: usize = 1_000;
/// Words of a keyword query beyond this many are ignored.
const MAX_QUERY_TERMS: usize = 64;
/// The table naming the stores.
const STORES_TABLE: &str = "llama_stack_vector_stores";

/// How vectors are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DistanceMetric {
    /// Cosine distance (`<=>`), score `1 − d`.
    #[default]
    Cosine,
    /// Euclidean distance (`<->`), score `1 / (1 + d)`.
    L2,
    /// Taxicab distance (`<+>`), score `1 / (1 + d)` (HNSW only).
    L1,
    /// Inner product (`<#>`, negated), score the inner product.
    InnerProduct,
}

impl DistanceMetric {
    fn operator(self) -> &'static str {
        match self {
            DistanceMetric::Cosine => "<=>",
            DistanceMetric::L2 => "<->",
            DistanceMetric::L1 => "<+>",
            DistanceMetric::InnerProduct => "<#>",
        }
    }

    fn opclass(self) -> &'static str {
        match self {
            DistanceMetric::Cosine => "vector_cosine_ops",
            DistanceMetric::L2 => "vector_l2_ops",
            DistanceMetric::L1 => "vector_l1_ops",
            DistanceMetric::InnerProduct => "vector_ip_ops",
        }
    }

    fn score(self, d: f64) -> f64 {
        if !d.is_finite() {
            return 0.0;
        }
        match self {
            DistanceMetric::Cosine => 1.0 - d,
            DistanceMetric::InnerProduct => -d,
            DistanceMetric::L2 | DistanceMetric::L1 => 1.0 / (1.0 + d),
        }
    }
}

/// The approximate index on the embedding column.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum PgVectorIndexConfig {
    /// HNSW graph.
    #[serde(rename = "HNSW", alias = "hnsw")]
    Hnsw {
        /// Neighbours per node.
        #[serde(default = "default_m")]
        m: u32,
        /// Candidate list size while building.
        #[serde(default = "default_ef_construction")]
        ef_construction: u32,
        /// Candidate list size while searching (raised to `k` when smaller).
        #[serde(default = "default_ef_search")]
        ef_search: u32,
    },
    /// Inverted lists.
    #[serde(rename = "IVFFlat", alias = "ivfflat")]
    IvfFlat {
        /// Number of lists.
        #[serde(default = "default_lists")]
        lists: u32,
        /// Lists probed per search.
        #[serde(default = "default_probes")]
        probes: u32,
    },
}

fn default_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    64
}
fn default_ef_search() -> u32 {
    40
}
fn default_lists() -> u32 {
    100
}
fn default_probes() -> u32 {
    10
}

impl Default for PgVectorIndexConfig {
    fn default() -> Self {
        PgVectorIndexConfig::Hnsw {
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

/// Where the database is and how chunks are indexed.
#[derive(Debug, Clone)]
pub struct PgVectorOptions {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub db: String,
    /// User name.
    pub user: String,
    /// Password (ignored by trust authentication).
    pub password: Option<String>,
    /// Distance between vectors.
    pub distance_metric: DistanceMetric,
    /// Approximate index.
    pub vector_index: PgVectorIndexConfig,
    /// Largest number of open connections.
    pub pool_size: usize,
}

/// Vector stores in PostgreSQL with pgvector.
pub struct PgVectorIndex {
    pool: Pool,
    options: PgVectorOptions,
    /// pgvector ≥ 0.8: HNSW scans can be iterative.
    iterative_scans: bool,
    /// `host:port/db`, for messages.
    addr: String,
}

impl std::fmt::Debug for PgVectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVectorIndex")
            .field("addr", &self.addr)
            .finish()
    }
}

/// One id-named store.
#[derive(Debug, Clone, Copy)]
struct Store {
    id: i64,
    dimension: usize,
}

impl Store {
    fn table(&self) -> String {
        format!("llama_stack_vs_{}", self.id)
    }
}

/// A query parameter of a pushed-down filter.
#[derive(Debug)]
enum Param {
    Text(String),
    Float(f64),
    Bool(bool),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Float(x) => x,
            Param::Bool(b) => b,
        }
    }
}

impl PgVectorIndex {
    /// Connects, checks that pgvector is installed (creating the extension when the user
    /// may) and creates the stores table.
    pub async fn open(options: PgVectorOptions) -> Result<Self> {
        let addr = format!("{}:{}/{}", options.host, options.port, options.db);
        let mut pg = tokio_postgres::Config::new();
        pg.host(&options.host)
            .port(options.port)
            .dbname(&options.db)
            .user(&options.user)
            .application_name("llama-stack")
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = &options.password {
            pg.password(password);
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("pgvector at {addr}: {e}")))?;
        let mut index = PgVectorIndex {
            pool,
            options,
            iterative_scans: false,
            addr,
        };
        let client = index.client("connecting").await?;
        let installed: Option<String> = client
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )
            .await
            .map_err(|e| index.err(e, "checking for the pgvector extension"))?
            .map(|row| row.get(0));
        let version = match installed {
            Some(v) => v,
            None => {
                client
                    .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                    .await
                    .map_err(|e| {
                        Error::config(format!(
                            "pgvector at {}: the `vector` extension is not enabled in database '{}' and \
                             cannot be created by user '{}' ({}); run `CREATE EXTENSION vector` as a superuser",
                            index.addr,
                            index.options.db,
                            index.options.user,
                            e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
                        ))
                    })?;
                client
                    .query_one(
                        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                        &[],
                    )
                    .await
                    .map_err(|e| index.err(e, "checking for the pgvector extension"))?
                    .get(0)
            }
        };
        index.iterative_scans = version_at_least(&version, (0, 8));
        if index.options.distance_metric == DistanceMetric::L1
            && !version_at_least(&version, (0, 7))
        {
            return Err(Error::config(format!(
                "pgvector at {}: distance_metric L1 needs pgvector 0.7 or later (installed: {version})",
                index.addr
            )));
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {STORES_TABLE} (\
                   id BIGSERIAL PRIMARY KEY, \
                   store_id TEXT NOT NULL UNIQUE, \
                   dimension INTEGER NOT NULL)"
            ))
            .await
            .map_err(|e| index.err(e, "creating the vector stores table"))?;
        tracing::debug!(addr = %index.addr, pgvector = %version, "pgvector index open");
        Ok(index)
    }

    /// A pooled connection.
    async fn client(&self, what: &str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            Error::unavailable(format!("pgvector at {}: {what}: {e}", self.addr))
                .with_retryable(true)
        })
    }

    /// Maps a database error: server errors are internal, lost connections retryable.
    fn err(&self, e: tokio_postgres::Error, what: &str) -> Error {
        match e.as_db_error() {
            Some(db) => Error::internal(format!(
                "pgvector at {}: {what}: {} (SQLSTATE {})",
                self.addr,
                db.message(),
                db.code().code()
            )),
            None => Error::unavailable(format!("pgvector at {}: {what}: {e}", self.addr))
                .with_retryable(true),
        }
    }

    async fn find_store(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        store_id: &str,
    ) -> Result<Option<Store>> {
        let row = client
            .query_opt(
                &format!("SELECT id, dimension FROM {STORES_TABLE} WHERE store_id = $1"),
                &[&store_id],
            )
            .await
            .map_err(|e| self.err(e, &format!("looking up vector store '{store_id}'")))?;
        row.map(|row| {
            let id: i64 = row.get(0);
            let dimension: i32 = row.get(1);
            let dimension = usize::try_from(dimension).map_err(|_| {
                Error::internal(format!(
                    "pgvector at {}: vector store '{store_id}' has an invalid dimension {dimension}",
                    self.addr
                ))
            })?;
            Ok(Store { id, dimension })
        })
        .transpose()
    }

    async fn require_store(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        store_id: &str,
    ) -> Result<Store> {
        self.find_store(client, store_id)
            .await?
            .ok_or_else(|| Error::not_found("Vector store", store_id))
    }

    /// Whether the embedding column of a store of `dimension` has an approximate index.
    fn indexed(&self, dimension: usize) -> bool {
        dimension <= MAX_INDEXED_DIMENSION
            && !(self.options.distance_metric == DistanceMetric::L1
                && matches!(
                    self.options.vector_index,
                    PgVectorIndexConfig::IvfFlat { .. }
                ))
    }

    fn index_sql(&self, store: &Store) -> Option<String> {
        if !self.indexed(store.dimension) {
            return None;
        }
        let table = store.table();
        let opclass = self.options.distance_metric.opclass();
        Some(match &self.options.vector_index {
            PgVectorIndexConfig::Hnsw {
                m, ef_construction, ..
            } => format!(
                "CREATE INDEX IF NOT EXISTS {table}_embedding ON {table} USING hnsw (embedding {opclass}) \
                 WITH (m = {m}, ef_construction = {ef_construction})"
            ),
            PgVectorIndexConfig::IvfFlat { lists, .. } => format!(
                "CREATE INDEX IF NOT EXISTS {table}_embedding ON {table} USING ivfflat (embedding {opclass}) \
                 WITH (lists = {lists})"
            ),
        })
    }

    /// Search settings for this transaction (`SET LOCAL`).
    fn search_settings(&self, k: usize) -> String {
        match &self.options.vector_index {
            PgVectorIndexConfig::Hnsw { ef_search, .. } => {
                let ef = (*ef_search as usize).max(k).min(1000);
                let mut s = format!("SET LOCAL hnsw.ef_search = {ef};");
                if self.iterative_scans {
                    s.push_str("SET LOCAL hnsw.iterative_scan = strict_order;");
                }
                s
            }
            PgVectorIndexConfig::IvfFlat { probes, .. } => {
                let mut s = format!("SET LOCAL ivfflat.probes = {};", (*probes).max(1));
                if self.iterative_scans {
                    s.push_str("SET LOCAL ivfflat.iterative_scan = relaxed_order;");
                }
                s
            }
        }
    }
}

/// Whether a pgvector version string (`0.8.0`) is at least `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= (major, minor)
}

// ---------------------------------------------------------------------------------------
// Filters pushed into SQL

/// Appends `param`, returning its placeholder.
fn bind(params: &mut Vec<Param>, param: Param) -> String {
    params.push(param);
    format!("${}", params.len())
}

/// A typed comparison of `metadata->key` with `value` (NULL when the stored value is of
/// another JSON type); `None` when `value` is not a number, string or boolean (such a
/// comparison never holds). `CASE` keeps casts away from values of other types.
fn typed_comparison(key: &str, op: &str, value: &Value, params: &mut Vec<Param>) -> Option<String> {
    let (ty, rhs) = match value {
        Value::Number(n) => ("number", Param::Float(n.as_f64()?)),
        Value::String(s) => ("string", Param::Text(s.clone())),
        Value::Bool(b) => ("boolean", Param::Bool(*b)),
        _ => return None,
    };
    let k = bind(params, Param::Text(key.to_string()));
    let v = bind(params, rhs);
    let lhs = format!(
        "CASE WHEN jsonb_typeof(metadata->{k}::text) = '{ty}' THEN metadata->>{k}::text END"
    );
    Some(match ty {
        "number" => format!("COALESCE(({lhs})::float8 {op} {v}::float8, FALSE)"),
        "boolean" => format!("COALESCE(({lhs})::boolean {op} {v}::boolean, FALSE)"),
        _ => format!("COALESCE(({lhs}) COLLATE \"C\" {op} {v}::text COLLATE \"C\", FALSE)"),
    })
}

fn compare(c: &Comparison, op: &str, params: &mut Vec<Param>) -> String {
    typed_comparison(&c.key, op, &c.value, params).unwrap_or_else(|| "FALSE".into())
}

/// Whether `metadata->key` equals one of the values of the array `c.value`.
fn any_of(c: &Comparison, params: &mut Vec<Param>) -> String {
    let items: Vec<String> = c
        .value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| typed_comparison(&c.key, "=", v, params))
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        "FALSE".to_string()
    } else {
        format!("({})", items.join(" OR "))
    }
}

/// The SQL condition equivalent to `filter.matches(metadata)`.
fn filter_sql(filter: &AttributeFilter, params: &mut Vec<Param>) -> String {
    use AttributeFilter as F;
    match filter {
        F::Eq(c) => compare(c, "=", params),
        F::Gt(c) => compare(c, ">", params),
        F::Gte(c) => compare(c, ">=", params),
        F::Lt(c) => compare(c, "<", params),
        F::Lte(c) => compare(c, "<=", params),
        F::Ne(c) => {
            let k = bind(params, Param::Text(c.key.clone()));
            let eq = compare(c, "=", params);
            format!("(jsonb_exists(metadata, {k}::text) AND NOT {eq})")
        }
        F::In(c) => any_of(c, params),
        F::Nin(c) => {
            let k = bind(params, Param::Text(c.key.clone()));
            let any = any_of(c, params);
            format!("(jsonb_exists(metadata, {k}::text) AND NOT {any})")
        }
        F::And(c) if c.filters.is_empty() => "TRUE".into(),
        F::Or(c) if c.filters.is_empty() => "FALSE".into(),
        F::And(c) | F::Or(c) => {
            let join = if matches!(filter, F::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let parts: Vec<String> = c.filters.iter().map(|f| filter_sql(f, params)).collect();
            format!("({})", parts.join(join))
        }
    }
}

/// Letters and digits of ASCII, letters of other scripts (not, e.g., superscript digits).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphabetic())
}

/// A `to_tsquery` expression matching any word of `query` (words are runs of letters and
/// digits, so no character of the query is read as tsquery syntax); `None` without words.
fn tsquery_expression(query: &str) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let terms: Vec<String> = query
        .split(|c: char| !is_word_char(c))
        .filter(|word| !word.is_empty() && seen.insert(word.to_lowercase()))
        .take(MAX_QUERY_TERMS)
        .map(str::to_string)
        .collect();
    (!terms.is_empty()).then(|| terms.join(" | "))
}

// ---------------------------------------------------------------------------------------
// Rows

/// A chunk as written: embedding, metadata JSON, the rest as JSON, and its search text.
struct Row {
    chunk_id: String,
    embedding: Vector,
    metadata: String,
    rest: String,
    content: String,
}

fn encode(store_id: &str, store: &Store, chunk: &Chunk) -> Result<Row> {
    let embedding = chunk_embedding(store_id, chunk, store.dimension)?;
    let rest = without_embedding_and_metadata(chunk);
    let failed = |e: serde_json::Error| {
        Error::internal(format!(
            "Vector store '{store_id}': cannot encode chunk '{}': {e}",
            chunk.chunk_id
        ))
    };
    let metadata = serde_json::to_string(&chunk.metadata).map_err(failed)?;
    if metadata.contains("\\u0000") {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': the metadata of chunk '{}' contains a NUL character, which PostgreSQL cannot store",
            chunk.chunk_id
        ))
        .with_context("resource_id", store_id));
    }
    if chunk.chunk_id.contains('\0') {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': a chunk id contains a NUL character, which PostgreSQL cannot store"
        ))
        .with_context("resource_id", store_id));
    }
    Ok(Row {
        chunk_id: chunk.chunk_id.clone(),
        embedding: Vector::from(embedding.to_vec()),
        metadata,
        // JSON escapes NUL; the search text drops it.
        rest: serde_json::to_string(&rest).map_err(failed)?,
        content: chunk.content.text().replace('\0', " "),
    })
}

/// The columns every read selects, in [`decode`]'s order.
const CHUNK_COLUMNS: &str = "embedding, metadata::text, chunk";

fn decode(addr: &str, store_id: &str, row: &tokio_postgres::Row) -> Result<Chunk> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::internal(format!(
            "pgvector at {addr}: vector store '{store_id}' holds a corrupt {what}: {e}"
        ))
    };
    let embedding: Vector = row.try_get(0).map_err(|e| corrupt("embedding", &e))?;
    let metadata: String = row.try_get(1).map_err(|e| corrupt("metadata", &e))?;
    let rest: String = row.try_get(2).map_err(|e| corrupt("chunk", &e))?;
    let mut chunk: Chunk = serde_json::from_str(&rest).map_err(|e| corrupt("chunk", &e))?;
    chunk.metadata = serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", &e))?;
    chunk.embedding = Some(embedding.to_vec());
    Ok(chunk)
}

fn params_ref(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(Param::as_sql).collect()
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl VectorIndex for PgVectorIndex {
    async fn create_store(&self, store_id: &str, dimension: usize) -> Result<()> {
        if !(1..=MAX_DIMENSION).contains(&dimension) {
            return Err(Error::invalid_request(format!(
                "Vector store '{store_id}': embedding dimension {dimension} is out of range (1 to {MAX_DIMENSION})"
            )));
        }
        let what = format!("creating vector store '{store_id}'");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        // Concurrent creators (other processes too) take turns.
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext('{STORES_TABLE}'))"
        ))
        .await
        .map_err(|e| self.err(e, &what))?;
        if let Some(existing) = self.find_store(&tx, store_id).await? {
            return if existing.dimension == dimension {
                Ok(())
            } else {
                Err(Error::conflict(format!(
                    "Vector store '{store_id}' exists with embedding dimension {}, not {dimension}",
                    existing.dimension
                ))
                .with_context("resource_id", store_id))
            };
        }
        let dim = i32::try_from(dimension).unwrap_or(i32::MAX);
        let id: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO {STORES_TABLE} (store_id, dimension) VALUES ($1, $2) RETURNING id"
                ),
                &[&store_id, &dim],
            )
            .await
            .map_err(|e| self.err(e, &what))?
            .get(0);
        let store = Store { id, dimension };
        let table = store.table();
        let mut ddl = format!(
            "CREATE TABLE {table} (\
               id BIGSERIAL PRIMARY KEY, \
               chunk_id TEXT NOT NULL UNIQUE, \
               embedding vector({dimension}) NOT NULL, \
               metadata JSONB NOT NULL, \
               chunk TEXT NOT NULL, \
               content TEXT NOT NULL, \
               tokens tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED);\
             CREATE INDEX {table}_tokens ON {table} USING gin (tokens);"
        );
        if let Some(index) = self.index_sql(&store) {
            ddl.push_str(&index);
        }
        tx.batch_execute(&ddl)
            .await
            .map_err(|e| self.err(e, &what))?;
        tx.commit().await.map_err(|e| self.err(e, &what))
    }

    async fn drop_store(&self, store_id: &str) -> Result<()> {
        let what = format!("dropping vector store '{store_id}'");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let Some(store) = self.find_store(&tx, store_id).await? else {
            return Ok(());
        };
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", store.table()))
            .await
            .map_err(|e| self.err(e, &what))?;
        tx.execute(
            &format!("DELETE FROM {STORES_TABLE} WHERE id = $1"),
            &[&store.id],
        )
        .await
        .map_err(|e| self.err(e, &what))?;
        tx.commit().await.map_err(|e| self.err(e, &what))
    }

    async fn upsert(&self, store_id: &str, chunks: &[Chunk]) -> Result<()> {
        let what = format!("inserting chunks into vector store '{store_id}'");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let store = self.require_store(&tx, store_id).await?;
        // Everything is checked and encoded before the first write; of repeated ids the
        // last wins (one statement cannot update a row twice).
        let mut rows = Vec::with_capacity(chunks.len());
        for (chunk, last) in chunks.iter().zip(is_last_of_its_id(chunks)) {
            let row = encode(store_id, &store, chunk)?;
            if last {
                rows.push(row);
            }
        }
        let stmt = tx
            .prepare(&format!(
                "INSERT INTO {} (chunk_id, embedding, metadata, chunk, content) \
                 SELECT c, e, m::jsonb, r, t FROM unnest($1::text[], $2::vector[], $3::text[], $4::text[], $5::text[]) AS u(c, e, m, r, t) \
                 ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding, \
                 metadata = EXCLUDED.metadata, chunk = EXCLUDED.chunk, content = EXCLUDED.content",
                store.table()
            ))
            .await
            .map_err(|e| self.err(e, &what))?;
        for batch in rows.chunks(UPSERT_BATCH) {
            let ids: Vec<&str> = batch.iter().map(|r| r.chunk_id.as_str()).collect();
            let embeddings: Vec<&Vector> = batch.iter().map(|r| &r.embedding).collect();
            let metadata: Vec<&str> = batch.iter().map(|r| r.metadata.as_str()).collect();
            let rest: Vec<&str> = batch.iter().map(|r| r.rest.as_str()).collect();
            let content: Vec<&str> = batch.iter().map(|r| r.content.as_str()).collect();
            tx.execute(&stmt, &[&ids, &embeddings, &metadata, &rest, &content])
                .await
                .map_err(|e| self.err(e, &what))?;
        }
        tx.commit().await.map_err(|e| self.err(e, &what))
    }

    async fn delete(&self, store_id: &str, chunk_ids: &[String]) -> Result<()> {
        let what = format!("deleting chunks of vector store '{store_id}'");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let store = self.require_store(&tx, store_id).await?;
        tx.execute(
            &format!("DELETE FROM {} WHERE chunk_id = ANY($1)", store.table()),
            &[&chunk_ids],
        )
        .await
        .map_err(|e| self.err(e, &what))?;
        tx.commit().await.map_err(|e| self.err(e, &what))
    }

    async fn get(&self, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>> {
        let what = format!("reading chunks of vector store '{store_id}'");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let store = self.require_store(&tx, store_id).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {CHUNK_COLUMNS}, chunk_id FROM {} WHERE chunk_id = ANY($1)",
                    store.table()
                ),
                &[&chunk_ids],
            )
            .await
            .map_err(|e| self.err(e, &what))?;
        tx.commit().await.map_err(|e| self.err(e, &what))?;
        let mut found: HashMap<String, Chunk> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(3);
            let chunk = decode(&self.addr, store_id, row)?;
            found.insert(id, chunk);
        }
        Ok(in_asked_order(chunk_ids, &found))
    }

    async fn query_vector(
        &self,
        store_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let what = format!("searching vector store '{store_id}' by vector");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let store = self.require_store(&tx, store_id).await?;
        check_embedding(store_id, "the query embedding", embedding, store.dimension)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut params = vec![Param::Text(String::new())]; // $1: the vector, bound apart
        params.push(Param::Float(0.0)); // $2: the limit, bound apart
        let condition = match filter {
            Some(f) => filter_sql(f, &mut params),
            None => "TRUE".into(),
        };
        let sql = format!(
            "SELECT {CHUNK_COLUMNS}, (embedding {op} $1) AS distance FROM {table} \
             WHERE {condition} ORDER BY embedding {op} $1 LIMIT $2",
            op = self.options.distance_metric.operator(),
            table = store.table(),
        );
        let query = Vector::from(embedding.to_vec());
        let limit = to_i64(k);
        let run = |exact: bool| {
            let tx = &tx;
            let sql = &sql;
            let query = &query;
            let params = &params;
            let what = &what;
            async move {
                let settings = if exact {
                    "SET LOCAL enable_indexscan = off;".to_string()
                } else {
                    self.search_settings(k)
                };
                tx.batch_execute(&settings)
                    .await
                    .map_err(|e| self.err(e, what))?;
                let mut bound: Vec<&(dyn ToSql + Sync)> = params_ref(params);
                bound[0] = query;
                bound[1] = &limit;
                tx.query(sql.as_str(), &bound)
                    .await
                    .map_err(|e| self.err(e, what))
            }
        };
        let mut rows = run(false).await?;
        if filter.is_some() && rows.len() < k && self.indexed(store.dimension) {
            // The index ran out of candidates before `k` matched: scan exactly.
            rows = run(true).await?;
        }
        tx.commit().await.map_err(|e| self.err(e, &what))?;
        let mut out = rows
            .iter()
            .map(|row| {
                let chunk = decode(&self.addr, store_id, row)?;
                let distance: f64 = row.try_get(3).unwrap_or(f64::NAN);
                Ok((chunk, self.options.distance_metric.score(distance)))
            })
            .collect::<Result<Vec<Scored>>>()?;
        // Relaxed-order scans (IVFFlat) may hand rows back slightly out of order.
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }

    async fn query_keyword(
        &self,
        store_id: &str,
        query: &str,
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let what = format!("searching vector store '{store_id}' by keywords");
        let mut client = self.client(&what).await?;
        let tx = client.transaction().await.map_err(|e| self.err(e, &what))?;
        let store = self.require_store(&tx, store_id).await?;
        let Some(expression) = tsquery_expression(query) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut params = vec![Param::Text(expression), Param::Float(0.0)];
        let condition = match filter {
            Some(f) => filter_sql(f, &mut params),
            None => "TRUE".into(),
        };
        let sql = format!(
            "SELECT {CHUNK_COLUMNS}, ts_rank_cd(tokens, q)::float8 AS score \
             FROM {table}, to_tsquery('english', $1) AS q \
             WHERE tokens @@ q AND {condition} ORDER BY score DESC, id LIMIT $2",
            table = store.table(),
        );
        let limit = to_i64(k);
        let mut bound = params_ref(&params);
        bound[1] = &limit;
        let rows = tx
            .query(sql.as_str(), &bound)
            .await
            .map_err(|e| self.err(e, &what))?;
        tx.commit().await.map_err(|e| self.err(e, &what))?;
        rows.iter()
            .map(|row| {
                let chunk = decode(&self.addr, store_id, row)?;
                let score: f64 = row.try_get(3).unwrap_or(0.0);
                Ok((chunk, score))
            })
            .collect()
    }

    async fn health(&self) -> Health {
        let checked = async {
            let client = self.client("checking health").await?;
            client
                .query_one(&format!("SELECT count(*) FROM {STORES_TABLE}"), &[])
                .await
                .map_err(|e| self.err(e, "checking health"))
        }
        .await;
        match checked {
            Ok(_) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Records in the same database

/// The table of [`PgRecords`].
const RECORDS_TABLE: &str = "llama_stack_vector_records";

/// A [`KvStore`] in a table of the pgvector database, for vector store, file and batch
/// records when the provider has no `persistence` backend (so every replica sees them).
pub struct PgRecords {
    index: std::sync::Arc<PgVectorIndex>,
}

impl std::fmt::Debug for PgRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRecords")
            .field("addr", &self.index.addr)
            .finish()
    }
}

/// Live rows only.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

fn ttl_seconds(ttl: Option<Duration>) -> Option<f64> {
    ttl.map(|t| t.as_secs_f64())
}

impl PgRecords {
    /// Creates the records table if needed.
    pub async fn open(index: std::sync::Arc<PgVectorIndex>) -> Result<Self> {
        let client = index.client("creating the records table").await?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {RECORDS_TABLE} (\
                   key TEXT COLLATE \"C\" PRIMARY KEY, \
                   value TEXT NOT NULL, \
                   expires_at TIMESTAMPTZ)"
            ))
            .await
            .map_err(|e| index.err(e, "creating the records table"))?;
        drop(client);
        Ok(PgRecords { index })
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<(String, String)>> {
        let client = self.index.client("reading records").await?;
        let rows = client
            .query(sql, params)
            .await
            .map_err(|e| self.index.err(e, "reading records"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[async_trait]
impl KvStore for PgRecords {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let client = self.index.client("reading a record").await?;
        let row = client
            .query_opt(
                &format!("SELECT value FROM {RECORDS_TABLE} WHERE key = $1 AND {LIVE}"),
                &[&key],
            )
            .await
            .map_err(|e| self.index.err(e, "reading a record"))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let client = self.index.client("writing a record").await?;
        client
            .execute(
                &format!(
                    "INSERT INTO {RECORDS_TABLE} (key, value, expires_at) \
                     VALUES ($1, $2, now() + make_interval(secs => $3)) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
                ),
                &[&key, &value, &ttl_seconds(ttl)],
            )
            .await
            .map_err(|e| self.index.err(e, "writing a record"))?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let client = self.index.client("writing a record").await?;
        let row = client
            .query_opt(
                &format!(
                    "INSERT INTO {RECORDS_TABLE} AS r (key, value, expires_at) \
                     VALUES ($1, $2, now() + make_interval(secs => $3)) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at \
                     WHERE r.expires_at IS NOT NULL AND r.expires_at <= now() RETURNING 1"
                ),
                &[&key, &value, &ttl_seconds(ttl)],
            )
            .await
            .map_err(|e| self.index.err(e, "writing a record"))?;
        Ok(row.is_some())
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let client = self.index.client("incrementing a record").await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO {RECORDS_TABLE} AS r (key, value, expires_at) \
                     VALUES ($1, $2::bigint::text, now() + make_interval(secs => $3)) \
                     ON CONFLICT (key) DO UPDATE SET \
                       value = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() \
                               THEN EXCLUDED.value ELSE (r.value::bigint + $2::bigint)::text END, \
                       expires_at = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() \
                               THEN EXCLUDED.expires_at ELSE r.expires_at END \
                     RETURNING value"
                ),
                &[&key, &delta, &ttl_seconds(ttl)],
            )
            .await
            .map_err(|e| self.index.err(e, "incrementing a record"))?;
        let value: String = row.get(0);
        value.parse().map_err(|_| {
            Error::internal(format!(
                "pgvector at {}: record '{key}' does not hold an integer",
                self.index.addr
            ))
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let client = self.index.client("deleting a record").await?;
        client
            .execute(
                &format!("DELETE FROM {RECORDS_TABLE} WHERE key = $1"),
                &[&key],
            )
            .await
            .map_err(|e| self.index.err(e, "deleting a record"))?;
        Ok(())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.rows(
            &format!(
                "SELECT key, value FROM {RECORDS_TABLE} \
                 WHERE starts_with(key, $1) AND {LIVE} ORDER BY key"
            ),
            &[&prefix],
        )
        .await
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        self.rows(
            &format!(
                "SELECT key, value FROM {RECORDS_TABLE} \
                 WHERE key >= $1 AND key < $2 AND {LIVE} ORDER BY key"
            ),
            &[&start, &end],
        )
        .await
    }

    fn backend(&self) -> &'static str {
        "pgvector"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::print_stderr)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    const ADMIN: &str = "host=127.0.0.1 port=5432 dbname=test user=postgres";

    /// A fresh database with pgvector, or `None` (skip; a failure under `CI=true`).
    async fn fresh_db(tag: &str) -> Option<String> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        let skip = |why: &str| {
            assert!(!ci, "{why} (CI must provide it)");
            eprintln!("skip: {why}");
        };
        let Ok((client, conn)) = tokio_postgres::connect(ADMIN, NoTls).await else {
            skip("PostgreSQL is not reachable on 127.0.0.1:5432");
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
            skip("the pgvector extension is not installed");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("ls_pgv_{tag}_{}_{nanos}", std::process::id());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        Some(name)
    }

    async fn drop_db(name: &str) {
        let (client, conn) = tokio_postgres::connect(ADMIN, NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    }

    fn options(db: &str) -> PgVectorOptions {
        PgVectorOptions {
            host: "127.0.0.1".into(),
            port: 5432,
            db: db.into(),
            user: "postgres".into(),
            password: None,
            distance_metric: DistanceMetric::Cosine,
            vector_index: PgVectorIndexConfig::default(),
            pool_size: 4,
        }
    }

    /// Metadata values of every JSON kind, so typed comparisons meet mismatched types.
    fn metadata_grid() -> Vec<Map<String, Value>> {
        let values = [
            json!(1),
            json!(2.5),
            json!(-3),
            json!(10),
            json!("a"),
            json!("B"),
            json!("ä"),
            json!("10"),
            json!(true),
            json!(false),
            json!(null),
            json!([1, 2]),
            json!({"x": 1}),
        ];
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            for (j, w) in values.iter().enumerate().step_by(3) {
                let mut m = Map::new();
                m.insert("v".into(), v.clone());
                if (i + j) % 2 == 0 {
                    m.insert("w".into(), w.clone());
                }
                m.insert("i".into(), json!(i));
                out.push(m);
            }
        }
        out.push(Map::new());
        out
    }

    fn filters() -> Vec<AttributeFilter> {
        let mut out = Vec::new();
        let operands = [
            json!(1),
            json!(2.5),
            json!(10),
            json!("a"),
            json!("B"),
            json!("ä"),
            json!("10"),
            json!(true),
            json!(false),
        ];
        for key in ["v", "w", "missing"] {
            for op in ["eq", "ne", "gt", "gte", "lt", "lte"] {
                for value in &operands {
                    out.push(
                        serde_json::from_value(json!({"type": op, "key": key, "value": value}))
                            .unwrap(),
                    );
                }
            }
            for op in ["in", "nin"] {
                for value in [
                    json!([1, "a", true]),
                    json!(["B", "10"]),
                    json!([2.5]),
                    json!([]),
                ] {
                    out.push(
                        serde_json::from_value(json!({"type": op, "key": key, "value": value}))
                            .unwrap(),
                    );
                }
            }
        }
        for compound in [
            json!({"type": "and", "filters": [
                {"type": "gte", "key": "v", "value": 1},
                {"type": "lt", "key": "v", "value": 10}]}),
            json!({"type": "or", "filters": [
                {"type": "eq", "key": "v", "value": "a"},
                {"type": "and", "filters": [
                    {"type": "ne", "key": "w", "value": 1},
                    {"type": "nin", "key": "i", "value": [0, 1, 2]}]}]}),
            json!({"type": "and", "filters": []}),
            json!({"type": "or", "filters": []}),
        ] {
            out.push(serde_json::from_value(compound).unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sql_filters_match_attribute_filter_semantics() {
        let Some(db) = fresh_db("filters").await else {
            return;
        };
        let index = PgVectorIndex::open(options(&db)).await.unwrap();
        index.create_store("s", 2).await.unwrap();
        let grid = metadata_grid();
        let chunks: Vec<Chunk> = grid
            .iter()
            .enumerate()
            .map(|(n, m)| {
                let mut c = Chunk::new(format!("c{n}"), format!("chunk number {n}"));
                c.metadata = m.clone();
                #[allow(clippy::cast_precision_loss)]
                let angle = n as f32 / 100.0;
                c.embedding = Some(vec![angle.cos(), angle.sin()]);
                c
            })
            .collect();
        index.upsert("s", &chunks).await.unwrap();
        let all = chunks.len();
        for filter in filters() {
            let expected: std::collections::BTreeSet<String> = chunks
                .iter()
                .filter(|c| filter.matches(&c.metadata))
                .map(|c| c.chunk_id.clone())
                .collect();
            let got: std::collections::BTreeSet<String> = index
                .query_vector("s", &[1.0, 0.0], all + 5, Some(&filter))
                .await
                .unwrap()
                .into_iter()
                .map(|(c, _)| c.chunk_id)
                .collect();
            assert_eq!(got, expected, "{}", serde_json::to_string(&filter).unwrap());
            let keyword: std::collections::BTreeSet<String> = index
                .query_keyword("s", "chunk", all + 5, Some(&filter))
                .await
                .unwrap()
                .into_iter()
                .map(|(c, _)| c.chunk_id)
                .collect();
            assert_eq!(
                keyword,
                expected,
                "keyword {}",
                serde_json::to_string(&filter).unwrap()
            );
        }
        // k smaller than the matches: the nearest ones, best first.
        let near = index.query_vector("s", &[1.0, 0.0], 3, None).await.unwrap();
        let near: Vec<&str> = near.iter().map(|(c, _)| c.chunk_id.as_str()).collect();
        assert_eq!(near, ["c0", "c1", "c2"]);
        drop(index);
        drop_db(&db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_replaces_and_survives_hostile_text() {
        let Some(db) = fresh_db("rows").await else {
            return;
        };
        let index = PgVectorIndex::open(options(&db)).await.unwrap();
        index
            .create_store("store with 'quotes'; DROP TABLE x", 3)
            .await
            .unwrap();
        let sid = "store with 'quotes'; DROP TABLE x";
        // Same dimension: idempotent; another: conflict.
        index.create_store(sid, 3).await.unwrap();
        let e = index.create_store(sid, 4).await.unwrap_err();
        assert_eq!(e.kind(), llama_stack_core::ErrorKind::Conflict);
        let mut a = Chunk::new("a", "text with a NUL \0 and 'quotes' & | ! :* (syntax)");
        a.embedding = Some(vec![1.0, 0.0, 0.0]);
        a.metadata.insert("k".into(), json!("v"));
        let mut b = Chunk::new("b", "second");
        b.embedding = Some(vec![0.0, 1.0, 0.0]);
        index.upsert(sid, &[a.clone(), b.clone()]).await.unwrap();
        let got = index
            .get(sid, &["b".into(), "zz".into(), "a".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].chunk_id, "b");
        assert_eq!(got[1].content.text(), a.content.text());
        assert_eq!(got[1].metadata["k"], "v");
        assert_eq!(got[1].embedding.as_deref(), Some(&[1.0f32, 0.0, 0.0][..]));
        // Replace keeps one row; repeated ids in one call: the last wins.
        let mut a2 = a.clone();
        a2.embedding = Some(vec![0.0, 0.0, 1.0]);
        let mut a3 = a.clone();
        a3.embedding = Some(vec![0.0, 0.6, 0.8]);
        index.upsert(sid, &[a2, a3]).await.unwrap();
        let got = index.get(sid, &["a".into()]).await.unwrap();
        assert_eq!(got[0].embedding.as_deref(), Some(&[0.0f32, 0.6, 0.8][..]));
        let top = index
            .query_vector(sid, &[0.0, 0.0, 1.0], 5, None)
            .await
            .unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0.chunk_id, "a");
        assert!((top[0].1 - 0.8).abs() < 1e-5, "{}", top[0].1);
        // Query syntax in keywords never errors.
        for q in ["'quotes' & | ! :* (syntax)", "!!!", "", "a:*", "NUL"] {
            index.query_keyword(sid, q, 5, None).await.unwrap();
        }
        let hits = index
            .query_keyword(sid, "quotes syntax", 5, None)
            .await
            .unwrap();
        assert_eq!(hits[0].0.chunk_id, "a");
        // Bad input: wrong dimension, non-finite values, NUL in metadata.
        let mut bad = Chunk::new("x", "x");
        bad.embedding = Some(vec![1.0, 2.0]);
        assert_eq!(
            index.upsert(sid, &[bad.clone()]).await.unwrap_err().kind(),
            llama_stack_core::ErrorKind::InvalidRequest
        );
        bad.embedding = Some(vec![1.0, f32::NAN, 0.0]);
        assert_eq!(
            index.upsert(sid, &[bad.clone()]).await.unwrap_err().kind(),
            llama_stack_core::ErrorKind::InvalidRequest
        );
        bad.embedding = Some(vec![1.0, 0.0, 0.0]);
        bad.metadata.insert("k".into(), json!("nul \0 here"));
        assert_eq!(
            index.upsert(sid, &[bad]).await.unwrap_err().kind(),
            llama_stack_core::ErrorKind::InvalidRequest
        );
        // Delete, drop, unknown store.
        index
            .delete(sid, &["a".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(index.get(sid, &["a".into()]).await.unwrap().len(), 0);
        index.drop_store(sid).await.unwrap();
        index.drop_store(sid).await.unwrap();
        let e = index
            .query_vector(sid, &[1.0, 0.0, 0.0], 1, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), llama_stack_core::ErrorKind::NotFound);
        assert_eq!(
            index.health().await.status,
            llama_stack_core::api::providers::HealthStatus::Ok
        );
        drop(index);
        drop_db(&db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_table_is_a_kv_store() {
        let Some(db) = fresh_db("kv").await else {
            return;
        };
        let index = std::sync::Arc::new(PgVectorIndex::open(options(&db)).await.unwrap());
        let kv = PgRecords::open(index).await.unwrap();
        kv.set("b:2", "two", None).await.unwrap();
        kv.set("b:1", "one", None).await.unwrap();
        kv.set("a", "x", None).await.unwrap();
        kv.set("b:1", "uno", None).await.unwrap();
        assert_eq!(kv.get("b:1").await.unwrap().as_deref(), Some("uno"));
        assert_eq!(
            kv.scan_prefix("b:").await.unwrap(),
            [
                ("b:1".to_string(), "uno".to_string()),
                ("b:2".into(), "two".into())
            ]
        );
        assert_eq!(kv.scan_range("a", "b:2").await.unwrap().len(), 2);
        assert!(!kv.set_if_absent("a", "y", None).await.unwrap());
        assert!(kv.set_if_absent("c", "y", None).await.unwrap());
        assert_eq!(kv.increment("n", 2, None).await.unwrap(), 2);
        assert_eq!(kv.increment("n", 3, None).await.unwrap(), 5);
        kv.set("t", "gone", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(kv.get("t").await.unwrap(), None);
        assert!(kv.set_if_absent("t", "back", None).await.unwrap());
        kv.delete("a").await.unwrap();
        assert_eq!(kv.get("a").await.unwrap(), None);
        drop(kv);
        drop_db(&db).await;
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("0.8.0", (0, 8)));
        assert!(version_at_least("0.10.1", (0, 8)));
        assert!(!version_at_least("0.7.4", (0, 8)));
        assert!(!version_at_least("garbage", (0, 7)));
    }
}
