//! Inference routes: chat completions, completions (JSON or SSE), embeddings, rerank.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest,
    EmbeddingsRequest, EmbeddingsResponse, RerankRequest, RerankResponse,
};

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, JsonBody};
use crate::server::sse::sse_response;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            "POST",
            "/v1/chat/completions",
            "openai_chat_completion",
            "Inference",
            "Create a chat completion (SSE when `stream` is true)",
            post(chat_completion),
        )
        .body::<ChatCompletionRequest>()
        .returns::<ChatCompletion>()
        .streams::<ChatCompletionChunk>(),
        RouteDef::new(
            "POST",
            "/v1/completions",
            "openai_completion",
            "Inference",
            "Create a text completion (SSE when `stream` is true)",
            post(completion),
        )
        .body::<CompletionRequest>()
        .returns::<Completion>()
        .streams::<Completion>(),
        RouteDef::new(
            "POST",
            "/v1/embeddings",
            "openai_embeddings",
            "Inference",
            "Create embeddings",
            post(embeddings),
        )
        .body::<EmbeddingsRequest>()
        .returns::<EmbeddingsResponse>(),
        RouteDef::new(
            "POST",
            "/v1alpha/inference/rerank",
            "rerank",
            "Inference",
            "Rerank items by relevance to a query",
            post(rerank),
        )
        .body::<RerankRequest>()
        .returns::<RerankResponse>(),
    ]
}

async fn chat_completion(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let (ctx, guard) = ctx.into_parts();
    if req.is_stream() {
        let stream = s.inference.chat_completion_stream(&ctx, req).await?;
        Ok(sse_response(stream, guard))
    } else {
        let out = s.inference.chat_completion(&ctx, req).await?;
        drop(guard);
        Ok(Json(out).into_response())
    }
}

async fn completion(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (ctx, guard) = ctx.into_parts();
    if req.is_stream() {
        let stream = s.inference.completion_stream(&ctx, req).await?;
        Ok(sse_response(stream, guard))
    } else {
        let out = s.inference.completion(&ctx, req).await?;
        drop(guard);
        Ok(Json(out).into_response())
    }
}

async fn embeddings(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    Ok(Json(s.inference.embeddings(&ctx.ctx, req).await?))
}

async fn rerank(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<RerankRequest>,
) -> Result<Json<RerankResponse>, ApiError> {
    Ok(Json(s.inference.rerank(&ctx.ctx, req).await?))
}
