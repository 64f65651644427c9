//! Added latency of the library over calling a fast local OpenAI-compatible upstream
//! directly with the same HTTP client: non-streaming chat completions and time to the
//! first streamed chunk, at concurrency 1 and 64. Both sides end with the same typed
//! value: the direct calls parse the answer into a `ChatCompletion`, or the first SSE
//! event (with `eventsource-stream`, as the library does) into a `ChatCompletionChunk`. Reports p50/p99 of both and the
//! difference (target: <= 100 µs p50, <= 1 ms p99 overhead).
//!
//! The library calls send `store: false`, so they measure the route to the upstream and
//! back. The default, recording every completion in the inference store
//! (`storage.stores.inference`, SQLite here), is measured on its own line ("recorded"):
//! the write is queued off the caller's path, but its CPU time competes with the calls
//! once both cores are busy.
//!
//! Run: `cargo bench --bench remote_overhead`. Needs nothing but the workspace (the upstream
//! is an in-process axum server on 127.0.0.1).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use llama_stack::core::api::inference::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Message,
};
use llama_stack::prelude::*;
use serde_json::{json, Value};

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
use process::cpu_seconds;

/// A fresh completion id per answer, as real upstreams give (stored completions are keyed
/// by it).
fn completion_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "chatcmpl-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn chat(Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let id = completion_id();
    if body["stream"].as_bool().unwrap_or(false) {
        let chunk = |delta: Value, finish: Value| {
            Ok::<_, std::io::Error>(Bytes::from(format!(
                "data: {}\n\n",
                json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )))
        };
        let events = vec![
            chunk(
                json!({"role": "assistant", "content": "Hello"}),
                Value::Null,
            ),
            chunk(json!({"content": " there"}), Value::Null),
            chunk(json!({}), json!("stop")),
            Ok(Bytes::from("data: [DONE]\n\n")),
        ];
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures::stream::iter(events)))
            .unwrap();
    }
    Json(json!({"id": id, "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
    .into_response()
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "fast", "object": "model"}]}))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies of one run, sorted, and the process CPU time it took per call (both the
/// client side and the in-process upstream).
struct Run {
    latencies: Vec<Duration>,
    cpu_per_call: Duration,
}

/// Runs `op` `per_task` times in each of `concurrency` tasks.
async fn measure<F, Fut>(concurrency: usize, per_task: usize, op: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let cpu = cpu_seconds();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                op().await;
                out.push(t.elapsed());
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort();
    let calls = (concurrency * per_task) as f64;
    Run {
        latencies: all,
        cpu_per_call: Duration::from_secs_f64((cpu_seconds() - cpu).max(0.0) / calls),
    }
}

fn report(name: &str, direct: &Run, lib: &Run) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (d, l) = (&direct.latencies, &lib.latencies);
    let (d50, d99) = (percentile(d, 0.5), percentile(d, 0.99));
    let (l50, l99) = (percentile(l, 0.5), percentile(l, 0.99));
    println!(
        "{name:<20} direct p50 {:>7.1} µs p99 {:>7.1} µs | library p50 {:>7.1} µs p99 {:>7.1} µs | overhead p50 {:>7.1} µs p99 {:>7.1} µs | CPU per call {:>5.1} → {:>5.1} µs",
        us(d50), us(d99), us(l50), us(l99), us(l50) - us(d50), us(l99) - us(d99),
        us(direct.cpu_per_call), us(lib.cpu_per_call)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"version: 2
distro_name: bench
providers:
  inference:
  - provider_id: up
    provider_type: remote::openai
    config: {{base_url: "{url}", api_key: k}}
storage:
  backends:
    kv_default: {{type: kv_sqlite, db_path: "{d}/kv.db"}}
    sql_default: {{type: sql_sqlite, db_path: "{d}/sql.db"}}
  stores:
    metadata: {{backend: kv_default, namespace: registry}}
"#,
            d = dir.path().display()
        );
        let stack = Stack::builder().config_yaml(yaml).build().await.unwrap();
        let client = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
        let body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "store": false});
        let stream_body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": true, "store": false});
        let recorded = ChatCompletionRequest::new("up/fast", [Message::user("hi")]);
        let mut req = recorded.clone();
        req.extra_body.insert("store".into(), Value::Bool(false));

        for (concurrency, per_task) in [(1usize, 5000usize), (64, 1000)] {
            // Warm both paths (connections, caches).
            for _ in 0..200 {
                stack.inference().chat_completion(req.clone()).await.unwrap();
            }
            let (c, u, b) = (client.clone(), url.clone(), body.clone());
            let direct = measure(concurrency, per_task, move || {
                let (c, u, b) = (c.clone(), u.clone(), b.clone());
                async move {
                    let r = c.post(format!("{u}/chat/completions")).bearer_auth("k").json(&b).send().await.unwrap();
                    let bytes = r.bytes().await.unwrap();
                    let _: ChatCompletion = serde_json::from_slice(&bytes).unwrap();
                }
            })
            .await;
            let (s, r) = (stack.clone(), req.clone());
            let lib = measure(concurrency, per_task, move || {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    s.inference().chat_completion(r).await.unwrap();
                }
            })
            .await;
            report(&format!("chat c={concurrency}"), &direct, &lib);
            let direct_chat = direct;

            let (c, u, b) = (client.clone(), url.clone(), stream_body.clone());
            let direct = measure(concurrency, per_task, move || {
                let (c, u, b) = (c.clone(), u.clone(), b.clone());
                async move {
                    let r = c.post(format!("{u}/chat/completions")).bearer_auth("k").json(&b).send().await.unwrap();
                    let mut events = r.bytes_stream().eventsource();
                    let event = events.next().await.unwrap().unwrap();
                    let _: ChatCompletionChunk = serde_json::from_str(&event.data).unwrap();
                }
            })
            .await;
            let (s, r) = (stack.clone(), req.clone().with_stream(true));
            let lib = measure(concurrency, per_task, move || {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    let mut st = s.inference().chat_completion_stream(r).await.unwrap();
                    st.next().await.unwrap().unwrap();
                }
            })
            .await;
            report(&format!("first chunk c={concurrency}"), &direct, &lib);
            let (s, r) = (stack.clone(), recorded.clone());
            let lib = measure(concurrency, per_task, move || {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    s.inference().chat_completion(r).await.unwrap();
                }
            })
            .await;
            report(&format!("chat recorded c={concurrency}"), &direct_chat, &lib);
            // Let the queued inference-store writes finish before the next case.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
