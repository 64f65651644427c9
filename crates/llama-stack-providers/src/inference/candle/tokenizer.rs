//! Tokenizers: a repository's `tokenizer.json`, or one built from the GGUF's own
//! `tokenizer.ggml.*` metadata so that token ids equal llama.cpp's for the same text:
//! byte-level BPE (`tokenizer.ggml.model = "gpt2"`) with the pre-tokenizer llama.cpp uses
//! for its `pre` value, or SentencePiece (`"llama"`): BPE over the pieces, merges ranked by
//! the merged piece's score as llama.cpp's SPM tokenizer merges, spaces written `▁`, a `▁`
//! prefixed to the text and after every special token (`tokenizer.ggml.add_space_prefix`,
//! default true), characters outside the vocabulary as `<0xNN>` byte tokens.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;

use llama_stack_core::{Error, Result};
use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use super::gguf::GgufInfo;

/// A tokenizer plus what generation needs: end-of-turn ids and each token's text.
pub(crate) struct ModelTokenizer {
    inner: Tokenizer,
    /// Token ids that end generation.
    pub(crate) eos_ids: Vec<u32>,
    /// The BOS token text, if the model has one.
    pub(crate) bos_token: Option<String>,
    /// The EOS token text, if the model has one.
    pub(crate) eos_token: Option<String>,
    /// Whether to prepend BOS to prompts (`tokenizer.ggml.add_bos_token`).
    pub(crate) add_bos: Option<u32>,
    /// The decoded text of every token id (empty for special tokens).
    pub(crate) pieces: Vec<String>,
    /// Whether a token id is special (control).
    pub(crate) special: Vec<bool>,
    /// The vocabulary trie for JSON-constrained decoding, built on first use.
    trie: std::sync::OnceLock<std::sync::Arc<super::json::Trie>>,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("tokenizer: {e}"))
}

/// llama.cpp's pre-tokenizer regexes by `tokenizer.ggml.pre` (see its `llama-vocab.cpp`).
fn pre_tokenizer(pre: &str) -> Option<(Value, bool)> {
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    match pre {
        "smollm" => Some((
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        )),
        "gpt-2" | "gpt2" | "default" | "phi-2" | "jina-es" | "jina-de" | "starcoder" | "refact" => {
            Some((byte_level(true), false))
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => Some((
            json!({"type": "Sequence", "pretokenizers": [
                split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
                byte_level(false)]}),
            true,
        )),
        "qwen2" | "deepseek-r1-qwen" => Some((
            json!({"type": "Sequence", "pretokenizers": [
                split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
                byte_level(false)]}),
            false,
        )),
        _ => None,
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// The type of token `id` (normal when the metadata has none).
fn token_type(types: Option<&Vec<gguf_file::Value>>, id: usize) -> i32 {
    types
        .and_then(|ts| ts.get(id))
        .and_then(|v| {
            v.to_i32()
                .ok()
                .or_else(|| v.to_u32().ok().map(|u| u as i32))
        })
        .unwrap_or(TYPE_NORMAL)
}

/// The `tokenizer.json` of a SentencePiece (`"llama"`) GGUF vocabulary.
fn spm_spec(gguf: &GgufInfo) -> Result<Value> {
    let tokens = gguf
        .array("tokenizer.ggml.tokens")
        .ok_or_else(|| tok_err("metadata 'tokenizer.ggml.tokens' is missing"))?;
    let scores = gguf.array("tokenizer.ggml.scores").ok_or_else(|| {
        tok_err("metadata 'tokenizer.ggml.scores' (SentencePiece vocabulary) is missing")
    })?;
    if scores.len() != tokens.len() {
        return Err(tok_err(format!(
            "metadata 'tokenizer.ggml.scores' has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let types = gguf.array("tokenizer.ggml.token_type");
    let texts = tokens
        .iter()
        .map(|t| t.to_string().cloned().map_err(tok_err))
        .collect::<Result<Vec<String>>>()?;
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(texts.len());
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, text) in texts.iter().enumerate() {
        ids.entry(text.as_str()).or_insert(id);
        vocab.entry(text.clone()).or_insert(json!(id));
        let ty = token_type(types, id);
        if matches!(ty, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) {
            added.push(json!({
                "id": id, "content": text, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty != TYPE_USER_DEFINED
            }));
        }
    }
    // Every split of a piece into two pieces is a merge, ranked by the merged piece's score
    // (highest first; llama.cpp merges the best-scoring adjacent pair that forms a piece).
    let mut merges: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (id, text) in texts.iter().enumerate() {
        if token_type(types, id) == TYPE_BYTE {
            continue;
        }
        let score = scores[id].to_f32().map_err(tok_err)?;
        for (cut, _) in text.char_indices().skip(1) {
            let (l, r) = text.split_at(cut);
            if ids.contains_key(l) && ids.contains_key(r) {
                merges.push((score, id, l, r));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges: Vec<Value> = merges.iter().map(|(_, _, l, r)| json!([l, r])).collect();
    let unk = gguf
        .u32("tokenizer.ggml.unknown_token_id")
        .and_then(|id| texts.get(id as usize));
    let space = "\u{2581}";
    let normalizer = if gguf.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true) {
        json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": space},
            {"type": "Replace", "pattern": {"String": " "}, "content": space}]})
    } else {
        json!({"type": "Replace", "pattern": {"String": " "}, "content": space})
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": space}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    }))
}

impl ModelTokenizer {
    /// Loads a `tokenizer.json`; special tokens come from the GGUF when it has them.
    pub(crate) fn from_file(path: &Path, gguf: &GgufInfo) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| {
            Error::unavailable(format!("cannot read tokenizer '{}': {e}", path.display()))
        })?;
        Self::finish(inner, gguf)
    }

    /// Builds the tokenizer from the GGUF's metadata.
    pub(crate) fn from_gguf(gguf: &GgufInfo) -> Result<Self> {
        let model = gguf.string("tokenizer.ggml.model").unwrap_or("");
        match model {
            "gpt2" => {}
            "llama" => {
                let text = serde_json::to_string(&spm_spec(gguf)?).map_err(tok_err)?;
                let inner: Tokenizer = text.parse().map_err(tok_err)?;
                return Self::finish(inner, gguf);
            }
            _ => {
                return Err(Error::unavailable(format!(
                    "the GGUF tokenizer model '{model}' (metadata 'tokenizer.ggml.model') cannot be built from metadata (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece); configure a tokenizer.json for this model"
                )))
            }
        }
        let pre = gguf.string("tokenizer.ggml.pre").unwrap_or("default");
        let Some((pre_tok, ignore_merges)) = pre_tokenizer(pre) else {
            return Err(Error::unavailable(format!(
                "the GGUF pre-tokenizer '{pre}' is not known; configure a tokenizer.json for this model"
            )));
        };
        let tokens = gguf
            .array("tokenizer.ggml.tokens")
            .ok_or_else(|| tok_err("metadata 'tokenizer.ggml.tokens' is missing"))?;
        let types = gguf.array("tokenizer.ggml.token_type");
        let mut vocab = Map::new();
        let mut added = Vec::new();
        for (id, t) in tokens.iter().enumerate() {
            let s = t.to_string().map_err(tok_err)?;
            vocab.insert(s.clone(), json!(id));
            let ty = types
                .and_then(|ts| ts.get(id))
                .and_then(|v| {
                    v.to_i32()
                        .ok()
                        .or_else(|| v.to_u32().ok().map(|u| u as i32))
                })
                .unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(json!({
                    "id": id, "content": s, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": ty == 3
                }));
            }
        }
        let merges: Vec<Value> = gguf
            .array("tokenizer.ggml.merges")
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.to_string().ok())
                    .map(|s| json!(s))
                    .collect()
            })
            .unwrap_or_default();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tok,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                "vocab": vocab, "merges": merges
            }
        });
        let text = serde_json::to_string(&spec).map_err(tok_err)?;
        let inner: Tokenizer = text.parse().map_err(tok_err)?;
        Self::finish(inner, gguf)
    }

    fn finish(inner: Tokenizer, gguf: &GgufInfo) -> Result<Self> {
        let n = inner.get_vocab_size(true);
        let mut pieces = Vec::with_capacity(n);
        let mut special = vec![false; n];
        let added = inner.get_added_tokens_decoder();
        for id in 0..n as u32 {
            let is_special = added.get(&id).is_some_and(|t| t.special);
            special[id as usize] = is_special;
            if is_special {
                pieces.push(String::new());
            } else {
                pieces.push(inner.decode(&[id], false).unwrap_or_default());
            }
        }
        let token_text = |key: &str| gguf.u32(key).and_then(|id| inner.id_to_token(id));
        let mut eos_ids = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(id) = gguf.u32(key) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        // End-of-turn markers of common chat formats also end generation.
        for s in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
        ] {
            if let Some(id) = inner.token_to_id(s) {
                if special.get(id as usize).copied().unwrap_or(false) && !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let bos_id = gguf.u32("tokenizer.ggml.bos_token_id");
        let add_bos = if gguf.bool("tokenizer.ggml.add_bos_token").unwrap_or(false) {
            bos_id
        } else {
            None
        };
        Ok(ModelTokenizer {
            bos_token: token_text("tokenizer.ggml.bos_token_id"),
            eos_token: token_text("tokenizer.ggml.eos_token_id"),
            inner,
            eos_ids,
            add_bos,
            pieces,
            special,
            trie: std::sync::OnceLock::new(),
        })
    }

    /// The vocabulary trie used by JSON-constrained decoding.
    pub(crate) fn json_trie(&self) -> std::sync::Arc<super::json::Trie> {
        self.trie
            .get_or_init(|| std::sync::Arc::new(super::json::Trie::new(self)))
            .clone()
    }

    /// Token ids of `text`, special tokens parsed (as llama.cpp with `parse_special`).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if let Some(bos) = self.add_bos {
            if !text.is_empty() && !text.starts_with(self.bos_token.as_deref().unwrap_or("\u{0}")) {
                ids.push(bos);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids`, special tokens skipped.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// The raw text of one token (special tokens included), for logprobs.
    pub(crate) fn token_text(&self, id: u32) -> String {
        match self.pieces.get(id as usize) {
            Some(p) if !p.is_empty() => p.clone(),
            _ => self.inner.id_to_token(id).unwrap_or_default(),
        }
    }

    /// The vocabulary size.
    pub(crate) fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}
