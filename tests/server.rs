//! The HTTP server over a real TCP socket: routes and their shapes, SSE framing, errors and
//! statuses, request ids, body limit, CORS, OpenAPI coverage, graceful shutdown,
//! slow-loris protection and a bounded property test over chat request bodies.
//! Inference answers come from a scripted test provider (plumbing only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serving;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use llama_stack::core::api::inspect::ROUTES;
use llama_stack::server::{app, routes, ServerOptions};
use proptest::prelude::*;
use serde_json::{json, Value};
use serving::{scripted_stack, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn health_version_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();

    let resp = c
        .get(format!("{}/v1/health", srv.base))
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.starts_with("req_"), "{generated}");
    assert_eq!(json_of(resp).await, (200, json!({"status": "OK"})));

    let resp = c
        .get(format!("{}/v1/version", srv.base))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    assert_eq!(json_of(resp).await, (200, json!({"version": "0.7.1"})));

    // Admin mirrors answer the same.
    let (s, body) = json_of(
        c.get(format!("{}/v1alpha/admin/health", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, body), (200, json!({"status": "OK"})));
    srv.stop().await;
}

#[tokio::test]
async fn models_routes_have_llama_stack_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();

    let (s, body) = json_of(
        c.get(format!("{}/v1/models", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.get("object").is_none(), "no top-level object: {body}");
    let ids: BTreeSet<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["scripted/chat-1", "scripted/chat-2", "scripted/embed"])
    );
    let embed = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "scripted/embed")
        .unwrap();
    assert_eq!(embed["object"], "model");
    assert_eq!(embed["owned_by"], "llama_stack");
    assert_eq!(embed["custom_metadata"]["model_type"], "embedding");
    assert_eq!(embed["custom_metadata"]["embedding_dimension"], 2);

    // Ids with slashes reach the handler whole.
    let (s, model) = json_of(
        c.get(format!("{}/v1/models/scripted/chat-1", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(model["identifier"], "scripted/chat-1");
    assert_eq!(model["type"], "model");
    assert_eq!(model["model_type"], "llm");
    assert_eq!(model["provider_id"], "scripted");

    let (s, err) = json_of(
        c.get(format!("{}/v1/models/nope/x", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'nope/x' not found"),
        "{err}"
    );

    // Register and unregister (kept from 0.6).
    let (s, m) = json_of(
        c.post(format!("{}/v1/models", srv.base))
            .json(&json!({"model_id": "mine", "provider_id": "scripted", "provider_model_id": "base-x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["identifier"], "scripted/base-x");
    let (s, _) = json_of(
        c.post(format!("{}/v1/models", srv.base))
            .json(&json!({"model_id": "other", "provider_id": "scripted", "surprise": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "unknown fields are rejected on register");
    let (s, _) = json_of(
        c.post(format!("{}/v1/models", srv.base))
            .json(&json!({"model_id": "x2", "provider_id": "scripted"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = json_of(
        c.delete(format!("{}/v1/models/scripted/x2", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, body), (200, Value::Null));
    let (s, _) = json_of(
        c.get(format!("{}/v1/models/scripted/x2", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    srv.stop().await;
}

#[tokio::test]
async fn chat_completions_json_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", srv.base);

    let (s, body) = json_of(
        c.post(&url)
            .json(&json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "hello there"}], "top_k": 3}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "scripted/chat-1");
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let resp = c
        .post(&url)
        .json(&json!({"model": "scripted/chat-1", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    let mut content = String::new();
    for e in &events {
        let data = e
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("bad frame {e:?}"));
        assert!(!data.contains('\n'));
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        content.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(content, "one two three");
    assert!(!text.contains("[DONE]"), "Llama Stack framing: no [DONE]");

    // Mid-stream failure: one last error event with the status as a string, then the end.
    let text = c
        .post(&url)
        .json(&json!({"model": "scripted/chat-1", "stream": true, "messages": [{"role": "user", "content": "fail"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(
        events[1],
        json!({"error": {"message": "the scripted provider failed midway", "code": "400"}})
    );

    // Errors before the first event are plain JSON errors.
    let (s, err) = json_of(
        c.post(&url)
            .json(&json!({"model": "nope", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404, "{err}");

    // Internal failures do not leak details.
    let (s, err) = json_of(
        c.post(&url)
            .json(&json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "boom"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 500);
    assert!(!err.to_string().contains("/secret/path"), "{err}");
    srv.stop().await;
}

#[tokio::test]
async fn other_inference_routes() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();

    let (s, body) = json_of(
        c.post(format!("{}/v1/embeddings", srv.base))
            .json(&json!({"model": "scripted/embed", "input": ["ab", "abcd"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["embedding"], json!([4.0, 1.0]));
    assert_eq!(body["data"][1]["index"], 1);

    // Llama Stack rejects an explicit null for dimensions.
    let (s, err) = json_of(
        c.post(format!("{}/v1/embeddings", srv.base))
            .json(&json!({"model": "scripted/embed", "input": "a", "dimensions": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dimensions"),
        "{err}"
    );

    // Wrong model type → 400.
    let (s, err) = json_of(
        c.post(format!("{}/v1/embeddings", srv.base))
            .json(&json!({"model": "scripted/chat-1", "input": "a"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{err}");

    let (s, body) = json_of(
        c.post(format!("{}/v1/completions", srv.base))
            .json(&json!({"model": "scripted/chat-1", "prompt": "a b"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "a b");
    let text = c
        .post(format!("{}/v1/completions", srv.base))
        .json(&json!({"model": "scripted/chat-1", "prompt": "a b", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("data: ").count(), 2, "{text}");

    // Rerank needs a rerank model.
    let (s, err) = json_of(
        c.post(format!("{}/v1alpha/inference/rerank", srv.base))
            .json(&json!({"model": "scripted/chat-1", "query": "q", "items": ["a"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{err}");
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_400s_404s_405s_and_413() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(
        &stack,
        ServerOptions {
            body_limit: 64 * 1024,
            ..ServerOptions::default()
        },
    )
    .await;
    let c = client();
    let url = format!("{}/v1/chat/completions", srv.base);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("{\"model\": ", Value::Null, "malformed JSON"),
        (
            "",
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            "",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        ("", json!({"model": "scripted/chat-1"}), "messages"),
        (
            "",
            json!({"model": "scripted/chat-1", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0]",
        ),
        (
            "",
            json!({"model": "scripted/chat-1", "messages": []}),
            "messages",
        ),
        (
            "",
            json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "x"}], "temperature": 9}),
            "temperature",
        ),
        (
            "",
            json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
            "tool",
        ),
        (
            "",
            json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
        ("", json!([1, 2]), "invalid request body"),
    ];
    for (raw, body, needle) in cases {
        let req = c.post(&url).header("content-type", "application/json");
        let req = if raw.is_empty() {
            req.body(body.to_string())
        } else {
            req.body(raw.to_owned())
        };
        let (s, err) = json_of(req.send().await.unwrap()).await;
        assert_eq!(s, 400, "{body} → {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should mention {needle:?}"
        );
    }

    let big = "x".repeat(100 * 1024);
    let (s, err) = json_of(
        c.post(&url)
            .json(&json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": big}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 413, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("larger"));

    let (s, body) = json_of(
        c.get(format!("{}/v1/nothing-here", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, body), (404, json!({"detail": "Not Found"})));
    let (s, body) = json_of(
        c.put(format!("{}/v1/health", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, body), (405, json!({"detail": "Method Not Allowed"})));

    let (s, err) = json_of(
        c.get(format!("{}/v1/inspect/routes?api_filter=v9", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{err}");

    // Client version check: other major.minor → 426; same → served.
    let (s, _) = json_of(
        c.get(format!("{}/v1/models", srv.base))
            .header("X-LlamaStack-Client-Version", "0.5.0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 426);
    let (s, _) = json_of(
        c.get(format!("{}/v1/models", srv.base))
            .header("X-LlamaStack-Client-Version", "0.7.5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    srv.stop().await;
}

#[tokio::test]
async fn providers_and_inspect_routes() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();
    for prefix in ["/v1", "/v1alpha/admin"] {
        let (s, body) = json_of(
            c.get(format!("{}{prefix}/providers", srv.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(body["data"][0]["provider_id"], "scripted");
        assert_eq!(body["data"][0]["provider_type"], "inline::scripted");
        assert_eq!(body["data"][0]["health"]["status"], "OK");
        let (s, body) = json_of(
            c.get(format!("{}{prefix}/providers/scripted", srv.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(body["api"], "inference");
        let (s, _) = json_of(
            c.get(format!("{}{prefix}/providers/nope", srv.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 404 || s == 400);
        let (s, body) = json_of(
            c.get(format!(
                "{}{prefix}/inspect/routes?api_filter=v1alpha",
                srv.base
            ))
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        let routes = body["data"].as_array().unwrap();
        assert!(routes
            .iter()
            .any(|r| r["route"] == "/v1alpha/inference/rerank"));
        assert!(!routes.iter().any(|r| r["route"] == "/v1/files"));
    }
    srv.stop().await;
}

#[tokio::test]
async fn every_route_is_served_and_documented() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();
    let (s, doc) = json_of(
        c.get(format!("{}/openapi.json", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let table = routes::table();
    assert!(table.len() >= 18, "{}", table.len());
    let mut implemented = BTreeSet::new();
    for r in &table {
        // In the OpenAPI document with its operation.
        let key = llama_stack::server::openapi::openapi_path(r.path);
        let op = &doc["paths"][&key][r.method.to_ascii_lowercase()];
        assert_eq!(
            op["operationId"], r.operation,
            "{} {} missing from /openapi.json",
            r.method, r.path
        );
        // A known Llama Stack route.
        assert!(
            ROUTES
                .iter()
                .any(|k| k.method == r.method && k.path == r.path),
            "{} {}",
            r.method,
            r.path
        );
        implemented.insert((r.method, r.path));
        // Actually served: never the framework 404/405.
        let path = r
            .path
            .replace("{model_id:path}", "scripted/chat-1")
            .replace("{provider_id}", "scripted");
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
        let resp = c
            .request(method, format!("{}{path}", srv.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("\"detail\""),
            "{} {path}: {status} {body}",
            r.method
        );
    }
    // Every component a $ref points to exists.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // The inference, models, inspect and providers routes of ROUTES are all implemented.
    use llama_stack::core::api::Api;
    for k in ROUTES.iter().filter(|k| {
        matches!(
            k.api,
            Api::Inference | Api::Models | Api::Inspect | Api::Providers
        )
    }) {
        assert!(
            implemented.contains(&(k.method, k.path)),
            "{} {} not implemented",
            k.method,
            k.path
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn cors_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "  cors: true\n").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = client();
    let pre = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, format!("{}/v1/models", srv.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let ok = pre("http://localhost:3000").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let denied = pre("https://evil.example").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_lets_streams_finish() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let mut srv = start(&stack, ServerOptions::default()).await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", srv.base))
        .json(&json!({"model": "scripted/chat-1", "stream": true, "messages": [{"role": "user", "content": "slow:10"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    srv.begin_shutdown();
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(rest).unwrap();
    assert_eq!(text.matches("data: ").count(), 10, "{text}");
    assert!(text.contains("\"finish_reason\":\"stop\""));
    let addr = srv.addr;
    srv.stop().await;
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn slow_header_clients_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(
        &stack,
        ServerOptions {
            header_read_timeout: Duration::from_millis(500),
            ..ServerOptions::default()
        },
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    sock.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (408 or a bare close) instead of waiting forever.
    let read = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a slow-header connection open"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    srv.stop().await;
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(json!("user")),
        Just(json!("scripted/chat-1")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_owned()),
                    Just("messages".to_owned()),
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("stream".to_owned()),
                    Just("temperature".to_owned()),
                    Just("tools".to_owned()),
                    Just("tool_choice".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        (arb_json(), arb_json()).prop_map(|(extra, content)| {
            json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": content}], "x": extra})
                .to_string()
                .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn chat_route_never_fails_with_5xx_on_arbitrary_bodies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = rt.block_on(scripted_stack(dir.path(), ""));
    let router = rt.block_on(app(&stack, &ServerOptions::default())).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    runner
        .run(&arb_body(), |body| {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            let status = resp.status().as_u16();
            let bytes = rt
                .block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
                .unwrap();
            prop_assert!(
                matches!(status, 200 | 400 | 404),
                "status {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            if status != 200 {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert!(
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{v}"
                );
            }
            Ok(())
        })
        .unwrap();
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM
/// files in `dir`: (ca.pem, server.pem, server.key, client identity PEM).
fn tls_files(dir: &std::path::Path) -> (String, String, String, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "llama-stack test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["client.test".into()]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", &ca_cert.pem()),
        write("server.pem", &server_cert),
        write("server.key", &server_key),
        format!("{client_cert}{client_key}").into_bytes(),
    )
}

#[tokio::test]
async fn tls_serves_https_and_can_require_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, identity) = tls_files(dir.path());
    let trusting = || {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap(),
            )
            .use_rustls_tls()
    };

    // HTTPS with the server's certificate.
    let stack = scripted_stack(
        dir.path(),
        &format!("  tls_certfile: {cert}\n  tls_keyfile: {key}\n"),
    )
    .await;
    let srv = start(&stack, ServerOptions::default()).await;
    let https = format!("https://{}", srv.addr);
    let c = trusting().build().unwrap();
    let resp = c.get(format!("{https}/v1/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = json_of(
        c.post(format!("{https}/v1/chat/completions"))
            .json(&json!({"model": "scripted/chat-1", "messages": [{"role": "user", "content": "over tls"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "over tls");
    // Plain HTTP to the TLS port and clients that do not trust the CA get nothing.
    assert!(client()
        .get(format!("http://{}/v1/health", srv.addr))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .is_err());
    assert!(reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .unwrap()
        .get(format!("{https}/v1/health"))
        .send()
        .await
        .is_err());
    srv.stop().await;
    drop(stack);

    // Mutual TLS: a client certificate signed by tls_cafile is required.
    let dir2 = tempfile::tempdir().unwrap();
    let stack = scripted_stack(
        dir2.path(),
        &format!("  tls_certfile: {cert}\n  tls_keyfile: {key}\n  tls_cafile: {ca}\n"),
    )
    .await;
    let srv = start(&stack, ServerOptions::default()).await;
    let https = format!("https://{}", srv.addr);
    let anonymous = trusting().build().unwrap();
    assert!(anonymous
        .get(format!("{https}/v1/health"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .is_err());
    let with_cert = trusting()
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let resp = with_cert
        .get(format!("{https}/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    srv.stop().await;

    // Half a TLS config, or unreadable files, fail at startup naming the field.
    for (server, field) in [
        (format!("  tls_certfile: {cert}\n"), "tls_keyfile"),
        (format!("  tls_keyfile: {key}\n"), "tls_certfile"),
        (format!("  tls_cafile: {ca}\n"), "tls_cafile"),
        (
            format!("  tls_certfile: {key}\n  tls_keyfile: {key}\n"),
            "tls_certfile",
        ),
        (
            format!("  tls_certfile: {cert}\n  tls_keyfile: /nonexistent/key.pem\n"),
            "tls_keyfile",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let built = llama_stack::Stack::builder()
            .config_yaml(serving::scripted_config(d.path(), &server))
            .with_provider(serving::scripted_spec())
            .build()
            .await;
        let err = match built {
            Err(e) => e,
            Ok(stack) => llama_stack::server::Server::bind(
                &stack,
                "127.0.0.1:0".parse().unwrap(),
                ServerOptions::default(),
            )
            .await
            .unwrap_err(),
        };
        assert_eq!(err.kind(), llama_stack::ErrorKind::Config, "{err}");
        assert!(err.message().contains(field), "{field}: {err}");
    }
}
