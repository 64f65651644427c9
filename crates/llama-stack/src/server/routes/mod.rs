//! The route table: every HTTP route as data ([`RouteDef`]: method, Llama Stack path,
//! operation, handler and the schemas of its body and answer). The axum router, the
//! OpenAPI document and the route checks are all built from this one list, so an API
//! adds its routes by adding one module with a `routes()` function and one line in
//! [`table`].

mod files;
mod inference;
mod inspect;
mod models;
mod tool_runtime;
mod vector_io;

use std::sync::Arc;

use axum::routing::MethodRouter;
use llama_stack_core::api::files::Files;
use llama_stack_core::api::inference::Inference;
use llama_stack_core::api::inspect::Inspect;
use llama_stack_core::api::models::Models;
use llama_stack_core::api::providers::Providers;
use llama_stack_core::api::tool_runtime::ToolRuntime;
use llama_stack_core::api::vector_io::VectorIo;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::Stack;

/// What every handler can reach: the API traits of one stack, behind one pointer (axum
/// clones the state for every request).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Apis>);

impl std::ops::Deref for AppState {
    type Target = Apis;

    fn deref(&self) -> &Apis {
        &self.0
    }
}

/// The API traits of one stack.
pub(crate) struct Apis {
    pub(crate) inference: Arc<dyn Inference>,
    pub(crate) models: Arc<dyn Models>,
    pub(crate) providers: Arc<dyn Providers>,
    pub(crate) inspect: Arc<dyn Inspect>,
    pub(crate) files: Arc<dyn Files>,
    pub(crate) vector_io: Arc<dyn VectorIo>,
    pub(crate) tool_runtime: Arc<dyn ToolRuntime>,
}

impl AppState {
    pub(crate) fn new(stack: &Stack) -> Self {
        AppState(Arc::new(Apis {
            inference: stack.inference_api(),
            models: stack.models_api(),
            providers: stack.providers_api(),
            inspect: stack.inspect_api(),
            files: stack.files_api(),
            vector_io: stack.vector_io_api(),
            tool_runtime: stack.tool_runtime_api(),
        }))
    }
}

/// Produces the JSON schema of one type (a `$ref` into the document's components).
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, registered in the generator's definitions.
pub(crate) fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One HTTP route.
pub struct RouteDef {
    /// Upper-case method.
    pub method: &'static str,
    /// Path as Llama Stack writes it (`{model_id:path}` for ids with slashes).
    pub path: &'static str,
    /// Operation id (Llama Stack's name for it).
    pub operation: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// API tag.
    pub tag: &'static str,
    /// Served without authentication.
    pub public: bool,
    /// Kept from before Llama Stack 0.7.
    pub deprecated: bool,
    pub(crate) handler: MethodRouter<AppState>,
    pub(crate) request: Option<SchemaFn>,
    pub(crate) query: Option<SchemaFn>,
    pub(crate) response: Option<SchemaFn>,
    pub(crate) stream: Option<SchemaFn>,
}

impl std::fmt::Debug for RouteDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteDef")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

impl RouteDef {
    /// A route; add schemas with the `with_*` methods.
    pub(crate) fn new(
        method: &'static str,
        path: &'static str,
        operation: &'static str,
        tag: &'static str,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Self {
        RouteDef {
            method,
            path,
            operation,
            summary,
            tag,
            public: false,
            deprecated: false,
            handler,
            request: None,
            query: None,
            response: None,
            stream: None,
        }
    }

    /// The JSON body type.
    pub(crate) fn body<T: JsonSchema>(mut self) -> Self {
        self.request = Some(schema::<T>);
        self
    }

    /// The query-string type.
    pub(crate) fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema::<T>);
        self
    }

    /// The 200 answer type.
    pub(crate) fn returns<T: JsonSchema>(mut self) -> Self {
        self.response = Some(schema::<T>);
        self
    }

    /// The SSE event type when the request asks to stream.
    pub(crate) fn streams<T: JsonSchema>(mut self) -> Self {
        self.stream = Some(schema::<T>);
        self
    }

    /// Served without authentication.
    pub(crate) fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Kept from an earlier Llama Stack.
    pub(crate) fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// The path in axum's syntax: `{x:path}` becomes the catch-all `{*x}`.
    pub fn axum_path(&self) -> String {
        axum_path(self.path)
    }
}

/// Converts Llama Stack's `{x:path}` parameters to axum's `{*x}`.
pub(crate) fn axum_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let param = &rest[start + 1..start + end];
        match param.strip_suffix(":path") {
            Some(name) => {
                out.push_str("{*");
                out.push_str(name);
                out.push('}');
            }
            None => {
                out.push('{');
                out.push_str(param);
                out.push('}');
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every route this server implements, in the order they are documented.
pub fn table() -> Vec<RouteDef> {
    let mut routes = Vec::new();
    routes.extend(inference::routes());
    routes.extend(models::routes());
    routes.extend(files::routes());
    routes.extend(vector_io::routes());
    routes.extend(tool_runtime::routes());
    routes.extend(inspect::routes());
    routes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn path_params_convert() {
        assert_eq!(
            axum_path("/v1/models/{model_id:path}"),
            "/v1/models/{*model_id}"
        );
        assert_eq!(
            axum_path("/v1/providers/{provider_id}"),
            "/v1/providers/{provider_id}"
        );
        assert_eq!(axum_path("/v1/health"), "/v1/health");
    }

    #[test]
    fn every_route_is_a_known_llama_stack_route() {
        use llama_stack_core::api::inspect::ROUTES;
        for r in table() {
            let known = ROUTES
                .iter()
                .find(|k| k.method == r.method && k.path == r.path)
                .unwrap_or_else(|| panic!("{} {} is not in ROUTES", r.method, r.path));
            assert_eq!(known.deprecated, r.deprecated, "{} {}", r.method, r.path);
        }
    }
}
