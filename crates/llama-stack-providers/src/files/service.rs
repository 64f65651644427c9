//! [`FilesService`]: the Files API over a metadata table in a SQL store (table
//! `openai_files`, rows owned per caller through the access policy) and a [`Blobs`]
//! backend for the bytes (local disk for `inline::localfs`, a bucket for `remote::s3`).
//!
//! The bytes are stored before the metadata row is inserted, so a listed file always has
//! its bytes. Expired files disappear from reads and lists at once and their bytes are
//! removed the next time they are touched or listed.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::api::files::{
    FileContent, FileDeleted, FileList, FileObject, FilePurpose, FileTag, Files, ListFilesRequest,
    UploadFileRequest, DEFAULT_FILES_LIMIT,
};
use llama_stack_core::api::providers::Health;
use llama_stack_core::authorized::AuthorizedSqlStore;
use llama_stack_core::provider::FilesProvider;
use llama_stack_core::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Order, Row, TableSchema,
};
use llama_stack_core::{Error, RequestContext, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// Llama Stack's table name for file metadata.
pub const DEFAULT_TABLE: &str = "openai_files";
/// Default largest upload (512 MiB, OpenAI's limit).
pub const DEFAULT_MAX_FILE_SIZE_BYTES: u64 = 512 * 1024 * 1024;

/// Where the bytes of files live.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Stores the bytes of file `id`; returns where they are (kept as `file_path`).
    async fn put(&self, id: &str, bytes: &[u8]) -> Result<String>;
    /// The bytes of file `id` (`NotFound` when they are missing).
    async fn get(&self, id: &str) -> Result<Vec<u8>>;
    /// Removes the bytes of file `id` (absent: no error).
    async fn remove(&self, id: &str) -> Result<()>;
    /// Backend health.
    async fn health(&self) -> Health;
}

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

/// The default of `max_file_size_bytes`.
pub fn default_max_size() -> u64 {
    DEFAULT_MAX_FILE_SIZE_BYTES
}

/// The Files API over a metadata table and a [`Blobs`] backend.
pub struct FilesService {
    blobs: Arc<dyn Blobs>,
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
pub fn valid_id(id: &str) -> bool {
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

impl FilesService {
    /// A service over `blobs` and the metadata table `table` of `sql` (created if needed).
    pub async fn open(
        blobs: Arc<dyn Blobs>,
        sql: Arc<dyn llama_stack_core::storage::SqlStore>,
        table: Option<String>,
        policy: llama_stack_core::access::AccessPolicy,
        ttl_secs: Option<u64>,
        max_file_size_bytes: u64,
    ) -> Result<Self> {
        let table = table.unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let sql = AuthorizedSqlStore::new(sql, policy);
        sql.create_table(&schema(&table)).await?;
        Ok(FilesService {
            blobs,
            sql,
            table,
            ttl_secs,
            max_size: max_file_size_bytes,
        })
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
        self.remove_quietly(id).await;
    }

    /// Removes a file's bytes; a failure is logged (the row is gone, so nobody sees them).
    async fn remove_quietly(&self, id: &str) {
        if let Err(e) = self.blobs.remove(id).await {
            tracing::warn!(file_id = %id, error = %e, "removing a file's bytes failed");
        }
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

#[async_trait]
impl Files for FilesService {
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
        let location = self.blobs.put(&id, &req.content).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!("cannot store file '{}': {}", req.filename, e.message()),
            )
        })?;
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
        row.insert("file_path".into(), json!(location));
        if let Err(e) = self.sql.insert(ctx.user(), &self.table, row).await {
            self.remove_quietly(&id).await;
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
        let content = self.blobs.get(file_id).await.map_err(|e| {
            if e.kind() == llama_stack_core::ErrorKind::NotFound {
                Error::not_found("File", file_id).with_context("reason", "bytes missing")
            } else {
                e
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
        self.remove_quietly(file_id).await;
        Ok(FileDeleted {
            id: file_id.to_string(),
            object: "file".into(),
            deleted: true,
        })
    }
}

#[async_trait]
impl FilesProvider for FilesService {
    async fn health(&self) -> Health {
        self.blobs.health().await
    }
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
}
