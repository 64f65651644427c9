//! The Files API (OpenAI's `/v1/files`): upload, list, retrieve, read and delete files.
//!
//! Files belong to the caller who uploaded them: every read, list and delete goes through
//! the access policy, so another user's file is `NotFound`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::storage::Order;

/// Shortest `expires_after.seconds` accepted (one hour).
pub const MIN_EXPIRES_AFTER_SECONDS: u64 = 3600;
/// Longest `expires_after.seconds` accepted (30 days).
pub const MAX_EXPIRES_AFTER_SECONDS: u64 = 2_592_000;
/// Default page size of `GET /v1/files`.
pub const DEFAULT_FILES_LIMIT: usize = 10_000;

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FilePurpose {
    /// Files for vector stores, file search and assistants.
    Assistants,
    /// Batch input files.
    Batch,
}

impl FilePurpose {
    /// `assistants` or `batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilePurpose::Assistants => "assistants",
            FilePurpose::Batch => "batch",
        }
    }

    /// Parses a purpose; anything else is an `InvalidRequest` naming the accepted values.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "assistants" => Ok(FilePurpose::Assistants),
            "batch" => Ok(FilePurpose::Batch),
            other => Err(Error::invalid_param(
                "purpose",
                other,
                "Must be one of: assistants, batch",
            )),
        }
    }
}

/// The anchor of a file expiry: only `created_at`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ExpiresAfterAnchor {
    /// Expiry counts from the upload time.
    #[default]
    #[serde(rename = "created_at")]
    CreatedAt,
}

/// When an uploaded file expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExpiresAfter {
    /// Always `created_at`.
    #[serde(default)]
    pub anchor: ExpiresAfterAnchor,
    /// Seconds after the anchor, 3600 to 2592000.
    pub seconds: u64,
}

impl ExpiresAfter {
    /// Checks the range of `seconds`.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_EXPIRES_AFTER_SECONDS..=MAX_EXPIRES_AFTER_SECONDS).contains(&self.seconds) {
            return Err(Error::invalid_param(
                "expires_after.seconds",
                self.seconds,
                "Must be between 3600 and 2592000 (1 hour to 30 days)",
            ));
        }
        Ok(())
    }
}

/// The constant `object` field of a file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FileTag {
    /// `"file"`.
    #[default]
    #[serde(rename = "file")]
    File,
}

/// An uploaded file (`OpenAIFileObject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileObject {
    /// Always `"file"`.
    #[serde(default)]
    pub object: FileTag,
    /// `file-<hex>`.
    pub id: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Unix seconds of the upload.
    pub created_at: i64,
    /// Unix seconds after which the file is gone, if it expires.
    pub expires_at: Option<i64>,
    /// The name it was uploaded with.
    pub filename: String,
    /// What it is for.
    pub purpose: FilePurpose,
}

/// An upload: the bytes plus what OpenAI's multipart form carries.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadFileRequest {
    /// The file's bytes.
    pub content: Vec<u8>,
    /// The file name (as sent; stored as given, sanitized when served back).
    pub filename: String,
    /// What it is for.
    pub purpose: FilePurpose,
    /// When it expires (none: the provider's default lifetime, if any).
    pub expires_after: Option<ExpiresAfter>,
}

impl UploadFileRequest {
    /// An upload of `content` named `filename`.
    pub fn new(
        filename: impl Into<String>,
        content: impl Into<Vec<u8>>,
        purpose: FilePurpose,
    ) -> Self {
        UploadFileRequest {
            content: content.into(),
            filename: filename.into(),
            purpose,
            expires_after: None,
        }
    }

    /// Reads the file at `path` (its name becomes the file name).
    pub async fn from_path(
        path: impl AsRef<std::path::Path>,
        purpose: FilePurpose,
    ) -> Result<Self> {
        let path = path.as_ref();
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::invalid_request(format!("'{}' does not name a file", path.display()))
            })?;
        let content = tokio::fs::read(path).await.map_err(|e| {
            Error::invalid_request(format!("cannot read '{}': {e}", path.display()))
        })?;
        Ok(Self::new(filename, content, purpose))
    }

    /// Reads everything from `reader`.
    pub async fn from_reader<R>(
        filename: impl Into<String>,
        mut reader: R,
        purpose: FilePurpose,
    ) -> Result<Self>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        use tokio::io::AsyncReadExt;
        let mut content = Vec::new();
        reader
            .read_to_end(&mut content)
            .await
            .map_err(|e| Error::invalid_request(format!("cannot read the upload: {e}")))?;
        Ok(Self::new(filename, content, purpose))
    }

    /// Sets the expiry.
    pub fn expires_after(mut self, seconds: u64) -> Self {
        self.expires_after = Some(ExpiresAfter {
            anchor: ExpiresAfterAnchor::CreatedAt,
            seconds,
        });
        self
    }
}

/// `GET /v1/files` parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListFilesRequest {
    /// Continue after this file id.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size (default 10000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// By creation time (default `desc`).
    #[serde(default)]
    pub order: Option<Order>,
    /// Only files with this purpose.
    #[serde(default)]
    pub purpose: Option<FilePurpose>,
}

/// A page of files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileList {
    /// Always `"list"`.
    pub object: String,
    /// The files.
    pub data: Vec<FileObject>,
    /// Whether more follow.
    pub has_more: bool,
    /// The first id of the page (`""` when empty).
    pub first_id: String,
    /// The last id of the page (`""` when empty).
    pub last_id: String,
}

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileDeleted {
    /// The file id.
    pub id: String,
    /// Always `"file"`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// A file's bytes and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct FileContent {
    /// The file name as uploaded.
    pub filename: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// The Files API.
#[async_trait]
pub trait Files: Send + Sync {
    /// Stores a file owned by the caller.
    async fn upload_file(&self, ctx: &RequestContext, req: UploadFileRequest)
        -> Result<FileObject>;
    /// A page of the caller's files.
    async fn list_files(&self, ctx: &RequestContext, req: ListFilesRequest) -> Result<FileList>;
    /// One file's metadata.
    async fn get_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileObject>;
    /// One file's bytes.
    async fn file_content(&self, ctx: &RequestContext, file_id: &str) -> Result<FileContent>;
    /// Deletes a file (metadata and bytes).
    async fn delete_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileDeleted>;
}

/// A file name safe for a `Content-Disposition` header: path separators, quotes and
/// control characters replaced by `_`, never empty.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '"' | '\\' | '/' | ';') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        "file".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn purposes_and_expiry_are_checked() {
        assert_eq!(FilePurpose::parse("batch").unwrap(), FilePurpose::Batch);
        let e = FilePurpose::parse("fine-tune").unwrap_err();
        assert!(e.message().contains("'purpose'"), "{e}");
        assert!(ExpiresAfter {
            anchor: ExpiresAfterAnchor::CreatedAt,
            seconds: 3599
        }
        .validate()
        .is_err());
        assert!(ExpiresAfter {
            anchor: ExpiresAfterAnchor::CreatedAt,
            seconds: 3600
        }
        .validate()
        .is_ok());
        let v: ExpiresAfter =
            serde_json::from_str(r#"{"anchor":"created_at","seconds":7200}"#).unwrap();
        assert_eq!(v.seconds, 7200);
        assert!(
            serde_json::from_str::<ExpiresAfter>(r#"{"anchor":"now","seconds":7200}"#).is_err()
        );
    }

    #[test]
    fn filenames_are_sanitized() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("a\"b\r\n.txt"), "a_b__.txt");
        assert_eq!(sanitize_filename(""), "file");
        assert_eq!(sanitize_filename("C:\\x\\report.pdf"), "report.pdf");
    }
}
