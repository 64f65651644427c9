//! Added latency of the library over calling a fast local OpenAI-compatible upstream
//! directly with the same HTTP client: non-streaming chat completions and time to the
//! first streamed chunk, at concurrency 1 and 64. Both sides end with the same typed
//! values: the direct calls parse the answer into a `ChatCompletion`, or each SSE event
//! (with `eventsource-stream`, as the library does) into a `ChatCompletionChunk`. A stream
//! is read to its end, as a client does, so its connection goes back to the pool; the time
//! to its first chunk is what is measured. Reports p50/p99 of both and the difference
//! (target: <= 100 µs p50, <= 1 ms p99 overhead).
//!
//! Direct and library calls take turns in `ROUNDS` rounds (default 6; the first of each
//! pair alternates), so slow phases of a shared machine hit both sides alike. Besides the
//! pooled percentiles, the median over rounds of the per-round p50 difference is reported.
//!
//! `DIRECT_CLIENT=plain` gives the direct side a client without timeouts (by default it has
//! the library's default connect and read timeouts).
//!
//! `REMOTE_OVERHEAD_COUNT=<chat|stream>-<direct|library>:<calls>` runs just that many
//! calls of one kind after a warm-up and exits, in `REMOTE_OVERHEAD_CONCURRENCY` tasks
//! (default 1), and prints the allocations per call (both sides of the process: client and
//! upstream): for profiling one path (e.g. `perf record`, `perf stat`; the difference
//! between two call counts is the cost of the calls).
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
use futures::{FutureExt, StreamExt};
use llama_stack::core::api::inference::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Message,
};
use llama_stack::prelude::*;
use serde_json::{json, Value};

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
use process::cpu_seconds;

/// The system allocator, counting allocations while [`COUNTING`] is set (in the fixed-count
/// mode, which reports them per call; the comparison runs do not count, so both sides run
/// on the plain system allocator).
struct Counting;

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ALLOCATED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LARGE_ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, as received.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as received from the caller.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn count(size: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    if COUNTING.load(Relaxed) {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(size as u64, Relaxed);
        // Beyond glibc's per-thread cache (tcache, up to 1032 bytes): slower to allocate.
        if size > 1024 {
            LARGE_ALLOCATIONS.fetch_add(1, Relaxed);
        }
    }
}

/// Allocations, bytes allocated and allocations over 1 KiB so far.
fn allocation_counts() -> [u64; 3] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        ALLOCATIONS.load(Relaxed),
        ALLOCATED_BYTES.load(Relaxed),
        LARGE_ALLOCATIONS.load(Relaxed),
    ]
}

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

/// Latencies of one side, sorted, the process CPU time it took per call (both the client
/// side and the in-process upstream), and its p50 in each round.
#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    cpu: f64,
    calls: usize,
    round_p50: Vec<Duration>,
}

impl Run {
    fn add(&mut self, mut round: Vec<Duration>, cpu: f64) {
        round.sort();
        self.round_p50.push(percentile(&round, 0.5));
        self.calls += round.len();
        self.cpu += cpu;
        self.latencies.extend(round);
        self.latencies.sort();
    }

    fn cpu_per_call(&self) -> Duration {
        Duration::from_secs_f64(self.cpu / self.calls.max(1) as f64)
    }
}

/// One call; returns the latency it measured (the whole call, or up to its first chunk).
type Op = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Duration> + Send + Sync>;

/// Runs `op` `per_task` times in each of `concurrency` tasks; the latencies and the process
/// CPU seconds it took.
async fn measure(concurrency: usize, per_task: usize, op: &Op) -> (Vec<Duration>, f64) {
    let cpu = cpu_seconds();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                out.push(op().await);
            }
            out
        });
    }
    let mut all = Vec::with_capacity(concurrency * per_task);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    (all, (cpu_seconds() - cpu).max(0.0))
}

/// Direct and library calls in turns: `rounds` rounds of `per_task` calls per task each.
async fn compare(
    concurrency: usize,
    per_task: usize,
    rounds: usize,
    direct: &Op,
    lib: &Op,
) -> (Run, Run) {
    let (mut d, mut l) = (Run::default(), Run::default());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [(direct, &mut d), (lib, &mut l)]
        } else {
            [(lib, &mut l), (direct, &mut d)]
        };
        for (op, run) in order {
            let (lat, cpu) = measure(concurrency, per_task, op).await;
            run.add(lat, cpu);
        }
    }
    (d, l)
}

fn report(name: &str, direct: &Run, lib: &Run) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (d, l) = (&direct.latencies, &lib.latencies);
    let (d50, d99) = (percentile(d, 0.5), percentile(d, 0.99));
    let (l50, l99) = (percentile(l, 0.5), percentile(l, 0.99));
    let mut per_round: Vec<f64> = direct
        .round_p50
        .iter()
        .zip(&lib.round_p50)
        .map(|(d, l)| us(*l) - us(*d))
        .collect();
    per_round.sort_by(f64::total_cmp);
    let median_round = per_round[per_round.len() / 2];
    println!(
        "{name:<20} direct p50 {:>7.1} µs p99 {:>7.1} µs | library p50 {:>7.1} µs p99 {:>7.1} µs | overhead p50 {:>7.1} µs p99 {:>7.1} µs (p50 median of {} rounds {:>7.1} µs) | CPU per call {:>5.1} → {:>5.1} µs",
        us(d50), us(d99), us(l50), us(l99), us(l50) - us(d50), us(l99) - us(d99),
        per_round.len(), median_round,
        us(direct.cpu_per_call()), us(lib.cpu_per_call())
    );
}

/// The four kinds of call this bench measures.
struct Ops {
    chat_direct: Op,
    chat_library: Op,
    stream_direct: Op,
    stream_library: Op,
    chat_recorded: Op,
}

/// A non-streaming chat completion of `req` through the library.
fn library_chat(stack: &Stack, req: ChatCompletionRequest) -> Op {
    let s = stack.clone();
    Arc::new(move || {
        let (s, r) = (s.clone(), req.clone());
        async move {
            let t = Instant::now();
            s.inference().chat_completion(r).await.unwrap();
            t.elapsed()
        }
        .boxed()
    })
}

fn ops(stack: &Stack, url: &str) -> Ops {
    // The direct client is configured as the library's is by default (10 s connect and
    // 600 s read timeouts, TCP_NODELAY), so the difference is the library's own work, not
    // reqwest's timers; `DIRECT_CLIENT=plain` drops the timeouts from the direct side.
    let mut client = reqwest::Client::builder().tcp_nodelay(true);
    if std::env::var("DIRECT_CLIENT").as_deref() != Ok("plain") {
        client = client
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(600));
    }
    let client = client.build().unwrap();
    let body =
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "store": false});
    let stream_body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": true, "store": false});
    let recorded = ChatCompletionRequest::new("up/fast", [Message::user("hi")]);
    let mut req = recorded.clone();
    req.extra_body.insert("store".into(), Value::Bool(false));
    let endpoint = format!("{url}/chat/completions");

    let (c, u, b) = (client.clone(), endpoint.clone(), body);
    let chat_direct: Op = Arc::new(move || {
        let (c, u, b) = (c.clone(), u.clone(), b.clone());
        async move {
            let t = Instant::now();
            let r = c.post(u).bearer_auth("k").json(&b).send().await.unwrap();
            let bytes = r.bytes().await.unwrap();
            let _: ChatCompletion = serde_json::from_slice(&bytes).unwrap();
            t.elapsed()
        }
        .boxed()
    });
    let chat_library = library_chat(stack, req.clone());
    let (c, u, b) = (client, endpoint, stream_body);
    let stream_direct: Op = Arc::new(move || {
        let (c, u, b) = (c.clone(), u.clone(), b.clone());
        async move {
            let t = Instant::now();
            let r = c.post(u).bearer_auth("k").json(&b).send().await.unwrap();
            let mut events = r.bytes_stream().eventsource();
            let mut first = None;
            while let Some(event) = events.next().await {
                let event = event.unwrap();
                if event.data == "[DONE]" {
                    break;
                }
                let _: ChatCompletionChunk = serde_json::from_str(&event.data).unwrap();
                first.get_or_insert_with(|| t.elapsed());
            }
            first.unwrap()
        }
        .boxed()
    });
    let (s, r) = (stack.clone(), req.with_stream(true));
    let stream_library: Op = Arc::new(move || {
        let (s, r) = (s.clone(), r.clone());
        async move {
            let t = Instant::now();
            let mut st = s.inference().chat_completion_stream(r).await.unwrap();
            let mut first = None;
            while let Some(chunk) = st.next().await {
                chunk.unwrap();
                first.get_or_insert_with(|| t.elapsed());
            }
            first.unwrap()
        }
        .boxed()
    });
    let chat_recorded = library_chat(stack, recorded);
    Ops {
        chat_direct,
        chat_library,
        stream_direct,
        stream_library,
        chat_recorded,
    }
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
        let ops = ops(&stack, &url);

        if let Ok(spec) = std::env::var("REMOTE_OVERHEAD_COUNT") {
            let (kind, calls) = spec
                .split_once(':')
                .expect("REMOTE_OVERHEAD_COUNT=<kind>:<calls>");
            let calls: usize = calls.parse().expect("a number of calls");
            let op = match kind {
                "chat-direct" => &ops.chat_direct,
                "chat-library" => &ops.chat_library,
                "stream-direct" => &ops.stream_direct,
                "stream-library" => &ops.stream_library,
                other => panic!("unknown kind {other}"),
            };
            let concurrency: usize = std::env::var("REMOTE_OVERHEAD_CONCURRENCY")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(1)
                .max(1);
            measure(concurrency, 50, op).await;
            COUNTING.store(true, std::sync::atomic::Ordering::Relaxed);
            let before = allocation_counts();
            let per_task = calls.div_ceil(concurrency);
            measure(concurrency, per_task, op).await;
            let after = allocation_counts();
            let n = (per_task * concurrency) as f64;
            println!(
                "{kind}: {n} calls; per call (upstream included) {:.1} allocations, {:.0} bytes, {:.2} over 1 KiB",
                (after[0] - before[0]) as f64 / n,
                (after[1] - before[1]) as f64 / n,
                (after[2] - before[2]) as f64 / n,
            );
            return;
        }

        let rounds: usize = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(6);
        for (concurrency, per_task) in [(1usize, 5000usize), (64, 1000)] {
            let per_round = per_task.div_ceil(rounds);
            // Warm both paths (connections, caches).
            measure(concurrency, 20, &ops.chat_library).await;
            measure(concurrency, 20, &ops.chat_direct).await;
            let (direct, lib) = compare(
                concurrency,
                per_round,
                rounds,
                &ops.chat_direct,
                &ops.chat_library,
            )
            .await;
            report(&format!("chat c={concurrency}"), &direct, &lib);

            measure(concurrency, 20, &ops.stream_library).await;
            measure(concurrency, 20, &ops.stream_direct).await;
            let (direct, lib) = compare(
                concurrency,
                per_round,
                rounds,
                &ops.stream_direct,
                &ops.stream_library,
            )
            .await;
            report(&format!("first chunk c={concurrency}"), &direct, &lib);

            let (direct, lib) = compare(
                concurrency,
                per_round,
                rounds,
                &ops.chat_direct,
                &ops.chat_recorded,
            )
            .await;
            report(&format!("chat recorded c={concurrency}"), &direct, &lib);
            // Let the queued inference-store writes finish before the next case.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
