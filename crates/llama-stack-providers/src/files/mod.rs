//! Files providers: one [`service::FilesService`] (metadata in a SQL store, owned per
//! caller) over a bytes backend per provider.
//!
//! | provider type | bytes | config |
//! |---|---|---|
//! | `inline::localfs` | [`localfs::DiskBlobs`]: a local directory | `storage_dir`, `metadata_store`, `ttl_secs`? |
//! | `remote::s3` | [`s3::S3Blobs`]: an S3 (or S3-compatible) bucket | `bucket_name`, `region`, keys?, `endpoint_url`?, `auto_create_bucket`, `metadata_store` |

#[cfg(feature = "inline-localfs")]
pub mod localfs;
#[cfg(feature = "remote-s3")]
pub mod s3;
#[cfg(any(feature = "inline-localfs", feature = "remote-s3"))]
pub mod service;
