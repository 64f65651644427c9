//! Server-sent events from an upstream into typed chunks. The stream ends at `[DONE]` or
//! at the end of the body; a malformed event, an upstream `error` event, a stall longer than
//! the read timeout or a broken connection ends it with one typed error. Dropping the stream
//! drops the upstream response (and its connection).

use eventsource_stream::{EventStreamError, Eventsource};
use futures::stream::{BoxStream, StreamExt};
use llama_stack_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::upstream::{error_message, Upstream};

/// Decodes `resp`'s SSE body into `T`s; `fixup` fills fields some servers omit.
pub(crate) fn sse_json<T: DeserializeOwned + Send + 'static>(
    resp: reqwest::Response,
    upstream: &Upstream,
    fixup: fn(&mut Value),
) -> BoxStream<'static, Result<T>> {
    let up = upstream.clone();
    until_error(
        sse_data(resp, upstream)
            .map(move |data| decode::<T>(&data?, &up, fixup))
            .boxed(),
    )
}

/// The `data` fields of `resp`'s SSE body, one item per event (empty ones skipped), ending
/// at `[DONE]` or the end of the body. A stall longer than the read timeout, a broken
/// connection or an undecodable event ends it with one typed error.
pub(crate) fn sse_data(
    resp: reqwest::Response,
    upstream: &Upstream,
) -> BoxStream<'static, Result<String>> {
    let events = resp.bytes_stream().eventsource();
    // The upstream travels in the state, so nothing is cloned per event.
    futures::stream::unfold(
        (events, Some(upstream.clone())),
        |(mut events, upstream)| async move {
            // `None` once the stream has ended with an error.
            let upstream = upstream?;
            loop {
                match events.next().await? {
                    Ok(event) => {
                        let mut data = event.data;
                        let trimmed = data.trim();
                        if trimmed == "[DONE]" {
                            return None;
                        }
                        if trimmed.is_empty() {
                            continue;
                        }
                        if trimmed.len() != data.len() {
                            data = trimmed.to_string();
                        }
                        return Some((Ok(data), (events, Some(upstream))));
                    }
                    Err(EventStreamError::Transport(e)) => {
                        upstream.breaker().record_failure();
                        let err = if e.is_timeout() {
                            Error::new(
                                llama_stack_core::ErrorKind::Timeout,
                                format!(
                                    "provider '{}': the upstream stream stalled (no event within network.timeout): {e}",
                                    provider(&upstream)
                                ),
                            )
                            .with_provider(provider(&upstream))
                        } else {
                            upstream
                                .transport_error(&e)
                                .with_prefix("the upstream stream broke off")
                        };
                        return Some((Err(err), (events, None)));
                    }
                    Err(e) => {
                        let err = malformed(&upstream, &e.to_string());
                        return Some((Err(err), (events, None)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// Ends `stream` after its first error.
pub(crate) fn until_error<T: Send + 'static>(
    stream: BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    stream
        .scan(false, |failed, item| {
            let out = if *failed {
                None
            } else {
                *failed = item.is_err();
                Some(item)
            };
            futures::future::ready(out)
        })
        .boxed()
}

fn provider(upstream: &Upstream) -> String {
    upstream.provider_id().to_string()
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
        let _ = err;
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
