//! Inspect and Providers routes (health, version, routes, providers) and their
//! `/v1alpha/admin/…` mirrors. Only `GET /v1/health` and `GET /v1/version` are public.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Json;
use llama_stack_core::api::inspect::{
    HealthResponse, ListRoutesResponse, RouteFilter, VersionResponse,
};
use llama_stack_core::api::providers::{ListProvidersResponse, ProviderInfo};
use serde::Deserialize;

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, QueryArgs};

/// Query of `GET /v1/inspect/routes`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RoutesQuery {
    /// `v1`, `v1alpha`, `v1beta` or `deprecated`.
    #[serde(default)]
    api_filter: Option<RouteFilter>,
}

pub(super) fn routes() -> Vec<RouteDef> {
    let mut out = vec![
        RouteDef::new(
            "GET",
            "/v1/health",
            "health",
            "Inspect",
            "Health of the stack",
            get(health),
        )
        .returns::<HealthResponse>()
        .public(),
        RouteDef::new(
            "GET",
            "/v1/version",
            "version",
            "Inspect",
            "Llama Stack version served",
            get(version),
        )
        .returns::<VersionResponse>()
        .public(),
    ];
    for (prefix, tag) in [("/v1", "Inspect"), ("/v1alpha/admin", "Admin")] {
        let admin = prefix != "/v1";
        let paths: [&'static str; 3] = if admin {
            [
                "/v1alpha/admin/inspect/routes",
                "/v1alpha/admin/providers",
                "/v1alpha/admin/providers/{provider_id}",
            ]
        } else {
            [
                "/v1/inspect/routes",
                "/v1/providers",
                "/v1/providers/{provider_id}",
            ]
        };
        out.push(
            RouteDef::new(
                "GET",
                paths[0],
                "list_routes",
                tag,
                "Every route of every API",
                get(list_routes),
            )
            .query::<RoutesQuery>()
            .returns::<ListRoutesResponse>(),
        );
        out.push(
            RouteDef::new(
                "GET",
                paths[1],
                "list_providers",
                tag,
                "Configured providers with health",
                get(list_providers),
            )
            .returns::<ListProvidersResponse>(),
        );
        out.push(
            RouteDef::new(
                "GET",
                paths[2],
                "inspect_provider",
                tag,
                "One provider",
                get(inspect_provider),
            )
            .returns::<ProviderInfo>(),
        );
    }
    out.push(
        RouteDef::new(
            "GET",
            "/v1alpha/admin/health",
            "health",
            "Admin",
            "Health of the stack (authenticated)",
            get(health),
        )
        .returns::<HealthResponse>(),
    );
    out.push(
        RouteDef::new(
            "GET",
            "/v1alpha/admin/version",
            "version",
            "Admin",
            "Llama Stack version served (authenticated)",
            get(version),
        )
        .returns::<VersionResponse>(),
    );
    out
}

async fn health(State(s): State<AppState>, ctx: Ctx) -> Result<Json<HealthResponse>, ApiError> {
    Ok(Json(s.inspect.health(&ctx.ctx).await?))
}

async fn version(State(s): State<AppState>, ctx: Ctx) -> Result<Json<VersionResponse>, ApiError> {
    Ok(Json(s.inspect.version(&ctx.ctx).await?))
}

async fn list_routes(
    State(s): State<AppState>,
    ctx: Ctx,
    QueryArgs(q): QueryArgs<RoutesQuery>,
) -> Result<Json<ListRoutesResponse>, ApiError> {
    Ok(Json(s.inspect.list_routes(&ctx.ctx, q.api_filter).await?))
}

async fn list_providers(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<ListProvidersResponse>, ApiError> {
    Ok(Json(s.providers.list_providers(&ctx.ctx).await?))
}

async fn inspect_provider(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(provider_id): Path<String>,
) -> Result<Json<ProviderInfo>, ApiError> {
    Ok(Json(
        s.providers.inspect_provider(&ctx.ctx, &provider_id).await?,
    ))
}
