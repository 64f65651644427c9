//! Builds the offline `starter` distribution in-process, lists what it serves, then chats
//! with the local GGUF model (streamed) and embeds two sentences with the local
//! sentence-transformers model — no server, no network.
//!
//! Run: `cargo run --release --example quickstart`
//!
//! Needs the starter's models in the Hugging Face cache (`HF_HUB_CACHE`; in this repository's
//! workspace they are in `../shared/models/hub`, which the example uses when `HF_HUB_CACHE`
//! is unset) and `HF_HUB_OFFLINE=1` to never download. Data goes under
//! `~/.llama/distributions/starter` unless `SQLITE_STORE_DIR` says otherwise.
#![allow(clippy::print_stdout)]

use std::io::Write;

use futures::StreamExt;
use llama_stack::core::api::inference::EmbeddingVector;
use llama_stack::prelude::*;

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("HF_HUB_CACHE").is_none() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/hub");
        if shared.is_dir() {
            std::env::set_var("HF_HUB_CACHE", shared);
            std::env::set_var("HF_HUB_OFFLINE", "1");
        }
    }
    let stack = Stack::builder().distribution("starter").build().await?;
    println!(
        "llama-stack {} ({})",
        stack.inspect().version().await?.version,
        stack.config().name()
    );
    for p in stack.providers().list().await?.data {
        println!(
            "provider {} {} [{:?}]",
            p.provider_id, p.provider_type, p.health.status
        );
    }
    let models = stack.models().list().await?.data;
    for m in &models {
        println!("model {} ({})", m.identifier, m.model_type.as_str());
    }
    let chat = models
        .iter()
        .find(|m| m.model_type == ModelType::Llm)
        .ok_or_else(|| Error::invalid_request("the starter registered no chat model"))?;
    let embedder = models
        .iter()
        .find(|m| m.model_type == ModelType::Embedding)
        .ok_or_else(|| Error::invalid_request("the starter registered no embedding model"))?;

    // Chat, streamed token by token.
    let req = ChatCompletionRequest::new(
        &chat.identifier,
        [
            Message::system("You are a helpful assistant. Answer briefly."),
            Message::user("What is the capital of France?"),
        ],
    )
    .with_temperature(0.0)
    .with_max_tokens(48);
    print!("\n> What is the capital of France?\n");
    let started = std::time::Instant::now();
    let mut stream = stack.inference().chat_completion_stream(req).await?;
    let mut first_token = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(usage) = &chunk.usage {
            println!(
                "\n[{} prompt + {} completion tokens, first token after {:.2?}, total {:.2?}]",
                usage.prompt_tokens,
                usage.completion_tokens,
                first_token.unwrap_or_default(),
                started.elapsed()
            );
        }
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                first_token.get_or_insert_with(|| started.elapsed());
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
        }
    }

    // Embeddings and their similarity.
    let sentences = vec![
        "The cat sits on the mat.".to_string(),
        "A kitten is resting on a rug.".to_string(),
        "Stock markets fell sharply today.".to_string(),
    ];
    let out = stack
        .inference()
        .embeddings(EmbeddingsRequest::new(
            &embedder.identifier,
            sentences.clone(),
        ))
        .await?;
    let vecs: Vec<Vec<f32>> = out
        .data
        .iter()
        .map(|e| match &e.embedding {
            EmbeddingVector::Float(v) => v.clone(),
            EmbeddingVector::Base64(_) => Vec::new(),
        })
        .collect();
    println!(
        "\n{} embeddings of {} dimensions",
        vecs.len(),
        vecs[0].len()
    );
    for (i, s) in sentences.iter().enumerate().skip(1) {
        let cos: f32 = vecs[0].iter().zip(&vecs[i]).map(|(a, b)| a * b).sum();
        println!("cosine({:?}, {:?}) = {cos:.3}", sentences[0], s);
    }
    Ok(())
}
