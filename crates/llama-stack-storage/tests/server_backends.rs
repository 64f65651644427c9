//! The PostgreSQL and Redis backends beyond the conformance suites: their config fields
//! and defaults as Llama Stack names them, secrets that never reach errors or `Debug`,
//! and the storage format check that refuses a database written by a newer build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(
    not(all(
        feature = "kv-postgres",
        feature = "sql-postgres",
        feature = "kv-redis"
    )),
    allow(dead_code, unused_imports)
)]

#[path = "support/services.rs"]
mod services;

use llama_stack_core::ErrorKind;
use llama_stack_storage::config::{BackendConfig, StorageConfig};
use serde_json::json;

const PASSWORD: &str = "s3cr3t-Pa55word-do-not-print";

fn backend(v: serde_json::Value) -> Result<BackendConfig, serde_json::Error> {
    serde_json::from_value(v)
}

#[test]
fn server_backends_parse_with_llama_stack_fields_and_defaults() {
    let BackendConfig::KvPostgres(kv) =
        backend(json!({"type": "kv_postgres", "user": "u"})).unwrap()
    else {
        panic!("kv_postgres")
    };
    assert_eq!(
        (
            kv.host.as_str(),
            kv.port.0,
            kv.db.as_str(),
            kv.table_name.as_str()
        ),
        ("localhost", 5432, "llamastack", "llamastack_kvstore")
    );
    assert!(kv.password.is_none() && kv.ssl_mode.is_none());

    let BackendConfig::SqlPostgres(sql) =
        backend(json!({"type": "sql_postgres", "user": "u", "port": "6543"})).unwrap()
    else {
        panic!("sql_postgres")
    };
    assert_eq!(sql.port.0, 6543, "a port may be a string");
    assert_eq!(
        (
            sql.pool_size,
            sql.max_overflow,
            sql.pool_recycle,
            sql.pool_pre_ping
        ),
        (10, 20, -1, true)
    );

    let BackendConfig::KvRedis(redis) = backend(json!({"type": "kv_redis"})).unwrap() else {
        panic!("kv_redis")
    };
    assert_eq!((redis.host.as_str(), redis.port.0), ("localhost", 6379));

    let BackendConfig::KvPostgres(tls) = backend(json!({
        "type": "kv_postgres", "user": "u", "port": 5433, "ssl_mode": "verify-full",
        "ca_cert_path": "/etc/ca.pem", "table_name": "my_kv"
    }))
    .unwrap() else {
        panic!("kv_postgres")
    };
    assert_eq!(tls.port.0, 5433);
    assert_eq!(tls.table_name, "my_kv");
    assert_eq!(tls.ca_cert_path.as_deref(), Some("/etc/ca.pem"));

    // Whole storage sections select the new types by name.
    let storage: StorageConfig = serde_json::from_value(json!({
        "backends": {
            "kv_default": {"type": "kv_redis", "host": "redis", "port": "6380"},
            "sql_default": {"type": "sql_postgres", "user": "llama", "password": "pw"},
        }
    }))
    .unwrap();
    assert!(storage.backends["kv_default"].is_kv());
    assert!(storage.backends["sql_default"].is_sql());
    assert_eq!(storage.backends["sql_default"].type_name(), "sql_postgres");
}

#[test]
fn invalid_server_backend_configs_are_rejected_naming_the_field() {
    let check = |v: serde_json::Value, mentions: &str| {
        let err = backend(v.clone()).unwrap_err().to_string();
        assert!(
            err.contains(mentions),
            "{v}: '{err}' should mention '{mentions}'"
        );
    };
    check(json!({"type": "kv_postgres"}), "user");
    check(json!({"type": "sql_postgres"}), "user");
    check(
        json!({"type": "kv_postgres", "user": "u", "table_name": "bad-name"}),
        "identifier",
    );
    check(
        json!({"type": "kv_postgres", "user": "u", "table_name": "x".repeat(64)}),
        "identifier",
    );
    check(json!({"type": "kv_redis", "port": "http"}), "port");
    check(json!({"type": "kv_redis", "port": 70000}), "port");
    check(
        json!({"type": "sql_postgres", "user": "u", "pool_size": 0}),
        "pool_size",
    );
    check(
        json!({"type": "sql_postgres", "user": "u", "pool_recycle": -2}),
        "pool_recycle",
    );
    check(
        json!({"type": "kv_postgres", "user": "u", "ssl_mode": "maybe"}),
        "maybe",
    );
    check(json!({"type": "kv_redis", "colour": "red"}), "colour");
}

#[test]
fn passwords_are_redacted_in_debug_output() {
    for v in [
        json!({"type": "kv_postgres", "user": "u", "password": PASSWORD}),
        json!({"type": "sql_postgres", "user": "u", "password": PASSWORD}),
        json!({"type": "kv_redis", "password": PASSWORD}),
    ] {
        let cfg = backend(v).unwrap();
        let debug = format!("{cfg:?} {cfg:#?}");
        assert!(!debug.contains(PASSWORD), "{debug}");
        assert!(debug.contains("********"), "{debug}");
    }
}

/// A config for a server on a port where nothing listens, with a password.
fn unreachable_backends() -> Vec<BackendConfig> {
    let port = services::free_port();
    vec![
        backend(
            json!({"type": "kv_postgres", "host": "127.0.0.1", "port": port,
                       "user": "u", "password": PASSWORD}),
        )
        .unwrap(),
        backend(
            json!({"type": "sql_postgres", "host": "127.0.0.1", "port": port,
                       "user": "u", "password": PASSWORD}),
        )
        .unwrap(),
        backend(
            json!({"type": "kv_redis", "host": "127.0.0.1", "port": port,
                       "password": PASSWORD}),
        )
        .unwrap(),
    ]
}

#[cfg(all(
    feature = "kv-postgres",
    feature = "sql-postgres",
    feature = "kv-redis"
))]
#[tokio::test]
async fn unreachable_servers_are_unavailable_naming_host_and_port_but_never_the_password() {
    for cfg in unreachable_backends() {
        let err = if cfg.is_kv() {
            llama_stack_storage::open_kv(&cfg).await.err().unwrap()
        } else {
            llama_stack_storage::open_sql(&cfg).await.err().unwrap()
        };
        let shown = format!("{err} | {err:?} | {}", err.message());
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{shown}");
        assert!(err.is_retryable(), "{shown}");
        assert!(shown.contains("127.0.0.1:"), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            assert!(!format!("{s} {s:?}").contains(PASSWORD));
            source = s.source();
        }
    }
}

#[cfg(feature = "sql-sqlite")]
#[tokio::test]
async fn sqlite_refuses_a_database_from_a_newer_build() {
    use llama_stack_storage::sql::{SqliteSqlStore, STORAGE_FORMAT_VERSION};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sql_store.db");
    drop(SqliteSqlStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let recorded: i64 = conn
        .query_row(
            "SELECT version FROM _llama_stack_schema WHERE table_name = '_llama_stack_schema'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, STORAGE_FORMAT_VERSION);
    // A file from before the format was recorded is migrated (stamped) on open.
    conn.execute(
        "DELETE FROM _llama_stack_schema WHERE table_name = '_llama_stack_schema'",
        [],
    )
    .unwrap();
    drop(SqliteSqlStore::open(&path).await.unwrap());
    // A newer format is refused, and the file is left as it was.
    conn.execute(
        "UPDATE _llama_stack_schema SET version = ?1 WHERE table_name = '_llama_stack_schema'",
        [STORAGE_FORMAT_VERSION + 1],
    )
    .unwrap();
    let err = SqliteSqlStore::open(&path).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("newer"), "{err}");
    assert!(
        err.message()
            .contains(&format!("version {}", STORAGE_FORMAT_VERSION + 1)),
        "{err}"
    );
    let still: i64 = conn
        .query_row(
            "SELECT version FROM _llama_stack_schema WHERE table_name = '_llama_stack_schema'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(still, STORAGE_FORMAT_VERSION + 1);
}

#[cfg(feature = "sql-postgres")]
async fn raw(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host={} port={} dbname={db} user={}",
            services::HOST,
            services::PG_PORT,
            services::PG_USER
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[cfg(feature = "sql-postgres")]
#[tokio::test]
async fn postgres_records_versions_and_refuses_a_database_from_a_newer_build() {
    use llama_stack_core::storage::{ColumnDef, ColumnType, SqlStore, TableSchema};
    use llama_stack_storage::sql::{PostgresSqlStore, STORAGE_FORMAT_VERSION};

    let test = "postgres_records_versions_and_refuses_a_database_from_a_newer_build";
    if !services::postgres_available(test) {
        return;
    }
    // A database of its own, since the check is about a whole database.
    let db = format!("lsrs_format_{}", services::unique_suffix());
    let admin = raw(services::PG_DB).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
        .unwrap();
    let cfg: llama_stack_storage::config::SqlPostgresConfig = serde_json::from_value(json!({
        "host": services::HOST, "port": services::PG_PORT, "db": db,
        "user": services::PG_USER, "pool_size": 1, "max_overflow": 0,
    }))
    .unwrap();

    let store = PostgresSqlStore::open(&cfg).await.unwrap();
    let v1 = TableSchema::new(
        "items",
        vec![ColumnDef::new("id", ColumnType::Text).primary_key()],
    );
    store.create_table(&v1).await.unwrap();
    assert_eq!(store.schema_version("items").await.unwrap(), Some(1));
    store.create_table(&v1).await.unwrap();
    assert_eq!(store.schema_version("items").await.unwrap(), Some(1));
    let mut v2 = v1.clone();
    v2.columns.push(ColumnDef::new("note", ColumnType::Text));
    store.create_table(&v2).await.unwrap();
    assert_eq!(store.schema_version("items").await.unwrap(), Some(2));
    drop(store);

    let client = raw(&db).await;
    let format: i64 = client
        .query_one(
            "SELECT version FROM _llama_stack_schema WHERE table_name = '_llama_stack_schema'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(format, STORAGE_FORMAT_VERSION);
    client
        .execute(
            "UPDATE _llama_stack_schema SET version = $1 WHERE table_name = '_llama_stack_schema'",
            &[&(STORAGE_FORMAT_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PostgresSqlStore::open(&cfg).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("newer"), "{err}");
    let still: i64 = client
        .query_one(
            "SELECT version FROM _llama_stack_schema WHERE table_name = '_llama_stack_schema'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        still,
        STORAGE_FORMAT_VERSION + 1,
        "the database was not modified"
    );
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .unwrap();
}
