//! Server-sent events in Llama Stack's framing: each item is `data: <compact JSON>\n\n`,
//! no `event:`/`id:` lines, and **no `data: [DONE]`** sentinel — the stream just ends, as
//! Llama Stack 0.7 does (the OpenAI SDKs accept both). An error after the first event is
//! sent as one last `data: {"error": {"message", "code"}}` event.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{BoxStream, StreamExt};
use llama_stack_core::Result;
use serde::Serialize;
use tokio_util::sync::DropGuard;

use super::error::stream_error_event;

fn frame(value: &impl Serialize) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(json) => {
            let mut buf = Vec::with_capacity(json.len() + 8);
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(&json);
            buf.extend_from_slice(b"\n\n");
            Bytes::from(buf)
        }
        Err(e) => {
            let err =
                llama_stack_core::Error::internal(format!("cannot encode a stream event: {e}"));
            frame(&stream_error_event(&err))
        }
    }
}

/// An SSE response over `stream`. `guard` (the request's cancellation) lives as long as
/// the stream, so dropping the connection cancels the work behind it.
pub(crate) fn sse_response<T>(stream: BoxStream<'static, Result<T>>, guard: DropGuard) -> Response
where
    T: Serialize + Send + 'static,
{
    let events = stream
        .scan(false, |stop, item| {
            if *stop {
                return futures::future::ready(None);
            }
            let bytes = match item {
                Ok(chunk) => frame(&chunk),
                Err(e) => {
                    *stop = true;
                    frame(&stream_error_event(&e))
                }
            };
            futures::future::ready(Some(Ok::<_, std::convert::Infallible>(bytes)))
        })
        .map(move |b| {
            let _keep = &guard;
            b
        });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
