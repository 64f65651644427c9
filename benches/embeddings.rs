//! all-MiniLM-L6-v2 embeddings through the library (routed calls on the starter
//! distribution, `inline::sentence-transformers`): model load, RSS, sentences per
//! CPU-second and best wall-clock sentences/s at batch 1 (13-token sentences) and batch 32
//! (55-token sentences) — the workload of `benches/embeddings_side_by_side.py`.
//!
//! Run: `CANDLE_NUM_THREADS=1 cargo bench --bench embeddings` (release profile with LTO;
//! the workspace's `.cargo/config.toml` builds with `-C target-cpu=native`). Needs the model
//! in `HF_HUB_CACHE` (default `../shared/models/hub`). Prints one `name value unit` line per
//! measurement; `benches/embeddings_side_by_side.sh` compares them with
//! sentence-transformers on the same machine.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use llama_stack::prelude::*;
use llama_stack::InferenceHandle;

#[path = "support/process.rs"]
mod process;
use process::{cpu_seconds, starter_stack, status_mb};

const EMBED: &str = "sentence-transformers/sentence-transformers/all-MiniLM-L6-v2";

fn short_sentence(i: usize) -> String {
    format!("Note {i}: the weather today is mild and sunny.")
}

fn long_sentence(i: usize) -> String {
    format!(
        "Report {i} says the weather, the markets and a small cat on a mat near the \
         window of an old house in the quiet town were all calm, while the river rose \
         slowly after three days of rain and the farmers waited for the fields to dry \
         before the harvest."
    )
}

/// Sentences per CPU-second over all rounds and the best round's wall-clock sentences/s.
async fn measure(
    inf: &InferenceHandle,
    texts_for_round: impl Fn(usize) -> Vec<String>,
    batch: usize,
    rounds: usize,
) -> Result<(f64, f64)> {
    let mut best = 0f64;
    let mut total = 0usize;
    let c0 = cpu_seconds();
    for r in 0..rounds {
        let texts = texts_for_round(r);
        let t = Instant::now();
        for chunk in texts.chunks(batch) {
            inf.embeddings(EmbeddingsRequest::new(EMBED, chunk.to_vec()))
                .await?;
        }
        best = best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
        total += texts.len();
    }
    Ok((total as f64 / (cpu_seconds() - c0).max(1e-9), best))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (stack, dir) = starter_stack("llama-stack-embed-bench").await?;
    let inf = stack.inference();
    let rss0 = status_mb("VmRSS:");

    let t = Instant::now();
    inf.embeddings(EmbeddingsRequest::new(EMBED, "warm up"))
        .await?;
    println!(
        "rs_load {:.3} s (model load and first call)",
        t.elapsed().as_secs_f64()
    );
    println!(
        "rs_rss_model {:.0} MB (after load, minus before)",
        status_mb("VmRSS:") - rss0
    );
    println!(
        "rs_rss_total {:.0} MB (process, after load; peak {:.0} MB)",
        status_mb("VmRSS:"),
        status_mb("VmHWM:")
    );
    let short = inf
        .embeddings(EmbeddingsRequest::new(EMBED, short_sentence(0).as_str()))
        .await?;
    let long = inf
        .embeddings(EmbeddingsRequest::new(EMBED, long_sentence(0).as_str()))
        .await?;
    println!("rs_tokens_short {} tokens", short.usage.prompt_tokens);
    println!("rs_tokens_long {} tokens", long.usage.prompt_tokens);

    // Warm-up of both shapes.
    measure(
        &inf,
        |_| (0..8).map(|i| short_sentence(900 + i)).collect(),
        1,
        1,
    )
    .await?;
    measure(
        &inf,
        |_| (0..32).map(|i| long_sentence(900 + i)).collect(),
        32,
        1,
    )
    .await?;

    let (b1_cpu, b1_wall) = measure(
        &inf,
        |r| (0..64).map(|i| short_sentence(r * 1000 + i)).collect(),
        1,
        6,
    )
    .await?;
    println!("rs_batch1_per_cpu_s {b1_cpu:.1} sentences/CPU-s");
    println!("rs_batch1_best_wall {b1_wall:.1} sentences/s (best of 6 rounds of 64)");
    let (b32_cpu, b32_wall) = measure(
        &inf,
        |r| (0..32).map(|i| long_sentence(r * 1000 + i)).collect(),
        32,
        8,
    )
    .await?;
    println!("rs_batch32_per_cpu_s {b32_cpu:.1} sentences/CPU-s");
    println!("rs_batch32_best_wall {b32_wall:.1} sentences/s (best of 8 batches of 32)");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
