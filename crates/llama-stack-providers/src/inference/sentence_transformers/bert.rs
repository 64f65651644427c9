//! The BERT encoder of sentence-transformers models, run on packed token rows.
//!
//! A batch is not padded: the tokens of all its sequences are stacked into one
//! `(tokens, hidden)` matrix, so every linear layer is one GEMM over real tokens only and
//! attention runs per sequence (and head) over that sequence's own tokens, as two small
//! GEMMs (`Q Kᵀ`, then the softmaxed scores times `V`). Linear layers
//! write their bias first and accumulate the product onto it (`gemm` with `read_dst`),
//! which also fuses the residual connections. The query projection is pre-scaled by
//! `1/√head_dim` at load. Work is spread over a dedicated thread pool when more than one
//! thread is configured.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use gemm::{gemm, Parallelism};
use llama_stack_core::{Error, Result};
use rayon::prelude::*;
use serde::Deserialize;

use super::kernels;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    /// Vocabulary size.
    pub(crate) vocab_size: usize,
    /// Width of the hidden states.
    pub(crate) hidden_size: usize,
    /// Number of transformer layers.
    pub(crate) num_hidden_layers: usize,
    /// Attention heads per layer.
    pub(crate) num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub(crate) intermediate_size: usize,
    /// Feed-forward activation (`gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`).
    #[serde(default = "default_act")]
    pub(crate) hidden_act: String,
    /// Number of positions (the longest input).
    pub(crate) max_position_embeddings: usize,
    /// Number of token types (segment ids).
    #[serde(default = "default_type_vocab")]
    pub(crate) type_vocab_size: usize,
    /// Epsilon of the layer normalisations.
    #[serde(default = "default_eps")]
    pub(crate) layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub(crate) position_embedding_type: Option<String>,
    /// A prefix some checkpoints put before the weight names (`bert.`).
    #[serde(default)]
    pub(crate) model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::GeluErf => kernels::gelu_erf(xs),
            Activation::GeluTanh => kernels::gelu_tanh(xs),
            Activation::Relu => kernels::relu(xs),
        }
    }
}

/// `y = x Wᵀ + b` with `W` stored as `(out, in)` rows, as in the checkpoint.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections stacked into one `(3·hidden, hidden)` weight.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// How the work of one forward pass is spread.
pub(crate) struct Threads {
    n: usize,
    pool: Option<rayon::ThreadPool>,
}

impl Threads {
    /// `n` threads (1 runs everything on the calling thread).
    pub(crate) fn new(n: usize) -> Result<Self> {
        let n = n.max(1);
        let pool = if n > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("st-encoder-{i}"))
                    .build()
                    .map_err(|e| Error::internal(format!("cannot start encoder threads: {e}")))?,
            )
        } else {
            None
        };
        Ok(Threads { n, pool })
    }

    /// The thread count.
    pub(crate) fn count(&self) -> usize {
        self.n
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    fn gemm_par(&self) -> Parallelism {
        if self.n > 1 {
            Parallelism::Rayon(self.n)
        } else {
            Parallelism::None
        }
    }

    /// Calls `f` on each `width`-wide row of `buf`, in parallel when there are threads.
    fn rows(&self, buf: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
        if self.n > 1 {
            buf.par_chunks_mut(width).with_min_len(16).for_each(f);
        } else {
            buf.chunks_mut(width).for_each(f);
        }
    }
}

/// A loaded BERT encoder.
pub(crate) struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// The embedding of token type 0 (inputs carry one segment).
    token_type0: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    max_positions: usize,
    vocab: usize,
    eps: f32,
    act: Activation,
}

/// Tensors of a checkpoint by name, converted to `f32` on demand.
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: String,
}

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .remove(&full)
            .ok_or_else(|| Error::unavailable(format!("the weights have no tensor '{full}'")))?;
        if t.dims() != shape {
            return Err(Error::unavailable(format!(
                "tensor '{full}' has shape {:?}, the config implies {shape:?}",
                t.dims()
            )));
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::unavailable(format!("cannot read tensor '{full}': {e}")))
    }

    fn linear(&mut self, name: &str, n_in: usize, n_out: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.take(&format!("{name}.weight"), &[n_out, n_in])?,
            bias: self.take(&format!("{name}.bias"), &[n_out])?,
            n_in,
            n_out,
        })
    }

    fn layer_norm(&mut self, name: &str, n: usize) -> Result<LayerNorm> {
        let (g, b) = if self
            .tensors
            .contains_key(&format!("{}{name}.gamma", self.prefix))
        {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm {
            gamma: self.take(&format!("{name}.{g}"), &[n])?,
            beta: self.take(&format!("{name}.{b}"), &[n])?,
        })
    }
}

impl Bert {
    /// Builds the encoder from safetensors bytes and its config.
    pub(crate) fn load(config: &BertConfig, safetensors: &[u8]) -> Result<Self> {
        let act = match config.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::unsupported(format!(
                    "hidden_act '{other}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu are)"
                )))
            }
        };
        if let Some(p) = &config.position_embedding_type {
            if p != "absolute" {
                return Err(Error::unsupported(format!(
                    "position_embedding_type '{p}' is not supported (absolute is)"
                )));
            }
        }
        let (h, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || h % heads != 0 || h == 0 {
            return Err(Error::unavailable(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)
            .map_err(|e| Error::unavailable(format!("cannot read the safetensors file: {e}")))?;
        let mut prefixes = vec![String::new(), "bert.".to_string()];
        if let Some(m) = &config.model_type {
            prefixes.push(format!("{m}."));
        }
        let prefix = prefixes
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| {
                Error::unavailable("the weights have no 'embeddings.word_embeddings.weight'")
            })?;
        let mut w = Weights { tensors, prefix };
        let word = w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = w.take(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let mut token_type0 = w.take(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        token_type0.truncate(h);
        let embed_norm = w.layer_norm("embeddings.LayerNorm", h)?;
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let mut q = w.linear(&format!("{p}.attention.self.query"), h, h)?;
            let k = w.linear(&format!("{p}.attention.self.key"), h, h)?;
            let v = w.linear(&format!("{p}.attention.self.value"), h, h)?;
            q.weight.iter_mut().for_each(|x| *x *= scale);
            q.bias.iter_mut().for_each(|x| *x *= scale);
            let mut weight = q.weight;
            weight.extend_from_slice(&k.weight);
            weight.extend_from_slice(&v.weight);
            let mut bias = q.bias;
            bias.extend_from_slice(&k.bias);
            bias.extend_from_slice(&v.bias);
            layers.push(Layer {
                qkv: Linear {
                    weight,
                    bias,
                    n_in: h,
                    n_out: 3 * h,
                },
                attn_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                up: w.linear(
                    &format!("{p}.intermediate.dense"),
                    h,
                    config.intermediate_size,
                )?,
                down: w.linear(&format!("{p}.output.dense"), config.intermediate_size, h)?,
                out_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(Bert {
            word,
            position,
            token_type0,
            embed_norm,
            layers,
            hidden: h,
            heads,
            intermediate: config.intermediate_size,
            max_positions: config.max_position_embeddings,
            vocab: config.vocab_size,
            eps: config.layer_norm_eps as f32,
            act,
        })
    }

    /// Width of the hidden states.
    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The last hidden states of `seqs`, packed: rows `offsets[i]..offsets[i + 1]` of the
    /// returned `(tokens, hidden)` matrix belong to `seqs[i]`. Ids must be below the
    /// vocabulary size and sequences no longer than the position table.
    pub(crate) fn forward(
        &self,
        seqs: &[&[u32]],
        threads: &Threads,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let mut offsets = Vec::with_capacity(seqs.len() + 1);
        offsets.push(0usize);
        for s in seqs {
            if s.len() > self.max_positions {
                return Err(Error::invalid_request(format!(
                    "an input has {} tokens; the model takes at most {}",
                    s.len(),
                    self.max_positions
                )));
            }
            if let Some(&bad) = s.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(Error::invalid_request(format!(
                    "token id {bad} is outside the vocabulary (0..{})",
                    self.vocab
                )));
            }
            offsets.push(offsets[offsets.len() - 1] + s.len());
        }
        let x = threads.run(|| self.forward_packed(seqs, &offsets, threads));
        Ok((x, offsets))
    }

    fn forward_packed(&self, seqs: &[&[u32]], offsets: &[usize], threads: &Threads) -> Vec<f32> {
        let h = self.hidden;
        let tokens = offsets.last().copied().unwrap_or(0);
        let mut x = vec![0f32; tokens * h];
        // Embeddings: word + position + token type 0, then layer norm.
        let mut rows = x.chunks_mut(h);
        for s in seqs {
            for (pos, (&id, row)) in s.iter().zip(&mut rows).enumerate() {
                let wv = &self.word[id as usize * h..][..h];
                let pv = &self.position[pos * h..][..h];
                for (((o, a), b), c) in row.iter_mut().zip(wv).zip(pv).zip(&self.token_type0) {
                    *o = a + b + c;
                }
            }
        }
        let eps = self.eps;
        let en = &self.embed_norm;
        threads.rows(&mut x, h, |r| {
            kernels::layer_norm(r, &en.gamma, &en.beta, eps)
        });

        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut heads_out = vec![0f32; tokens * h];
        let mut ctx = vec![0f32; tokens * h];
        let mut inter = vec![0f32; tokens * self.intermediate];
        for layer in &self.layers {
            linear(&layer.qkv, &x, tokens, &mut qkv, false, threads);
            self.attention(&qkv, offsets, &mut heads_out, threads);
            // heads_out is laid out (sequence, head, token, head_dim); ctx is (token, hidden).
            let dh = h / self.heads;
            for w in offsets.windows(2) {
                let (start, len) = (w[0], w[1] - w[0]);
                for head in 0..self.heads {
                    let src = &heads_out[start * h + head * len * dh..][..len * dh];
                    for (t, chunk) in src.chunks_exact(dh).enumerate() {
                        ctx[(start + t) * h + head * dh..][..dh].copy_from_slice(chunk);
                    }
                }
            }
            // x = LayerNorm(x + ctx Woᵀ + bo)
            linear(&layer.attn_out, &ctx, tokens, &mut x, true, threads);
            let n = &layer.attn_norm;
            threads.rows(&mut x, h, |r| {
                kernels::layer_norm(r, &n.gamma, &n.beta, eps)
            });
            // x = LayerNorm(x + act(x Wiᵀ + bi) Wdᵀ + bd)
            linear(&layer.up, &x, tokens, &mut inter, false, threads);
            let act = self.act;
            threads.rows(&mut inter, self.intermediate, |r| act.apply(r));
            linear(&layer.down, &inter, tokens, &mut x, true, threads);
            let n = &layer.out_norm;
            threads.rows(&mut x, h, |r| {
                kernels::layer_norm(r, &n.gamma, &n.beta, eps)
            });
        }
        x
    }

    /// Scaled dot-product attention of every (sequence, head) over that sequence's tokens.
    /// `qkv` rows are `[q | k | v]`; the result for (sequence s, head j) fills the
    /// `len(s) × head_dim` block at `offsets[s]·hidden + j·len(s)·head_dim` of `out`.
    fn attention(&self, qkv: &[f32], offsets: &[usize], out: &mut [f32], threads: &Threads) {
        let h = self.hidden;
        let dh = h / self.heads;
        let mut blocks: Vec<(usize, usize, usize, &mut [f32])> = Vec::new();
        let mut rest = out;
        for w in offsets.windows(2) {
            let (start, len) = (w[0], w[1] - w[0]);
            for head in 0..self.heads {
                let (block, tail) = std::mem::take(&mut rest).split_at_mut(len * dh);
                blocks.push((start, len, head, block));
                rest = tail;
            }
        }
        let one = |(start, len, head, block): (usize, usize, usize, &mut [f32])| {
            // Scores S = Q Kᵀ (len × len), softmax per row, then O = S V (len × head_dim):
            // two small GEMMs reading Q, K and V in place from the packed `qkv` rows.
            let row_stride = 3 * h as isize;
            let base = start * 3 * h + head * dh;
            let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
            debug_assert!(q.len() >= (len - 1) * 3 * h + dh && v.len() >= (len - 1) * 3 * h + dh);
            let mut scores = vec![0f32; len * len];
            // SAFETY: `scores` is len × len (row-major, allocated above). Q and K are read
            // as len × dh matrices with row stride 3·hidden and column stride 1 starting at
            // their offsets in `qkv`, whose rows `start..start + len` exist (offsets come
            // from the packed sequence lengths); Kᵀ is K read with swapped strides. Nothing
            // aliases `scores`, a fresh allocation.
            unsafe {
                gemm(
                    len,
                    len,
                    dh,
                    scores.as_mut_ptr(),
                    1,
                    len as isize,
                    false,
                    q.as_ptr(),
                    1,
                    row_stride,
                    k.as_ptr(),
                    row_stride,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            for row in scores.chunks_exact_mut(len) {
                kernels::softmax(row);
            }
            // SAFETY: `block` is len × dh (row-major; split to exactly len·dh above),
            // `scores` is len × len, and V is read as len × dh with row stride 3·hidden
            // from rows that exist (as for Q and K). `block` is a unique borrow that does
            // not overlap `qkv` or `scores`.
            unsafe {
                gemm(
                    len,
                    dh,
                    len,
                    block.as_mut_ptr(),
                    1,
                    dh as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    len as isize,
                    v.as_ptr(),
                    1,
                    row_stride,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        };
        if threads.count() > 1 {
            blocks.into_par_iter().for_each(one);
        } else {
            blocks.into_iter().for_each(one);
        }
    }
}

/// `dst = x Wᵀ + b` (or `dst += x Wᵀ + b` when `accumulate`) for `rows` rows of `x`.
fn linear(
    l: &Linear,
    x: &[f32],
    rows: usize,
    dst: &mut [f32],
    accumulate: bool,
    threads: &Threads,
) {
    let dst = &mut dst[..rows * l.n_out];
    let x = &x[..rows * l.n_in];
    for row in dst.chunks_exact_mut(l.n_out) {
        if accumulate {
            row.iter_mut().zip(&l.bias).for_each(|(d, b)| *d += b);
        } else {
            row.copy_from_slice(&l.bias);
        }
    }
    if rows == 0 {
        return;
    }
    if threads.count() > 1 && rows < SMALL_ROWS && l.n_out >= 2 * MIN_COLUMNS {
        // Few rows (short inputs): the product is split by output columns over the
        // threads, each running a single-threaded GEMM on its own column range.
        let parts = threads.count().min(l.n_out / MIN_COLUMNS);
        let width = l.n_out.div_ceil(parts);
        let out = SendPtr(dst.as_mut_ptr());
        let out = &out;
        (0..parts).into_par_iter().for_each(|p| {
            let c0 = p * width;
            let cols = width.min(l.n_out - c0);
            // SAFETY: `out` points at `dst`, rows × n_out as checked above; parts write
            // disjoint column ranges c0..c0 + cols ≤ n_out, so no element is written by two
            // threads.
            unsafe { product_columns(l, x, rows, out.0, c0, cols, Parallelism::None) };
        });
        return;
    }
    // SAFETY: `dst` is rows × n_out (checked by the slice above) and a unique borrow.
    unsafe {
        product_columns(l, x, rows, dst.as_mut_ptr(), 0, l.n_out, threads.gemm_par());
    }
}

/// Accumulates columns `c0..c0 + cols` of `x · weightᵀ` onto the same columns of `dst`.
///
/// # Safety
/// `dst` must point at a rows × n_out row-major matrix that nothing else reads or writes
/// in those columns during the call, and `c0 + cols ≤ n_out`. `x` is rows × n_in row-major
/// (its length is checked by the caller's slice) and `weight` n_out × n_in row-major
/// (checked at load), read as its transpose through the strides (column stride n_in,
/// row stride 1) from row `c0`.
unsafe fn product_columns(
    l: &Linear,
    x: &[f32],
    rows: usize,
    dst: *mut f32,
    c0: usize,
    cols: usize,
    parallelism: Parallelism,
) {
    debug_assert!(c0 + cols <= l.n_out && x.len() >= rows * l.n_in);
    gemm(
        rows,
        cols,
        l.n_in,
        dst.add(c0),
        1,
        l.n_out as isize,
        true,
        x.as_ptr(),
        1,
        l.n_in as isize,
        l.weight.as_ptr().add(c0 * l.n_in),
        l.n_in as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// Below this many rows a product is split by columns over the threads instead of using
/// the GEMM's own threading (which does not pay off on a handful of rows).
const SMALL_ROWS: usize = 128;
/// The fewest output columns one thread takes in a column split.
const MIN_COLUMNS: usize = 64;

/// The output pointer the column-split workers share (each writes its own columns).
struct SendPtr(*mut f32);
// SAFETY: the workers of `linear` write disjoint column ranges through it.
unsafe impl Sync for SendPtr {}
// SAFETY: as above.
unsafe impl Send for SendPtr {}
