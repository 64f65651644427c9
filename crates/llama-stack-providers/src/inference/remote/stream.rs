//! Server-sent events from an upstream into typed chunks. The stream ends at `[DONE]` or
//! at the end of the body; a malformed event, an upstream `error` event, a stall longer than
//! the read timeout or a broken connection ends it with one typed error. The upstream
//! response is dropped as soon as the stream ends (so its connection can go back to the
//! pool), or when the stream is dropped.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::stream::{BoxStream, Stream, StreamExt};
use llama_stack_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::upstream::{error_message, Upstream};

/// The events of one upstream body.
type Events = BoxStream<'static, std::result::Result<Event, EventStreamError<reqwest::Error>>>;

/// Decodes `resp`'s SSE body into `T`s; `fixup` fills fields some servers omit.
pub(crate) fn sse_json<T: DeserializeOwned + Send + 'static>(
    resp: reqwest::Response,
    upstream: &Upstream,
    fixup: fn(&mut Value),
) -> BoxStream<'static, Result<T>> {
    SseJson {
        data: SseData::new(resp, upstream),
        fixup,
        _item: PhantomData::<fn() -> T>,
    }
    .boxed()
}

/// The `data` fields of `resp`'s SSE body, one item per event (empty ones skipped), ending
/// at `[DONE]` or the end of the body. A stall longer than the read timeout, a broken
/// connection or an undecodable event ends it with one typed error.
pub(crate) fn sse_data(
    resp: reqwest::Response,
    upstream: &Upstream,
) -> BoxStream<'static, Result<String>> {
    SseData::new(resp, upstream).boxed()
}

/// See [`sse_data`]: one poll of it is one poll of the body, with no adapter between.
struct SseData {
    /// `None` once the stream has ended.
    events: Option<Events>,
    upstream: Upstream,
}

impl SseData {
    fn new(resp: reqwest::Response, upstream: &Upstream) -> Self {
        SseData {
            events: Some(resp.bytes_stream().eventsource().boxed()),
            upstream: upstream.clone(),
        }
    }

    /// Ends the stream and drops the upstream response.
    fn end(&mut self) {
        self.events = None;
    }

    /// The typed error for a failed event; the stream has ended.
    fn failure(&mut self, e: EventStreamError<reqwest::Error>) -> Error {
        self.end();
        let upstream = &self.upstream;
        match e {
            EventStreamError::Transport(e) => {
                upstream.breaker().record_failure();
                if e.is_timeout() {
                    Error::new(
                        llama_stack_core::ErrorKind::Timeout,
                        format!(
                            "provider '{}': the upstream stream stalled (no event within network.timeout): {e}",
                            upstream.provider_id()
                        ),
                    )
                    .with_provider(upstream.provider_id())
                } else {
                    upstream
                        .transport_error(&e)
                        .with_prefix("the upstream stream broke off")
                }
            }
            e => malformed(upstream, &e.to_string()),
        }
    }
}

impl Stream for SseData {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(events) = this.events.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(events.poll_next_unpin(cx)) {
                None => {
                    this.end();
                    return Poll::Ready(None);
                }
                Some(Ok(event)) => {
                    let mut data = event.data;
                    let trimmed = data.trim();
                    if trimmed == "[DONE]" {
                        this.end();
                        return Poll::Ready(None);
                    }
                    if trimmed.is_empty() {
                        continue;
                    }
                    if trimmed.len() != data.len() {
                        data = trimmed.to_string();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(this.failure(e)))),
            }
        }
    }
}

/// See [`sse_json`]: each event decoded as it is polled; the stream ends after its first
/// error.
struct SseJson<T> {
    data: SseData,
    fixup: fn(&mut Value),
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for SseJson<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        Poll::Ready(match ready!(this.data.poll_next_unpin(cx)) {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(data)) => {
                let item = decode::<T>(&data, &this.data.upstream, this.fixup);
                if item.is_err() {
                    this.data.end();
                }
                Some(item)
            }
        })
    }
}

/// An `Upstream` (502) error for an event that is not what the protocol promises.
pub(crate) fn malformed(upstream: &Upstream, detail: &str) -> Error {
    Error::upstream(
        upstream.provider_id(),
        502,
        format!(
            "provider '{}': malformed event in the upstream stream: {detail}",
            upstream.provider_id()
        ),
    )
}

/// One event's JSON as `T`. An event that has every field `T` requires and no `error` is
/// parsed straight into `T`; any other goes through a `Value`, where an `error` object
/// becomes a typed error and `fixup` fills the fields the upstream left out (fixups only
/// fill fields `T` requires, so both paths give the same result).
fn decode<T: DeserializeOwned>(
    data: &str,
    upstream: &Upstream,
    fixup: fn(&mut Value),
) -> Result<T> {
    if !data.contains("\"error\"") {
        if let Ok(chunk) = serde_json::from_str::<T>(data) {
            return Ok(chunk);
        }
    }
    let mut value: Value =
        serde_json::from_str(data).map_err(|e| malformed(upstream, &format!("{e}")))?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        let status = err
            .get("code")
            .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()))
            .filter(|c| (400..600).contains(c))
            .unwrap_or(502) as u16;
        let message = error_message(&value.to_string());
        return Err(Error::upstream(
            upstream.provider_id(),
            status,
            format!(
                "provider '{}': upstream error in stream: {message}",
                upstream.provider_id()
            ),
        ));
    }
    fixup(&mut value);
    serde_json::from_value(value).map_err(|e| malformed(upstream, &format!("{e}")))
}
