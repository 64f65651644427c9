//! The HTTP edge of [`Error`]: status codes, Llama Stack's JSON error body
//! (`{"error": {"message": …}}`), `Retry-After` on 429, and the mid-stream SSE error event.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llama_stack_core::{Error, ErrorKind};
use serde_json::json;

/// Context key under which a rate-limit error carries its `Retry-After` seconds.
pub(crate) const RETRY_AFTER: &str = "retry_after";

/// Message Llama Stack sends for unexpected failures (the details go to the log only).
const INTERNAL_MESSAGE: &str = "Internal server error: An unexpected error occurred.";

/// An [`Error`] answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status of an error.
pub(crate) fn status_of(err: &Error) -> StatusCode {
    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The message a client may see: internal failures are not described on the wire.
fn public_message(err: &Error) -> &str {
    match err.kind() {
        ErrorKind::Internal | ErrorKind::Config => INTERNAL_MESSAGE,
        _ => err.message(),
    }
}

fn log(err: &Error, status: StatusCode) {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), kind = %err.kind(), error = %err, "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), kind = %err.kind(), error = %err, "request rejected");
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = status_of(&err);
        log(&err, status);
        let body = json!({"error": {"message": public_message(&err)}});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let secs = err
                .context()
                .iter()
                .find(|(k, _)| *k == RETRY_AFTER)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(1)
                .max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// The last SSE event of a stream that failed midway:
/// `{"error": {"message", "code": "<status>"}}` (Llama Stack's framing, `wire.md` §2.3).
pub(crate) fn stream_error_event(err: &Error) -> serde_json::Value {
    let status = status_of(err);
    log(err, status);
    json!({"error": {"message": public_message(err), "code": status.as_u16().to_string()}})
}

/// A framework-level body (`{"detail": …}`), as FastAPI sends for 404/405.
pub(crate) fn detail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "detail": message }))).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry_after() {
        let r = ApiError(Error::not_found("Model", "x")).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = ApiError(
            Error::new(ErrorKind::RateLimited, "Quota exceeded").with_context(RETRY_AFTER, "42"),
        )
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        let r = ApiError(Error::internal("db exploded at /secret/path")).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let e = stream_error_event(&Error::invalid_request("bad"));
        assert_eq!(e["error"]["code"], "400");
        assert_eq!(e["error"]["message"], "bad");
        let e = stream_error_event(&Error::internal("secret"));
        assert_eq!(e["error"]["message"], INTERNAL_MESSAGE);
    }
}
