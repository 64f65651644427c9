//! `inline::localfs`: file bytes on local disk under `storage_dir`, metadata in a SQL
//! store (table `openai_files`), owned per caller through the access policy.
//!
//! Uploads are written to a temporary file and renamed into place before the metadata
//! row is inserted, so a listed file always has its bytes. Expired files disappear from
//! reads and lists at once and are removed from disk the next time they are touched or
//! listed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::api::files::{
    FileContent, FileDeleted, FileList, FileObject, FilePurpose, FileTag, Files, ListFilesRequest,
    UploadFileRequest, DEFAULT_FILES_LIMIT,
};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::authorized::AuthorizedSqlStore;
use llama_stack_core::provider::{
    FilesProvider, FnFactory, ProviderContext, ProviderInstance, ProviderSpec,
};
use llama_stack_core::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Order, Row, TableSchema,
};
use llama_stack_core::{Error, RequestContext, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// The provider type.
pub const PROVIDER_TYPE: &str = "inline::localfs";
/// Llama Stack's table name for file metadata.
pub const DEFAULT_TABLE: &str = "openai_files";
/// Default largest upload (512 MiB, OpenAI's limit).
pub const DEFAULT_MAX_FILE_SIZE_BYTES: u64 = 512 * 1024 * 1024;

/// A SQL store reference: a named backend and an optional table name.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStoreRef {
    /// A `sql_*` backend of `storage.backends`.
    pub backend: String,
    /// The table (default `openai_files`).
    #[serde(default)]
    pub table_name: Option<String>,
}

/// Config of `inline::localfs`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalfsConfig {
    /// Directory holding the file bytes (created if absent; `~` expands to the home directory).
    pub storage_dir: String,
    /// Where file metadata lives.
    pub metadata_store: SqlStoreRef,
    /// Default lifetime of files uploaded without `expires_after` (none: they never expire).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Largest accepted upload in bytes (larger → 413).
    #[serde(default = "default_max_size")]
    pub max_file_size_bytes: u64,
}

fn default_max_size() -> u64 {
    DEFAULT_MAX_FILE_SIZE_BYTES
}

/// Files on local disk.
pub struct LocalfsProvider {
    dir: PathBuf,
    sql: AuthorizedSqlStore,
    table: String,
    ttl_secs: Option<u64>,
    max_size: u64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    }
}

fn schema(table: &str) -> TableSchema {
    TableSchema::new(
        table,
        vec![
            ColumnDef::new("id", ColumnType::Text).primary_key(),
            ColumnDef::new("filename", ColumnType::Text).not_null(),
            ColumnDef::new("purpose", ColumnType::Text).not_null(),
            ColumnDef::new("bytes", ColumnType::Integer).not_null(),
            ColumnDef::new("created_at", ColumnType::Timestamp).not_null(),
            ColumnDef::new("expires_at", ColumnType::Timestamp),
            ColumnDef::new("file_path", ColumnType::Text).not_null(),
        ],
    )
}

/// A file id is `file-` and 32 lowercase hex digits; anything else cannot name a file
/// here (and never reaches the file system).
fn valid_id(id: &str) -> bool {
    id.strip_prefix("file-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn live_filter() -> Filter {
    Filter::Or(vec![
        Filter::IsNull("expires_at".into()),
        Filter::Gt("expires_at".into(), json!(now())),
    ])
}

fn object_from_row(row: &Row) -> Result<FileObject> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default();
    Ok(FileObject {
        object: FileTag::File,
        id: text("id").to_string(),
        bytes: row.get("bytes").and_then(Value::as_u64).unwrap_or_default(),
        created_at: row
            .get("created_at")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        expires_at: row.get("expires_at").and_then(Value::as_i64),
        filename: text("filename").to_string(),
        purpose: FilePurpose::parse(text("purpose"))
            .map_err(|e| Error::internal(format!("stored file has an invalid purpose: {e}")))?,
    })
}

impl LocalfsProvider {
    /// Opens the provider: creates `storage_dir` and the metadata table.
    pub async fn open(
        config: LocalfsConfig,
        sql: Arc<dyn llama_stack_core::storage::SqlStore>,
        policy: llama_stack_core::access::AccessPolicy,
    ) -> Result<Self> {
        let dir = expand_home(&config.storage_dir);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            Error::config(format!(
                "storage_dir: cannot create '{}': {e}",
                dir.display()
            ))
        })?;
        let table = config
            .metadata_store
            .table_name
            .clone()
            .unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let sql = AuthorizedSqlStore::new(sql, policy);
        sql.create_table(&schema(&table)).await?;
        Ok(LocalfsProvider {
            dir,
            sql,
            table,
            ttl_secs: config.ttl_secs,
            max_size: config.max_file_size_bytes,
        })
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The live row of `file_id` the caller may read, or `NotFound`.
    async fn row(&self, ctx: &RequestContext, file_id: &str) -> Result<Row> {
        if !valid_id(file_id) {
            return Err(Error::not_found("File", file_id));
        }
        let filter = Filter::eq("id", file_id);
        let row = self
            .sql
            .fetch_one(ctx.user(), &self.table, Some(&filter))
            .await?
            .ok_or_else(|| Error::not_found("File", file_id))?;
        if row
            .get("expires_at")
            .and_then(Value::as_i64)
            .is_some_and(|t| t <= now())
        {
            self.remove_expired(&row).await;
            return Err(Error::not_found("File", file_id));
        }
        Ok(row)
    }

    /// Removes an expired file's row and bytes (errors are logged: the file is already
    /// invisible and the next sweep retries).
    async fn remove_expired(&self, row: &Row) {
        let Some(id) = row.get("id").and_then(Value::as_str) else {
            return;
        };
        let filter = Filter::And(vec![
            Filter::eq("id", id),
            Filter::Lte("expires_at".into(), json!(now())),
        ]);
        if let Err(e) = self.sql.inner().delete(&self.table, &filter).await {
            tracing::warn!(file_id = %id, error = %e, "removing an expired file's metadata failed");
            return;
        }
        remove_quietly(&self.path_of(id)).await;
    }

    async fn sweep_expired(&self) -> Result<()> {
        let query = FetchQuery {
            filter: Some(Filter::Lte("expires_at".into(), json!(now()))),
            limit: Some(256),
            ..FetchQuery::default()
        };
        let page = self.sql.inner().fetch_all(&self.table, &query).await?;
        for row in &page.rows {
            self.remove_expired(row).await;
        }
        Ok(())
    }
}

async fn remove_quietly(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "removing a file's bytes failed")
        }
    }
}

#[async_trait]
impl Files for LocalfsProvider {
    async fn upload_file(
        &self,
        ctx: &RequestContext,
        req: UploadFileRequest,
    ) -> Result<FileObject> {
        let size = req.content.len() as u64;
        if size > self.max_size {
            return Err(Error::new(
                llama_stack_core::ErrorKind::PayloadTooLarge,
                format!(
                    "file '{}' has {size} bytes; the largest accepted upload is {} bytes (max_file_size_bytes)",
                    req.filename, self.max_size
                ),
            ));
        }
        let id = format!("file-{}", uuid::Uuid::new_v4().simple());
        let created_at = now();
        let expires_at = match (&req.expires_after, self.ttl_secs) {
            (Some(e), _) => Some(created_at + e.seconds as i64),
            (None, Some(ttl)) => Some(created_at + ttl as i64),
            (None, None) => None,
        };
        let path = self.path_of(&id);
        let tmp = self.dir.join(format!(".{id}.part"));
        let write = async {
            tokio::fs::write(&tmp, &req.content).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            remove_quietly(&tmp).await;
            return Err(Error::unavailable(format!(
                "cannot store file '{}' under '{}': {e}",
                req.filename,
                self.dir.display()
            )));
        }
        let object = FileObject {
            object: FileTag::File,
            id: id.clone(),
            bytes: size,
            created_at,
            expires_at,
            filename: req.filename,
            purpose: req.purpose,
        };
        let mut row = Row::new();
        row.insert("id".into(), json!(id));
        row.insert("filename".into(), json!(object.filename));
        row.insert("purpose".into(), json!(object.purpose.as_str()));
        row.insert("bytes".into(), json!(size));
        row.insert("created_at".into(), json!(created_at));
        row.insert("expires_at".into(), json!(expires_at));
        row.insert("file_path".into(), json!(path.to_string_lossy()));
        if let Err(e) = self.sql.insert(ctx.user(), &self.table, row).await {
            remove_quietly(&path).await;
            return Err(e);
        }
        Ok(object)
    }

    async fn list_files(&self, ctx: &RequestContext, req: ListFilesRequest) -> Result<FileList> {
        if let Err(e) = self.sweep_expired().await {
            tracing::warn!(error = %e, "sweeping expired files failed");
        }
        let limit = req.limit.unwrap_or(DEFAULT_FILES_LIMIT);
        let order = req.order.unwrap_or(Order::Desc);
        let mut filters = vec![live_filter()];
        if let Some(p) = req.purpose {
            filters.push(Filter::eq("purpose", p.as_str()));
        }
        let cursor = match &req.after {
            Some(after) => {
                // An unknown cursor is an error (not an empty page).
                self.row(ctx, after).await.map_err(|_| {
                    Error::invalid_param("after", after, "No file with this id exists")
                })?;
                Some(Cursor {
                    key_column: "id".into(),
                    after: json!(after),
                })
            }
            None => None,
        };
        let query = FetchQuery {
            filter: Some(Filter::And(filters)),
            order_by: Some(("created_at".into(), order)),
            limit: Some(limit),
            cursor,
        };
        let page = self.sql.fetch_all(ctx.user(), &self.table, &query).await?;
        let data = page
            .rows
            .iter()
            .map(object_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(FileList {
            object: "list".into(),
            first_id: data.first().map(|f| f.id.clone()).unwrap_or_default(),
            last_id: data.last().map(|f| f.id.clone()).unwrap_or_default(),
            has_more: page.has_more,
            data,
        })
    }

    async fn get_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileObject> {
        object_from_row(&self.row(ctx, file_id).await?)
    }

    async fn file_content(&self, ctx: &RequestContext, file_id: &str) -> Result<FileContent> {
        let object = object_from_row(&self.row(ctx, file_id).await?)?;
        let content = tokio::fs::read(self.path_of(file_id)).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found("File", file_id).with_context("reason", "bytes missing on disk")
            } else {
                Error::unavailable(format!("cannot read file '{file_id}': {e}"))
            }
        })?;
        Ok(FileContent {
            filename: object.filename,
            content,
        })
    }

    async fn delete_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileDeleted> {
        self.row(ctx, file_id).await?;
        let deleted = self
            .sql
            .delete(ctx.user(), &self.table, &Filter::eq("id", file_id))
            .await?;
        if deleted == 0 {
            return Err(Error::forbidden(format!(
                "you may read file '{file_id}' but not delete it"
            )));
        }
        remove_quietly(&self.path_of(file_id)).await;
        Ok(FileDeleted {
            id: file_id.to_string(),
            object: "file".into(),
            deleted: true,
        })
    }
}

#[async_trait]
impl FilesProvider for LocalfsProvider {
    async fn health(&self) -> Health {
        match tokio::fs::metadata(&self.dir).await {
            Ok(m) if m.is_dir() => Health::ok(),
            Ok(_) => Health::error(format!("'{}' is not a directory", self.dir.display())),
            Err(e) => Health::error(format!("'{}': {e}", self.dir.display())),
        }
    }
}

/// The spec of `inline::localfs`.
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<LocalfsConfig>(
        Api::Files,
        PROVIDER_TYPE,
        "Files on local disk, metadata in a SQL store",
        FnFactory(|ctx: ProviderContext| async move {
            let config: LocalfsConfig = ctx.parse_config()?;
            let sql = ctx
                .storage
                .sql_store(&config.metadata_store.backend)
                .await
                .map_err(|e| e.with_prefix(&format!("{}.metadata_store", ctx.config_path)))?;
            let provider = LocalfsProvider::open(config, sql, (*ctx.policy).clone()).await?;
            Ok(ProviderInstance::Files(Arc::new(provider)))
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_touching_the_disk() {
        assert!(valid_id("file-0123456789abcdef0123456789abcdef"));
        assert!(!valid_id("file-../../etc/passwd"));
        assert!(!valid_id("file-0123"));
        assert!(!valid_id("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn home_is_expanded() {
        if let Some(h) = std::env::var_os("HOME") {
            assert_eq!(expand_home("~/x"), PathBuf::from(h).join("x"));
        }
        assert_eq!(expand_home("/tmp/x"), PathBuf::from("/tmp/x"));
    }
}
