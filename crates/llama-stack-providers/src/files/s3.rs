//! `remote::s3`: file bytes in an S3 bucket (AWS or any S3-compatible service: MinIO,
//! Ceph, moto, …) under the file id as key, metadata in a SQL store (see
//! [`FilesService`]). Config and defaults as Llama Stack's.
//!
//! Credentials: `aws_access_key_id` / `aws_secret_access_key` when set, else the standard
//! AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web
//! identity, instance metadata). With `endpoint_url`, requests use path-style addressing
//! (`<endpoint>/<bucket>/<key>`), as S3-compatible servers expect. At start the bucket is
//! checked; a missing one is created when `auto_create_bucket` is true (with a presigned
//! `CreateBucket`), and is a config error otherwise.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderInstance, ProviderSpec};
use llama_stack_core::{Error, ErrorKind, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStore, PutPayload};
use serde::Deserialize;

use super::service::{default_max_size, valid_id, Blobs, FilesService, SqlStoreRef};

/// The provider type.
pub const PROVIDER_TYPE: &str = "remote::s3";

/// Config of `remote::s3` (Llama Stack's fields and defaults).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3FilesConfig {
    /// The bucket.
    pub bucket_name: String,
    /// Its region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id (else the AWS environment).
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// Secret access key (else the AWS environment).
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    /// An S3-compatible endpoint, e.g. `http://localhost:9000` (path-style requests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Create the bucket when it does not exist (default false).
    #[serde(default)]
    pub auto_create_bucket: bool,
    /// Where file metadata lives.
    pub metadata_store: SqlStoreRef,
    /// Default lifetime of files uploaded without `expires_after` (none: they never expire).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Largest accepted upload in bytes (larger → 413).
    #[serde(default = "default_max_size")]
    pub max_file_size_bytes: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// File bytes in a bucket, one object per file id.
pub struct S3Blobs {
    store: AmazonS3,
    bucket: String,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An object store error as ours: missing objects are `NotFound`, the rest `Unavailable`.
fn s3_error(bucket: &str, what: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::new(
            ErrorKind::NotFound,
            format!("S3 bucket '{bucket}': {what}: not found"),
        ),
        other => Error::unavailable(format!("S3 bucket '{bucket}': {what}: {other}"))
            .with_retryable(true),
    }
}

impl S3Blobs {
    /// Connects to the bucket of `config`, creating it when allowed.
    pub async fn open(config: &S3FilesConfig) -> Result<Self> {
        if config.bucket_name.trim().is_empty() {
            return Err(Error::config("bucket_name: must not be empty"));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket_name)
            .with_region(&config.region);
        if let Some(key) = &config.aws_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.aws_secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(endpoint) = config.endpoint_url.as_deref().filter(|e| !e.is_empty()) {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| Error::config(format!("cannot configure S3: {e}")))?;
        let blobs = S3Blobs {
            store,
            bucket: config.bucket_name.clone(),
        };
        if let Err(e) = blobs.check_bucket().await {
            if !config.auto_create_bucket {
                return Err(Error::config(format!(
                    "bucket_name: bucket '{}' cannot be used ({}); create it or set auto_create_bucket: true",
                    config.bucket_name,
                    e.message()
                )));
            }
            blobs.create_bucket(&config.region).await?;
            blobs.check_bucket().await?;
        }
        Ok(blobs)
    }

    /// Lists at most one key: fails when the bucket is missing or unreachable.
    async fn check_bucket(&self) -> Result<()> {
        let prefix = ObjectPath::from("file-");
        let mut listing = self.store.list(Some(&prefix));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(Error::unavailable(format!(
                "S3 bucket '{}': {e}",
                self.bucket
            ))),
        }
    }

    /// `CreateBucket`, sent to a presigned URL of the bucket root.
    async fn create_bucket(&self, region: &str) -> Result<()> {
        let url = self
            .store
            .signed_url(
                reqwest::Method::PUT,
                &ObjectPath::from(""),
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| s3_error(&self.bucket, "signing CreateBucket", e))?;
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let response = reqwest::Client::new()
            .put(url.as_str())
            // An empty body must still say so (S3 answers 411 without a length).
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Error::unavailable(format!("S3 bucket '{}': creating it: {e}", self.bucket))
            })?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            // 409: BucketAlreadyOwnedByYou (another instance made it first).
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(Error::config(format!(
            "bucket_name: creating bucket '{}' failed with HTTP {status}: {}",
            self.bucket,
            text.chars().take(500).collect::<String>()
        )))
    }

    fn key(id: &str) -> Result<ObjectPath> {
        if !valid_id(id) {
            return Err(Error::not_found("File", id));
        }
        Ok(ObjectPath::from(id))
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, id: &str, bytes: &[u8]) -> Result<String> {
        let key = Self::key(id)?;
        self.store
            .put(&key, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(|e| s3_error(&self.bucket, &format!("writing '{id}'"), e))?;
        Ok(format!("s3://{}/{id}", self.bucket))
    }

    async fn get(&self, id: &str) -> Result<Vec<u8>> {
        let key = Self::key(id)?;
        let what = format!("reading '{id}'");
        let object = self
            .store
            .get(&key)
            .await
            .map_err(|e| s3_error(&self.bucket, &what, e))?;
        let bytes = object
            .bytes()
            .await
            .map_err(|e| s3_error(&self.bucket, &what, e))?;
        Ok(bytes.to_vec())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let key = Self::key(id)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(&self.bucket, &format!("deleting '{id}'"), e)),
        }
    }

    async fn health(&self) -> Health {
        match self.check_bucket().await {
            Ok(()) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}

/// The spec of `remote::s3`.
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<S3FilesConfig>(
        Api::Files,
        PROVIDER_TYPE,
        "Files in an S3 (or S3-compatible) bucket, metadata in a SQL store",
        FnFactory(|ctx: ProviderContext| async move {
            let config: S3FilesConfig = ctx.parse_config()?;
            let sql = ctx
                .storage
                .sql_store(&config.metadata_store.backend)
                .await
                .map_err(|e| e.with_prefix(&format!("{}.metadata_store", ctx.config_path)))?;
            let blobs = S3Blobs::open(&config)
                .await
                .map_err(|e| e.with_prefix(&ctx.config_path))?;
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
