//! Request extractors: JSON bodies and query strings whose errors name the offending field
//! (400, as Llama Stack answers validation failures, or 413 past the body limit), and the
//! per-request [`RequestContext`] built from the authenticated user.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use llama_stack_core::{Error, ErrorKind, RequestContext, User};
use serde::de::DeserializeOwned;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::error::ApiError;
use super::middleware::RequestId;

/// A JSON body parsed into `T`; errors say which field is wrong.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Parses `bytes` as JSON into `T`, naming the path of the failing field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = if inner.is_syntax() || inner.is_eof() {
                "malformed JSON"
            } else {
                "invalid request body"
            };
            let message = if path.is_empty() || path == "." {
                format!("{what}: {inner}")
            } else {
                format!("{what}: {path}: {inner}")
            };
            Err(Error::invalid_request(message).with_context("param", path))
        }
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(
                    ErrorKind::PayloadTooLarge,
                    "Request body is larger than the server's limit",
                )
            } else {
                Error::invalid_request(format!("cannot read the request body: {rejection}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError(Error::invalid_request(
                "invalid request body: a JSON object is required",
            )));
        }
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// A query string parsed into `T`; errors name the parameter.
#[derive(Debug)]
pub struct QueryArgs<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryArgs<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str::<T>(query)
            .map(QueryArgs)
            .map_err(|e| ApiError(Error::invalid_request(format!("invalid query string: {e}"))))
    }
}

/// The caller as the auth layer established it (absent = anonymous).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Option<User>);

/// The [`RequestContext`] of this request: the authenticated user (if any), the request
/// id, and a cancellation token that fires when the request is dropped (client gone).
pub struct Ctx {
    /// The context handed to the API traits.
    pub ctx: RequestContext,
    guard: DropGuard,
}

impl Ctx {
    /// Splits into the context and the guard that cancels it when dropped.
    pub fn into_parts(self) -> (RequestContext, DropGuard) {
        (self.ctx, self.guard)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user = parts.extensions.get::<Caller>().and_then(|c| c.0.clone());
        let token = CancellationToken::new();
        let mut ctx = match user {
            Some(user) => RequestContext::for_user(user),
            None => RequestContext::anonymous(),
        }
        .with_cancellation(token.clone());
        if let Some(RequestId(id)) = parts.extensions.get::<RequestId>() {
            ctx = ctx.with_request_id(id.clone());
        }
        // Per-request provider keys/URLs; never logged.
        if let Some(raw) = parts.headers.get("x-llamastack-provider-data") {
            let text = raw.to_str().map_err(|_| {
                ApiError(Error::invalid_request(
                    "X-LlamaStack-Provider-Data: expected a JSON object in ASCII",
                ))
            })?;
            ctx = ctx.with_provider_data(
                llama_stack_core::context::ProviderData::from_json(text).map_err(ApiError)?,
            );
        }
        Ok(Ctx {
            ctx,
            guard: token.drop_guard(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use llama_stack_core::api::inference::ChatCompletionRequest;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<ChatCompletionRequest>(
            br#"{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.message().contains("messages[0]"), "{}", e.message());
        let e =
            parse_json::<ChatCompletionRequest>(br#"{"model": 5, "messages": []}"#).unwrap_err();
        assert!(e.message().contains("model"), "{}", e.message());
        let e = parse_json::<ChatCompletionRequest>(b"{\"model\": ").unwrap_err();
        assert!(e.message().starts_with("malformed JSON"), "{}", e.message());
    }
}
