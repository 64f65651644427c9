//! Tests on the real SmolLM2 GGUF in the Hugging Face cache (`HF_HUB_CACHE`, default
//! `<workspace>/../shared/models/hub`), offline: tokenizer ids and chat template against
//! llama.cpp's reference, greedy decoding, corrupt and truncated files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::sync::Arc;

use serde_json::Value;

use super::generate::{Engine, Event, Job};
use super::gguf::GgufInfo;
use super::model::{CausalLm, Llama, LoadOptions};
use super::sampler::SamplingParams;
use super::template::{template_messages, ChatTemplate};
use super::tokenizer::ModelTokenizer;
use super::PrefillWeights;
use llama_stack_core::api::inference::{FinishReason, Message};

const REFERENCE: &str = include_str!("../../../../../tests/data/smollm2-reference.json");

use crate::hub::test_models::smollm2_q4_1 as gguf_path;

fn reference_items() -> Vec<Value> {
    let v: Value = serde_json::from_str(REFERENCE).unwrap();
    v["items"].as_array().unwrap().clone()
}

fn messages(item: &Value) -> Vec<Message> {
    serde_json::from_value(item["messages"].clone()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[tokio::test]
async fn tokenizer_and_template_match_llama_cpp() {
    let Some(path) = gguf_path().await else {
        return;
    };
    let (info, _) = GgufInfo::read(&path).unwrap();
    let tok = ModelTokenizer::from_gguf(&info).unwrap();
    let template = ChatTemplate::new(info.string("tokenizer.chat_template").unwrap()).unwrap();
    for item in reference_items() {
        let rendered = template
            .render(
                &template_messages(&messages(&item)),
                None,
                tok.bos_token.as_deref().unwrap_or(""),
                tok.eos_token.as_deref().unwrap_or(""),
                true,
            )
            .unwrap();
        assert_eq!(rendered, item["rendered_prompt"].as_str().unwrap());
        assert_eq!(tok.encode(&rendered).unwrap(), ids(&item["prompt_ids"]));
    }
    // Text llama.cpp tokenizes the same way (pieces checked by round trip).
    for text in [
        "Hello  world\t12345 é 日本語 🙂 https://x.y/z?a=1",
        " leading",
        "a\u{a0}b\u{200b}c",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[tokio::test]
async fn greedy_tokens_match_llama_cpp_until_the_first_near_tie() {
    let Some(path) = gguf_path().await else {
        return;
    };
    // The file's own quantized kernels for prompts and generation, then the default: dense F16
    // prompts and requantized Q8_0 generation.
    for (requantize, prefill) in [
        (false, PrefillWeights::Quantized),
        (true, PrefillWeights::F16),
    ] {
        greedy_tokens_match(&path, requantize, prefill).await;
    }
}

async fn greedy_tokens_match(path: &std::path::Path, requantize: bool, prefill: PrefillWeights) {
    let (info, mut reader) = GgufInfo::read(path).unwrap();
    let tok = Arc::new(ModelTokenizer::from_gguf(&info).unwrap());
    let model = Llama::load(
        &info,
        &mut reader,
        LoadOptions {
            requantize,
            context_length: 2048,
            prefill,
            native_q4: true,
        },
    )
    .unwrap();
    let engine = Engine::spawn("test", Box::new(model), tok.clone(), 4).unwrap();
    for item in reference_items() {
        let margins: Vec<f64> = item["top1_top2_logit_margin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        // Tokens before the first step where llama.cpp's top two logits are within 0.3.
        let sure = margins.iter().take_while(|&&m| m >= 0.3).count();
        if sure == 0 {
            continue;
        }
        let expected = &ids(&item["greedy_ids"])[..sure];
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        engine
            .submit(Job {
                prompt: ids(&item["prompt_ids"]),
                max_tokens: sure,
                params: SamplingParams {
                    temperature: 0.0,
                    ..Default::default()
                },
                stop: Vec::new(),
                logprobs: None,
                constraint: None,
                events: tx,
                cancel: Default::default(),
            })
            .unwrap();
        let mut text = String::new();
        let mut done = None;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Delta { text: t, .. } => text.push_str(&t),
                Event::Done {
                    finish,
                    completion_tokens,
                    ..
                } => {
                    done = Some((finish, completion_tokens));
                }
                Event::Failed(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            text,
            tok.decode(expected).unwrap(),
            "item {} (requantize {requantize}, prefill {prefill:?})",
            item["messages"]
        );
        let (finish, n) = done.unwrap();
        assert_eq!(n, sure);
        assert!(matches!(finish, FinishReason::Length | FinishReason::Stop));
    }
}

#[tokio::test]
async fn corrupt_and_truncated_files_are_clear_errors() {
    let Some(path) = gguf_path().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = GgufInfo::read(&truncated).err().unwrap();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::Unavailable);
    assert!(err.message().contains("truncated"), "{err}");
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all, just some text").unwrap();
    let err = GgufInfo::read(&garbage).err().unwrap();
    assert!(err.message().contains("not a usable GGUF model"), "{err}");
    let header_only = dir.path().join("short.gguf");
    std::fs::write(&header_only, &bytes[..64]).unwrap();
    assert!(GgufInfo::read(&header_only).is_err());
}

fn load(path: &std::path::Path, requantize: bool, prefill: PrefillWeights) -> Llama {
    load_with(path, requantize, prefill, true)
}

fn load_with(
    path: &std::path::Path,
    requantize: bool,
    prefill: PrefillWeights,
    native_q4: bool,
) -> Llama {
    let (info, mut reader) = GgufInfo::read(path).unwrap();
    Llama::load(
        &info,
        &mut reader,
        LoadOptions {
            requantize,
            context_length: 2048,
            prefill,
            native_q4,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn native_4_bit_steps_match_candles_kernels() {
    let Some(path) = gguf_path().await else {
        return;
    };
    // Both process prompts with candle's Q4_1 kernels; one-token steps (and the output head)
    // run on the file's Q4_1 weights with our kernel or with candle's.
    let mut native = load_with(&path, false, PrefillWeights::Quantized, true);
    let mut reference = load_with(&path, false, PrefillWeights::Quantized, false);
    for item in reference_items() {
        let prompt = ids(&item["prompt_ids"]);
        let a = native.forward(&prompt, 0).unwrap();
        let b = reference.forward(&prompt, 0).unwrap();
        // Both quantize activations to 8 bits per block of 32 (candle stores the scale as F16,
        // we as F32).
        assert_logits_agree(&b, &a, "prompt");
        let mut next = super::model::argmax(&b) as u32;
        for step in 0..4 {
            let a = native.forward(&[next], prompt.len() + step).unwrap();
            let b = reference.forward(&[next], prompt.len() + step).unwrap();
            assert_logits_agree(&b, &a, &format!("step {step}"));
            next = super::model::argmax(&b) as u32;
        }
    }
}

/// Checks that `b`'s logits agree with reference `a`'s: 8-bit activations (per block of 32,
/// rounded differently by each kernel) add noise with a standard deviation of about 0.5 % of
/// the logits' spread after 30 layers (measured: the largest gap over the 49152 logits is
/// 1.5-3 % of the spread), so every logit must lie within 5 % of the spread and the top token
/// must agree unless the reference's top two are within 1.0 (about 5 standard deviations of
/// the difference of two noisy logits).
fn assert_logits_agree(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let gap = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = a.iter().copied().fold(f32::INFINITY, f32::min);
    let spread = max - min;
    assert!(
        gap < 0.05 * spread,
        "{what}: logits differ by {gap} (spread {spread})"
    );
    let top = super::model::argmax(a);
    let second = a
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != top)
        .map(|(_, v)| *v)
        .fold(f32::NEG_INFINITY, f32::max);
    if a[top] - second >= 1.0 {
        assert_eq!(super::model::argmax(b), top, "{what}: top token differs");
    }
}

#[tokio::test]
async fn dense_prefill_logits_match_the_quantized_path() {
    let Some(path) = gguf_path().await else {
        return;
    };
    for prefill in [PrefillWeights::F16, PrefillWeights::F32] {
        let mut model = load(&path, false, prefill);
        for item in reference_items() {
            let prompt = ids(&item["prompt_ids"]);
            model.set_dense_min_tokens(usize::MAX);
            let quantized = model.forward(&prompt, 0).unwrap();
            model.set_dense_min_tokens(1);
            let dense = model.forward(&prompt, 0).unwrap();
            // The quantized path rounds activations to 8 bits per block of 32, the dense one to
            // F16 or not at all.
            assert_logits_agree(&quantized, &dense, &format!("{prefill:?} prompt"));
            // Generation continues from the dense prompt's cache like from the quantized one.
            let next = super::model::argmax(&dense) as u32;
            let after_dense = model.forward(&[next], prompt.len()).unwrap();
            model.set_dense_min_tokens(usize::MAX);
            model.forward(&prompt, 0).unwrap();
            let after_quantized = model.forward(&[next], prompt.len()).unwrap();
            assert_logits_agree(
                &after_quantized,
                &after_dense,
                &format!("{prefill:?} next step"),
            );
        }
    }
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of proc(5) (utime, stime), counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Throughput of the model alone (no server, no sampling): prompt and one-token steps, wall
/// and CPU time. Run with `--ignored --nocapture`; `CANDLE_NUM_THREADS`/`RAYON_NUM_THREADS`
/// set the threads.
#[tokio::test]
#[ignore]
async fn model_throughput() {
    let Some(path) = gguf_path().await else {
        return;
    };
    let prefill = match std::env::var("PREFILL").as_deref() {
        Ok("f32") => PrefillWeights::F32,
        Ok("quantized") => PrefillWeights::Quantized,
        _ => PrefillWeights::F16,
    };
    let t = std::time::Instant::now();
    let mut model = load(&path, true, prefill);
    eprintln!("load {:.3} s", t.elapsed().as_secs_f64());
    let prompt: Vec<u32> = std::iter::once(500)
        .chain((0..188u32).map(|i| 1000 + (i * 37 % 20000)))
        .collect();
    for _ in 0..3 {
        let (w, c) = (std::time::Instant::now(), cpu_seconds());
        model.forward(&prompt, 0).unwrap();
        let (w, c) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
        eprintln!(
            "prompt {} tokens: {:.1} tok/s wall, {:.1} tok per CPU-s",
            prompt.len(),
            prompt.len() as f64 / w,
            prompt.len() as f64 / c
        );
    }
    for _ in 0..3 {
        let mut logits = model.forward(&prompt[..8], 0).unwrap();
        let (w, c) = (std::time::Instant::now(), cpu_seconds());
        for i in 0..128 {
            let id = super::model::argmax(&logits) as u32;
            logits = model.forward(&[id], 8 + i).unwrap();
        }
        let (w, c) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
        eprintln!(
            "generation 128 tokens: {:.1} tok/s wall, {:.1} tok per CPU-s",
            128.0 / w,
            128.0 / c
        );
    }
}
