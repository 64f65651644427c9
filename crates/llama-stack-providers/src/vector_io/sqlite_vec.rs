//! [`SqliteVecIndex`]: the chunks of many vector stores in one SQLite file, vectors in a
//! sqlite-vec `vec0` table and words in an FTS5 table (`inline::sqlite-vec`).
//!
//! Schema: `vector_stores(id INTEGER PRIMARY KEY AUTOINCREMENT, store_id TEXT UNIQUE,
//! dimension INTEGER)` names the stores; store ids are arbitrary strings and never reach
//! SQL text: a store's tables are named after its integer `id` (never reused, so a
//! dropped store's name cannot collide with a new one):
//! - `vector_chunks_<id>(id INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE, embedding BLOB,
//!   metadata TEXT, chunk TEXT)`: the embedding as native-endian `f32`s, the metadata
//!   as a JSON object, and the rest of the chunk as JSON (without embedding and metadata);
//! - `vector_index_<id>`: `vec0(embedding float[<dimension>] distance_metric=cosine)`;
//! - `vector_words_<id>`: a contentless FTS5 table (Porter stemming, Unicode words
//!   without diacritics) over the chunk's text.
//!
//! The three share the chunk's rowid. Vector scores are cosine similarities
//! (`1 − cosine distance`), keyword scores `−bm25` (positive, higher is better). Filters
//! are evaluated in Rust on each candidate's metadata, candidates taken best first until
//! `k` match: vector search asks `vec0` for 10·`k` nearest neighbours (at least 100) and,
//! when fewer than `k` of them match, reads the whole store in distance order.
//!
//! Threading: every statement runs on a blocking thread (`spawn_blocking`). One writer
//! connection behind a mutex serialises writes (each call is one transaction); reads use
//! a small pool of read-only connections, so searches run while a write is in progress
//! (WAL mode, each read a consistent snapshot). `synchronous=FULL`: an acknowledged write
//! is on disk. A busy timeout makes other processes on the same file wait.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk};
use llama_stack_core::{Error, Result};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use super::index::{
    check_embedding, chunk_embedding, without_embedding_and_metadata, Scored, VectorIndex,
};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;
/// The largest `k` sqlite-vec answers in one KNN query.
const KNN_MAX_K: usize = 4096;
/// The largest vector dimension sqlite-vec stores.
const MAX_DIMENSION: usize = 8192;
/// With a filter, vec0 is first asked for `k ×` this many nearest neighbours ...
const FILTERED_KNN_FACTOR: usize = 10;
/// ... and at least this many.
const FILTERED_KNN_MIN: usize = 100;
/// Words of a keyword query beyond this many are ignored.
const MAX_QUERY_TERMS: usize = 64;

static REGISTER_SQLITE_VEC: Once = Once::new();

/// Makes every SQLite connection this process opens from now on load sqlite-vec.
fn register_sqlite_vec() {
    REGISTER_SQLITE_VEC.call_once(|| {
        type EntryPoint = unsafe extern "C" fn(
            *mut rusqlite::ffi::sqlite3,
            *mut *mut std::os::raw::c_char,
            *const rusqlite::ffi::sqlite3_api_routines,
        ) -> std::os::raw::c_int;
        // SAFETY: `sqlite3_vec_init` is the statically linked extension entry point, a C
        // function with exactly the `EntryPoint` signature (`int sqlite3_vec_init(sqlite3*,
        // char**, const sqlite3_api_routines*)`); the `sqlite-vec` crate declares it without
        // arguments, so only the pointer's Rust type changes. SQLite calls it with those
        // three arguments for each new connection.
        let entry = unsafe {
            std::mem::transmute::<*const (), EntryPoint>(sqlite_vec::sqlite3_vec_init as *const ())
        };
        // SAFETY: registering an entry point has no other precondition; a failure (out of
        // memory) shows up as the `vec_version()` check failing in `open`.
        unsafe {
            rusqlite::ffi::sqlite3_auto_extension(Some(entry));
        }
    });
}

/// Chunks of many vector stores in one SQLite file: vectors in sqlite-vec, words in FTS5.
pub struct SqliteVecIndex {
    db: Arc<Db>,
}

impl std::fmt::Debug for SqliteVecIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteVecIndex")
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

impl SqliteVecIndex {
    /// Opens (creating if needed, with parent directories) the database at `db_path`.
    pub async fn open(db_path: impl AsRef<Path>) -> Result<Self> {
        register_sqlite_vec();
        let path = db_path.as_ref().to_path_buf();
        let db = tokio::task::spawn_blocking(move || Db::open(path))
            .await
            .map_err(join_error)??;
        Ok(SqliteVecIndex { db: Arc::new(db) })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.read(|conn| f(&db, conn)))
            .await
            .map_err(join_error)?
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.write(|conn| f(&db, conn)))
            .await
            .map_err(join_error)?
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("SQLite vector index worker task failed: {e}"))
}

// ---------------------------------------------------------------------------------------
// Connections

/// The database file and its connections.
struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Idle read-only connections; `None` for an in-memory database (reads use the writer).
    readers: Option<Mutex<Vec<Connection>>>,
}

impl Db {
    fn open(path: PathBuf) -> Result<Db> {
        let in_memory = path.as_os_str().is_empty() || path.as_os_str() == ":memory:";
        if !in_memory {
            if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::config(format!(
                        "cannot create directory '{}' for the SQLite vector index '{}': {e}",
                        parent.display(),
                        path.display()
                    ))
                    .with_context("path", path.display().to_string())
                    .with_source(e)
                })?;
            }
        }
        let mut conn = open_connection(&path)?;
        let db_err = |e: rusqlite::Error, what: &str| sql_error(&path, e, what);
        conn.query_row("SELECT vec_version()", [], |r| r.get::<_, String>(0))
            .map_err(|e| db_err(e, "loading the sqlite-vec extension"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(e, "creating the vector_stores table"))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS vector_stores (\
               id INTEGER PRIMARY KEY AUTOINCREMENT, \
               store_id TEXT NOT NULL UNIQUE, \
               dimension INTEGER NOT NULL)",
        )
        .map_err(|e| db_err(e, "creating the vector_stores table"))?;
        tx.commit()
            .map_err(|e| db_err(e, "creating the vector_stores table"))?;
        Ok(Db {
            path,
            writer: Mutex::new(conn),
            readers: (!in_memory).then(|| Mutex::new(Vec::new())),
        })
    }

    /// Maps a SQLite error; `what` says which operation failed.
    fn err(&self, e: rusqlite::Error, what: &str) -> Error {
        sql_error(&self.path, e, what)
    }

    /// Runs `f` with the writer connection (on the calling, blocking thread).
    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic inside `f` drops its transaction (rolled back): the connection stays usable.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }

    /// Runs `f` with an idle read connection, opening one if none is idle.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let Some(pool) = &self.readers else {
            return self.write(f);
        };
        let idle = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", "ON")
                    .map_err(|e| self.err(e, "opening a read connection"))?;
                conn
            }
        };
        let out = f(&mut conn);
        let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let fail = |e: rusqlite::Error| {
        Error::unavailable(format!(
            "cannot open the SQLite vector index '{}': {e}",
            path.display()
        ))
        .with_context("path", path.display().to_string())
        .with_source(e)
    };
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // `journal_mode` answers with the mode in effect (`memory` for in-memory databases).
    let _mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(fail)?;
    Ok(conn)
}

/// Lock contention is `Unavailable` (retryable), anything else `Internal`.
fn sql_error(path: &Path, e: rusqlite::Error, what: &str) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    let message = format!(
        "SQLite vector index '{}': {what} failed: {e}",
        path.display()
    );
    let err = if busy {
        Error::unavailable(message)
    } else {
        Error::internal(message)
    };
    err.with_context("path", path.display().to_string())
        .with_source(e)
}

// ---------------------------------------------------------------------------------------
// Stores

/// A store's row in `vector_stores`.
struct Store {
    id: i64,
    dimension: usize,
}

impl Store {
    fn chunks(&self) -> String {
        format!("vector_chunks_{}", self.id)
    }
    fn vectors(&self) -> String {
        format!("vector_index_{}", self.id)
    }
    fn words(&self) -> String {
        format!("vector_words_{}", self.id)
    }
}

fn find_store(db: &Db, conn: &Connection, store_id: &str) -> Result<Option<Store>> {
    let what = || format!("looking up vector store '{store_id}'");
    let found: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, dimension FROM vector_stores WHERE store_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![store_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(|e| db.err(e, &what()))?;
    found
        .map(|(id, dimension)| {
            let dimension = usize::try_from(dimension).map_err(|_| {
                Error::internal(format!(
                    "SQLite vector index '{}': vector store '{store_id}' has an invalid dimension {dimension}",
                    db.path.display()
                ))
            })?;
            Ok(Store { id, dimension })
        })
        .transpose()
}

fn require_store(db: &Db, conn: &Connection, store_id: &str) -> Result<Store> {
    find_store(db, conn, store_id)?.ok_or_else(|| Error::not_found("Vector store", store_id))
}

fn create_store(db: &Db, conn: &mut Connection, store_id: &str, dimension: usize) -> Result<()> {
    if !(1..=MAX_DIMENSION).contains(&dimension) {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': embedding dimension {dimension} is out of range (1 to {MAX_DIMENSION})"
        )));
    }
    let what = format!("creating vector store '{store_id}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db.err(e, &what))?;
    if let Some(existing) = find_store(db, &tx, store_id)? {
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
    tx.execute(
        "INSERT INTO vector_stores (store_id, dimension) VALUES (?1, ?2)",
        params![store_id, i64::try_from(dimension).unwrap_or(i64::MAX)],
    )
    .map_err(|e| db.err(e, &what))?;
    let store = Store {
        id: tx.last_insert_rowid(),
        dimension,
    };
    tx.execute_batch(&format!(
        "CREATE TABLE {chunks} (\
           id INTEGER PRIMARY KEY, \
           chunk_id TEXT NOT NULL UNIQUE, \
           embedding BLOB NOT NULL, \
           metadata TEXT NOT NULL, \
           chunk TEXT NOT NULL);\
         CREATE VIRTUAL TABLE {vectors} USING vec0(\
           embedding float[{dimension}] distance_metric=cosine);\
         CREATE VIRTUAL TABLE {words} USING fts5(\
           text, content='', contentless_delete=1, \
           tokenize='porter unicode61 remove_diacritics 2');",
        chunks = store.chunks(),
        vectors = store.vectors(),
        words = store.words(),
    ))
    .map_err(|e| db.err(e, &what))?;
    tx.commit().map_err(|e| db.err(e, &what))
}

fn drop_store(db: &Db, conn: &mut Connection, store_id: &str) -> Result<()> {
    let what = format!("dropping vector store '{store_id}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db.err(e, &what))?;
    let Some(store) = find_store(db, &tx, store_id)? else {
        return Ok(());
    };
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
        store.words(),
        store.vectors(),
        store.chunks()
    ))
    .map_err(|e| db.err(e, &what))?;
    tx.execute("DELETE FROM vector_stores WHERE id = ?1", params![store.id])
        .map_err(|e| db.err(e, &what))?;
    tx.commit().map_err(|e| db.err(e, &what))
}

// ---------------------------------------------------------------------------------------
// Chunks

/// Checks that `embedding` is a vector of `store`'s dimension with finite components.
/// The embedding as sqlite-vec reads it: native-endian `f32`s.
fn embedding_blob(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn upsert(db: &Db, conn: &mut Connection, store_id: &str, chunks: &[Chunk]) -> Result<()> {
    let what = format!("inserting chunks into vector store '{store_id}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db.err(e, &what))?;
    let store = require_store(db, &tx, store_id)?;
    // Everything is checked and encoded before the first write.
    let mut rows = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let embedding = chunk_embedding(store_id, chunk, store.dimension)?;
        let rest = without_embedding_and_metadata(chunk);
        let encode = |e: serde_json::Error| {
            Error::internal(format!(
                "Vector store '{store_id}': cannot encode chunk '{}': {e}",
                chunk.chunk_id
            ))
        };
        rows.push((
            chunk,
            embedding_blob(embedding),
            serde_json::to_string(&chunk.metadata).map_err(encode)?,
            serde_json::to_string(&rest).map_err(encode)?,
            chunk.content.text(),
        ));
    }
    {
        let mut find = tx
            .prepare(&format!(
                "SELECT id FROM {} WHERE chunk_id = ?1",
                store.chunks()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut insert_chunk = tx
            .prepare(&format!(
                "INSERT INTO {} (chunk_id, embedding, metadata, chunk) VALUES (?1, ?2, ?3, ?4)",
                store.chunks()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut insert_vector = tx
            .prepare(&format!(
                "INSERT INTO {} (rowid, embedding) VALUES (?1, ?2)",
                store.vectors()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut insert_words = tx
            .prepare(&format!(
                "INSERT INTO {} (rowid, text) VALUES (?1, ?2)",
                store.words()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut remove = Remover::new(db, &tx, &store, &what)?;
        for (chunk, blob, metadata, rest, text) in &rows {
            let old: Option<i64> = find
                .query_row(params![chunk.chunk_id], |r| r.get(0))
                .optional()
                .map_err(|e| db.err(e, &what))?;
            if let Some(rowid) = old {
                remove.remove(rowid)?;
            }
            insert_chunk
                .execute(params![chunk.chunk_id, blob, metadata, rest])
                .map_err(|e| db.err(e, &what))?;
            let rowid = tx.last_insert_rowid();
            insert_vector
                .execute(params![rowid, blob])
                .map_err(|e| db.err(e, &what))?;
            insert_words
                .execute(params![rowid, text])
                .map_err(|e| db.err(e, &what))?;
        }
    }
    tx.commit().map_err(|e| db.err(e, &what))
}

/// Deletes a chunk's rows from a store's three tables.
struct Remover<'c> {
    db: &'c Db,
    what: &'c str,
    statements: [rusqlite::Statement<'c>; 3],
}

impl<'c> Remover<'c> {
    fn new(db: &'c Db, conn: &'c Connection, store: &Store, what: &'c str) -> Result<Self> {
        let prepare = |sql: String| conn.prepare(&sql).map_err(|e| db.err(e, what));
        Ok(Remover {
            db,
            what,
            statements: [
                prepare(format!("DELETE FROM {} WHERE rowid = ?1", store.vectors()))?,
                prepare(format!("DELETE FROM {} WHERE rowid = ?1", store.words()))?,
                prepare(format!("DELETE FROM {} WHERE id = ?1", store.chunks()))?,
            ],
        })
    }

    fn remove(&mut self, rowid: i64) -> Result<()> {
        for stmt in &mut self.statements {
            stmt.execute(params![rowid])
                .map_err(|e| self.db.err(e, self.what))?;
        }
        Ok(())
    }
}

fn delete(db: &Db, conn: &mut Connection, store_id: &str, chunk_ids: &[String]) -> Result<()> {
    let what = format!("deleting chunks from vector store '{store_id}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db.err(e, &what))?;
    let store = require_store(db, &tx, store_id)?;
    {
        let mut find = tx
            .prepare(&format!(
                "SELECT id FROM {} WHERE chunk_id = ?1",
                store.chunks()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut remove = Remover::new(db, &tx, &store, &what)?;
        for chunk_id in chunk_ids {
            let rowid: Option<i64> = find
                .query_row(params![chunk_id], |r| r.get(0))
                .optional()
                .map_err(|e| db.err(e, &what))?;
            if let Some(rowid) = rowid {
                remove.remove(rowid)?;
            }
        }
    }
    tx.commit().map_err(|e| db.err(e, &what))
}

/// Decodes a stored chunk row (`embedding`, `metadata`, `chunk`).
fn decode_chunk(db: &Db, store_id: &str, blob: &[u8], metadata: &str, rest: &str) -> Result<Chunk> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::internal(format!(
            "SQLite vector index '{}': vector store '{store_id}' holds a corrupt {what}: {e}",
            db.path.display()
        ))
    };
    let mut chunk: Chunk = serde_json::from_str(rest).map_err(|e| corrupt("chunk", &e))?;
    chunk.metadata = serde_json::from_str(metadata).map_err(|e| corrupt("chunk metadata", &e))?;
    let floats = blob.chunks_exact(4);
    if !floats.remainder().is_empty() {
        return Err(corrupt(
            "embedding",
            &format!("{} bytes is not a whole number of f32s", blob.len()),
        ));
    }
    chunk.embedding = Some(
        floats
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    );
    Ok(chunk)
}

/// Reads chunks of one store by rowid or by chunk id.
struct ChunkReader<'c> {
    db: &'c Db,
    store_id: &'c str,
    what: &'c str,
    stmt: rusqlite::CachedStatement<'c>,
}

impl<'c> ChunkReader<'c> {
    fn new(
        db: &'c Db,
        conn: &'c Connection,
        store: &Store,
        store_id: &'c str,
        key: &str,
        what: &'c str,
    ) -> Result<Self> {
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT embedding, metadata, chunk FROM {} WHERE {key} = ?1",
                store.chunks()
            ))
            .map_err(|e| db.err(e, what))?;
        Ok(ChunkReader {
            db,
            store_id,
            what,
            stmt,
        })
    }

    fn read(&mut self, key: impl rusqlite::ToSql) -> Result<Option<Chunk>> {
        let row: Option<(Vec<u8>, String, String)> = self
            .stmt
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(|e| self.db.err(e, self.what))?;
        row.map(|(blob, metadata, rest)| {
            decode_chunk(self.db, self.store_id, &blob, &metadata, &rest)
        })
        .transpose()
    }
}

fn get(db: &Db, conn: &mut Connection, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>> {
    let what = format!("reading chunks of vector store '{store_id}'");
    let tx = conn.transaction().map_err(|e| db.err(e, &what))?;
    let store = require_store(db, &tx, store_id)?;
    let mut out = Vec::with_capacity(chunk_ids.len());
    {
        let mut reader = ChunkReader::new(db, &tx, &store, store_id, "chunk_id", &what)?;
        for chunk_id in chunk_ids {
            if let Some(chunk) = reader.read(chunk_id)? {
                out.push(chunk);
            }
        }
    }
    tx.commit().map_err(|e| db.err(e, &what))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Search

/// Picks candidates (rowids, best first) whose metadata matches a filter, until `k` do.
struct Picker<'c> {
    db: &'c Db,
    store_id: &'c str,
    what: &'c str,
    filter: Option<&'c AttributeFilter>,
    metadata: Option<rusqlite::CachedStatement<'c>>,
    k: usize,
    seen: HashSet<i64>,
    /// `(rowid, score)` of the matches so far, best first.
    picked: Vec<(i64, f64)>,
}

impl<'c> Picker<'c> {
    fn new(
        db: &'c Db,
        conn: &'c Connection,
        store: &Store,
        store_id: &'c str,
        what: &'c str,
        filter: Option<&'c AttributeFilter>,
        k: usize,
    ) -> Result<Self> {
        let metadata = match filter {
            Some(_) => Some(
                conn.prepare_cached(&format!(
                    "SELECT metadata FROM {} WHERE id = ?1",
                    store.chunks()
                ))
                .map_err(|e| db.err(e, what))?,
            ),
            None => None,
        };
        Ok(Picker {
            db,
            store_id,
            what,
            filter,
            metadata,
            k,
            seen: HashSet::new(),
            picked: Vec::new(),
        })
    }

    fn full(&self) -> bool {
        self.picked.len() >= self.k
    }

    /// Considers the next candidate (ignored if considered before).
    fn offer(&mut self, rowid: i64, score: f64) -> Result<()> {
        if self.full() || !self.seen.insert(rowid) {
            return Ok(());
        }
        if let (Some(filter), Some(stmt)) = (self.filter, self.metadata.as_mut()) {
            let metadata: Option<String> = stmt
                .query_row(params![rowid], |r| r.get(0))
                .optional()
                .map_err(|e| self.db.err(e, self.what))?;
            let Some(metadata) = metadata else {
                return Ok(());
            };
            let metadata: Map<String, Value> = serde_json::from_str(&metadata).map_err(|e| {
                Error::internal(format!(
                    "SQLite vector index '{}': vector store '{}' holds corrupt chunk metadata: {e}",
                    self.db.path.display(),
                    self.store_id
                ))
            })?;
            if !filter.matches(&metadata) {
                return Ok(());
            }
        }
        self.picked.push((rowid, score));
        Ok(())
    }

    /// The picked chunks with their scores, best first.
    fn finish(mut self, conn: &'c Connection, store: &Store) -> Result<Vec<Scored>> {
        self.picked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut reader = ChunkReader::new(self.db, conn, store, self.store_id, "id", self.what)?;
        let mut out = Vec::with_capacity(self.picked.len());
        for (rowid, score) in self.picked {
            match reader.read(rowid)? {
                Some(chunk) => out.push((chunk, score)),
                None => tracing::warn!(
                    store_id = self.store_id,
                    rowid,
                    "sqlite-vec index row without a chunk row; skipped"
                ),
            }
        }
        Ok(out)
    }
}

/// Cosine similarity from sqlite-vec's cosine distance (NULL when a vector is all zeros).
fn similarity(distance: Option<f64>) -> f64 {
    match distance {
        Some(d) if d.is_finite() => 1.0 - d,
        _ => 0.0,
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn query_vector(
    db: &Db,
    conn: &mut Connection,
    store_id: &str,
    embedding: &[f32],
    k: usize,
    filter: Option<&AttributeFilter>,
) -> Result<Vec<Scored>> {
    let what = format!("searching vector store '{store_id}' by vector");
    let tx = conn.transaction().map_err(|e| db.err(e, &what))?;
    let store = require_store(db, &tx, store_id)?;
    check_embedding(store_id, "the query embedding", embedding, store.dimension)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let blob = embedding_blob(embedding);
    let mut picker = Picker::new(db, &tx, &store, store_id, &what, filter, k)?;
    // Nearest neighbours from vec0: exactly `k` without a filter; with one, a few times
    // `k` first, since a KNN query costs about as much for 10 rows as for 100.
    let mut exhausted = false;
    let n = match filter {
        None => k,
        Some(_) => k.saturating_mul(FILTERED_KNN_FACTOR).max(FILTERED_KNN_MIN),
    };
    if n <= KNN_MAX_K {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT rowid, distance FROM {} WHERE embedding MATCH ?1 AND k = ?2 ORDER BY distance",
                store.vectors()
            ))
            .map_err(|e| db.err(e, &what))?;
        let rows = stmt
            .query_map(params![blob, to_i64(n)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| db.err(e, &what))?;
        exhausted = rows.len() < n;
        for (rowid, distance) in rows {
            picker.offer(rowid, similarity(distance))?;
        }
    }
    if !picker.full() && !exhausted {
        // Too few matches among the nearest neighbours (or `k` past sqlite-vec's KNN
        // limit): every vector of the store in distance order, already seen ones skipped.
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT id, vec_distance_cosine(embedding, ?1) AS d FROM {} ORDER BY d IS NULL, d",
                store.chunks()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut rows = stmt.query(params![blob]).map_err(|e| db.err(e, &what))?;
        while !picker.full() {
            let Some(row) = rows.next().map_err(|e| db.err(e, &what))? else {
                break;
            };
            let rowid: i64 = row.get(0).map_err(|e| db.err(e, &what))?;
            let distance: Option<f64> = row.get(1).map_err(|e| db.err(e, &what))?;
            picker.offer(rowid, similarity(distance))?;
        }
    }
    let out = picker.finish(&tx, &store)?;
    tx.commit().map_err(|e| db.err(e, &what))?;
    Ok(out)
}

/// An FTS5 expression matching any word of `query`, each word a quoted term (so no
/// character of the query is ever read as FTS5 syntax); `None` when it has no words.
fn fts_expression(query: &str) -> Option<String> {
    let mut seen = HashSet::new();
    let terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && seen.insert(word.to_lowercase()))
        .take(MAX_QUERY_TERMS)
        .map(|word| format!("\"{word}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

fn query_keyword(
    db: &Db,
    conn: &mut Connection,
    store_id: &str,
    query: &str,
    k: usize,
    filter: Option<&AttributeFilter>,
) -> Result<Vec<Scored>> {
    let what = format!("searching vector store '{store_id}' by keywords");
    let tx = conn.transaction().map_err(|e| db.err(e, &what))?;
    let store = require_store(db, &tx, store_id)?;
    let Some(expression) = fts_expression(query) else {
        return Ok(Vec::new());
    };
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut picker = Picker::new(db, &tx, &store, store_id, &what, filter, k)?;
    {
        // Without a filter the first `k` rows are the answer; with one, ranked rows are
        // read until `k` match.
        let limit = if filter.is_some() { -1 } else { to_i64(k) };
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT rowid, rank FROM {words} WHERE {words} MATCH ?1 ORDER BY rank LIMIT ?2",
                words = store.words()
            ))
            .map_err(|e| db.err(e, &what))?;
        let mut rows = stmt
            .query(params![expression, limit])
            .map_err(|e| db.err(e, &what))?;
        while !picker.full() {
            let Some(row) = rows.next().map_err(|e| db.err(e, &what))? else {
                break;
            };
            let rowid: i64 = row.get(0).map_err(|e| db.err(e, &what))?;
            let rank: f64 = row.get(1).map_err(|e| db.err(e, &what))?;
            picker.offer(rowid, -rank)?;
        }
    }
    let out = picker.finish(&tx, &store)?;
    tx.commit().map_err(|e| db.err(e, &what))?;
    Ok(out)
}

#[async_trait]
impl VectorIndex for SqliteVecIndex {
    async fn create_store(&self, store_id: &str, dimension: usize) -> Result<()> {
        let store_id = store_id.to_string();
        self.write(move |db, conn| create_store(db, conn, &store_id, dimension))
            .await
    }

    async fn drop_store(&self, store_id: &str) -> Result<()> {
        let store_id = store_id.to_string();
        self.write(move |db, conn| drop_store(db, conn, &store_id))
            .await
    }

    async fn upsert(&self, store_id: &str, chunks: &[Chunk]) -> Result<()> {
        let store_id = store_id.to_string();
        let chunks = chunks.to_vec();
        self.write(move |db, conn| upsert(db, conn, &store_id, &chunks))
            .await
    }

    async fn delete(&self, store_id: &str, chunk_ids: &[String]) -> Result<()> {
        let store_id = store_id.to_string();
        let chunk_ids = chunk_ids.to_vec();
        self.write(move |db, conn| delete(db, conn, &store_id, &chunk_ids))
            .await
    }

    async fn get(&self, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>> {
        let store_id = store_id.to_string();
        let chunk_ids = chunk_ids.to_vec();
        self.read(move |db, conn| get(db, conn, &store_id, &chunk_ids))
            .await
    }

    async fn query_vector(
        &self,
        store_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let store_id = store_id.to_string();
        let embedding = embedding.to_vec();
        let filter = filter.cloned();
        self.read(move |db, conn| query_vector(db, conn, &store_id, &embedding, k, filter.as_ref()))
            .await
    }

    async fn query_keyword(
        &self,
        store_id: &str,
        query: &str,
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let store_id = store_id.to_string();
        let query = query.to_string();
        let filter = filter.cloned();
        self.read(move |db, conn| query_keyword(db, conn, &store_id, &query, k, filter.as_ref()))
            .await
    }

    async fn health(&self) -> Health {
        let checked = self
            .read(|db, conn| {
                conn.query_row("SELECT count(*) FROM vector_stores", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| db.err(e, "checking health"))
            })
            .await;
        match checked {
            Ok(_) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vector_io::index::cosine;
    use llama_stack_core::ErrorKind;
    use serde_json::json;

    fn random_vectors(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.f32() * 2.0 - 1.0).collect())
            .collect()
    }

    fn chunk(id: &str, text: &str, embedding: Vec<f32>) -> Chunk {
        let mut c = Chunk::new(id, text);
        c.embedding = Some(embedding);
        c
    }

    async fn open_temp() -> (tempfile::TempDir, SqliteVecIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = SqliteVecIndex::open(dir.path().join("nested/dir/vectors.db"))
            .await
            .unwrap();
        (dir, index)
    }

    fn ids(results: &[Scored]) -> Vec<&str> {
        results.iter().map(|(c, _)| c.chunk_id.as_str()).collect()
    }

    /// Ids of the `k` chunks most similar to `query` among those `keep` accepts.
    fn brute_force(
        chunks: &[Chunk],
        query: &[f32],
        k: usize,
        keep: impl Fn(&Chunk) -> bool,
    ) -> Vec<(String, f64)> {
        let mut scored: Vec<(String, f64)> = chunks
            .iter()
            .filter(|c| keep(c))
            .map(|c| {
                (
                    c.chunk_id.clone(),
                    cosine(query, c.embedding.as_ref().unwrap()),
                )
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored
    }

    #[test]
    fn vec_version_loads() {
        register_sqlite_vec();
        let conn = Connection::open_in_memory().unwrap();
        let version: String = conn
            .query_row("SELECT vec_version()", [], |r| r.get(0))
            .unwrap();
        assert!(version.starts_with('v'), "{version}");
    }

    #[tokio::test]
    async fn knn_matches_brute_force_cosine() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_a", 32).await.unwrap();
        let chunks: Vec<Chunk> = random_vectors(7, 500, 32)
            .into_iter()
            .enumerate()
            .map(|(i, v)| chunk(&format!("c{i}"), &format!("chunk number {i}"), v))
            .collect();
        for batch in chunks.chunks(128) {
            index.upsert("vs_a", batch).await.unwrap();
        }
        for query in random_vectors(8, 5, 32) {
            let got = index.query_vector("vs_a", &query, 10, None).await.unwrap();
            let want = brute_force(&chunks, &query, 10, |_| true);
            assert_eq!(
                ids(&got),
                want.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()
            );
            for ((c, score), (_, expected)) in got.iter().zip(&want) {
                assert!((score - expected).abs() < 1e-4, "{score} vs {expected}");
                let stored = &chunks[c.chunk_id[1..].parse::<usize>().unwrap()];
                assert_eq!(c, stored, "returned chunks carry their embedding");
            }
        }
        // k beyond the store returns everything, best first.
        let all = index
            .query_vector("vs_a", &chunks[3].embedding.clone().unwrap(), 600, None)
            .await
            .unwrap();
        assert_eq!(all.len(), 500);
        assert_eq!(all[0].0.chunk_id, "c3");
        assert!((all[0].1 - 1.0).abs() < 1e-5);
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(index
            .query_vector("vs_a", &query_of(32), 0, None)
            .await
            .unwrap()
            .is_empty());
    }

    fn query_of(dim: usize) -> Vec<f32> {
        (0..dim).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect()
    }

    #[tokio::test]
    async fn upsert_replaces_and_round_trips() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_r", 3).await.unwrap();
        let mut first =
            chunk("a", "the old walrus text", vec![1.0, 0.0, 0.0]).with_metadata("v", 1);
        first.embedding_model = Some("m".into());
        first.embedding_dimension = Some(3);
        first.chunk_metadata.document_id = Some("doc-1".into());
        index
            .upsert(
                "vs_r",
                &[first.clone(), chunk("b", "other", vec![0.0, 1.0, 0.0])],
            )
            .await
            .unwrap();
        let got = index
            .get("vs_r", &["b".into(), "missing".into(), "a".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].chunk_id, "b");
        assert_eq!(got[1], first, "everything stored comes back");

        let second = chunk("a", "a new penguin text", vec![0.0, 0.0, 1.0]).with_metadata("v", 2);
        index
            .upsert("vs_r", std::slice::from_ref(&second))
            .await
            .unwrap();
        assert_eq!(
            index.get("vs_r", &["a".into()]).await.unwrap(),
            vec![second]
        );
        let near_old = index
            .query_vector("vs_r", &[1.0, 0.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&near_old).iter().filter(|id| **id == "a").count(), 1);
        let near_new = index
            .query_vector("vs_r", &[0.0, 0.0, 1.0], 1, None)
            .await
            .unwrap();
        assert_eq!(ids(&near_new), ["a"]);
        assert!((near_new[0].1 - 1.0).abs() < 1e-6);
        assert!(index
            .query_keyword("vs_r", "walrus", 5, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            ids(&index
                .query_keyword("vs_r", "penguin", 5, None)
                .await
                .unwrap()),
            ["a"]
        );

        // The same id twice in one call: the last one wins.
        index
            .upsert(
                "vs_r",
                &[
                    chunk("d", "one", vec![1.0, 1.0, 0.0]),
                    chunk("d", "two", vec![0.0, 1.0, 1.0]),
                ],
            )
            .await
            .unwrap();
        let d = index.get("vs_r", &["d".into()]).await.unwrap();
        assert_eq!(d[0].content.text(), "two");
        assert_eq!(
            index
                .query_vector("vs_r", &[1.0, 1.0, 1.0], 10, None)
                .await
                .unwrap()
                .len(),
            3
        );
    }

    #[tokio::test]
    async fn delete_removes_from_every_search() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_d", 2).await.unwrap();
        index
            .upsert(
                "vs_d",
                &[
                    chunk("x", "zebra crossing", vec![1.0, 0.0]),
                    chunk("y", "zebra stripes", vec![0.9, 0.1]),
                ],
            )
            .await
            .unwrap();
        index
            .delete("vs_d", &["x".into(), "never-there".into()])
            .await
            .unwrap();
        assert_eq!(
            ids(&index
                .query_vector("vs_d", &[1.0, 0.0], 5, None)
                .await
                .unwrap()),
            ["y"]
        );
        assert_eq!(
            ids(&index.query_keyword("vs_d", "zebra", 5, None).await.unwrap()),
            ["y"]
        );
        assert!(index
            .query_keyword("vs_d", "crossing", 5, None)
            .await
            .unwrap()
            .is_empty());
        assert!(index.get("vs_d", &["x".into()]).await.unwrap().is_empty());
        // Deleted ids can be inserted again.
        index
            .upsert("vs_d", &[chunk("x", "zebra again", vec![1.0, 0.0])])
            .await
            .unwrap();
        assert_eq!(
            ids(&index
                .query_vector("vs_d", &[1.0, 0.0], 5, None)
                .await
                .unwrap()),
            ["x", "y"]
        );
    }

    #[tokio::test]
    async fn filters_still_return_k_matches_far_from_the_query() {
        let (_dir, index) = open_temp().await;
        let dim = 4;
        index.create_store("vs_f", dim).await.unwrap();
        // 5000 chunks near the query; matching ones are the farthest, so the search must
        // go past sqlite-vec's KNN limit (4096) to find them.
        let mut rng = fastrand::Rng::with_seed(11);
        let chunks: Vec<Chunk> = (0..5000)
            .map(|i| {
                let rare = i % 500 == 7;
                let mut v: Vec<f32> = (0..dim).map(|_| rng.f32() * 0.2).collect();
                v[0] = if rare {
                    -1.0 - rng.f32()
                } else {
                    1.0 + rng.f32()
                };
                chunk(&format!("c{i}"), &format!("text {i}"), v)
                    .with_metadata("kind", if rare { "rare" } else { "common" })
                    .with_metadata("n", i)
                    .with_metadata("lang", if i % 2 == 0 { "en" } else { "de" })
            })
            .collect();
        for batch in chunks.chunks(1000) {
            index.upsert("vs_f", batch).await.unwrap();
        }
        let query = query_of(dim);
        let check = |filter: serde_json::Value, k: usize| {
            let filter = AttributeFilter::from_value(&filter).unwrap();
            let index = &index;
            let chunks = &chunks;
            let query = &query;
            async move {
                let got = index
                    .query_vector("vs_f", query, k, Some(&filter))
                    .await
                    .unwrap();
                let want = brute_force(chunks, query, k, |c| filter.matches(&c.metadata));
                assert_eq!(
                    ids(&got),
                    want.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
                    "{filter:?}"
                );
                assert!(got.iter().all(|(c, _)| filter.matches(&c.metadata)));
                got.len()
            }
        };
        assert_eq!(
            check(json!({"type": "eq", "key": "kind", "value": "rare"}), 5).await,
            5
        );
        assert_eq!(
            check(json!({"type": "eq", "key": "kind", "value": "rare"}), 50).await,
            10
        );
        assert_eq!(
            check(
                json!({"type": "in", "key": "n", "value": [7, 1507, 3, 4999]}),
                10
            )
            .await,
            4
        );
        assert_eq!(
            check(
                json!({"type": "and", "filters": [
                    {"type": "eq", "key": "lang", "value": "de"},
                    {"type": "or", "filters": [
                        {"type": "eq", "key": "kind", "value": "rare"},
                        {"type": "lt", "key": "n", "value": 20}
                    ]}
                ]}),
                8
            )
            .await,
            8
        );
        // An unselective filter is served by the first nearest-neighbour round.
        assert_eq!(
            check(json!({"type": "eq", "key": "kind", "value": "common"}), 10).await,
            10
        );
        assert_eq!(
            check(json!({"type": "eq", "key": "kind", "value": "none"}), 10).await,
            0
        );

        // Keyword search keeps reading ranked rows until `k` match too.
        let rare = AttributeFilter::eq("kind", "rare");
        let got = index
            .query_keyword("vs_f", "text", 3, Some(&rare))
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|(c, _)| c.metadata["kind"] == "rare"));
    }

    #[tokio::test]
    async fn keyword_search_ranks_and_never_fails_on_syntax() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_k", 2).await.unwrap();
        let docs = [
            ("d1", "The weather today is sunny with a light breeze."),
            ("d2", "Rust programs compile to fast native code."),
            ("d3", "A quick brown fox jumps over the lazy dog."),
            ("d4", "Foxes live in dens; some foxes are red."),
            ("d5", "Sunny days and brown leaves in autumn."),
        ];
        let chunks: Vec<Chunk> = docs
            .iter()
            .map(|(id, text)| chunk(id, text, vec![1.0, 0.5]))
            .collect();
        index.upsert("vs_k", &chunks).await.unwrap();

        let got = index
            .query_keyword("vs_k", "quick brown fox", 5, None)
            .await
            .unwrap();
        assert_eq!(got[0].0.chunk_id, "d3");
        assert!(
            ids(&got).contains(&"d4"),
            "stemming matches 'foxes': {:?}",
            ids(&got)
        );
        assert!(got.iter().all(|(_, s)| *s > 0.0));
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(got[0].0.embedding.as_deref(), Some(&[1.0f32, 0.5][..]));
        assert_eq!(
            index
                .query_keyword("vs_k", "quick brown fox", 1, None)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            ids(&index.query_keyword("vs_k", "RUST!", 5, None).await.unwrap()),
            ["d2"]
        );

        for tricky in [
            r#""foo" AND (bar* OR -baz:"#,
            "NEAR(sunny brown, 2)",
            "*",
            "^sunny",
            "col:value",
            "\"\"\"",
            "weather OR",
            "'; DROP TABLE vector_stores; --",
            "日本語のテキスト",
            "emoji 🦀 rust",
            "AND OR NOT",
        ] {
            index.query_keyword("vs_k", tricky, 5, None).await.unwrap();
        }
        for wordless in ["", "   ", "?!", "(*)"] {
            assert!(index
                .query_keyword("vs_k", wordless, 5, None)
                .await
                .unwrap()
                .is_empty());
        }
        assert_eq!(
            fts_expression(r#""foo" AND (bar* OR -baz:"#).unwrap(),
            r#""foo" OR "AND" OR "bar" OR "OR" OR "baz""#
        );
    }

    #[tokio::test]
    async fn stores_are_isolated_and_have_their_own_dimension() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_1b9e-4c2a", 2).await.unwrap();
        index.create_store("vs_\"odd\" name; --", 3).await.unwrap();
        index.create_store("vs_1b9e-4c2a", 2).await.unwrap();
        let e = index.create_store("vs_1b9e-4c2a", 5).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = index.create_store("vs_zero", 0).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);

        index
            .upsert("vs_1b9e-4c2a", &[chunk("same", "apple", vec![1.0, 0.0])])
            .await
            .unwrap();
        index
            .upsert(
                "vs_\"odd\" name; --",
                &[chunk("same", "banana", vec![0.0, 1.0, 0.0])],
            )
            .await
            .unwrap();
        let a = index.get("vs_1b9e-4c2a", &["same".into()]).await.unwrap();
        assert_eq!(a[0].content.text(), "apple");
        let b = index
            .get("vs_\"odd\" name; --", &["same".into()])
            .await
            .unwrap();
        assert_eq!(b[0].content.text(), "banana");
        assert!(index
            .query_keyword("vs_1b9e-4c2a", "banana", 5, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            index
                .query_vector("vs_\"odd\" name; --", &[0.0, 1.0, 0.0], 5, None)
                .await
                .unwrap()[0]
                .0
                .content
                .text(),
            "banana"
        );
        let e = index
            .query_vector("vs_1b9e-4c2a", &[0.0, 1.0, 0.0], 5, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(
            e.message().contains("vs_1b9e-4c2a") && e.message().contains('3'),
            "{e}"
        );
        index
            .delete("vs_\"odd\" name; --", &["same".into()])
            .await
            .unwrap();
        assert_eq!(
            index
                .get("vs_1b9e-4c2a", &["same".into()])
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn bad_input_is_rejected_with_the_store_chunk_and_dimensions() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_m", 4).await.unwrap();
        let e = index
            .upsert(
                "vs_m",
                &[
                    chunk("ok", "fine", vec![0.0; 4]),
                    chunk("bad-1", "short", vec![1.0, 2.0]),
                ],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        for part in ["vs_m", "bad-1", "2", "4"] {
            assert!(e.message().contains(part), "{e}");
        }
        assert!(
            index.get("vs_m", &["ok".into()]).await.unwrap().is_empty(),
            "a rejected call writes nothing"
        );
        let e = index
            .upsert("vs_m", &[Chunk::new("none", "no vector")])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.message().contains("none"), "{e}");
        let e = index
            .upsert("vs_m", &[chunk("nan", "x", vec![f32::NAN, 0.0, 0.0, 0.0])])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);

        for e in [
            index.upsert("vs_nope", &[]).await.unwrap_err(),
            index.delete("vs_nope", &["a".into()]).await.unwrap_err(),
            index.get("vs_nope", &["a".into()]).await.unwrap_err(),
            index
                .query_vector("vs_nope", &[0.0; 4], 3, None)
                .await
                .unwrap_err(),
            index
                .query_keyword("vs_nope", "word", 3, None)
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert!(e.message().contains("vs_nope"), "{e}");
        }

        // A zero vector has similarity 0 to everything, without failing.
        index
            .upsert("vs_m", &[chunk("z", "zero", vec![0.0; 4])])
            .await
            .unwrap();
        let got = index
            .query_vector("vs_m", &[0.0; 4], 3, None)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, 0.0);
        let got = index
            .query_vector("vs_m", &[1.0, 0.0, 0.0, 0.0], 3, None)
            .await
            .unwrap();
        assert_eq!(ids(&got), ["z"]);
        assert_eq!(got[0].1, 0.0);
    }

    #[tokio::test]
    async fn drop_store_removes_everything() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_x", 2).await.unwrap();
        index
            .upsert("vs_x", &[chunk("a", "hello", vec![1.0, 0.0])])
            .await
            .unwrap();
        index.create_store("vs_keep", 2).await.unwrap();
        index
            .upsert("vs_keep", &[chunk("a", "hello", vec![1.0, 0.0])])
            .await
            .unwrap();
        index.drop_store("vs_x").await.unwrap();
        index.drop_store("vs_x").await.unwrap();
        let e = index
            .query_vector("vs_x", &[1.0, 0.0], 1, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // Re-created empty, with another dimension.
        index.create_store("vs_x", 3).await.unwrap();
        assert!(index
            .query_vector("vs_x", &[1.0, 0.0, 0.0], 5, None)
            .await
            .unwrap()
            .is_empty());
        assert!(index
            .query_keyword("vs_x", "hello", 5, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            index
                .query_keyword("vs_keep", "hello", 5, None)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(index.health().await.status == llama_stack_core::api::providers::HealthStatus::Ok);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let chunks: Vec<Chunk> = random_vectors(3, 40, 8)
            .into_iter()
            .enumerate()
            .map(|(i, v)| chunk(&format!("c{i}"), &format!("document {i} about otters"), v))
            .collect();
        {
            let index = SqliteVecIndex::open(&path).await.unwrap();
            index.create_store("vs_p", 8).await.unwrap();
            index.upsert("vs_p", &chunks).await.unwrap();
            index.delete("vs_p", &["c0".into()]).await.unwrap();
        }
        let index = SqliteVecIndex::open(&path).await.unwrap();
        let query = chunks[5].embedding.clone().unwrap();
        let got = index.query_vector("vs_p", &query, 3, None).await.unwrap();
        let want = brute_force(&chunks[1..], &query, 3, |_| true);
        assert_eq!(
            ids(&got),
            want.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(
            index
                .query_keyword("vs_p", "otters", 50, None)
                .await
                .unwrap()
                .len(),
            39
        );
        assert_eq!(
            index.get("vs_p", &["c7".into()]).await.unwrap(),
            vec![chunks[7].clone()]
        );
        // The re-opened index can write and create stores.
        index.create_store("vs_q", 2).await.unwrap();
        index
            .upsert("vs_p", &[chunk("c0", "back", query.clone())])
            .await
            .unwrap();
    }

    // The writer's lock is held across the searches on purpose: they must not need it.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn searches_run_while_a_write_transaction_is_open() {
        let (_dir, index) = open_temp().await;
        index.create_store("vs_c", 2).await.unwrap();
        index
            .upsert("vs_c", &[chunk("a", "kept", vec![1.0, 0.0])])
            .await
            .unwrap();
        // Hold the writer in an open write transaction with an uncommitted insert.
        let writer = index.db.writer.lock().unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute(
                "INSERT INTO vector_chunks_1 (chunk_id, embedding, metadata, chunk) VALUES ('u', x'', '{}', '{}')",
                [],
            )
            .unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            index.query_vector("vs_c", &[1.0, 0.0], 5, None),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(ids(&got), ["a"]);
        let got = index.query_keyword("vs_c", "kept", 5, None).await.unwrap();
        assert_eq!(ids(&got), ["a"]);
        writer.execute_batch("ROLLBACK").unwrap();
    }
}
