//! [`FilesRouter`]: the Files API over the configured files provider, with the request
//! checks every provider shares.

use std::sync::Arc;

use async_trait::async_trait;

use crate::api::files::{
    FileContent, FileDeleted, FileList, FileObject, Files, ListFilesRequest, UploadFileRequest,
};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::provider::FilesProvider;

/// Routes Files calls to the one files provider of the stack.
pub struct FilesRouter {
    provider: Option<(String, Arc<dyn FilesProvider>)>,
}

impl FilesRouter {
    /// A router over `provider` (`None`: every call answers that no provider is configured).
    pub fn new(provider: Option<(String, Arc<dyn FilesProvider>)>) -> Self {
        FilesRouter { provider }
    }

    /// Whether a files provider is configured.
    pub fn is_configured(&self) -> bool {
        self.provider.is_some()
    }

    fn provider(&self) -> Result<&Arc<dyn FilesProvider>> {
        self.provider.as_ref().map(|(_, p)| p).ok_or_else(|| {
            Error::unsupported(
                "no files provider is configured; add one under providers.files (e.g. inline::localfs)",
            )
        })
    }
}

fn check_file_id(file_id: &str) -> Result<()> {
    if file_id.is_empty() {
        return Err(Error::invalid_param("file_id", "''", "Must not be empty"));
    }
    Ok(())
}

#[async_trait]
impl Files for FilesRouter {
    async fn upload_file(
        &self,
        ctx: &RequestContext,
        req: UploadFileRequest,
    ) -> Result<FileObject> {
        let provider = self.provider()?;
        if req.filename.trim().is_empty() {
            return Err(Error::invalid_param(
                "filename",
                "''",
                "The file needs a name",
            ));
        }
        if req.content.is_empty() {
            return Err(Error::invalid_request(format!(
                "file '{}' is empty; upload a file with content",
                req.filename
            ))
            .with_context("param", "file"));
        }
        if let Some(e) = &req.expires_after {
            e.validate()?;
        }
        provider.upload_file(ctx, req).await
    }

    async fn list_files(&self, ctx: &RequestContext, req: ListFilesRequest) -> Result<FileList> {
        let provider = self.provider()?;
        if let Some(limit) = req.limit {
            if !(1..=10_000).contains(&limit) {
                return Err(Error::invalid_param(
                    "limit",
                    limit,
                    "Must be between 1 and 10000",
                ));
            }
        }
        provider.list_files(ctx, req).await
    }

    async fn get_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileObject> {
        check_file_id(file_id)?;
        self.provider()?.get_file(ctx, file_id).await
    }

    async fn file_content(&self, ctx: &RequestContext, file_id: &str) -> Result<FileContent> {
        check_file_id(file_id)?;
        self.provider()?.file_content(ctx, file_id).await
    }

    async fn delete_file(&self, ctx: &RequestContext, file_id: &str) -> Result<FileDeleted> {
        check_file_id(file_id)?;
        self.provider()?.delete_file(ctx, file_id).await
    }
}
