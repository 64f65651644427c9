//! Inference routes: chat completions, completions (JSON or SSE), embeddings, rerank.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionList, ChatCompletionRequest, Completion,
    CompletionRequest, EmbeddingsRequest, EmbeddingsResponse, ListChatCompletionsRequest,
    RerankRequest, RerankResponse, StoredChatCompletion,
};

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, JsonBody, QueryArgs};
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
            "GET",
            "/v1/chat/completions",
            "list_chat_completions",
            "Inference",
            "List the stored chat completions the caller may read",
            get(list_chat_completions),
        )
        .query::<ListChatCompletionsRequest>()
        .returns::<ChatCompletionList>(),
        RouteDef::new(
            "GET",
            "/v1/chat/completions/{completion_id}",
            "get_chat_completion",
            "Inference",
            "Get a stored chat completion with its input messages",
            get(get_chat_completion),
        )
        .returns::<StoredChatCompletion>(),
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

async fn list_chat_completions(
    State(s): State<AppState>,
    ctx: Ctx,
    QueryArgs(req): QueryArgs<ListChatCompletionsRequest>,
) -> Result<Json<ChatCompletionList>, ApiError> {
    Ok(Json(
        s.inference.list_chat_completions(&ctx.ctx, req).await?,
    ))
}

async fn get_chat_completion(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(completion_id): Path<String>,
) -> Result<Json<StoredChatCompletion>, ApiError> {
    Ok(Json(
        s.inference
            .get_chat_completion(&ctx.ctx, &completion_id)
            .await?,
    ))
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
