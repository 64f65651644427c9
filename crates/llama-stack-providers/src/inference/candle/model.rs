//! The llama-family decoder on candle's quantized kernels, with a preallocated KV cache that
//! can be cut back to a prefix (so a new turn of the same conversation reuses it).
//!
//! Written here rather than using `candle_transformers::models::quantized_llama` because that
//! model grows its cache with `Tensor::cat` every step, cannot truncate it, caps positions at
//! 4096 and takes no load options (requantizing Q5 tensors, which have no SIMD dot product in
//! candle on x86, to Q8_0; dense F16/F32 copies of the weights for prompts).
//!
//! Each weight matrix serves one-token steps from 4-bit weights on our own kernel
//! ([`super::matvec`], Q4_0/Q4_1) or from candle's quantized matrix, and batches of at least
//! [`DENSE_MIN_TOKENS`] tokens from its dense copy with a GEMM (candle has no quantized GEMM;
//! the dense path processes prompts 1.6× faster than its Q8_0 dot products here).

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::gguf::GgufInfo;
use super::matvec::{Kernel, Q4Matrix, QVector};
use super::PrefillWeights;

/// A causal language model the generation loop drives.
pub(crate) trait CausalLm: Send {
    /// Runs `tokens` at positions `pos..` (the cache must hold exactly `pos` tokens) and
    /// returns the logits after the last one.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>>;
    /// Cuts the KV cache back to its first `len` positions.
    fn truncate_cache(&mut self, len: usize);
    /// The number of positions the model supports.
    fn context_length(&self) -> usize;
}

/// Load options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadOptions {
    /// Requantize Q4_1/Q5_0/Q5_1 weights to Q8_0 (fast SIMD dot products on x86).
    pub(crate) requantize: bool,
    /// Context length to use (≤ the model's).
    pub(crate) context_length: usize,
    /// Dense copies of the layer matrices for multi-token forward passes.
    pub(crate) prefill: PrefillWeights,
    /// Run one-token steps of Q4_0/Q4_1 matrices with our own 4-bit kernel (else candle's).
    pub(crate) native_q4: bool,
}

/// Forward passes over at least this many new tokens use the dense weight copies (below it
/// the quantized dot products are faster).
pub(crate) const DENSE_MIN_TOKENS: usize = 16;

/// Tokens per forward pass while processing a prompt.
const PREFILL_CHUNK: usize = 256;
/// Initial KV cache capacity (grows by doubling up to the context length).
const INITIAL_CACHE: usize = 512;

struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    fn new() -> Self {
        KvCache {
            k: None,
            v: None,
            len: 0,
            capacity: 0,
        }
    }

    /// Appends `k`/`v` of shape (1, kv_heads, n, head_dim) and returns views of the whole
    /// cache (1, kv_heads, len, head_dim).
    fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        max: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let needed = self.len + n;
        if needed > self.capacity || self.k.is_none() {
            let mut capacity = self.capacity.max(INITIAL_CACHE);
            while capacity < needed {
                capacity *= 2;
            }
            let capacity = capacity.min(max.max(needed));
            let (b, h, _, d) = k.dims4()?;
            let nk = Tensor::zeros((b, h, capacity, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, capacity, d), v.dtype(), v.device())?;
            if let (Some(ok), Some(ov)) = (&self.k, &self.v) {
                if self.len > 0 {
                    nk.slice_set(&ok.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    nv.slice_set(&ov.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            self.k = Some(nk);
            self.v = Some(nv);
            self.capacity = capacity;
        }
        let (Some(ck), Some(cv)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache not allocated");
        };
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((ck.narrow(2, 0, needed)?, cv.narrow(2, 0, needed)?))
    }
}

/// A weight matrix in up to three forms: 4-bit weights repacked for our own one-token kernel,
/// candle's quantized matrix (when the former cannot serve every batch size), and a dense
/// copy for batches of tokens.
struct Linear {
    q4: Option<Q4Matrix>,
    quantized: Option<QMatMul>,
    dense: Option<QMatMul>,
    kernel: Kernel,
}

impl Linear {
    /// `x · Wᵀ` for `x` of shape (.., in); `dense` asks for the dense copy (when there is one).
    fn forward(&self, x: &Tensor, dense: bool) -> candle_core::Result<Tensor> {
        let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
        if let (true, Some(d)) = (dense, &self.dense) {
            return d.forward(x);
        }
        match (&self.q4, &self.quantized) {
            (Some(q4), None) => self.forward_q4(q4, x),
            (Some(q4), Some(_)) if rows == 1 => self.forward_q4(q4, x),
            (_, Some(q)) => q.forward(x),
            (None, None) => match &self.dense {
                Some(d) => d.forward(x),
                None => candle_core::bail!("a weight matrix has no usable form"),
            },
        }
    }

    fn forward_q4(&self, q4: &Q4Matrix, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let cols = q4.cols();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        if cols == 0 || !xs.len().is_multiple_of(cols) {
            candle_core::bail!(
                "input of {} values for a matrix of {cols} columns",
                xs.len()
            );
        }
        let n = q4.rows();
        let mut out = vec![0f32; xs.len() / cols * n];
        let mut qv = QVector::new();
        for (row, o) in xs.chunks_exact(cols).zip(out.chunks_exact_mut(n)) {
            qv.quantize(row);
            q4.matvec(&qv, o, self.kernel);
        }
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        Tensor::from_vec(out, dims, x.device())
    }
}

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    w_gate: Linear,
    w_down: Linear,
    w_up: Linear,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    cache: KvCache,
}

/// A llama-architecture model from a GGUF file.
pub(crate) struct Llama {
    /// The token embeddings as stored in the file (rows are dequantized on lookup).
    embeddings: QTensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    rope_neox: bool,
    cos: Tensor,
    sin: Tensor,
    context_length: usize,
    device: Device,
    /// Forward passes over at least this many tokens use the dense weights.
    dense_min_tokens: usize,
}

/// Whether candle has no SIMD dot product for `dtype` on x86.
fn slow_dtype(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1
    )
}

/// candle's quantized matrix for `t`, requantized to Q8_0 when `requantize` and its
/// format is slow, from `t` (or its dequantized values `f` when already computed).
fn quantized(t: QTensor, f: Option<&Tensor>, requantize: bool) -> candle_core::Result<QMatMul> {
    let cols = t.shape().dims().last().copied().unwrap_or(0);
    if requantize && slow_dtype(t.dtype()) && cols.is_multiple_of(GgmlDType::Q8_0.block_size()) {
        let q = match f {
            Some(f) => QTensor::quantize(f, GgmlDType::Q8_0)?,
            None => QTensor::quantize(&t.dequantize(&t.device())?, GgmlDType::Q8_0)?,
        };
        return QMatMul::from_qtensor(q);
    }
    QMatMul::from_qtensor(t)
}

/// Builds the forms of weight matrix `t` the options ask for; `with_dense`: whether a dense
/// copy may serve batches of tokens.
fn linear(t: QTensor, opts: LoadOptions, with_dense: bool) -> candle_core::Result<Linear> {
    let kernel = Kernel::detect();
    let q4 = if opts.native_q4 {
        Q4Matrix::from_qtensor(&t)?
    } else {
        None
    };
    let quantizable = !matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
    if !quantizable || !with_dense || opts.prefill == PrefillWeights::Quantized {
        // candle's matrix serves batches; the 4-bit one single tokens. The output head only
        // ever sees single tokens.
        let quantized = if q4.is_some() && !with_dense {
            None
        } else {
            Some(quantized(t, None, opts.requantize)?)
        };
        return Ok(Linear {
            q4,
            quantized,
            dense: None,
            kernel,
        });
    }
    // The dense copy holds the file's values exactly (not the requantized ones).
    let f = t.dequantize(&t.device())?;
    let dense = match opts.prefill {
        PrefillWeights::F32 => QMatMul::Tensor(f.clone()),
        _ => QMatMul::TensorF16(f.to_dtype(DType::F16)?),
    };
    let quantized = if q4.is_some() {
        None
    } else {
        Some(quantized(t, Some(&f), opts.requantize)?)
    };
    Ok(Linear {
        q4,
        quantized,
        dense: Some(dense),
        kernel,
    })
}

impl Llama {
    /// Loads the weights described by `info` from `reader`.
    pub(crate) fn load<R: Read + Seek>(
        info: &GgufInfo,
        reader: &mut R,
        opts: LoadOptions,
    ) -> candle_core::Result<Self> {
        let device = Device::Cpu;
        let ct = &info.content;
        let hp = &info.hparams;
        let embeddings = ct.tensor(reader, "token_embd.weight", &device)?;
        // The output head (only ever applied to one token): its own matrix or the tied
        // embeddings.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            ct.tensor(reader, "output.weight", &device)?
        } else {
            ct.tensor(reader, "token_embd.weight", &device)?
        };
        let output = linear(output, opts, false)?;
        let norm = ct
            .tensor(reader, "output_norm.weight", &device)?
            .dequantize(&device)?;
        let mut layers = Vec::with_capacity(hp.block_count);
        for i in 0..hp.block_count {
            let p = format!("blk.{i}");
            layers.push(Layer {
                wq: linear(
                    ct.tensor(reader, &format!("{p}.attn_q.weight"), &device)?,
                    opts,
                    true,
                )?,
                wk: linear(
                    ct.tensor(reader, &format!("{p}.attn_k.weight"), &device)?,
                    opts,
                    true,
                )?,
                wv: linear(
                    ct.tensor(reader, &format!("{p}.attn_v.weight"), &device)?,
                    opts,
                    true,
                )?,
                wo: linear(
                    ct.tensor(reader, &format!("{p}.attn_output.weight"), &device)?,
                    opts,
                    true,
                )?,
                w_gate: linear(
                    ct.tensor(reader, &format!("{p}.ffn_gate.weight"), &device)?,
                    opts,
                    true,
                )?,
                w_down: linear(
                    ct.tensor(reader, &format!("{p}.ffn_down.weight"), &device)?,
                    opts,
                    true,
                )?,
                w_up: linear(
                    ct.tensor(reader, &format!("{p}.ffn_up.weight"), &device)?,
                    opts,
                    true,
                )?,
                attn_norm: ct
                    .tensor(reader, &format!("{p}.attn_norm.weight"), &device)?
                    .dequantize(&device)?,
                ffn_norm: ct
                    .tensor(reader, &format!("{p}.ffn_norm.weight"), &device)?
                    .dequantize(&device)?,
                cache: KvCache::new(),
            });
        }
        let head_dim = hp.embedding_length / hp.head_count;
        let rope_dim = hp.rope_dimension.unwrap_or(head_dim);
        let context_length = opts.context_length;
        let theta: Vec<f32> = (0..rope_dim)
            .step_by(2)
            .map(|i| 1f32 / hp.rope_freq_base.powf(i as f32 / rope_dim as f32))
            .collect();
        let theta = Tensor::new(theta.as_slice(), &device)?;
        let idx = Tensor::arange(0, context_length as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((context_length, 1))?;
        let freqs = idx.matmul(&theta.reshape((1, ()))?)?;
        Ok(Llama {
            embeddings,
            layers,
            norm,
            output,
            n_head: hp.head_count,
            n_kv_head: hp.head_count_kv,
            head_dim,
            eps: hp.rms_eps,
            rope_neox: hp.rope_neox,
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            context_length,
            device,
            dense_min_tokens: DENSE_MIN_TOKENS,
        })
    }

    /// Sets the number of new tokens from which forward passes use the dense weights
    /// (`usize::MAX`: never).
    #[cfg(test)]
    pub(crate) fn set_dense_min_tokens(&mut self, n: usize) {
        self.dense_min_tokens = n;
    }

    fn rope(&self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let x = x.contiguous()?;
        if self.rope_neox {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        }
    }

    fn forward_chunk(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let seq = tokens.len();
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.embedding(&ids)?.unsqueeze(0)?;
        let dense = seq >= self.dense_min_tokens;
        let (n_head, n_kv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let n_rep = n_head / n_kv;
        let kv_len = pos + seq;
        // Causal mask over (n_rep * seq) query rows grouped by kv head: row r*seq + i is query
        // position pos + i.
        let mask = if seq > 1 {
            let mut m = Vec::with_capacity(n_rep * seq * kv_len);
            for _ in 0..n_rep {
                for i in 0..seq {
                    for j in 0..kv_len {
                        m.push(if j > pos + i { f32::NEG_INFINITY } else { 0.0 });
                    }
                }
            }
            Some(Tensor::from_vec(m, (n_rep * seq, kv_len), &self.device)?)
        } else {
            None
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let ctx = self.context_length;
        for li in 0..self.layers.len() {
            let h = candle_nn::ops::rms_norm(&x, &self.layers[li].attn_norm, self.eps)?;
            let layer = &self.layers[li];
            let q = layer
                .wq
                .forward(&h, dense)?
                .reshape((1, seq, n_head, hd))?
                .transpose(1, 2)?;
            let k = layer
                .wk
                .forward(&h, dense)?
                .reshape((1, seq, n_kv, hd))?
                .transpose(1, 2)?;
            let v = layer
                .wv
                .forward(&h, dense)?
                .reshape((1, seq, n_kv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = self.rope(&q, pos)?;
            let k = self.rope(&k, pos)?;
            let (k, v) = self.layers[li].cache.append(&k, &v, ctx)?;
            // Grouped-query attention without copying K/V: fold the heads that share a kv
            // head into the query rows.
            let q = q.reshape((1, n_kv, n_rep * seq, hd))?;
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?; // (1, n_kv, n_rep*seq, hd)
            let y =
                y.reshape((1, n_head, seq, hd))?
                    .transpose(1, 2)?
                    .reshape((1, seq, n_head * hd))?;
            let layer = &self.layers[li];
            let y = layer.wo.forward(&y, dense)?;
            let x1 = (x + y)?;
            let h = candle_nn::ops::rms_norm(&x1, &layer.ffn_norm, self.eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h, dense)?)?;
            let up = layer.w_up.forward(&h, dense)?;
            let ff = layer.w_down.forward(&(gate * up)?, dense)?;
            x = (x1 + ff)?;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.eps)?;
        self.output.forward(&last, false)?.flatten_all()
    }
}

impl CausalLm for Llama {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        if tokens.is_empty() {
            candle_core::bail!("forward needs at least one token");
        }
        if pos + tokens.len() > self.context_length {
            candle_core::bail!(
                "{} tokens exceed the context length {}",
                pos + tokens.len(),
                self.context_length
            );
        }
        self.truncate_cache(pos);
        let mut logits = None;
        let mut at = pos;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            logits = Some(self.forward_chunk(chunk, at)?);
            at += chunk.len();
        }
        match logits {
            Some(l) => l.to_dtype(DType::F32)?.to_vec1::<f32>(),
            None => candle_core::bail!("no logits"),
        }
    }

    fn truncate_cache(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.cache.len = layer.cache.len.min(len);
        }
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// Index of the largest value (ties: the first).
pub(crate) fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in xs.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best
}
