//! `remote::anthropic` and `remote::gemini` in library mode, against local fakes of the two
//! services.
//!
//! Neither service can be reached from here, so each fake answers with fixture bytes that
//! follow the service's documented wire format: JSON bodies, error bodies and SSE event
//! sequences (framing included). The comment next to each fixture names the documentation
//! page it follows. The fakes also record what they were sent, so the tests check the
//! translated requests (auth headers, paths, bodies) as well as the translated answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use llama_stack::core::api::inference::*;
use llama_stack::core::api::models::ModelType;
use llama_stack::core::context::ProviderData;
use llama_stack::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Anthropic fixtures

/// A Messages API answer: https://docs.claude.com/en/api/messages (response body).
const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048}}"#;

/// The basic text stream, event for event and with its `event:`/`data:` framing:
/// https://docs.claude.com/en/docs/build-with-claude/streaming ("Basic streaming request").
const ANTHROPIC_TEXT_STREAM: &str = "event: message_start
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-5-20250929\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}

event: content_block_start
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}

event: ping
data: {\"type\": \"ping\"}

event: content_block_delta
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}

event: content_block_delta
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}

event: content_block_stop
data: {\"type\": \"content_block_stop\", \"index\": 0}

event: message_delta
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}

event: message_stop
data: {\"type\": \"message_stop\"}

";

/// Extended thinking (`thinking_delta`, `signature_delta`), then text, then a tool call
/// whose input arrives as `input_json_delta` fragments (starting with an empty one), and
/// cache usage in `message_start`:
/// https://docs.claude.com/en/docs/build-with-claude/streaming ("Streaming request with
/// tool use", "Streaming request with extended thinking"),
/// https://docs.claude.com/en/docs/build-with-claude/prompt-caching (usage fields).
const ANTHROPIC_TOOL_STREAM: &str = "event: message_start
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":1800,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants the weather \"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"in San Francisco.\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":0}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}

event: ping
data: {\"type\": \"ping\"}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check the weather for San Francisco, CA:\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":1}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Fra\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ncisc\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"o, CA\\\"\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\", \\\"unit\\\": \\\"fah\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"renheit\\\"}\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":2}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_time\",\"input\":{}}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"tz\\\": \\\"PST\\\"}\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":3}

event: message_delta
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}

event: message_stop
data: {\"type\":\"message_stop\"}

";

/// An error event in the middle of a stream:
/// https://docs.claude.com/en/docs/build-with-claude/streaming ("Error events").
const ANTHROPIC_ERROR_EVENT: &str = "event: error
data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}

";

/// The first events of the basic stream (the body then ends, or stalls, or breaks).
fn anthropic_stream_head() -> String {
    ANTHROPIC_TEXT_STREAM
        .split("event: content_block_stop")
        .next()
        .unwrap()
        .to_string()
}

/// An error body with its documented shape and the status that goes with its type:
/// https://docs.claude.com/en/api/errors ("Error shapes", "HTTP errors").
fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A page of `GET /v1/models`: https://docs.claude.com/en/api/models-list (response body,
/// `has_more` / `first_id` / `last_id`, `after_id` query parameter).
fn anthropic_models_page(after: Option<&str>) -> Value {
    let model = |id: &str, name: &str| json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-09-29T00:00:00Z"});
    match after {
        None => json!({
            "data": [model("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"), model("claude-opus-4-1-20250805", "Claude Opus 4.1")],
            "has_more": true, "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-opus-4-1-20250805"
        }),
        Some("claude-opus-4-1-20250805") => json!({
            "data": [model("claude-3-5-haiku-20241022", "Claude Haiku 3.5")],
            "has_more": false, "first_id": "claude-3-5-haiku-20241022", "last_id": "claude-3-5-haiku-20241022"
        }),
        Some(other) => panic!("unexpected after_id {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Gemini fixtures (Google's SSE frames end in CRLF CRLF)

/// A `GenerateContentResponse`: https://ai.google.dev/api/generate-content#generatecontentresponse
const GEMINI_RESPONSE: &str = r#"{"candidates": [{"content": {"parts": [{"text": "Hi! How can I help you today?"}], "role": "model"}, "finishReason": "STOP", "avgLogprobs": -0.05, "index": 0}], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9, "totalTokenCount": 13, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}]}, "modelVersion": "gemini-2.5-flash", "responseId": "Fb8xaPryJ4KDz7IPs7fE4AI"}"#;

/// `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse`, the
/// last with `finishReason` and the final `usageMetadata`:
/// https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent,
/// https://ai.google.dev/gemini-api/docs/text-generation#streaming-responses
const GEMINI_TEXT_STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-1\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue.\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-1\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 5,\"totalTokenCount\": 13},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-1\"}\r\n\r\n";

/// Thought summaries (`thought: true` parts), then two parallel function calls arriving
/// whole, then `STOP` with cached and thinking token counts:
/// https://ai.google.dev/gemini-api/docs/thinking#summaries,
/// https://ai.google.dev/gemini-api/docs/function-calling#parallel_function_calling,
/// https://ai.google.dev/api/generate-content#UsageMetadata
const GEMINI_TOOL_STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"**Planning** I should check the lights.\", \"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 120,\"totalTokenCount\": 120,\"thoughtsTokenCount\": 30},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-2\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"power_disco_ball\",\"args\": {\"power\": true}}},{\"functionCall\": {\"name\": \"dim_lights\",\"args\": {\"brightness\": 0.5}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 120,\"candidatesTokenCount\": 20,\"totalTokenCount\": 170,\"cachedContentTokenCount\": 96,\"thoughtsTokenCount\": 30},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-2\"}\r\n\r\n";

/// A Google API error body (`code`, `message`, `status`):
/// https://ai.google.dev/gemini-api/docs/troubleshooting (error codes),
/// https://cloud.google.com/apis/design/errors#http_mapping (body shape).
fn gemini_error(code: u16, status: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "status": status}});
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// A page of `GET /v1beta/models`: https://ai.google.dev/api/models#method:-models.list
/// (`models[]` with `supportedGenerationMethods`, `nextPageToken` / `pageToken`).
fn gemini_models_page(token: Option<&str>) -> Value {
    let model = |id: &str, methods: &[&str]| {
        json!({
            "name": format!("models/{id}"), "version": "001", "displayName": id, "description": "",
            "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "supportedGenerationMethods": methods
        })
    };
    match token {
        None => json!({
            "models": [
                model("gemini-2.5-flash", &["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]),
                model("gemini-embedding-001", &["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"])
            ],
            "nextPageToken": "Ch1tb2RlbHMvZ2VtaW5pLWVtYmVkZGluZy0wMDE="
        }),
        Some("Ch1tb2RlbHMvZ2VtaW5pLWVtYmVkZGluZy0wMDE=") => json!({
            "models": [
                model("text-embedding-004", &["embedContent"]),
                model("imagen-4.0-generate-001", &["predict"]),
                model("gemini-2.0-flash", &["generateContent", "countTokens"])
            ]
        }),
        Some(other) => panic!("unexpected pageToken {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// The fakes

/// One call a fake received: headers, path and query, body.
type Call = (HashMap<String, String>, String, Value);

#[derive(Default)]
struct Fake {
    /// model → every call for it.
    calls: Mutex<HashMap<String, Vec<Call>>>,
    stream_dropped: Arc<AtomicBool>,
}

impl Fake {
    fn record(&self, model: &str, headers: &HeaderMap, path: String, body: &Value) -> usize {
        let h = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let mut calls = self.calls.lock().unwrap();
        let list = calls.entry(model.to_string()).or_default();
        list.push((h, path, body.clone()));
        list.len()
    }

    fn hits(&self, model: &str) -> usize {
        self.calls.lock().unwrap().get(model).map_or(0, Vec::len)
    }

    fn last(&self, model: &str) -> Call {
        self.calls.lock().unwrap()[model].last().unwrap().clone()
    }
}

/// A query string's pairs, percent-decoded.
fn query(raw: Option<String>) -> HashMap<String, String> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn sse_bytes(parts: Vec<String>) -> Response {
    let items: Vec<std::io::Result<Bytes>> =
        parts.into_iter().map(|p| Ok(Bytes::from(p))).collect();
    sse_stream(futures::stream::iter(items))
}

fn sse_stream(
    stream: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Splits an SSE text into its events (one write each, as a server flushes them).
fn events(text: &str, sep: &str) -> Vec<String> {
    text.split_inclusive(sep).map(str::to_string).collect()
}

fn stall_after(head: String, flag: Arc<AtomicBool>) -> Response {
    let guard = DropFlag(flag);
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(head))]);
    let rest = futures::stream::pending::<std::io::Result<Bytes>>().map(move |x| {
        let _keep = &guard;
        x
    });
    sse_stream(first.chain(rest))
}

async fn anthropic_messages(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let n = f.record(&model, &headers, "/v1/messages".into(), &body);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("x-api-key") == "bad-key" {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    if header("anthropic-version") != "2023-06-01" {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let stream = body["stream"] == json!(true);
    match model.as_str() {
        "claude-overloaded" => return anthropic_error(529, "overloaded_error", "Overloaded"),
        "claude-invalid" => {
            return anthropic_error(
                400,
                "invalid_request_error",
                "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929",
            )
        }
        "claude-flaky" if n == 1 => {
            return anthropic_error(500, "api_error", "Internal server error")
        }
        _ => {}
    }
    if !stream {
        return (
            [("content-type", "application/json")],
            ANTHROPIC_MESSAGE.to_string(),
        )
            .into_response();
    }
    match model.as_str() {
        "claude-tools" => sse_bytes(events(ANTHROPIC_TOOL_STREAM, "\n\n")),
        "claude-error-event" => {
            let mut parts = events(&anthropic_stream_head(), "\n\n");
            parts.push(ANTHROPIC_ERROR_EVENT.to_string());
            sse_bytes(parts)
        }
        "claude-cut" => sse_bytes(events(&anthropic_stream_head(), "\n\n")),
        "claude-malformed" => sse_bytes(vec![
            anthropic_stream_head(),
            "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\"\n\n".into(),
        ]),
        "claude-stall" => stall_after(anthropic_stream_head(), f.stream_dropped.clone()),
        _ => sse_bytes(events(ANTHROPIC_TEXT_STREAM, "\n\n")),
    }
}

async fn anthropic_models(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw);
    f.record("GET /v1/models", &headers, format!("{q:?}"), &Value::Null);
    if headers.get("x-api-key").is_none() {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    assert_eq!(q.get("limit").map(String::as_str), Some("1000"));
    Json(anthropic_models_page(q.get("after_id").map(String::as_str))).into_response()
}

async fn gemini_post(
    State(f): State<Arc<Fake>>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let q = query(raw);
    let (model, method) = rest.split_once(':').unwrap();
    let n = f.record(
        model,
        &headers,
        format!("/v1beta/models/{rest}?{q:?}"),
        &body,
    );
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if key.is_empty() || key == "bad-key" {
        // https://ai.google.dev/gemini-api/docs/troubleshooting: 400 INVALID_ARGUMENT.
        return gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
        );
    }
    match model {
        "gemini-quota" => {
            return gemini_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.")
        }
        "gemini-bad-schema" => {
            return gemini_error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.generation_config.response_schema.properties: should be non-empty for OBJECT type\n")
        }
        "gemini-flaky" if n == 1 => {
            return gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        }
        _ => {}
    }
    match method {
        "generateContent" => (
            [("content-type", "application/json; charset=UTF-8")],
            GEMINI_RESPONSE.to_string(),
        )
            .into_response(),
        "streamGenerateContent" => {
            assert_eq!(
                q.get("alt").map(String::as_str),
                Some("sse"),
                "streams ask for SSE"
            );
            let text = events(GEMINI_TEXT_STREAM, "\r\n\r\n");
            match model {
                "gemini-tools" => sse_bytes(events(GEMINI_TOOL_STREAM, "\r\n\r\n")),
                "gemini-cut" => sse_bytes(text[..2].to_vec()),
                "gemini-error-event" => {
                    let mut parts = text[..1].to_vec();
                    parts.push("data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded. Please try again later.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n".into());
                    sse_bytes(parts)
                }
                "gemini-stall" => stall_after(text[0].clone(), f.stream_dropped.clone()),
                _ => sse_bytes(text),
            }
        }
        // https://ai.google.dev/api/embeddings#method:-models.batchembedcontents
        "batchEmbedContents" => {
            let embeddings: Vec<Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    assert_eq!(r["model"], format!("models/{model}"));
                    let dims = r["outputDimensionality"].as_u64().unwrap_or(768) as usize;
                    let values: Vec<f32> = (0..dims).map(|d| (i * 1000 + d) as f32 / 4.0).collect();
                    json!({ "values": values })
                })
                .collect();
            Json(json!({ "embeddings": embeddings })).into_response()
        }
        other => gemini_error(404, "NOT_FOUND", &format!("Method {other} not found")),
    }
}

async fn gemini_models(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw);
    f.record(
        "GET /v1beta/models",
        &headers,
        format!("{q:?}"),
        &Value::Null,
    );
    if headers.get("x-goog-api-key").is_none() {
        return gemini_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
    }
    Json(gemini_models_page(q.get("pageToken").map(String::as_str))).into_response()
}

/// Starts both fakes on one local port; returns the base URL.
async fn fake() -> (Arc<Fake>, String) {
    let state = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/models", get(anthropic_models))
        .route("/v1beta/models", get(gemini_models))
        .route("/v1beta/models/{*rest}", post(gemini_post))
        .with_state(state.clone());
    (state, common::serve_local(app).await)
}

// ---------------------------------------------------------------------------------------
// Stacks

fn stack_yaml(dir: &std::path::Path, providers: &str) -> String {
    common::sqlite_run_config(dir, "native-remote-test", providers, "")
}

/// A stack with `claude` (`remote::anthropic`) and `gemini` (`remote::gemini`) at `url`,
/// each with `extra` config lines.
async fn start(url: &str, extra: &str) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: claude\n    provider_type: remote::anthropic\n    config:\n      base_url: {url}\n      api_key: claude-key\n{extra}  - provider_id: gemini\n    provider_type: remote::gemini\n    config:\n      base_url: {url}\n      api_key: gemini-key\n{extra}"
    );
    let stack = Stack::builder()
        .config_yaml(stack_yaml(dir.path(), &providers))
        .build()
        .await
        .unwrap();
    (stack, dir)
}

fn chat(model: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(model, [Message::system("be brief"), Message::user("hi")])
}

async fn collect(mut s: ChatCompletionStream) -> (Vec<ChatCompletionChunk>, ChatCompletion) {
    let mut chunks = Vec::new();
    let mut acc = ChatCompletionAccumulator::new();
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        acc.push(&c);
        chunks.push(c);
    }
    (chunks, acc.finish().unwrap())
}

/// Reads a stream up to its error; returns the chunks before it and the error.
async fn until_error(mut s: ChatCompletionStream) -> (usize, Error) {
    let mut n = 0;
    loop {
        match s.next().await {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => {
                assert!(s.next().await.is_none(), "the stream ends after its error");
                return (n, e);
            }
            None => panic!("the stream ended without an error"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Anthropic

#[tokio::test]
async fn anthropic_models_are_listed_page_by_page_and_filtered() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let ids: Vec<(String, ModelType)> = stack
        .models()
        .list()
        .await
        .unwrap()
        .data
        .into_iter()
        .filter(|m| m.provider_id == "claude")
        .map(|m| (m.identifier, m.model_type))
        .collect();
    for id in [
        "claude/claude-sonnet-4-5-20250929",
        "claude/claude-opus-4-1-20250805",
        "claude/claude-3-5-haiku-20241022",
    ] {
        assert!(
            ids.contains(&(id.to_string(), ModelType::Llm)),
            "{id} in {ids:?}"
        );
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    let (headers, _, _) = fake.last("GET /v1/models");
    assert_eq!(headers["x-api-key"], "claude-key");
    assert_eq!(headers["anthropic-version"], "2023-06-01");

    let (_fake, url) = self::fake().await;
    let (stack, _dir) = start(
        &url,
        "      allowed_models: [claude-3-5-haiku-20241022, gemini-2.0-flash]\n",
    )
    .await;
    let ids = common::model_ids(stack.models()).await;
    assert!(
        ids.contains(&"claude/claude-3-5-haiku-20241022".into()),
        "{ids:?}"
    );
    assert!(ids.contains(&"gemini/gemini-2.0-flash".into()), "{ids:?}");
    assert_eq!(
        ids.len(),
        2,
        "allowed_models filters both listings: {ids:?}"
    );
    let err = stack
        .inference()
        .chat_completion(chat("claude/claude-sonnet-4-5-20250929"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert!(err.message().contains("allowed_models"), "{err}");
}

#[tokio::test]
async fn anthropic_chat_sends_the_native_request_and_reads_the_message() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let mut req = chat("claude/claude-text").with_temperature(0.5);
    req.extra_body.insert("top_k".into(), json!(5));
    let out = stack.inference().chat_completion(req).await.unwrap();
    assert_eq!(out.model, "claude/claude-text");
    assert_eq!(out.id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
    assert_eq!(
        out.choices[0].message.content.as_deref(),
        Some("Hi! My name is Claude.")
    );
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
    let u = out.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (2095 + 2048, 503));
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(2048));

    let (headers, _, body) = fake.last("claude-text");
    assert_eq!(headers["x-api-key"], "claude-key");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(!headers.contains_key("authorization"));
    assert_eq!(
        body,
        json!({"model": "claude-text", "max_tokens": 4096, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "temperature": 0.5, "top_k": 5})
    );

    // The per-request key from provider data wins over the configured one.
    let pd = ProviderData::from_json(r#"{"anthropic_api_key": "bad-key"}"#).unwrap();
    let err = stack
        .with_context(RequestContext::anonymous().with_provider_data(pd))
        .inference()
        .chat_completion(chat("claude/claude-text"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.http_status(), 401);
    assert_eq!(err.provider(), Some("claude"));
    assert!(err.message().contains("invalid x-api-key"), "{err}");
}

#[tokio::test]
async fn anthropic_text_stream_follows_the_documented_events() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let s = stack
        .inference()
        .chat_completion_stream(chat("claude/claude-text").with_stream(true))
        .await
        .unwrap();
    let (chunks, out) = collect(s).await;
    assert!(chunks
        .iter()
        .all(|c| c.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"));
    assert!(chunks.iter().all(|c| c.model == "claude/claude-text"));
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert_eq!(out.choices[0].message.content.as_deref(), Some("Hello!"));
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage, Some(Usage::new(25, 15)));
    assert_eq!(fake.last("claude-text").2["stream"], true);
}

#[tokio::test]
async fn anthropic_stream_assembles_thinking_text_and_tool_calls() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let mut req = ChatCompletionRequest::new(
        "claude/claude-tools",
        [Message::user("What's the weather and time in SF?")],
    )
    .with_tools(vec![
        Tool::function(
            "get_weather",
            "Weather",
            json!({"type": "object", "properties": {"location": {"type": "string"}}}),
        ),
        Tool::function("get_time", "Time", json!({"type": "object"})),
    ])
    .with_stream(true);
    req.tool_choice = Some(ToolChoice::Mode("required".into()));
    req.extra_body.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": 2048}),
    );
    let (chunks, out) = collect(stack.inference().chat_completion_stream(req).await.unwrap()).await;
    let m = &out.choices[0].message;
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some("The user wants the weather in San Francisco.")
    );
    assert_eq!(
        m.content.as_deref(),
        Some("Okay, let's check the weather for San Francisco, CA:")
    );
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    assert_eq!(calls[1].id, "toolu_02");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].function.arguments).unwrap(),
        json!({"tz": "PST"})
    );
    // Argument fragments carry only their tool call's index.
    let indexes: Vec<u32> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .flat_map(|ch| ch.delta.tool_calls.iter().flatten())
        .map(|d| d.index)
        .collect();
    assert_eq!(indexes, [0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let u = out.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (472 + 1800, 89));
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(1800));

    let body = fake.last("claude-tools").2;
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(
        body["tools"][0]["input_schema"]["properties"]["location"]["type"],
        "string"
    );
}

#[tokio::test]
async fn anthropic_errors_are_typed_and_retried_only_before_the_stream() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(
        &url,
        "      max_retries: 2\n      network:\n        timeout: {connect: 2, read: 0.5}\n",
    )
    .await;
    let inf = stack.inference();

    // 529 overloaded: retried, then surfaced with the upstream's status and words.
    let err = inf
        .chat_completion(chat("claude/claude-overloaded"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.upstream_status(), Some(529));
    assert!(err.message().contains("Overloaded"), "{err}");
    assert_eq!(fake.hits("claude-overloaded"), 3);
    // 400: not retried, the upstream message kept.
    let err = inf
        .chat_completion(chat("claude/claude-invalid"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert!(
        err.message().contains("max_tokens: 100000 > 64000"),
        "{err}"
    );
    assert_eq!(fake.hits("claude-invalid"), 1);
    // 500 once, then the answer (streams too, before their first byte).
    let s = inf
        .chat_completion_stream(chat("claude/claude-flaky").with_stream(true))
        .await
        .unwrap();
    assert_eq!(
        collect(s).await.1.choices[0].message.content.as_deref(),
        Some("Hello!")
    );
    assert_eq!(fake.hits("claude-flaky"), 2);

    for (model, kind, status, needle) in [
        (
            "claude-error-event",
            ErrorKind::Upstream,
            Some(529),
            "overloaded_error: Overloaded",
        ),
        ("claude-cut", ErrorKind::Upstream, Some(502), "message_stop"),
        (
            "claude-malformed",
            ErrorKind::Upstream,
            Some(502),
            "malformed",
        ),
        ("claude-stall", ErrorKind::Timeout, None, "stalled"),
    ] {
        let s = inf
            .chat_completion_stream(chat(&format!("claude/{model}")).with_stream(true))
            .await
            .unwrap();
        let (before, err) = until_error(s).await;
        assert!(
            before >= 2,
            "{model}: the text before the failure arrives first"
        );
        assert_eq!(err.kind(), kind, "{model}: {err}");
        assert_eq!(err.upstream_status(), status, "{model}: {err}");
        assert_eq!(err.provider(), Some("claude"), "{model}: {err}");
        assert!(err.message().contains(needle), "{model}: {err}");
        assert_eq!(
            fake.hits(model),
            1,
            "{model}: never retried after the stream started"
        );
    }
}

#[tokio::test]
async fn anthropic_refuses_what_it_cannot_do_with_clear_errors() {
    let (_fake, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: claude\n    provider_type: remote::anthropic\n    config:\n      base_url: {url}\n      api_key: ${{env.LLAMA_STACK_TEST_UNSET_ANTHROPIC_KEY:=}}\n"
    );
    let stack = Stack::builder()
        .config_yaml(stack_yaml(dir.path(), &providers))
        .build()
        .await
        .unwrap();
    let err = stack
        .inference()
        .chat_completion(chat("claude/claude-text"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().starts_with("API key not provided"), "{err}");
    assert!(
        err.message().contains("ANTHROPIC_API_KEY") && err.message().contains("anthropic_api_key"),
        "{err}"
    );
    // Without a key the listing is skipped, and the stack still builds.
    assert!(stack.models().list().await.unwrap().data.is_empty());
    let pd = ProviderData::from_json(r#"{"anthropic_api_key": "from-header"}"#).unwrap();
    let scoped = stack.with_context(RequestContext::anonymous().with_provider_data(pd));
    scoped
        .inference()
        .chat_completion(chat("claude/claude-text"))
        .await
        .unwrap();
    let err = scoped
        .inference()
        .embeddings(EmbeddingsRequest::new("claude/claude-text", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = scoped
        .inference()
        .completion(CompletionRequest::new("claude/claude-text", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    let bad = format!(
        "  - provider_id: claude\n    provider_type: remote::anthropic\n    config:\n      base_url: {url}\n      api_key: k\n      anthropic_version: '2024-01-01'\n"
    );
    let err = Stack::builder()
        .config_yaml(stack_yaml(dir.path(), &bad))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message()
            .contains("providers.inference[0].config.anthropic_version"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_service_is_unavailable_and_the_circuit_opens() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (stack, _dir) = start(
        &format!("http://127.0.0.1:{port}"),
        "      max_retries: 0\n      circuit_breaker: {failure_threshold: 2, open_seconds: 30}\n",
    )
    .await;
    // Listing at startup already counts against the breaker; every call fails as
    // Unavailable, and once the circuit is open without waiting for the network.
    for model in ["claude/claude-text", "gemini/gemini-2.5-flash"] {
        let mut open = false;
        for _ in 0..3 {
            let err = stack
                .inference()
                .chat_completion(chat(model))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{model}: {err}");
            assert!(
                err.message().contains("connect") || err.message().contains("circuit breaker"),
                "{model}: {err}"
            );
            open = err.message().contains("circuit breaker");
        }
        assert!(open, "{model}: the circuit opens after two failures");
        let started = std::time::Instant::now();
        let err = stack
            .inference()
            .chat_completion(chat(model))
            .await
            .unwrap_err();
        assert!(err.message().contains("circuit breaker"), "{model}: {err}");
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// Gemini

#[tokio::test]
async fn gemini_models_are_listed_with_their_types() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let models: Vec<_> = stack
        .models()
        .list()
        .await
        .unwrap()
        .data
        .into_iter()
        .filter(|m| m.provider_id == "gemini")
        .collect();
    let find = |id: &str| {
        models
            .iter()
            .find(|m| m.identifier == id)
            .unwrap_or_else(|| panic!("{id} in {models:?}"))
    };
    assert_eq!(find("gemini/gemini-2.5-flash").model_type, ModelType::Llm);
    assert_eq!(find("gemini/gemini-2.0-flash").model_type, ModelType::Llm);
    let e = find("gemini/gemini-embedding-001");
    assert_eq!(e.model_type, ModelType::Embedding);
    assert_eq!(e.embedding_dimension(), Some(3072));
    assert_eq!(
        find("gemini/text-embedding-004").embedding_dimension(),
        Some(768)
    );
    assert_eq!(
        models.len(),
        4,
        "imagen (predict only) is skipped: {models:?}"
    );
    assert_eq!(
        fake.last("GET /v1beta/models").0["x-goog-api-key"],
        "gemini-key"
    );
}

#[tokio::test]
async fn gemini_chat_sends_the_native_request_and_reads_the_response() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let mut req = chat("gemini/gemini-2.5-flash").with_max_tokens(64);
    req.extra_body.insert("top_k".into(), json!(20));
    let out = stack.inference().chat_completion(req).await.unwrap();
    assert_eq!(out.model, "gemini/gemini-2.5-flash");
    assert_eq!(out.id, "Fb8xaPryJ4KDz7IPs7fE4AI");
    assert_eq!(
        out.choices[0].message.content.as_deref(),
        Some("Hi! How can I help you today?")
    );
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(out.usage, Some(Usage::new(4, 9)));

    let (headers, path, body) = fake.last("gemini-2.5-flash");
    assert_eq!(headers["x-goog-api-key"], "gemini-key");
    assert!(!headers.contains_key("authorization"));
    assert!(
        path.starts_with("/v1beta/models/gemini-2.5-flash:generateContent"),
        "{path}"
    );
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"maxOutputTokens": 64, "topK": 20}
        })
    );

    let pd = ProviderData::from_json(r#"{"gemini_api_key": "bad-key"}"#).unwrap();
    let err = stack
        .with_context(RequestContext::anonymous().with_provider_data(pd))
        .inference()
        .chat_completion(chat("gemini/gemini-2.5-flash"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.provider(), Some("gemini"));
    assert!(err.message().contains("API key not valid"), "{err}");
}

#[tokio::test]
async fn gemini_streams_text_thoughts_calls_and_usage() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let s = stack
        .inference()
        .chat_completion_stream(chat("gemini/gemini-2.5-flash").with_stream(true))
        .await
        .unwrap();
    let (chunks, out) = collect(s).await;
    assert!(chunks.iter().all(|c| c.id == "r-1"));
    assert_eq!(
        out.choices[0].message.content.as_deref(),
        Some("The sky is blue.")
    );
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(chunks.last().unwrap().usage, Some(Usage::new(8, 5)));
    assert!(fake
        .last("gemini-2.5-flash")
        .1
        .starts_with("/v1beta/models/gemini-2.5-flash:streamGenerateContent"));

    let mut req = ChatCompletionRequest::new("gemini/gemini-tools", [Message::user("party!")])
        .with_tools(vec![
            Tool::function(
                "power_disco_ball",
                "Disco",
                json!({"type": "object", "properties": {"power": {"type": "boolean"}}}),
            ),
            Tool::function(
                "dim_lights",
                "Dim",
                json!({"type": "object", "properties": {"brightness": {"type": "number"}}}),
            ),
        ])
        .with_stream(true);
    req.reasoning_effort = Some("medium".into());
    let (_, out) = collect(stack.inference().chat_completion_stream(req).await.unwrap()).await;
    let m = &out.choices[0].message;
    assert_eq!(
        m.reasoning_content.as_deref(),
        Some("**Planning** I should check the lights.")
    );
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].function.name, "power_disco_ball");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
        json!({"power": true})
    );
    assert_eq!(calls[1].function.name, "dim_lights");
    assert_ne!(calls[0].id, calls[1].id);
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let u = out.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (120, 50));
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(96));
    assert_eq!(
        u.completion_tokens_details.unwrap().reasoning_tokens,
        Some(30)
    );
    let body = fake.last("gemini-tools").2;
    assert_eq!(
        body["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true})
    );
    assert_eq!(
        body["tools"][0]["functionDeclarations"][1]["name"],
        "dim_lights"
    );

    // The tool results go back as functionResponse parts named after the calls.
    let follow_up = ChatCompletionRequest::new(
        "gemini/gemini-2.5-flash",
        [
            Message::user("party!"),
            Message::Assistant {
                content: None,
                name: None,
                tool_calls: Some(calls.clone()),
            },
            Message::tool(calls[0].id.clone(), r#"{"status": "spinning"}"#),
            Message::tool(calls[1].id.clone(), "ok"),
        ],
    );
    stack.inference().chat_completion(follow_up).await.unwrap();
    let body = fake.last("gemini-2.5-flash").2;
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "power_disco_ball", "response": {"status": "spinning"}}},
            {"functionResponse": {"name": "dim_lights", "response": {"result": "ok"}}}
        ]})
    );
}

#[tokio::test]
async fn gemini_errors_are_typed_and_retried_only_before_the_stream() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(
        &url,
        "      max_retries: 1\n      network:\n        timeout: {connect: 2, read: 0.5}\n",
    )
    .await;
    let inf = stack.inference();
    let err = inf
        .chat_completion(chat("gemini/gemini-quota"))
        .await
        .unwrap_err();
    assert_eq!(err.upstream_status(), Some(429));
    assert!(
        err.message().contains("exceeded your current quota"),
        "{err}"
    );
    assert_eq!(fake.hits("gemini-quota"), 2);
    let err = inf
        .chat_completion(chat("gemini/gemini-bad-schema"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert!(err.message().contains("response_schema"), "{err}");
    assert_eq!(fake.hits("gemini-bad-schema"), 1);
    inf.chat_completion(chat("gemini/gemini-flaky"))
        .await
        .unwrap();
    assert_eq!(fake.hits("gemini-flaky"), 2);

    for (model, kind, status, needle) in [
        (
            "gemini-error-event",
            ErrorKind::Upstream,
            Some(503),
            "UNAVAILABLE: The model is overloaded",
        ),
        ("gemini-cut", ErrorKind::Upstream, Some(502), "finishReason"),
        ("gemini-stall", ErrorKind::Timeout, None, "stalled"),
    ] {
        let s = inf
            .chat_completion_stream(chat(&format!("gemini/{model}")).with_stream(true))
            .await
            .unwrap();
        let (before, err) = until_error(s).await;
        assert!(
            before >= 2,
            "{model}: the text before the failure arrives first"
        );
        assert_eq!(err.kind(), kind, "{model}: {err}");
        assert_eq!(err.upstream_status(), status, "{model}: {err}");
        assert!(err.message().contains(needle), "{model}: {err}");
        assert_eq!(
            fake.hits(model),
            1,
            "{model}: never retried after the stream started"
        );
    }
    // An image URL Gemini cannot fetch is refused before any call.
    let req = ChatCompletionRequest::new(
        "gemini/gemini-2.5-flash",
        [Message::user(MessageContent::Parts(vec![
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: "https://example.com/cat.png".into(),
                    detail: None,
                },
            },
        ]))],
    );
    let before = fake.hits("gemini-2.5-flash");
    let err = inf.chat_completion(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("data: URL"), "{err}");
    assert_eq!(fake.hits("gemini-2.5-flash"), before);
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_request() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    for model in ["claude/claude-stall", "gemini/gemini-stall"] {
        fake.stream_dropped.store(false, Ordering::SeqCst);
        let mut s = stack
            .inference()
            .chat_completion_stream(chat(model).with_stream(true))
            .await
            .unwrap();
        s.next().await.unwrap().unwrap();
        drop(s);
        let mut closed = false;
        for _ in 0..200 {
            if fake.stream_dropped.load(Ordering::SeqCst) {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(closed, "{model}: the upstream response was not dropped");
    }
}

#[tokio::test]
async fn gemini_embeddings_batch_with_dimensions_and_base64() {
    let (fake, url) = fake().await;
    let (stack, _dir) = start(&url, "").await;
    let mut req = EmbeddingsRequest::new(
        "gemini/gemini-embedding-001",
        vec!["first".to_string(), "second".to_string()],
    );
    req.dimensions = Some(4);
    req.extra_body
        .insert("task_type".into(), json!("RETRIEVAL_DOCUMENT"));
    let out = stack.inference().embeddings(req.clone()).await.unwrap();
    assert_eq!(out.model, "gemini/gemini-embedding-001");
    assert_eq!(out.data.len(), 2);
    assert_eq!(out.data[1].index, 1);
    assert_eq!(
        out.data[1].embedding,
        EmbeddingVector::Float(vec![250.0, 250.25, 250.5, 250.75])
    );
    let (_, path, body) = fake.last("gemini-embedding-001");
    assert!(
        path.starts_with("/v1beta/models/gemini-embedding-001:batchEmbedContents"),
        "{path}"
    );
    assert_eq!(
        body["requests"][0],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "first"}]},
            "outputDimensionality": 4, "taskType": "RETRIEVAL_DOCUMENT"})
    );

    req.encoding_format = Some(EncodingFormat::Base64);
    let out = stack.inference().embeddings(req).await.unwrap();
    let EmbeddingVector::Base64(b64) = &out.data[0].embedding else {
        panic!("{:?}", out.data[0].embedding)
    };
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [0.0, 0.25, 0.5, 0.75]);

    let mut tokens = EmbeddingsRequest::new("gemini/gemini-embedding-001", "x");
    tokens.input = EmbeddingInput::Tokens(vec![1, 2]);
    let err = stack.inference().embeddings(tokens).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("input"), "{err}");
}
