//! Models routes: the OpenAI-shaped list, get by id (ids may contain `/`), and the
//! register/unregister routes kept from Llama Stack 0.6.

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::Json;
use llama_stack_core::api::models::{Model, OpenAiListModelsResponse, RegisterModelRequest};

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, JsonBody};

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            "GET",
            "/v1/models",
            "openai_list_models",
            "Models",
            "List the models the caller may use (OpenAI shape)",
            get(list_models),
        )
        .returns::<OpenAiListModelsResponse>(),
        RouteDef::new(
            "GET",
            "/v1/models/{model_id:path}",
            "get_model",
            "Models",
            "Get one model (404 if unknown or not visible)",
            get(get_model),
        )
        .returns::<Model>(),
        RouteDef::new(
            "POST",
            "/v1/models",
            "register_model",
            "Models",
            "Register a model owned by the caller",
            post(register_model),
        )
        .body::<RegisterModelRequest>()
        .returns::<Model>()
        .deprecated(),
        RouteDef::new(
            "DELETE",
            "/v1/models/{model_id:path}",
            "unregister_model",
            "Models",
            "Unregister a model",
            delete(unregister_model),
        )
        .deprecated(),
    ]
}

async fn list_models(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<OpenAiListModelsResponse>, ApiError> {
    Ok(Json(s.models.openai_list_models(&ctx.ctx).await?))
}

async fn get_model(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(model_id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    Ok(Json(s.models.get_model(&ctx.ctx, &model_id).await?))
}

async fn register_model(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<RegisterModelRequest>,
) -> Result<Json<Model>, ApiError> {
    Ok(Json(s.models.register_model(&ctx.ctx, req).await?))
}

async fn unregister_model(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(model_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.models.unregister_model(&ctx.ctx, &model_id).await?;
    Ok(Json(serde_json::Value::Null))
}
