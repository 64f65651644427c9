//! VectorIO routes: Llama Stack's chunk insert/query and OpenAI's vector stores (files,
//! file batches, search). As in Llama Stack, a not-found error under `/v1/vector_stores`
//! answers 400.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use llama_stack_core::api::vector_io::{
    AttachFileRequest, CreateFileBatchRequest, CreateVectorStoreRequest, FileContentRequest,
    InsertChunksRequest, ListVectorStoreFilesRequest, ListVectorStoresRequest, QueryChunksRequest,
    QueryChunksResponse, SearchResponse, SearchVectorStoreRequest, UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest, VectorStoreDeleted, VectorStoreFileBatchObject,
    VectorStoreFileContent, VectorStoreFileDeleted, VectorStoreFileList, VectorStoreFileObject,
    VectorStoreList, VectorStoreObject,
};
use llama_stack_core::{Error, ErrorKind};

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, JsonBody, QueryArgs};

const TAG: &str = "VectorIO";

/// Llama Stack answers 400 for anything not found under `/v1/vector_stores`.
fn vs(e: Error) -> ApiError {
    if e.kind() == ErrorKind::NotFound {
        let message = e.message().to_string();
        ApiError(Error::new(ErrorKind::InvalidRequest, message))
    } else {
        ApiError(e)
    }
}

pub(super) fn routes() -> Vec<RouteDef> {
    let r =
        |method, path, op, summary, handler| RouteDef::new(method, path, op, TAG, summary, handler);
    vec![
        r(
            "POST",
            "/v1/vector-io/insert",
            "insert_chunks",
            "Insert chunks (embedded by the store's model when they carry no vector); 204",
            post(insert_chunks),
        )
        .body::<InsertChunksRequest>(),
        r(
            "POST",
            "/v1/vector-io/query",
            "query_chunks",
            "The chunks nearest to a query",
            post(query_chunks),
        )
        .body::<QueryChunksRequest>()
        .returns::<QueryChunksResponse>(),
        r(
            "POST",
            "/v1/vector_stores",
            "openai_create_vector_store",
            "Create a vector store",
            post(create_store),
        )
        .body::<CreateVectorStoreRequest>()
        .returns::<VectorStoreObject>(),
        r(
            "GET",
            "/v1/vector_stores",
            "openai_list_vector_stores",
            "List the caller's vector stores",
            get(list_stores),
        )
        .query::<ListVectorStoresRequest>()
        .returns::<VectorStoreList>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}",
            "openai_retrieve_vector_store",
            "Get a vector store",
            get(get_store),
        )
        .returns::<VectorStoreObject>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}",
            "openai_update_vector_store",
            "Update a vector store's name, expiry or metadata",
            post(update_store),
        )
        .body::<UpdateVectorStoreRequest>()
        .returns::<VectorStoreObject>(),
        r(
            "DELETE",
            "/v1/vector_stores/{vector_store_id}",
            "openai_delete_vector_store",
            "Delete a vector store and its chunks",
            axum::routing::delete(delete_store),
        )
        .returns::<VectorStoreDeleted>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}/search",
            "openai_search_vector_store",
            "Search a vector store (vector, keyword or hybrid)",
            post(search),
        )
        .body::<SearchVectorStoreRequest>()
        .returns::<SearchResponse>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}/files",
            "openai_attach_file_to_vector_store",
            "Attach an uploaded file (parse, chunk, embed, insert)",
            post(attach_file),
        )
        .body::<AttachFileRequest>()
        .returns::<VectorStoreFileObject>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}/files",
            "openai_list_files_in_vector_store",
            "List a vector store's files",
            get(list_files),
        )
        .query::<ListVectorStoreFilesRequest>()
        .returns::<VectorStoreFileList>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}/files/{file_id}",
            "openai_retrieve_vector_store_file",
            "Get an attached file",
            get(get_file),
        )
        .returns::<VectorStoreFileObject>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}/files/{file_id}",
            "openai_update_vector_store_file",
            "Replace an attached file's attributes",
            post(update_file),
        )
        .body::<UpdateVectorStoreFileRequest>()
        .returns::<VectorStoreFileObject>(),
        r(
            "DELETE",
            "/v1/vector_stores/{vector_store_id}/files/{file_id}",
            "openai_delete_vector_store_file",
            "Remove a file and its chunks from a vector store",
            axum::routing::delete(delete_file),
        )
        .returns::<VectorStoreFileDeleted>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}/files/{file_id}/content",
            "openai_retrieve_vector_store_file_contents",
            "An attached file's chunks",
            get(file_content),
        )
        .query::<FileContentRequest>()
        .returns::<VectorStoreFileContent>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}/file_batches",
            "openai_create_vector_store_file_batch",
            "Attach several files in the background",
            post(create_batch),
        )
        .body::<CreateFileBatchRequest>()
        .returns::<VectorStoreFileBatchObject>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}",
            "openai_retrieve_vector_store_file_batch",
            "Get a file batch",
            get(get_batch),
        )
        .returns::<VectorStoreFileBatchObject>(),
        r(
            "GET",
            "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
            "openai_list_files_in_vector_store_file_batch",
            "List a file batch's files",
            get(batch_files),
        )
        .query::<ListVectorStoreFilesRequest>()
        .returns::<VectorStoreFileList>(),
        r(
            "POST",
            "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
            "openai_cancel_vector_store_file_batch",
            "Cancel a file batch",
            post(cancel_batch),
        )
        .returns::<VectorStoreFileBatchObject>(),
    ]
}

async fn insert_chunks(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<InsertChunksRequest>,
) -> Result<StatusCode, ApiError> {
    s.vector_io.insert_chunks(&ctx.ctx, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn query_chunks(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<QueryChunksRequest>,
) -> Result<Json<QueryChunksResponse>, ApiError> {
    Ok(Json(s.vector_io.query_chunks(&ctx.ctx, req).await?))
}

async fn create_store(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<CreateVectorStoreRequest>,
) -> Result<Json<VectorStoreObject>, ApiError> {
    s.vector_io
        .create_vector_store(&ctx.ctx, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn list_stores(
    State(s): State<AppState>,
    ctx: Ctx,
    QueryArgs(q): QueryArgs<ListVectorStoresRequest>,
) -> Result<Json<VectorStoreList>, ApiError> {
    s.vector_io
        .list_vector_stores(&ctx.ctx, q)
        .await
        .map(Json)
        .map_err(vs)
}

async fn get_store(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<VectorStoreObject>, ApiError> {
    s.vector_io
        .get_vector_store(&ctx.ctx, &id)
        .await
        .map(Json)
        .map_err(vs)
}

async fn update_store(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateVectorStoreRequest>,
) -> Result<Json<VectorStoreObject>, ApiError> {
    s.vector_io
        .update_vector_store(&ctx.ctx, &id, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn delete_store(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<VectorStoreDeleted>, ApiError> {
    s.vector_io
        .delete_vector_store(&ctx.ctx, &id)
        .await
        .map(Json)
        .map_err(vs)
}

async fn search(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SearchVectorStoreRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    s.vector_io
        .search_vector_store(&ctx.ctx, &id, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn attach_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AttachFileRequest>,
) -> Result<Json<VectorStoreFileObject>, ApiError> {
    s.vector_io
        .attach_file(&ctx.ctx, &id, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn list_files(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<ListVectorStoreFilesRequest>,
) -> Result<Json<VectorStoreFileList>, ApiError> {
    s.vector_io
        .list_vector_store_files(&ctx.ctx, &id, q)
        .await
        .map(Json)
        .map_err(vs)
}

async fn get_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<VectorStoreFileObject>, ApiError> {
    s.vector_io
        .get_vector_store_file(&ctx.ctx, &id, &file_id)
        .await
        .map(Json)
        .map_err(vs)
}

async fn update_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, file_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateVectorStoreFileRequest>,
) -> Result<Json<VectorStoreFileObject>, ApiError> {
    s.vector_io
        .update_vector_store_file(&ctx.ctx, &id, &file_id, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn delete_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<VectorStoreFileDeleted>, ApiError> {
    s.vector_io
        .delete_vector_store_file(&ctx.ctx, &id, &file_id)
        .await
        .map(Json)
        .map_err(vs)
}

async fn file_content(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, file_id)): Path<(String, String)>,
    QueryArgs(q): QueryArgs<FileContentRequest>,
) -> Result<Json<VectorStoreFileContent>, ApiError> {
    s.vector_io
        .vector_store_file_content(&ctx.ctx, &id, &file_id, q)
        .await
        .map(Json)
        .map_err(vs)
}

async fn create_batch(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateFileBatchRequest>,
) -> Result<Json<VectorStoreFileBatchObject>, ApiError> {
    s.vector_io
        .create_file_batch(&ctx.ctx, &id, req)
        .await
        .map(Json)
        .map_err(vs)
}

async fn get_batch(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, batch_id)): Path<(String, String)>,
) -> Result<Json<VectorStoreFileBatchObject>, ApiError> {
    s.vector_io
        .get_file_batch(&ctx.ctx, &id, &batch_id)
        .await
        .map(Json)
        .map_err(vs)
}

async fn batch_files(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, batch_id)): Path<(String, String)>,
    QueryArgs(q): QueryArgs<ListVectorStoreFilesRequest>,
) -> Result<Json<VectorStoreFileList>, ApiError> {
    s.vector_io
        .list_file_batch_files(&ctx.ctx, &id, &batch_id, q)
        .await
        .map(Json)
        .map_err(vs)
}

async fn cancel_batch(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, batch_id)): Path<(String, String)>,
) -> Result<Json<VectorStoreFileBatchObject>, ApiError> {
    s.vector_io
        .cancel_file_batch(&ctx.ctx, &id, &batch_id)
        .await
        .map(Json)
        .map_err(vs)
}
