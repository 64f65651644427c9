//! What the native (non-OpenAI) protocol providers share: one client per provider over the
//! remote core (config, API key resolution, `allowed_models`, retries, circuit breaker),
//! `data:` URL parsing, chunk construction, and a driver that turns an upstream SSE body
//! into chat completion chunks through a per-protocol [`StreamTranslator`].

use std::collections::VecDeque;

use futures::stream::StreamExt;
use llama_stack_core::api::inference::{
    ChatCompletionChunk, ChatCompletionStream, ChunkChoice, ChunkDelta, FinishReason, Usage,
};
use llama_stack_core::{Error, RequestContext, Result};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::config::OpenAiCompatConfig;
use super::provider::{api_key_for, check_allowed};
use super::services::ServiceProfile;
use super::stream::{malformed, sse_data};
use super::upstream::Upstream;

/// Most pages read when listing a service's models (a guard against a looping cursor).
pub(crate) const MAX_MODEL_PAGES: usize = 100;

/// One native provider's connection to its service.
#[derive(Debug)]
pub(crate) struct NativeClient {
    pub(crate) profile: &'static ServiceProfile,
    pub(crate) provider_id: String,
    pub(crate) config: OpenAiCompatConfig,
    pub(crate) base_url: String,
    pub(crate) upstream: Upstream,
}

impl NativeClient {
    /// A client for `profile` with a parsed `config` (`path` names it in errors).
    pub(crate) fn new(
        profile: &'static ServiceProfile,
        provider_id: &str,
        config: OpenAiCompatConfig,
        path: &str,
    ) -> Result<Self> {
        let upstream = Upstream::new(provider_id, &config, path)?;
        let base_url = config
            .base_url
            .clone()
            .or(profile.default_base_url.map(str::to_string))
            .ok_or_else(|| Error::config(format!("{path}.base_url: required")))?
            .trim_end_matches('/')
            .to_string();
        Ok(NativeClient {
            profile,
            provider_id: provider_id.to_string(),
            config,
            base_url,
            upstream,
        })
    }

    /// The key for this call (provider data first, then config); missing → `InvalidRequest`
    /// naming the config field, the env var and the provider-data field.
    pub(crate) fn api_key(&self, ctx: Option<&RequestContext>) -> Result<String> {
        api_key_for(self.profile, &self.provider_id, &self.config, ctx)?.ok_or_else(|| {
            Error::internal(format!(
                "provider '{}' resolved no API key",
                self.provider_id
            ))
        })
    }

    /// Fails with 400 when `allowed_models` excludes `model`.
    pub(crate) fn check_model(&self, model: &str) -> Result<()> {
        check_allowed(&self.provider_id, &self.config, model)
    }

    /// Whether a listed model passes `allowed_models`.
    pub(crate) fn allowed(&self, model: &str) -> bool {
        self.config
            .allowed_models
            .as_ref()
            .is_none_or(|a| a.iter().any(|m| m == model))
    }

    /// Sends one call (retried before any response byte on 429/5xx/connection errors).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path_and_query}", self.base_url);
        let client = self.upstream.client();
        self.upstream
            .send(|| {
                let mut rb = client.request(method.clone(), &url);
                for (name, value) in headers {
                    rb = rb.header(name.clone(), value.clone());
                }
                if let Some(body) = body {
                    rb = rb.json(body);
                }
                rb
            })
            .await
    }

    /// Reads a JSON answer.
    pub(crate) async fn json(&self, resp: reqwest::Response) -> Result<Value> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.upstream.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.malformed(&e.to_string()))
    }

    /// An `Upstream` (502) error for an answer that is not what the protocol promises.
    pub(crate) fn malformed(&self, detail: &str) -> Error {
        Error::upstream(
            &self.provider_id,
            502,
            format!(
                "provider '{}': malformed response from the upstream: {detail}",
                self.provider_id
            ),
        )
    }

    /// A header value from a key, or an `InvalidRequest` if the key cannot be one.
    pub(crate) fn header_value(&self, value: &str) -> Result<HeaderValue> {
        HeaderValue::from_str(value).map_err(|_| {
            Error::invalid_request(format!(
                "the API key of provider '{}' is not a valid header value",
                self.provider_id
            ))
        })
    }
}

/// A parsed `data:<mime>;base64,<data>` URL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataUrl<'a> {
    /// The MIME type (`image/png`).
    pub(crate) mime: &'a str,
    /// The base64 payload, as given.
    pub(crate) data: &'a str,
}

/// Splits a `data:` URL; `Ok(None)` for any other URL; a `data:` URL that is not base64 is
/// an `InvalidRequest` naming `field`.
pub(crate) fn data_url<'a>(url: &'a str, field: &str) -> Result<Option<DataUrl<'a>>> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid_request(format!(
            "{field}: a data: URL must look like data:<mime type>;base64,<data>"
        ))
        .with_context("param", field)
    };
    let (head, data) = rest.split_once(',').ok_or_else(bad)?;
    let mime = head.strip_suffix(";base64").ok_or_else(bad)?;
    if mime.is_empty() || data.is_empty() {
        return Err(bad());
    }
    Ok(Some(DataUrl { mime, data }))
}

/// Parses a tool call's `arguments` (a JSON object as a string; empty = `{}`).
pub(crate) fn tool_arguments(arguments: &str, field: &str) -> Result<Value> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) | Err(_) => Err(Error::invalid_param(
            field,
            format!("'{arguments}'"),
            "Must be a JSON object as a string",
        )),
    }
}

/// Builds the chunks of one streamed completion (same id, model and time on each).
#[derive(Debug, Clone)]
pub(crate) struct Chunks {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: i64,
}

impl Chunks {
    /// A factory for `model`'s chunks, with an id until the upstream sends its own.
    pub(crate) fn new(model: &str) -> Self {
        Chunks {
            id: String::new(),
            model: model.to_string(),
            created: now(),
        }
    }

    /// One choice's chunk.
    pub(crate) fn choice(
        &self,
        index: u32,
        delta: ChunkDelta,
        finish_reason: Option<FinishReason>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
            service_tier: None,
            system_fingerprint: None,
        }
    }

    /// The final chunk with usage and no choices.
    pub(crate) fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
            service_tier: None,
            system_fingerprint: None,
        }
    }
}

/// What a query value keeps unescaped: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (model ids are plain, but a cursor is the service's).
pub(crate) fn query_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// An `f32` as the JSON number it was written as (`0.7`, not `0.699999988`).
pub(crate) fn num(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Turns one protocol's stream events into chat completion chunks.
pub(crate) trait StreamTranslator: Send + 'static {
    /// One event's JSON `data` → the chunks it amounts to (an upstream error event → `Err`).
    fn event(&mut self, data: Value) -> Result<Vec<ChatCompletionChunk>>;
    /// The upstream body ended: the last chunks, or an error if it ended too early.
    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>>;
}

/// Drives `translator` over `resp`'s SSE body. The stream ends after its first error;
/// dropping it drops the upstream response.
pub(crate) fn translate_sse<T: StreamTranslator>(
    resp: reqwest::Response,
    upstream: &Upstream,
    translator: T,
) -> ChatCompletionStream {
    let data = sse_data(resp, upstream);
    let upstream = upstream.clone();
    let state = (data, translator, VecDeque::new(), false);
    futures::stream::unfold(
        state,
        move |(mut data, mut translator, mut pending, mut done)| {
            let upstream = upstream.clone();
            async move {
                loop {
                    if let Some(chunk) = pending.pop_front() {
                        return Some((Ok(chunk), (data, translator, pending, done)));
                    }
                    if done {
                        return None;
                    }
                    let step = match data.next().await {
                        Some(Ok(text)) => match serde_json::from_str::<Value>(&text) {
                            Ok(v) => translator.event(v),
                            Err(e) => Err(malformed(&upstream, &e.to_string())),
                        },
                        Some(Err(e)) => Err(e),
                        None => {
                            done = true;
                            translator.finish()
                        }
                    };
                    match step {
                        Ok(chunks) => pending.extend(chunks),
                        Err(e) => {
                            return Some((Err(e), (data, translator, pending, true)));
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_split_and_reject_non_base64() {
        assert_eq!(
            data_url("data:image/png;base64,iVBOR", "f").unwrap(),
            Some(DataUrl {
                mime: "image/png",
                data: "iVBOR"
            })
        );
        assert_eq!(data_url("https://x/y.png", "f").unwrap(), None);
        let e = data_url("data:image/png,rawbytes", "messages[0].content[1]").unwrap_err();
        assert!(e.message().contains("messages[0].content[1]"), "{e}");
    }

    #[test]
    fn tool_arguments_must_be_objects() {
        assert_eq!(tool_arguments("", "a").unwrap(), serde_json::json!({}));
        assert_eq!(
            tool_arguments(r#"{"x":1}"#, "a").unwrap(),
            serde_json::json!({"x": 1})
        );
        assert!(tool_arguments("[1]", "a").is_err());
        assert!(tool_arguments("{oops", "a").is_err());
    }
}
