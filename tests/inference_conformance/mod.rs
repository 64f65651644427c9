//! The inference conformance suite: behaviours every chat/embedding provider must show,
//! written once and run against each provider that can run here (`inline::candle` in
//! `local_inference.rs`; `remote::openai`, `remote::vllm`, `remote::ollama` and
//! `remote::llama-cpp-server` against a llama.cpp server in `remote_inference.rs`).
//! What a provider cannot do is data ([`Target::caps`], [`Target::stream_usage`]): checks it
//! does not claim are skipped, never special-cased.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    dead_code,
    unreachable_pub
)]

use futures::StreamExt;
use llama_stack::core::api::inference::*;
use llama_stack::core::provider::InferenceCaps;
use llama_stack::prelude::*;
use serde_json::{json, Value};

/// One provider under test.
pub struct Target {
    /// Shown in failure messages (`inline::candle`, `remote::vllm`, ...).
    pub label: String,
    /// A stack serving the models below.
    pub stack: Stack,
    /// The chat model's identifier.
    pub chat_model: String,
    /// The embedding model's identifier and vector size, if the target has one.
    pub embedding: Option<(String, usize)>,
    /// The provider's capabilities.
    pub caps: InferenceCaps,
    /// Whether a stream ends with a usage chunk when `stream_options.include_usage` is set.
    pub stream_usage: bool,
}

impl Target {
    fn greedy(&self, text: &str, max_tokens: u32) -> ChatCompletionRequest {
        greedy(&self.chat_model, text, max_tokens)
    }
}

/// A temperature-0 chat request: a terse system prompt and `text`.
pub fn greedy(model: &str, text: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest::new(
        model,
        [
            Message::system("You are a terse assistant. Answer in one sentence."),
            Message::user(text),
        ],
    )
    .with_temperature(0.0)
    .with_max_tokens(max_tokens)
}

/// The first choice's text.
pub fn content(c: &ChatCompletion) -> String {
    c.choices[0].message.content.clone().unwrap_or_default()
}

/// Runs every check the target's capabilities allow.
pub async fn run_all(t: &Target) {
    eprintln!("conformance: {}", t.label);
    chat_stream_equals_non_stream(t).await;
    stop_sequences(t).await;
    max_tokens_cuts_with_length(t).await;
    usage_adds_up(t).await;
    seeded_greedy_is_deterministic(t).await;
    json_schema_output_is_valid(t).await;
    embeddings_have_the_model_shape(t).await;
    bad_input_is_a_typed_error(t).await;
}

/// Streamed and whole answers agree (text, finish reason, model echo, first role).
pub async fn chat_stream_equals_non_stream(t: &Target) {
    if !t.caps.streaming {
        return;
    }
    let req = t.greedy("Count from 1 to 5.", 12);
    let whole = t
        .stack
        .inference()
        .chat_completion(req.clone())
        .await
        .unwrap();
    assert_eq!(whole.model, t.chat_model, "{}", t.label);
    assert_eq!(whole.object, "chat.completion", "{}", t.label);
    // A different request in between, so both runs process the prompt the same way
    // (reusing a cached identical prompt can round differently).
    let other = ChatCompletionRequest::new(t.chat_model.clone(), [Message::user("Hello there")])
        .with_temperature(0.0)
        .with_max_tokens(1);
    t.stack.inference().chat_completion(other).await.unwrap();
    let mut sreq = req.with_stream(true);
    sreq.stream_options = Some(StreamOptions {
        include_usage: Some(true),
    });
    let mut stream = t
        .stack
        .inference()
        .chat_completion_stream(sreq)
        .await
        .unwrap();
    let (mut text, mut finish, mut usage, mut first_role) = (String::new(), None, None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{}: {e}", t.label));
        assert_eq!(chunk.object, "chat.completion.chunk", "{}", t.label);
        assert_eq!(chunk.model, t.chat_model, "{}", t.label);
        if let Some(u) = chunk.usage {
            usage = Some(u);
        }
        let Some(choice) = chunk.choices.first() else {
            continue;
        };
        if first_role.is_none() {
            first_role = choice.delta.role.clone();
        }
        text.push_str(choice.delta.content.as_deref().unwrap_or(""));
        if choice.finish_reason.is_some() {
            finish = choice.finish_reason;
        }
    }
    assert_eq!(first_role.as_deref(), Some("assistant"), "{}", t.label);
    assert_eq!(text, content(&whole), "{}", t.label);
    assert_eq!(finish, whole.choices[0].finish_reason, "{}", t.label);
    if t.stream_usage {
        let usage = usage.unwrap_or_else(|| panic!("{}: a final usage chunk", t.label));
        assert_eq!(
            usage.completion_tokens,
            whole.usage.unwrap().completion_tokens,
            "{}",
            t.label
        );
    }
}

/// A stop sequence cuts the answer just before it, with finish reason `stop`.
pub async fn stop_sequences(t: &Target) {
    let full = content(
        &t.stack
            .inference()
            .chat_completion(t.greedy("Name three primary colors.", 16))
            .await
            .unwrap(),
    );
    // The first comma, else the first space after the first word.
    let (cut, stop) = match full.find(',') {
        Some(i) if i > 0 => (i, ","),
        _ => (full.find(' ').expect("a multi-word answer"), " "),
    };
    let stopped = t
        .stack
        .inference()
        .chat_completion(t.greedy("Name three primary colors.", 16).with_stop([stop]))
        .await
        .unwrap();
    assert_eq!(content(&stopped), full[..cut], "{}", t.label);
    assert_eq!(
        stopped.choices[0].finish_reason,
        Some(FinishReason::Stop),
        "{}",
        t.label
    );
}

/// `max_tokens` cuts a longer answer: finish reason `length`, exactly that many tokens.
pub async fn max_tokens_cuts_with_length(t: &Target) {
    let full = content(
        &t.stack
            .inference()
            .chat_completion(t.greedy("Name three primary colors.", 16))
            .await
            .unwrap(),
    );
    let short = t
        .stack
        .inference()
        .chat_completion(t.greedy("Name three primary colors.", 3))
        .await
        .unwrap();
    assert_eq!(
        short.choices[0].finish_reason,
        Some(FinishReason::Length),
        "{}",
        t.label
    );
    assert_eq!(
        short.usage.as_ref().unwrap().completion_tokens,
        3,
        "{}",
        t.label
    );
    assert!(
        full.starts_with(&content(&short)),
        "{}: {full:?} vs {:?}",
        t.label,
        content(&short)
    );
}

/// Usage is reported and adds up.
pub async fn usage_adds_up(t: &Target) {
    let out = t
        .stack
        .inference()
        .chat_completion(t.greedy("Say hello.", 4))
        .await
        .unwrap();
    let usage = out.usage.unwrap_or_else(|| panic!("{}: usage", t.label));
    assert!(usage.prompt_tokens > 5, "{}: {usage:?}", t.label);
    assert!(usage.completion_tokens >= 1, "{}: {usage:?}", t.label);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens,
        "{}",
        t.label
    );
}

/// Temperature 0 with a seed gives the same answer every time.
pub async fn seeded_greedy_is_deterministic(t: &Target) {
    let req = t
        .greedy("Write a short poem about the sea.", 12)
        .with_seed(7);
    let a = content(
        &t.stack
            .inference()
            .chat_completion(req.clone())
            .await
            .unwrap(),
    );
    let b = content(&t.stack.inference().chat_completion(req).await.unwrap());
    assert!(!a.is_empty(), "{}", t.label);
    assert_eq!(a, b, "{}", t.label);
}

/// `response_format: json_schema` yields JSON matching the schema.
pub async fn json_schema_output_is_valid(t: &Target) {
    if !t.caps.json_schema {
        return;
    }
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    });
    let req = ChatCompletionRequest::new(
        t.chat_model.clone(),
        [Message::user(
            "Describe a person called Anna, aged 31, as JSON.",
        )],
    )
    .with_temperature(0.0)
    .with_max_tokens(60)
    .with_response_format(ResponseFormat::JsonSchema {
        json_schema: JsonSchemaFormat {
            name: "person".into(),
            description: None,
            strict: Some(true),
            schema: Some(schema),
        },
    });
    let out = t.stack.inference().chat_completion(req).await.unwrap();
    let text = content(&out);
    assert_eq!(
        out.choices[0].finish_reason,
        Some(FinishReason::Stop),
        "{}: {text}",
        t.label
    );
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", t.label));
    assert!(v["name"].is_string(), "{}: {text}", t.label);
    assert!(v["age"].is_i64(), "{}: {text}", t.label);
}

/// One vector per input, in order, of the model's size.
pub async fn embeddings_have_the_model_shape(t: &Target) {
    let (Some((model, dim)), true) = (&t.embedding, t.caps.embeddings) else {
        return;
    };
    let texts = vec![
        "The cat sat on the mat.".to_string(),
        "Paris is in France.".to_string(),
        "A third, longer sentence about embeddings and vectors.".to_string(),
    ];
    let out = t
        .stack
        .inference()
        .embeddings(EmbeddingsRequest::new(model.clone(), texts.clone()))
        .await
        .unwrap();
    assert_eq!(out.model, *model, "{}", t.label);
    assert_eq!(out.data.len(), texts.len(), "{}", t.label);
    for (i, e) in out.data.iter().enumerate() {
        assert_eq!(e.index as usize, i, "{}", t.label);
        match &e.embedding {
            EmbeddingVector::Float(v) => {
                assert_eq!(v.len(), *dim, "{}", t.label);
                assert!(v.iter().all(|x| x.is_finite()), "{}", t.label);
            }
            other => panic!("{}: floats were asked for, got {other:?}", t.label),
        }
    }
    let single = t
        .stack
        .inference()
        .embeddings(EmbeddingsRequest::new(model.clone(), texts[0].as_str()))
        .await
        .unwrap();
    assert_eq!(single.data.len(), 1, "{}", t.label);
}

/// Unknown models, empty messages and out-of-range parameters are typed errors.
pub async fn bad_input_is_a_typed_error(t: &Target) {
    let inf = t.stack.inference();
    let err = inf
        .chat_completion(ChatCompletionRequest::new(
            "no-such-provider/missing",
            [Message::user("hi")],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}: {err}", t.label);
    let err = inf
        .chat_completion(ChatCompletionRequest::new(t.chat_model.clone(), []))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{}: {err}", t.label);
    assert!(err.message().contains("messages"), "{}: {err}", t.label);
    let err = inf
        .chat_completion(t.greedy("hi", 2).with_temperature(3.0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{}: {err}", t.label);
    assert!(err.message().contains("temperature"), "{}: {err}", t.label);
    if let Some((model, _)) = &t.embedding {
        // An embedding model is not a chat model.
        let err = inf
            .chat_completion(ChatCompletionRequest::new(
                model.clone(),
                [Message::user("hi")],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{}: {err}", t.label);
    }
}
