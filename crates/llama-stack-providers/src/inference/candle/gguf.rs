//! Reading a GGUF file: header and metadata, checks that every tensor lies inside the file
//! (a truncated download is caught before any weight is read), and the llama
//! hyper-parameters.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use llama_stack_core::{Error, Result};

/// Architecture hyper-parameters read from the metadata.
#[derive(Debug, Clone)]
pub(crate) struct Hparams {
    pub(crate) block_count: usize,
    pub(crate) embedding_length: usize,
    pub(crate) head_count: usize,
    pub(crate) head_count_kv: usize,
    pub(crate) rope_dimension: Option<usize>,
    pub(crate) rope_freq_base: f32,
    pub(crate) rope_neox: bool,
    pub(crate) rms_eps: f32,
    pub(crate) context_length: usize,
}

/// A parsed GGUF header.
pub(crate) struct GgufInfo {
    pub(crate) content: gguf_file::Content,
    pub(crate) hparams: Hparams,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::unavailable(format!(
        "'{}' is not a usable GGUF model: {what}",
        path.display()
    ))
}

impl GgufInfo {
    /// Reads and checks the header of `path`.
    pub(crate) fn read(path: &Path) -> Result<(Self, BufReader<File>)> {
        let file = File::open(path).map_err(|e| corrupt(path, format!("cannot open it: {e}")))?;
        let len = file.metadata().map_err(|e| corrupt(path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| corrupt(path, e))?;
        for (name, t) in &content.tensor_infos {
            let elems = t.shape.elem_count();
            let block = t.ggml_dtype.block_size();
            if block == 0 || elems % block != 0 {
                return Err(corrupt(
                    path,
                    format!("tensor '{name}' has {elems} elements, not a multiple of its block size {block}"),
                ));
            }
            let bytes = (elems / block) as u64 * t.ggml_dtype.type_size() as u64;
            let end = content.tensor_data_offset + t.offset + bytes;
            if end > len {
                return Err(corrupt(
                    path,
                    format!(
                        "the file is truncated: tensor '{name}' ends at byte {end} but the file has {len} bytes"
                    ),
                ));
            }
        }
        let hparams = Hparams::from_metadata(&content.metadata).map_err(|e| corrupt(path, e))?;
        Ok((GgufInfo { content, hparams }, reader))
    }

    /// A string metadata value.
    pub(crate) fn string(&self, key: &str) -> Option<&str> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    /// An integer metadata value.
    pub(crate) fn u32(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(value_u32)
    }

    /// A boolean metadata value.
    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_bool().ok())
    }

    /// An array metadata value.
    pub(crate) fn array(&self, key: &str) -> Option<&Vec<Value>> {
        self.content.metadata.get(key).and_then(|v| v.to_vec().ok())
    }
}

fn value_u32(v: &Value) -> Option<u32> {
    v.to_u32()
        .ok()
        .or_else(|| v.to_i32().ok().and_then(|x| u32::try_from(x).ok()))
        .or_else(|| v.to_u64().ok().and_then(|x| u32::try_from(x).ok()))
}

impl Hparams {
    fn from_metadata(
        md: &std::collections::HashMap<String, Value>,
    ) -> std::result::Result<Self, String> {
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or("metadata 'general.architecture' is missing")?;
        if arch != "llama" {
            return Err(format!(
                "architecture '{arch}' is not supported (inline::candle runs llama-family models)"
            ));
        }
        let get = |k: &str| -> std::result::Result<usize, String> {
            md.get(&format!("{arch}.{k}"))
                .and_then(value_u32)
                .map(|v| v as usize)
                .ok_or_else(|| format!("metadata '{arch}.{k}' is missing"))
        };
        let head_count = get("attention.head_count")?;
        let head_count_kv = get("attention.head_count_kv").unwrap_or(head_count);
        let embedding_length = get("embedding_length")?;
        if head_count == 0 || head_count_kv == 0 || head_count % head_count_kv != 0 {
            return Err(format!("invalid head counts {head_count}/{head_count_kv}"));
        }
        if embedding_length % head_count != 0 {
            return Err("embedding length is not a multiple of the head count".into());
        }
        let f = |k: &str| md.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok());
        Ok(Hparams {
            block_count: get("block_count")?,
            embedding_length,
            head_count,
            head_count_kv,
            rope_dimension: get("rope.dimension_count").ok(),
            rope_freq_base: f("rope.freq_base").unwrap_or(10_000.0),
            rope_neox: false,
            rms_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context_length: get("context_length").unwrap_or(4096),
        })
    }
}
