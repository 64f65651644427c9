//! `inline::localfs`: file bytes on local disk under `storage_dir`, metadata in a SQL
//! store (table `openai_files`), owned per caller through the access policy (see
//! [`FilesService`]).
//!
//! Bytes are written to a temporary file and renamed into place, so a file on disk is
//! always whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderInstance, ProviderSpec};
use llama_stack_core::{Error, Result};
use serde::Deserialize;

use super::service::{default_max_size, valid_id, Blobs, FilesService};
pub use super::service::{SqlStoreRef, DEFAULT_MAX_FILE_SIZE_BYTES, DEFAULT_TABLE};

/// The provider type.
pub const PROVIDER_TYPE: &str = "inline::localfs";

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

/// File bytes in a directory, one file per id.
pub struct DiskBlobs {
    dir: PathBuf,
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    }
}

impl DiskBlobs {
    /// Creates `dir` if needed.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            Error::config(format!(
                "storage_dir: cannot create '{}': {e}",
                dir.display()
            ))
        })?;
        Ok(DiskBlobs { dir })
    }

    fn path_of(&self, id: &str) -> Result<PathBuf> {
        // Ids never reach the file system unless they are well-formed.
        if !valid_id(id) {
            return Err(Error::not_found("File", id));
        }
        Ok(self.dir.join(id))
    }
}

#[async_trait]
impl Blobs for DiskBlobs {
    async fn put(&self, id: &str, bytes: &[u8]) -> Result<String> {
        let path = self.path_of(id)?;
        let tmp = self.dir.join(format!(".{id}.part"));
        let write = async {
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::unavailable(format!(
                "cannot write under '{}': {e}",
                self.dir.display()
            )));
        }
        Ok(path.to_string_lossy().into_owned())
    }

    async fn get(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.path_of(id)?;
        tokio::fs::read(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found("File", id)
            } else {
                Error::unavailable(format!("cannot read file '{id}': {e}"))
            }
        })
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let path = self.path_of(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::unavailable(format!(
                "cannot remove '{}': {e}",
                path.display()
            ))),
        }
    }

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
            let blobs = DiskBlobs::open(expand_home(&config.storage_dir)).await?;
            let service = FilesService::open(
                Arc::new(blobs),
                sql,
                config.metadata_store.table_name,
                (*ctx.policy).clone(),
                config.ttl_secs,
                config.max_file_size_bytes,
            )
            .await?;
            Ok(ProviderInstance::Files(Arc::new(service)))
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn home_is_expanded() {
        if let Some(h) = std::env::var_os("HOME") {
            assert_eq!(expand_home("~/x"), PathBuf::from(h).join("x"));
        }
        assert_eq!(expand_home("/tmp/x"), PathBuf::from("/tmp/x"));
    }

    #[tokio::test]
    async fn bad_ids_never_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DiskBlobs::open(dir.path()).await.unwrap();
        for id in ["../x", "file-../../etc/passwd", "file-0123"] {
            assert!(blobs.put(id, b"x").await.is_err());
            assert!(blobs.get(id).await.is_err());
        }
        let id = "file-0123456789abcdef0123456789abcdef";
        blobs.put(id, b"bytes").await.unwrap();
        assert_eq!(blobs.get(id).await.unwrap(), b"bytes");
        blobs.remove(id).await.unwrap();
        blobs.remove(id).await.unwrap();
        assert_eq!(
            blobs.get(id).await.unwrap_err().kind(),
            llama_stack_core::ErrorKind::NotFound
        );
    }
}
