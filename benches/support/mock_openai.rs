//! `mock-openai`: a static OpenAI-compatible upstream for the server benchmarks. Answers
//! `GET /v1/models`, `POST /v1/chat/completions` (one fixed non-streaming completion) and
//! `POST /v1/embeddings` (one fixed 384-dimension vector per input, float or base64) with
//! bodies serialized once at start (only the completion id differs per answer, as
//! completion stores key on it), so it is never the bottleneck of a measurement.
//!
//! ```text
//! mock-openai [PORT]        # default 18400, binds 127.0.0.1; MOCK_OPENAI_THREADS=1
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// The model ids the upstream lists and answers for.
const CHAT_MODEL: &str = "mock-llm";
const EMBEDDING_MODEL: &str = "mock-embed";
const DIMENSIONS: usize = 384;

/// Response bodies, serialized once.
struct Bodies {
    models: Bytes,
    /// The chat completion before and after its id's number.
    chat: (String, String),
    /// The next completion id's number.
    next_id: AtomicU64,
    embedding_float: Value,
    embedding_base64: Value,
    embeddings_one_float: Bytes,
}

fn json_response(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn models(State(b): State<Arc<Bodies>>) -> Response {
    json_response(b.models.clone())
}

async fn chat(State(b): State<Arc<Bodies>>, _body: Bytes) -> Response {
    let id = b.next_id.fetch_add(1, Ordering::Relaxed);
    let (head, tail) = &b.chat;
    json_response(Bytes::from(format!("{head}{id}{tail}")))
}

async fn embeddings(State(b): State<Arc<Bodies>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let inputs = match &request["input"] {
        Value::Array(items) => items.len().max(1),
        _ => 1,
    };
    let base64 = request["encoding_format"].as_str() == Some("base64");
    if inputs == 1 && !base64 {
        return json_response(b.embeddings_one_float.clone());
    }
    let vector = if base64 {
        &b.embedding_base64
    } else {
        &b.embedding_float
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": vector}))
        .collect();
    let body = json!({"object": "list", "data": data, "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": inputs, "total_tokens": inputs}});
    json_response(Bytes::from(body.to_string()))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn bodies() -> Bodies {
    let vector: Vec<f32> = (0..DIMENSIONS)
        .map(|i| ((i % 17) as f32 - 8.0) / 64.0)
        .collect();
    let le: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    let embedding_float = json!(vector);
    let one = json!({"object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": embedding_float}],
        "model": EMBEDDING_MODEL, "usage": {"prompt_tokens": 1, "total_tokens": 1}});
    let model = |id: &str| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"});
    Bodies {
        models: Bytes::from(
            json!({"object": "list", "data": [model(CHAT_MODEL), model(EMBEDDING_MODEL)]})
                .to_string(),
        ),
        chat: {
            let body = json!({"id": "chatcmpl-mock-ID", "object": "chat.completion",
                "created": 1_700_000_000, "model": CHAT_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "stop", "logprobs": null}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
            .to_string();
            let (head, tail) = body.split_once("chatcmpl-mock-ID").unwrap_or((&body, ""));
            (format!("{head}chatcmpl-mock-"), tail.to_owned())
        },
        next_id: AtomicU64::new(0),
        embedding_float,
        embedding_base64: Value::String(base64(&le)),
        embeddings_one_float: Bytes::from(one.to_string()),
    }
}

fn main() -> ExitCode {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        None => 18400,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("error: the port must be a number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let threads = std::env::var("MOCK_OPENAI_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .with_state(Arc::new(bodies()));
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("mock-openai listening on http://127.0.0.1:{port}/v1");
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_like_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
