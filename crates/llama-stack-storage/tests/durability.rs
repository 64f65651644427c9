//! Acknowledged writes survive the process being killed: a child process (this test
//! binary, re-run with `LLAMA_STACK_STORAGE_DURABILITY_CHILD` set and filtered to
//! `durability_child_writer`) writes through a persistent backend and prints `ACK <n>`
//! after each write returns; the parent SIGKILLs it mid-write, reopens the database and
//! checks every acknowledged write is there, whole. The PostgreSQL backends run the same
//! way against the shared server, each run in tables of its own (dropped afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// With only some backends compiled in, part of the harness is unused.
#![cfg_attr(
    not(all(
        feature = "kv-sled",
        feature = "kv-sqlite",
        feature = "sql-sqlite",
        feature = "kv-postgres",
        feature = "sql-postgres"
    )),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use llama_stack_core::storage::{
    ColumnDef, ColumnType, FetchQuery, KvStore, Row, SqlStore, TableSchema,
};
use serde_json::json;

const CHILD_ENV: &str = "LLAMA_STACK_STORAGE_DURABILITY_CHILD";
/// Acknowledgements the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 300;
/// Concurrent writer tasks in the child.
const WRITERS: usize = 4;
/// Writes per writer task (far more than are made before the kill).
const WRITES_PER_WRITER: usize = 250_000;

fn key_for(i: usize) -> String {
    format!("key-{i:08}")
}

fn value_for(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 300))
}

fn sql_row(i: usize) -> Row {
    json!({
        "id": key_for(i),
        "n": i,
        "flag": i.is_multiple_of(2),
        "payload": {"value": value_for(i), "list": [i, i + 1]},
    })
    .as_object()
    .unwrap()
    .clone()
}

#[path = "support/services.rs"]
mod services;

/// The SQL table a run writes: `durable` in its own SQLite file, or a table unique to
/// the run (named by the "path" the parent passes) on the shared PostgreSQL.
fn table_for(backend: &str, path: &Path) -> String {
    if backend.ends_with("_postgres") {
        path.file_name().unwrap().to_string_lossy().into_owned()
    } else {
        "durable".to_string()
    }
}

fn sql_schema(table: &str) -> TableSchema {
    TableSchema::new(
        table,
        vec![
            ColumnDef::new("id", ColumnType::Text).primary_key(),
            ColumnDef::new("n", ColumnType::Integer).not_null(),
            ColumnDef::new("flag", ColumnType::Boolean).not_null(),
            ColumnDef::new("payload", ColumnType::Json).not_null(),
        ],
    )
}

enum Target {
    Kv(Arc<dyn KvStore>),
    Sql(Arc<dyn SqlStore>),
}

async fn open(backend: &str, path: &Path) -> Target {
    match backend {
        #[cfg(feature = "kv-sqlite")]
        "kv_sqlite" => Target::Kv(Arc::new(
            llama_stack_storage::kv::SqliteKvStore::open(path)
                .await
                .unwrap(),
        )),
        #[cfg(feature = "kv-sled")]
        "kv_sled" => Target::Kv(Arc::new(
            llama_stack_storage::kv::SledKvStore::open(path)
                .await
                .unwrap(),
        )),
        #[cfg(feature = "sql-sqlite")]
        "sql_sqlite" => {
            let store = llama_stack_storage::sql::SqliteSqlStore::open(path)
                .await
                .unwrap();
            store.create_table(&sql_schema("durable")).await.unwrap();
            Target::Sql(Arc::new(store))
        }
        #[cfg(feature = "kv-postgres")]
        "kv_postgres" => {
            let cfg = serde_json::from_value(json!({
                "host": services::HOST, "port": services::PG_PORT, "db": services::PG_DB,
                "user": services::PG_USER, "table_name": table_for(backend, path),
            }))
            .unwrap();
            Target::Kv(Arc::new(
                llama_stack_storage::kv::PostgresKvStore::open(&cfg)
                    .await
                    .unwrap(),
            ))
        }
        #[cfg(feature = "sql-postgres")]
        "sql_postgres" => {
            let cfg = serde_json::from_value(json!({
                "host": services::HOST, "port": services::PG_PORT, "db": services::PG_DB,
                "user": services::PG_USER, "pool_size": 8,
            }))
            .unwrap();
            let store = llama_stack_storage::sql::PostgresSqlStore::open(&cfg)
                .await
                .unwrap();
            store
                .create_table(&sql_schema(&table_for(backend, path)))
                .await
                .unwrap();
            Target::Sql(Arc::new(store))
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The child process's body; a no-op when run as an ordinary test.
#[test]
fn durability_child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (backend, path) = spec.split_once('=').unwrap();
    let (backend, path) = (backend.to_string(), PathBuf::from(path));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WRITERS)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let target = Arc::new(open(&backend, &path).await);
        let table = Arc::new(table_for(&backend, &path));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let target = target.clone();
                let table = table.clone();
                tokio::spawn(async move {
                    for j in 0..WRITES_PER_WRITER {
                        let i = j * WRITERS + w;
                        match &*target {
                            Target::Kv(kv) => {
                                kv.set(&key_for(i), &value_for(i), None).await.unwrap()
                            }
                            Target::Sql(sql) => sql.insert(&table, sql_row(i)).await.unwrap(),
                        }
                        // One locked write per line, so lines never interleave.
                        writeln!(std::io::stdout(), "ACK {i}").unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    });
}

/// Runs a child writing through `backend`, kills it after enough acknowledgements, and
/// returns the database path (inside the returned dir) and the acknowledged indices.
fn write_then_kill(backend: &str, file: &str) -> (tempfile::TempDir, PathBuf, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join(file);
    let stderr_path = dir.path().join("child.stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "durability_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{backend}={}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let mut killed = false;
    // Lines already in the pipe after the kill were acknowledged too: read to the end.
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.parse::<usize>().unwrap());
        }
        if !killed && acked.len() >= ACKS_BEFORE_KILL {
            child.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        killed,
        "the child stopped after {} acknowledgements ({status}); stderr:\n{stderr}",
        acked.len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "killed by SIGKILL; stderr:\n{stderr}"
        );
    }
    assert!(acked.len() >= ACKS_BEFORE_KILL);
    (dir, path, acked)
}

async fn check_kv(backend: &str, file: &str) {
    let (_dir, path, acked) = write_then_kill(backend, file);
    let Target::Kv(kv) = open(backend, &path).await else {
        unreachable!()
    };
    for &i in &acked {
        assert_eq!(
            kv.get(&key_for(i)).await.unwrap(),
            Some(value_for(i)),
            "acknowledged key {i} after SIGKILL"
        );
    }
    // Whatever else made it to disk is whole.
    let present = kv.scan_prefix("key-").await.unwrap();
    assert!(present.len() >= acked.len());
    for (k, v) in present {
        let i: usize = k.strip_prefix("key-").unwrap().parse().unwrap();
        assert_eq!(v, value_for(i), "value of {k}");
    }
}

#[cfg(feature = "kv-sqlite")]
#[tokio::test(flavor = "multi_thread")]
async fn kv_sqlite_acknowledged_writes_survive_sigkill() {
    check_kv("kv_sqlite", "kvstore.db").await;
}

#[cfg(feature = "kv-sled")]
#[tokio::test(flavor = "multi_thread")]
async fn kv_sled_acknowledged_writes_survive_sigkill() {
    check_kv("kv_sled", "sled").await;
}

#[cfg(feature = "sql-sqlite")]
#[tokio::test(flavor = "multi_thread")]
async fn sql_sqlite_acknowledged_inserts_survive_sigkill() {
    check_sql("sql_sqlite", "sql_store.db").await;
}

#[cfg(feature = "kv-postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn kv_postgres_acknowledged_writes_survive_sigkill() {
    if !services::postgres_available("kv_postgres_acknowledged_writes_survive_sigkill") {
        return;
    }
    let table = format!("durable_kv_{}", services::unique_suffix());
    check_kv("kv_postgres", &table).await;
    drop_postgres_table(&table).await;
}

#[cfg(feature = "sql-postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn sql_postgres_acknowledged_inserts_survive_sigkill() {
    if !services::postgres_available("sql_postgres_acknowledged_inserts_survive_sigkill") {
        return;
    }
    let table = format!("durable_sql_{}", services::unique_suffix());
    check_sql("sql_postgres", &table).await;
    drop_postgres_table(&table).await;
}

/// Drops a run's table from the shared PostgreSQL.
#[cfg(any(feature = "kv-postgres", feature = "sql-postgres"))]
async fn drop_postgres_table(table: &str) {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} dbname={} user={}",
            services::HOST,
            services::PG_PORT,
            services::PG_DB,
            services::PG_USER
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{table}\"; \
             DO $$ BEGIN IF to_regclass('_llama_stack_schema') IS NOT NULL THEN \
               DELETE FROM _llama_stack_schema WHERE table_name = '{table}'; \
             END IF; END $$"
        ))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
}

async fn check_sql(backend: &str, file: &str) {
    let (_dir, path, acked) = write_then_kill(backend, file);
    let Target::Sql(sql) = open(backend, &path).await else {
        unreachable!()
    };
    let rows = sql
        .fetch_all(&table_for(backend, &path), &FetchQuery::default())
        .await
        .unwrap()
        .rows;
    let by_id: std::collections::HashMap<String, Row> = rows
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    for &i in &acked {
        assert_eq!(
            by_id.get(&key_for(i)),
            Some(&sql_row(i)),
            "acknowledged row {i}"
        );
    }
    // No half-written rows: every row present is complete.
    assert!(by_id.len() >= acked.len());
    for (id, row) in &by_id {
        let i = usize::try_from(row["n"].as_i64().unwrap()).unwrap();
        assert_eq!(row, &sql_row(i), "row {id}");
    }
}
