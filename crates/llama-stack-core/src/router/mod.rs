//! Routers: each implements its API trait by resolving the resource through a routing
//! table, swapping in the provider's own id and calling the provider. Cross-cutting work
//! (validation, access checks, capability checks, tracing spans) happens here, once.

pub mod files;
pub mod inference;
pub mod inspect;
pub mod models;
pub mod providers;
pub mod tool_runtime;
pub mod vector_io;

pub use files::FilesRouter;
pub use inference::InferenceRouter;
pub use inspect::InspectService;
pub use models::ModelsRouter;
pub use providers::{ProviderEntry, ProvidersService};
pub use tool_runtime::ToolRuntimeRouter;
pub use vector_io::{VectorIoRouter, VectorStoresConfig};

/// Unix time in seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
