//! `open_kv` / `open_sql`: backend selection from config, parent directories, and errors
//! that name the backend type, the path or the cargo feature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llama_stack_core::ErrorKind;
use llama_stack_storage::config::{
    BackendConfig, KvMemoryConfig, SledConfig, SqlSqliteConfig, SqlitePathConfig,
};
use llama_stack_storage::{open_kv, open_sql};

fn kv_sqlite(path: &std::path::Path) -> BackendConfig {
    BackendConfig::KvSqlite(SqlitePathConfig {
        db_path: path.display().to_string(),
        namespace: None,
    })
}

fn kv_sled(path: &std::path::Path) -> BackendConfig {
    BackendConfig::KvSled(SledConfig {
        db_path: path.display().to_string(),
        namespace: None,
    })
}

fn sql_sqlite(path: &std::path::Path) -> BackendConfig {
    BackendConfig::SqlSqlite(SqlSqliteConfig {
        db_path: path.display().to_string(),
        pool_pre_ping: true,
    })
}

#[tokio::test]
async fn kv_memory_is_always_available() {
    let kv = open_kv(&BackendConfig::KvMemory(KvMemoryConfig::default()))
        .await
        .unwrap();
    assert_eq!(kv.backend(), "kv_memory");
    kv.set("k", "v", None).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn the_wrong_kind_of_backend_is_a_config_error_naming_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_kv(&sql_sqlite(&dir.path().join("x.db")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("sql_sqlite"), "{err}");
    for cfg in [
        BackendConfig::KvMemory(KvMemoryConfig::default()),
        kv_sqlite(&dir.path().join("y.db")),
        kv_sled(&dir.path().join("z")),
    ] {
        let err = open_sql(&cfg).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(cfg.type_name()), "{err}");
    }
    // Nothing was created for the rejected configs.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(all(feature = "kv-sqlite", feature = "kv-sled", feature = "sql-sqlite"))]
#[tokio::test]
async fn parent_directories_are_created_and_data_persists() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("a").join("b");
    for cfg in [kv_sqlite(&base.join("kv.db")), kv_sled(&base.join("sled"))] {
        {
            let kv = open_kv(&cfg).await.unwrap();
            assert_eq!(kv.backend(), cfg.type_name());
            kv.set("persisted", "yes", None).await.unwrap();
        }
        let kv = open_kv(&cfg).await.unwrap();
        assert_eq!(kv.get("persisted").await.unwrap().as_deref(), Some("yes"));
    }
    let sql = open_sql(&sql_sqlite(&base.join("c").join("sql.db")))
        .await
        .unwrap();
    assert_eq!(sql.backend(), "sql_sqlite");
    assert!(base.join("c").join("sql.db").exists());
}

#[cfg(all(feature = "kv-sqlite", feature = "kv-sled", feature = "sql-sqlite"))]
#[tokio::test]
async fn unusable_paths_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let under_file = blocker.join("sub");
    for cfg in [
        kv_sqlite(&under_file.join("kv.db")),
        kv_sled(&under_file.join("sled")),
        sql_sqlite(&under_file.join("sql.db")),
    ] {
        let err = match cfg.is_kv() {
            true => open_kv(&cfg).await.err().unwrap(),
            false => open_sql(&cfg).await.err().unwrap(),
        };
        assert!(
            err.message().contains(&under_file.display().to_string()),
            "{err}"
        );
    }
    // A directory where the SQLite file should be.
    let err = open_kv(&kv_sqlite(dir.path())).await.err().unwrap();
    assert!(
        err.message().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[cfg(not(feature = "kv-sled"))]
#[tokio::test]
async fn a_compiled_out_backend_names_its_feature() {
    let err = open_kv(&kv_sled(std::path::Path::new("unused")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("kv-sled"), "{err}");
}
