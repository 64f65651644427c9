//! Tests on the real all-MiniLM-L6-v2 in the Hugging Face cache (`HF_HUB_CACHE`, default
//! `<workspace>/../shared/models/hub`), offline: vectors against sentence-transformers'
//! reference, batched and packed inputs in input order, one and two threads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;

use serde_json::Value;

use super::{length_batches, Encoder};

const REFERENCE: &str = include_str!("../../../../../tests/data/minilm-reference.json");
const MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn cache_dir() -> Option<PathBuf> {
    crate::hub::test_models::cache_with(MODEL)
}

async fn encoder(threads: usize) -> Option<Encoder> {
    let dir = cache_dir()?;
    Some(
        Encoder::load(MODEL, Some(&dir), true, threads)
            .await
            .unwrap(),
    )
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn reference() -> Vec<(String, Vec<f32>)> {
    let v: Value = serde_json::from_str(REFERENCE).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let text = i["text"].as_str().unwrap().to_string();
            let emb = i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (text, emb)
        })
        .collect()
}

#[test]
fn length_batches_cover_every_input_once_grouped_by_length() {
    let lens = [5usize, 1, 9, 1, 7, 3, 3, 12, 0, 5];
    for max in [1usize, 2, 3, 4, 10, 64] {
        let batches = length_batches(&lens, max);
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max));
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        let flat_lens: Vec<usize> = seen.iter().map(|&i| lens[i]).collect();
        assert!(flat_lens.windows(2).all(|w| w[0] <= w[1]), "{flat_lens:?}");
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
    }
    assert!(length_batches(&[], 4).is_empty());
    // A zero batch size still makes progress.
    assert_eq!(length_batches(&[2, 1], 0), vec![vec![1], vec![0]]);
}

#[tokio::test]
async fn vectors_match_sentence_transformers_one_and_two_threads() {
    let reference = reference();
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();
    for threads in [1usize, 2] {
        let Some(enc) = encoder(threads).await else {
            return;
        };
        let ids = enc.tokenize(&texts).unwrap();
        let got = enc.embed(ids, 32).unwrap();
        for ((text, want), got) in reference.iter().zip(&got) {
            assert_eq!(got.len(), 384);
            let cos = cosine(got, want);
            assert!(cos >= 0.9999, "{threads} threads, {text:?}: cosine {cos}");
            let max_diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "{text:?}: max |diff| {max_diff}");
        }
    }
}

#[tokio::test]
async fn batched_inputs_come_back_in_input_order() {
    let Some(enc) = encoder(2).await else {
        return;
    };
    // Lengths deliberately out of order, with repeats, one long input and an empty one.
    let mut texts: Vec<String> = vec![
        "A much longer sentence about rivers, mountains and the long history of the valley towns that grew along them.".into(),
        "Hi".into(),
        "Cats sleep a lot.".into(),
        "".into(),
        "Cats sleep a lot.".into(),
        "The stock market fell sharply on Tuesday.".into(),
        "ok".into(),
    ];
    texts.push("word ".repeat(400)); // truncated to the model's 256 tokens
    let ids = enc.tokenize(&texts).unwrap();
    assert_eq!(ids[7].len(), 256);
    let singles: Vec<Vec<f32>> = ids
        .iter()
        .map(|i| enc.embed(vec![i.clone()], 1).unwrap().remove(0))
        .collect();
    for batch in [1usize, 2, 3, 32] {
        let got = enc.embed(ids.clone(), batch).unwrap();
        assert_eq!(got.len(), texts.len());
        for (i, (g, s)) in got.iter().zip(&singles).enumerate() {
            let cos = cosine(g, s);
            assert!(cos > 0.99999, "batch {batch}, input {i}: cosine {cos}");
        }
    }
    // Different texts give clearly different vectors, equal texts equal ones.
    assert!(cosine(&singles[1], &singles[5]) < 0.9);
    assert!(cosine(&singles[2], &singles[4]) > 0.999999);
}
