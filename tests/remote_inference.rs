//! Remote inference over OpenAI's protocol, in library mode.
//!
//! - Conformance: the shared suite (`inference_conformance`) against a real OpenAI-compatible
//!   server, llama.cpp's (llama-cpp-python) serving SmolLM2, through `remote::openai`,
//!   `remote::vllm`, `remote::ollama` and `remote::llama-cpp-server` configs. Start it with
//!   `tests/python/llama_cpp_server.sh start` and export
//!   `LLAMA_STACK_TEST_LLAMA_CPP_URL=http://127.0.0.1:8091/v1`; without it these tests print
//!   "SKIPPED" (under `CI=true` they fail).
//! - Faults: a local HTTP server in this file answers 429 with `Retry-After`, 5xx then
//!   success, malformed SSE, a stalling stream, a connection closed mid-stream and slow
//!   responses; the tests assert the typed errors, the attempts the server saw, and that
//!   the circuit breaker opens and recovers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;
mod inference_conformance;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use inference_conformance::Target;
use llama_stack::core::api::inference::*;
use llama_stack::core::api::models::ModelType;
use llama_stack::core::context::ProviderData;
use llama_stack::core::provider::InferenceCaps;
use llama_stack::prelude::*;
use llama_stack_providers::inference::remote::services;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Stacks

fn stack_yaml(dir: &std::path::Path, providers: &str, extra: &str) -> String {
    common::sqlite_run_config(dir, "remote-test", providers, extra)
}

async fn build(yaml: String) -> Result<Stack> {
    Stack::builder().config_yaml(yaml).build().await
}

// ---------------------------------------------------------------------------------------
// Conformance against llama.cpp's server

fn llama_cpp_url(test: &str) -> Option<String> {
    match std::env::var("LLAMA_STACK_TEST_LLAMA_CPP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{test}: LLAMA_STACK_TEST_LLAMA_CPP_URL is required when CI=true (tests/python/llama_cpp_server.sh start)");
            }
            eprintln!("SKIPPED {test}: set LLAMA_STACK_TEST_LLAMA_CPP_URL (tests/python/llama_cpp_server.sh start)");
            None
        }
    }
}

/// What llama-cpp-python's server (0.3.x) can do with SmolLM2: no `json_schema` response
/// format (only `json_object`), no rerank, and no OpenAI-shaped embeddings (the model has no
/// pooling, so the server answers one vector per token).
const LLAMA_CPP_PYTHON: InferenceCaps = InferenceCaps {
    chat: true,
    completion: true,
    streaming: true,
    tools: true,
    json_schema: false,
    embeddings: false,
    rerank: false,
};

/// SmolLM2-135M's hidden size: the length of llama.cpp's embeddings for it.
const SMOLLM2_DIM: usize = 576;

async fn llama_cpp_target(
    provider_type: &str,
    url: &str,
    key_line: &str,
) -> (Target, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: llamacpp\n    provider_type: {provider_type}\n    config:\n      base_url: {url}\n{key_line}"
    );
    let extra = format!(
        "registered_resources:\n  models:\n  - model_id: smollm2-embed\n    provider_id: llamacpp\n    model_type: embedding\n    metadata: {{embedding_dimension: {SMOLLM2_DIM}}}\n"
    );
    let stack = build(stack_yaml(dir.path(), &providers, &extra))
        .await
        .unwrap();
    let profile = services::profile(provider_type).unwrap();
    let caps = profile.caps;
    let target = Target {
        label: provider_type.to_string(),
        stack,
        chat_model: "llamacpp/smollm2".into(),
        embedding: Some(("llamacpp/smollm2-embed".into(), SMOLLM2_DIM)),
        // What the provider claims, within what the server under test can do.
        caps: InferenceCaps {
            chat: caps.chat && LLAMA_CPP_PYTHON.chat,
            completion: caps.completion && LLAMA_CPP_PYTHON.completion,
            streaming: caps.streaming && LLAMA_CPP_PYTHON.streaming,
            tools: caps.tools && LLAMA_CPP_PYTHON.tools,
            json_schema: caps.json_schema && LLAMA_CPP_PYTHON.json_schema,
            embeddings: caps.embeddings && LLAMA_CPP_PYTHON.embeddings,
            rerank: caps.rerank && LLAMA_CPP_PYTHON.rerank,
        },
        // llama-cpp-python's server does not send usage in streams.
        stream_usage: false,
    };
    (target, dir)
}

/// The llama.cpp server is one shared model slot: its prompt cache makes concurrent
/// requests round differently, so tests using it take turns.
static LLAMA_CPP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn conformance(provider_type: &str, key_line: &str, test: &str) {
    let Some(url) = llama_cpp_url(test) else {
        return;
    };
    let _turn = LLAMA_CPP.lock().await;
    let (t, _dir) = llama_cpp_target(provider_type, &url, key_line).await;
    // The server's models are listed into the registry at startup.
    let models = t.stack.models().list().await.unwrap().data;
    let chat = models
        .iter()
        .find(|m| m.identifier == "llamacpp/smollm2")
        .unwrap_or_else(|| panic!("{models:?}"));
    assert_eq!(chat.provider_resource_id, "smollm2");
    assert_eq!(chat.model_type, ModelType::Llm);
    inference_conformance::run_all(&t).await;
}

#[tokio::test]
async fn conformance_remote_openai_on_llama_cpp() {
    conformance(
        "remote::openai",
        "      api_key: sk-not-checked\n",
        "conformance_remote_openai_on_llama_cpp",
    )
    .await;
}

#[tokio::test]
async fn conformance_remote_vllm_on_llama_cpp() {
    conformance("remote::vllm", "", "conformance_remote_vllm_on_llama_cpp").await;
}

#[tokio::test]
async fn conformance_remote_ollama_on_llama_cpp() {
    conformance(
        "remote::ollama",
        "",
        "conformance_remote_ollama_on_llama_cpp",
    )
    .await;
}

#[tokio::test]
async fn conformance_remote_llama_cpp_server_on_llama_cpp() {
    conformance(
        "remote::llama-cpp-server",
        "",
        "conformance_remote_llama_cpp_server_on_llama_cpp",
    )
    .await;
}

#[tokio::test]
async fn upstream_rejections_keep_their_status_and_message() {
    let Some(url) = llama_cpp_url("upstream_rejections_keep_their_status_and_message") else {
        return;
    };
    let _turn = LLAMA_CPP.lock().await;
    let (t, _dir) = llama_cpp_target("remote::llama-cpp-server", &url, "").await;
    // Far beyond the server's 4096-token context.
    let long = "word ".repeat(6000);
    let err = t
        .stack
        .inference()
        .chat_completion(
            ChatCompletionRequest::new("llamacpp/smollm2", [Message::user(long.as_str())])
                .with_max_tokens(4),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert_eq!(err.provider(), Some("llamacpp"));
    let status = err.upstream_status().unwrap();
    assert!((400..500).contains(&status), "{err}");
    assert_eq!(err.http_status(), status);
    assert!(
        err.message().to_lowercase().contains("context") || err.message().contains("token"),
        "{err}"
    );
    // Per-token vectors are not OpenAI's embedding shape: a typed error, not a panic.
    let err = t
        .stack
        .inference()
        .embeddings(EmbeddingsRequest::new(
            "llamacpp/smollm2-embed",
            "two words",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert!(err.message().contains("malformed"), "{err}");
    // A model the server does not have, addressed directly.
    let err = t
        .stack
        .inference()
        .chat_completion(
            ChatCompletionRequest::new("llamacpp/not-served", [Message::user("hi")])
                .with_max_tokens(2),
        )
        .await;
    if let Err(err) = err {
        assert!(matches!(err.kind(), ErrorKind::Upstream), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection

#[derive(Default)]
struct Faults {
    hits: Mutex<HashMap<String, Vec<Instant>>>,
    down: AtomicBool,
    stream_dropped: Arc<AtomicBool>,
    models: Mutex<Vec<String>>,
}

impl Faults {
    fn hits(&self, model: &str) -> usize {
        self.hits.lock().unwrap().get(model).map_or(0, Vec::len)
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Bytes {
    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    Bytes::from(format!("data: {c}\n\n"))
}

fn completion(model: &str, text: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
}

fn sse(stream: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "test"}})),
    )
        .into_response()
}

/// Sets a flag when the response body is dropped (the client went away).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn chat(
    State(f): State<Arc<Faults>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let (n, previous) = {
        let mut hits = f.hits.lock().unwrap();
        let list = hits.entry(model.clone()).or_default();
        let previous = list.last().copied();
        list.push(Instant::now());
        (list.len(), previous)
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let ok_stream = |m: String| {
        sse(futures::stream::iter([
            Ok(chunk(&m, json!({"role": "assistant", "content": ""}), None)),
            Ok(chunk(&m, json!({"content": "Hi"}), None)),
            Ok(chunk(&m, json!({}), Some("stop"))),
            Ok(Bytes::from("data: [DONE]\n\n")),
        ]))
    };
    match model.as_str() {
        // 429 with Retry-After: 1; a retry that comes sooner is refused again.
        "rate-limited" => {
            let early = previous.is_some_and(|p| p.elapsed() < Duration::from_millis(950));
            if n == 1 || early {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    Json(json!({"error": {"message": "slow down"}})),
                )
                    .into_response();
            }
        }
        "rate-limited-long" => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "3600")],
                Json(json!({"error": {"message": "come back in an hour"}})),
            )
                .into_response();
        }
        m if m.starts_with("flaky") && n <= 2 => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "boom")
        }
        "bad-request" => return error(StatusCode::BAD_REQUEST, "model is bad"),
        "down" if f.down.load(Ordering::SeqCst) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "maintenance")
        }
        "malformed" => {
            return sse(futures::stream::iter([
                Ok(chunk(
                    &model,
                    json!({"role": "assistant", "content": "Hi"}),
                    None,
                )),
                Ok(Bytes::from("data: {this is not json\n\n")),
                Ok(chunk(&model, json!({"content": "never seen"}), None)),
            ]))
        }
        "error-event" => {
            return sse(futures::stream::iter([
                Ok(chunk(
                    &model,
                    json!({"role": "assistant", "content": "Hi"}),
                    None,
                )),
                Ok(Bytes::from(
                    "data: {\"error\": {\"message\": \"overloaded\", \"code\": \"503\"}}\n\n",
                )),
            ]))
        }
        "stall" => {
            let flag = DropFlag(f.stream_dropped.clone());
            let first = futures::stream::iter([Ok(chunk(
                &model,
                json!({"role": "assistant", "content": "Hi"}),
                None,
            ))]);
            let rest = futures::stream::pending::<std::io::Result<Bytes>>().map(move |x| {
                let _keep = &flag;
                x
            });
            return sse(first.chain(rest));
        }
        "cut" => {
            return sse(futures::stream::iter([Ok(chunk(
                &model,
                json!({"role": "assistant", "content": "Hi"}),
                None,
            ))])
            .chain(futures::stream::once(async {
                // After the first event is on the wire.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(std::io::Error::other("connection reset by test"))
            })));
        }
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        "tools" => {
            let m = model.clone();
            return sse(futures::stream::iter([
                Ok(chunk(
                    &m,
                    json!({"role": "assistant", "reasoning_content": "The user wants weather."}),
                    None,
                )),
                Ok(chunk(
                    &m,
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                    None,
                )),
                Ok(chunk(
                    &m,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
                    None,
                )),
                Ok(chunk(
                    &m,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    None,
                )),
                Ok(chunk(&m, json!({}), Some("tool_calls"))),
                Ok(Bytes::from(format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": m, "choices": [],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 8}}})
                ))),
                Ok(Bytes::from("data: [DONE]\n\n")),
            ]));
        }
        "echo" => {
            let seen = json!({
                "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
                "x-team": headers.get("x-team").and_then(|v| v.to_str().ok()),
                "x-tenant-id": headers.get("x-tenant-id").and_then(|v| v.to_str().ok()),
                "model": body["model"],
                "top_k": body["top_k"],
                "max_tokens": body["max_tokens"],
                "max_completion_tokens": body["max_completion_tokens"],
                "project_id": body["project_id"],
            });
            return Json(completion(&model, &seen.to_string())).into_response();
        }
        _ => {}
    }
    if stream {
        ok_stream(model)
    } else {
        Json(completion(&model, "Hi")).into_response()
    }
}

async fn models(State(f): State<Arc<Faults>>) -> Json<Value> {
    let data: Vec<Value> = f
        .models
        .lock()
        .unwrap()
        .iter()
        .map(|id| json!({"id": id, "object": "model", "owned_by": "test"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// Starts the fault server on 127.0.0.1:0; returns its `/v1` base URL.
async fn fault_server() -> (Arc<Faults>, String) {
    let faults = Arc::new(Faults::default());
    *faults.models.lock().unwrap() = vec!["ok-model".into(), "other-model".into(), "echo".into()];
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(faults.clone());
    (faults, format!("{}/v1", common::serve_local(app).await))
}

/// A stack with one `remote::openai` provider `fault` at `url`, plus `config` lines.
async fn fault_stack(url: &str, config: &str) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: fault\n    provider_type: remote::openai\n    config:\n      base_url: {url}\n      api_key: configured-key\n{config}"
    );
    let stack = build(stack_yaml(dir.path(), &providers, "")).await.unwrap();
    (stack, dir)
}

fn req(model: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new(format!("fault/{model}"), [Message::user("hi")])
}

#[tokio::test]
async fn retries_follow_retry_after_and_stop_at_client_errors() {
    let (faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(&url, "      max_retries: 2\n").await;
    let inf = stack.inference();

    let out = inf.chat_completion(req("rate-limited")).await.unwrap();
    assert_eq!(out.model, "fault/rate-limited");
    assert_eq!(
        faults.hits("rate-limited"),
        2,
        "one 429, then one retry after Retry-After"
    );

    let out = inf.chat_completion(req("flaky")).await.unwrap();
    assert_eq!(out.choices[0].message.content.as_deref(), Some("Hi"));
    assert_eq!(faults.hits("flaky"), 3, "two 500s, then success");

    let err = inf.chat_completion(req("bad-request")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.upstream_status(), Some(400));
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.provider(), Some("fault"));
    assert!(err.message().contains("model is bad"), "{err}");
    assert_eq!(faults.hits("bad-request"), 1, "4xx is not retried");

    let err = inf
        .chat_completion(req("rate-limited-long"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 429, "{err}");
    assert!(err.message().contains("come back in an hour"), "{err}");
    assert_eq!(
        faults.hits("rate-limited-long"),
        1,
        "a Retry-After beyond the cap is not waited for"
    );

    // Streams retry before their first byte too.
    let mut s = inf
        .chat_completion_stream(req("flaky2").with_stream(true))
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(c) = s.next().await {
        for ch in c.unwrap().choices {
            text.push_str(ch.delta.content.as_deref().unwrap_or(""));
        }
    }
    assert_eq!(text, "Hi");
    assert_eq!(faults.hits("flaky2"), 3);
}

#[tokio::test]
async fn broken_streams_end_with_one_typed_error_and_are_not_retried() {
    let (faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(
        &url,
        "      network:\n        timeout: {connect: 2, read: 0.5}\n",
    )
    .await;
    let inf = stack.inference();
    for (model, kind, needle) in [
        ("malformed", ErrorKind::Upstream, "malformed"),
        ("error-event", ErrorKind::Upstream, "overloaded"),
        ("cut", ErrorKind::Upstream, "broke off"),
        ("stall", ErrorKind::Timeout, "stalled"),
    ] {
        let mut s = inf
            .chat_completion_stream(req(model).with_stream(true))
            .await
            .unwrap();
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.model, format!("fault/{model}"));
        assert_eq!(first.choices[0].delta.content.as_deref(), Some("Hi"));
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), kind, "{model}: {err}");
        assert!(err.message().contains(needle), "{model}: {err}");
        assert!(
            s.next().await.is_none(),
            "{model}: the stream ends after its error"
        );
        assert_eq!(
            faults.hits(model),
            1,
            "{model}: never retried after the stream started"
        );
    }
    let err = inf
        .chat_completion_stream(req("error-event").with_stream(true))
        .await
        .unwrap();
    drop(err);

    // A slow answer runs into the read timeout: a Timeout, not retried.
    let err = inf.chat_completion(req("slow")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(faults.hits("slow"), 1);
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_request() {
    let (faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(&url, "").await;
    let mut s = stack
        .inference()
        .chat_completion_stream(req("stall").with_stream(true))
        .await
        .unwrap();
    s.next().await.unwrap().unwrap();
    assert!(!faults.stream_dropped.load(Ordering::SeqCst));
    drop(s);
    // The server notices the closed connection and drops its response body.
    for _ in 0..200 {
        if faults.stream_dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the upstream response was not dropped after the caller dropped the stream");
}

#[tokio::test]
async fn the_circuit_opens_on_a_failing_upstream_and_recovers() {
    let (faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(
        &url,
        "      max_retries: 0\n      circuit_breaker: {failure_threshold: 3, open_seconds: 0.5}\n",
    )
    .await;
    let inf = stack.inference();
    faults.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let err = inf.chat_completion(req("down")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
        assert_eq!(err.http_status(), 503);
    }
    assert_eq!(faults.hits("down"), 3);
    // Open: calls fail fast without reaching the upstream.
    for _ in 0..5 {
        let err = inf.chat_completion(req("down")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("circuit breaker"), "{err}");
    }
    assert_eq!(faults.hits("down"), 3);
    // Still down after the pause: the probe fails and the circuit opens again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        inf.chat_completion(req("down")).await.unwrap_err().kind(),
        ErrorKind::Upstream
    );
    assert_eq!(
        inf.chat_completion(req("down")).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(faults.hits("down"), 4);
    // Back up: the next probe closes the circuit.
    faults.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    inf.chat_completion(req("down")).await.unwrap();
    inf.chat_completion(req("down")).await.unwrap();
    assert_eq!(faults.hits("down"), 6);
}

#[tokio::test]
async fn an_unreachable_upstream_is_unavailable_and_the_stack_still_builds() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (stack, _dir) = fault_stack(
        &format!("http://127.0.0.1:{port}/v1"),
        "      max_retries: 1\n",
    )
    .await;
    let err = stack
        .inference()
        .chat_completion(req("ok-model"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.provider(), Some("fault"));
    assert!(err.message().contains("connect"), "{err}");
}

#[tokio::test]
async fn stream_deltas_reasoning_and_cached_usage_pass_through() {
    let (_faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(&url, "").await;
    let mut s = stack
        .inference()
        .chat_completion_stream(req("tools").with_stream(true))
        .await
        .unwrap();
    let (mut reasoning, mut name, mut args, mut id, mut finish, mut usage) = (
        String::new(),
        String::new(),
        String::new(),
        None,
        None,
        None,
    );
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        assert_eq!(c.model, "fault/tools");
        if c.usage.is_some() {
            usage = c.usage;
        }
        for ch in c.choices {
            reasoning.push_str(ch.delta.reasoning_content.as_deref().unwrap_or(""));
            for tc in ch.delta.tool_calls.unwrap_or_default() {
                assert_eq!(tc.index, 0);
                id = id.or(tc.id);
                if let Some(f) = tc.function {
                    name.push_str(f.name.as_deref().unwrap_or(""));
                    args.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
            finish = finish.or(ch.finish_reason);
        }
    }
    assert_eq!(reasoning, "The user wants weather.");
    assert_eq!(id.as_deref(), Some("call_1"));
    assert_eq!(name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    let usage = usage.unwrap();
    assert_eq!(usage.total_tokens, 13);
    assert_eq!(usage.prompt_tokens_details.unwrap().cached_tokens, Some(8));
}

#[tokio::test]
async fn keys_headers_and_extra_body_reach_the_upstream() {
    let (_faults, url) = fault_server().await;
    let (stack, _dir) =
        fault_stack(&url, "      network:\n        headers: {x-team: blue}\n").await;
    let seen = |out: ChatCompletion| -> Value {
        serde_json::from_str(out.choices[0].message.content.as_deref().unwrap()).unwrap()
    };
    let mut r = req("echo");
    r.extra_body.insert("top_k".into(), json!(40));
    let out = stack.inference().chat_completion(r.clone()).await.unwrap();
    assert_eq!(out.model, "fault/echo");
    let v = seen(out);
    assert_eq!(v["authorization"], "Bearer configured-key");
    assert_eq!(v["x-team"], "blue");
    assert_eq!(
        v["model"], "echo",
        "the upstream gets the provider's model id"
    );
    assert_eq!(v["top_k"], 40);

    // The per-request key from provider data wins over the configured one.
    let pd = ProviderData::from_json(r#"{"openai_api_key": "per-request-key"}"#).unwrap();
    let ctx = RequestContext::anonymous().with_provider_data(pd);
    let v = seen(
        stack
            .with_context(ctx)
            .inference()
            .chat_completion(r)
            .await
            .unwrap(),
    );
    assert_eq!(v["authorization"], "Bearer per-request-key");
}

#[tokio::test]
async fn passthrough_forwards_only_the_configured_provider_data_headers() {
    let (_faults, url) = fault_server().await;
    let base = url.trim_end_matches("/v1");
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: pt\n    provider_type: remote::passthrough\n    config:\n      base_url: {base}\n      forward_headers: {{tenant: X-Tenant-Id}}\n"
    );
    let stack = build(stack_yaml(dir.path(), &providers, "")).await.unwrap();
    let pd = ProviderData::from_json(
        r#"{"tenant": "acme", "other": "ignored", "passthrough_api_key": "pt-key"}"#,
    )
    .unwrap();
    let ctx = RequestContext::anonymous().with_provider_data(pd);
    let out = stack
        .with_context(ctx)
        .inference()
        .chat_completion(ChatCompletionRequest::new("pt/echo", [Message::user("hi")]))
        .await
        .unwrap();
    let v: Value =
        serde_json::from_str(out.choices[0].message.content.as_deref().unwrap()).unwrap();
    assert_eq!(v["x-tenant-id"], "acme");
    assert_eq!(v["authorization"], "Bearer pt-key");
    assert!(v["x-team"].is_null());
}

#[tokio::test]
async fn missing_keys_allowed_models_and_listing() {
    let (_faults, url) = fault_server().await;
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: nokey\n    provider_type: remote::openai\n    config:\n      base_url: {url}\n      api_key: ${{env.LLAMA_STACK_TEST_UNSET_KEY_VAR:=}}\n  - provider_id: fault\n    provider_type: remote::openai\n    config:\n      base_url: {url}\n      api_key: k\n      allowed_models: [ok-model, echo]\n"
    );
    let stack = build(stack_yaml(dir.path(), &providers, "")).await.unwrap();
    let ids = common::model_ids(stack.models()).await;
    assert!(ids.contains(&"fault/ok-model".to_string()), "{ids:?}");
    assert!(ids.contains(&"fault/echo".to_string()), "{ids:?}");
    assert!(
        !ids.contains(&"fault/other-model".to_string()),
        "allowed_models filters the listing: {ids:?}"
    );
    assert!(
        !ids.iter().any(|i| i.starts_with("nokey/")),
        "listing without a key is skipped: {ids:?}"
    );

    let err = stack
        .inference()
        .chat_completion(req("other-model"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    assert!(err.message().contains("allowed_models"), "{err}");

    let r = ChatCompletionRequest::new("nokey/ok-model", [Message::user("hi")]);
    let err = stack
        .inference()
        .chat_completion(r.clone())
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert!(err.message().starts_with("API key not provided"), "{err}");
    assert!(
        err.message().contains("OPENAI_API_KEY") && err.message().contains("openai_api_key"),
        "{err}"
    );
    let pd = ProviderData::from_json(r#"{"openai_api_key": "from-header"}"#).unwrap();
    stack
        .with_context(RequestContext::anonymous().with_provider_data(pd))
        .inference()
        .chat_completion(r)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_config_fields_fail_the_build_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let providers = "  - provider_id: v\n    provider_type: remote::vllm\n    config:\n      base_url: http://127.0.0.1:1/v1\n      api_key: wrong-name\n";
    let err = build(stack_yaml(dir.path(), providers, ""))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message()
            .contains("providers.inference[0].config.api_key"),
        "{err}"
    );
}

#[tokio::test]
async fn vllm_applies_its_configured_max_tokens_only_to_unbounded_requests() {
    let (_faults, url) = fault_server().await;
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: fault\n    provider_type: remote::vllm\n    config:\n      base_url: {url}\n      max_tokens: 77\n"
    );
    let stack = build(stack_yaml(dir.path(), &providers, "")).await.unwrap();
    let sent = |out: ChatCompletion| -> Value {
        serde_json::from_str(out.choices[0].message.content.as_deref().unwrap()).unwrap()
    };
    let inf = stack.inference();
    let v = sent(inf.chat_completion(req("echo")).await.unwrap());
    assert_eq!(v["max_tokens"], 77, "{v}");
    let mut r = req("echo");
    r.max_tokens = Some(5);
    let v = sent(inf.chat_completion(r).await.unwrap());
    assert_eq!(v["max_tokens"], 5, "the request's own bound wins: {v}");
    let mut r = req("echo");
    r.max_completion_tokens = Some(9);
    let v = sent(inf.chat_completion(r).await.unwrap());
    assert_eq!(v["max_completion_tokens"], 9, "{v}");
    assert!(v.get("max_tokens").is_none_or(Value::is_null), "{v}");
}

#[tokio::test]
async fn refresh_interval_seconds_re_lists_models_on_its_own_interval() {
    let (faults, url) = fault_server().await;
    let (stack, _dir) = fault_stack(
        &url,
        "      refresh_models: true\n      refresh_interval_seconds: 1\n",
    )
    .await;
    let listed = || common::model_ids(stack.models());
    assert!(!listed().await.contains(&"fault/late-model".to_string()));
    faults.models.lock().unwrap().push("late-model".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed().await.contains(&"fault/late-model".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the model listed after startup never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: fault\n    provider_type: remote::openai\n    config:\n      base_url: {url}\n      api_key: k\n      refresh_interval_seconds: 0\n"
    );
    let err = build(stack_yaml(dir.path(), &providers, ""))
        .await
        .unwrap_err();
    assert!(err.message().contains("refresh_interval_seconds"), "{err}");
}

/// A local IBM Cloud IAM token endpoint as documented at
/// <https://cloud.ibm.com/docs/account?topic=account-iamtoken_from_apikey>: a form POST of
/// `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>` answers a bearer token;
/// an unknown key answers 400 with IAM's `errorCode`/`errorMessage` body.
async fn iam_server(exchanges: Arc<Mutex<Vec<String>>>) -> String {
    let app = Router::new()
        .route(
            "/identity/token",
            post(
                |State(seen): State<Arc<Mutex<Vec<String>>>>,
                 axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>| async move {
                    assert_eq!(
                        form.get("grant_type").map(String::as_str),
                        Some("urn:ibm:params:oauth:grant-type:apikey")
                    );
                    let key = form.get("apikey").cloned().unwrap_or_default();
                    seen.lock().unwrap().push(key.clone());
                    if key != "wx-key" {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({
                                "errorCode": "BXNIM0415E",
                                "errorMessage": "Provided API key could not be found.",
                                "context": {"requestId": "r-1"}
                            })),
                        )
                            .into_response();
                    }
                    Json(json!({
                        "access_token": "iam-token-1",
                        "refresh_token": "not_supported",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "expiration": 1_900_000_000u64,
                        "scope": "ibm openid"
                    }))
                    .into_response()
                },
            ),
        )
        .with_state(exchanges);
    common::serve_local(app).await
}

#[tokio::test]
async fn watsonx_exchanges_its_api_key_for_a_cached_iam_token() {
    let (_faults, url) = fault_server().await;
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let iam = iam_server(exchanges.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: fault\n    provider_type: remote::watsonx\n    config:\n      base_url: {url}\n      api_key: wx-key\n      project_id: proj-7\n      iam_url: {iam}\n"
    );
    let stack = build(stack_yaml(dir.path(), &providers, "")).await.unwrap();
    let sent = |out: ChatCompletion| -> Value {
        serde_json::from_str(out.choices[0].message.content.as_deref().unwrap()).unwrap()
    };
    for _ in 0..3 {
        let v = sent(
            stack
                .inference()
                .chat_completion(req("echo"))
                .await
                .unwrap(),
        );
        assert_eq!(v["authorization"], "Bearer iam-token-1", "{v}");
        assert_eq!(v["project_id"], "proj-7", "{v}");
    }
    assert_eq!(
        exchanges.lock().unwrap().len(),
        1,
        "model listing and three calls share one token"
    );

    // A per-request key that IAM does not know: the upstream's words, its status.
    let pd = ProviderData::from_json(r#"{"watsonx_api_key": "stale-key"}"#).unwrap();
    let err = stack
        .with_context(RequestContext::anonymous().with_provider_data(pd))
        .inference()
        .chat_completion(req("echo"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert_eq!(err.upstream_status(), Some(400), "{err}");
    assert!(
        err.message().contains("IAM") && err.message().contains("could not be found"),
        "{err}"
    );
    assert!(
        !err.message().contains("stale-key"),
        "the key never shows in errors: {err}"
    );
}

/// The (path, body) pairs a fake upstream received.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// NVIDIA NIM's text ranking endpoint as documented at
/// <https://docs.api.nvidia.com/nim/reference/nvidia-llama-3_2-nv-rerankqa-1b-v2-infer>:
/// `{model, query: {text}, passages: [{text}], truncate}` answers
/// `{"rankings": [{"index", "logit"}]}`. This fake scores a passage by how many words it
/// shares with the query and records the bodies it got.
async fn ranking_server(seen: Seen) -> String {
    async fn rank(
        State(seen): State<Seen>,
        uri: axum::http::Uri,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        seen.lock()
            .unwrap()
            .push((uri.path().to_string(), body.clone()));
        let query: Vec<String> = body["query"]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let rankings: Vec<Value> = body["passages"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let shared = p["text"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .filter(|w| query.contains(&w.to_lowercase()))
                    .count();
                json!({"index": i, "logit": shared as f64 - 2.5})
            })
            .collect();
        Json(json!({ "rankings": rankings }))
    }
    let app = Router::new()
        .route("/v1/ranking", post(rank))
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [
                    {"id": "nv-rerank-routed", "object": "model"},
                    {"id": "llm-a", "object": "model"}
                ]}))
            }),
        )
        .route("/custom/reranking", post(rank))
        .with_state(seen);
    common::serve_local(app).await
}

#[tokio::test]
async fn nvidia_rerank_follows_the_nim_ranking_wire() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = ranking_server(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "  - provider_id: nv\n    provider_type: remote::nvidia\n    config:\n      base_url: {base}/v1\n      api_key: nvapi-test\n      rerank_model_to_url:\n        nv-rerank-routed: {base}/custom/reranking\n"
    );
    let extra = "registered_resources:\n  models:\n    - model_id: nv-rerank-default\n      provider_id: nv\n      provider_model_id: nv-rerank-default\n      model_type: rerank\n";
    let stack = build(stack_yaml(dir.path(), &providers, extra))
        .await
        .unwrap();
    let listed = stack.models().list().await.unwrap().data;
    let routed = listed
        .iter()
        .find(|m| m.identifier == "nv/nv-rerank-routed")
        .expect("listed");
    assert_eq!(routed.model_type, ModelType::Rerank);

    let items = [
        "the cat sat on the mat",
        "stock markets fell sharply",
        "a cat and a dog on a mat",
    ];
    let req = |model: &str| RerankRequest {
        model: model.into(),
        query: RerankItem::Text("cat on mat".into()),
        items: items
            .iter()
            .map(|t| RerankItem::Text(t.to_string()))
            .collect(),
        max_num_results: Some(2),
    };
    for (model, path) in [
        ("nv/nv-rerank-routed", "/custom/reranking"),
        ("nv/nv-rerank-default", "/v1/ranking"),
    ] {
        let out = stack.inference().rerank(req(model)).await.unwrap();
        let order: Vec<u32> = out.data.iter().map(|d| d.index).collect();
        assert_eq!(order.len(), 2, "max_num_results: {out:?}");
        assert!(order.contains(&0) && order.contains(&2), "{out:?}");
        assert!(out.data[0].relevance_score >= out.data[1].relevance_score);
        let (got_path, body) = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(got_path, path);
        assert_eq!(body["query"]["text"], "cat on mat");
        assert_eq!(body["passages"][1]["text"], "stock markets fell sharply");
        assert_eq!(body["truncate"], "END");
    }

    let mut bad = req("nv/nv-rerank-routed");
    bad.items[1] = RerankItem::Part(ContentPart::ImageUrl {
        image_url: serde_json::from_value(json!({"url": "https://x/y.png"})).unwrap(),
    });
    let err = stack.inference().rerank(bad).await.unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    assert!(err.message().contains("items[1]"), "{err}");
}
