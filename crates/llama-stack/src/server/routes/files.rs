//! Files routes (OpenAI's `/v1/files`): multipart upload, list, get, raw content, delete.

use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use llama_stack_core::api::files::{
    sanitize_filename, ExpiresAfter, ExpiresAfterAnchor, FileDeleted, FileList, FileObject,
    FilePurpose, ListFilesRequest, UploadFileRequest,
};
use llama_stack_core::{Error, ErrorKind};

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, QueryArgs};

/// Largest multipart upload the route reads (the files provider may set a lower limit).
pub(crate) const UPLOAD_LIMIT: usize = 512 * 1024 * 1024 + 64 * 1024;

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            "POST",
            "/v1/files",
            "upload_file",
            "Files",
            "Upload a file (multipart: file, purpose, expires_after)",
            post(upload_file).layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .returns::<FileObject>(),
        RouteDef::new(
            "GET",
            "/v1/files",
            "list_files",
            "Files",
            "List the caller's files",
            get(list_files),
        )
        .query::<ListFilesRequest>()
        .returns::<FileList>(),
        RouteDef::new(
            "GET",
            "/v1/files/{file_id}",
            "get_file",
            "Files",
            "Get a file's metadata",
            get(get_file),
        )
        .returns::<FileObject>(),
        RouteDef::new(
            "DELETE",
            "/v1/files/{file_id}",
            "delete_file",
            "Files",
            "Delete a file",
            delete(delete_file),
        )
        .returns::<FileDeleted>(),
        RouteDef::new(
            "GET",
            "/v1/files/{file_id}/content",
            "retrieve_file_content",
            "Files",
            "A file's bytes (application/octet-stream)",
            get(file_content),
        ),
    ]
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::new(
            ErrorKind::PayloadTooLarge,
            "the upload is larger than the server accepts",
        ))
    } else {
        ApiError(Error::invalid_request(format!(
            "invalid multipart body: {}",
            e.body_text()
        )))
    }
}

async fn upload_file(
    State(s): State<AppState>,
    ctx: Ctx,
    mut form: Multipart,
) -> Result<Json<FileObject>, ApiError> {
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut purpose: Option<String> = None;
    let mut expires: Option<ExpiresAfter> = None;
    let mut anchor: Option<String> = None;
    let mut seconds: Option<String> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().unwrap_or("upload").to_string();
                let bytes = field.bytes().await.map_err(multipart_error)?;
                file = Some((filename, bytes.to_vec()));
            }
            "purpose" => purpose = Some(field.text().await.map_err(multipart_error)?),
            "expires_after" => {
                let text = field.text().await.map_err(multipart_error)?;
                expires = Some(serde_json::from_str(&text).map_err(|e| {
                    Error::invalid_param("expires_after", &text, &format!("Invalid JSON: {e}"))
                })?);
            }
            "expires_after[anchor]" => anchor = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[seconds]" => {
                seconds = Some(field.text().await.map_err(multipart_error)?)
            }
            _ => {}
        }
    }
    let (filename, content) = file.ok_or_else(|| {
        Error::invalid_request("the multipart field 'file' is required")
            .with_context("param", "file")
    })?;
    let purpose = purpose.ok_or_else(|| {
        Error::invalid_request("the multipart field 'purpose' is required (assistants or batch)")
            .with_context("param", "purpose")
    })?;
    let purpose = FilePurpose::parse(purpose.trim())?;
    if expires.is_none() && (anchor.is_some() || seconds.is_some()) {
        if let Some(a) = anchor.as_deref().filter(|a| *a != "created_at") {
            return Err(
                Error::invalid_param("expires_after[anchor]", a, "Must be 'created_at'").into(),
            );
        }
        let raw = seconds.unwrap_or_default();
        let secs = raw.trim().parse::<u64>().map_err(|_| {
            Error::invalid_param(
                "expires_after[seconds]",
                &raw,
                "Must be an integer number of seconds",
            )
        })?;
        expires = Some(ExpiresAfter {
            anchor: ExpiresAfterAnchor::CreatedAt,
            seconds: secs,
        });
    }
    let mut req = UploadFileRequest::new(filename, content, purpose);
    req.expires_after = expires;
    Ok(Json(s.files.upload_file(&ctx.ctx, req).await?))
}

async fn list_files(
    State(s): State<AppState>,
    ctx: Ctx,
    QueryArgs(q): QueryArgs<ListFilesRequest>,
) -> Result<Json<FileList>, ApiError> {
    Ok(Json(s.files.list_files(&ctx.ctx, q).await?))
}

async fn get_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(file_id): Path<String>,
) -> Result<Json<FileObject>, ApiError> {
    Ok(Json(s.files.get_file(&ctx.ctx, &file_id).await?))
}

async fn delete_file(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(file_id): Path<String>,
) -> Result<Json<FileDeleted>, ApiError> {
    Ok(Json(s.files.delete_file(&ctx.ctx, &file_id).await?))
}

async fn file_content(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(file_id): Path<String>,
) -> Result<Response, ApiError> {
    let c = s.files.file_content(&ctx.ctx, &file_id).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        sanitize_filename(&c.filename)
    );
    let mut response = c.content.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
