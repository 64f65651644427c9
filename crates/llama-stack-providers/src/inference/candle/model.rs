//! The llama-family decoder on candle's quantized kernels, with a preallocated KV cache that
//! can be cut back to a prefix (so a new turn of the same conversation reuses it).
//!
//! Written here rather than using `candle_transformers::models::quantized_llama` because that
//! model grows its cache with `Tensor::cat` every step, cannot truncate it, caps positions at
//! 4096 and takes no load options (requantizing Q4_1/Q5 tensors, which have no SIMD dot
//! product in candle on x86, to Q8_0).

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::gguf::GgufInfo;

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
}

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

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    w_gate: QMatMul,
    w_down: QMatMul,
    w_up: QMatMul,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    cache: KvCache,
}

/// A llama-architecture model from a GGUF file.
pub(crate) struct Llama {
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    rope_neox: bool,
    cos: Tensor,
    sin: Tensor,
    context_length: usize,
    device: Device,
}

fn load_tensor<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    device: &Device,
    requantize: bool,
) -> candle_core::Result<QTensor> {
    let t = ct.tensor(reader, name, device)?;
    let slow = matches!(
        t.dtype(),
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1
    );
    let cols = t.shape().dims().last().copied().unwrap_or(0);
    if requantize && slow && cols % GgmlDType::Q8_0.block_size() == 0 {
        let f = t.dequantize(device)?;
        return QTensor::quantize(&f, GgmlDType::Q8_0);
    }
    Ok(t)
}

fn matmul<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    device: &Device,
    requantize: bool,
) -> candle_core::Result<QMatMul> {
    QMatMul::from_qtensor(load_tensor(ct, reader, name, device, requantize)?)
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
        let rq = opts.requantize;
        let emb_q = ct.tensor(reader, "token_embd.weight", &device)?;
        let embeddings = emb_q.dequantize(&device)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            matmul(ct, reader, "output.weight", &device, rq)?
        } else if rq
            && matches!(
                emb_q.dtype(),
                GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
            )
        {
            QMatMul::from_qtensor(QTensor::quantize(&embeddings, GgmlDType::Q8_0)?)?
        } else {
            QMatMul::from_qtensor(emb_q)?
        };
        let norm = ct
            .tensor(reader, "output_norm.weight", &device)?
            .dequantize(&device)?;
        let mut layers = Vec::with_capacity(hp.block_count);
        for i in 0..hp.block_count {
            let p = format!("blk.{i}");
            layers.push(Layer {
                wq: matmul(ct, reader, &format!("{p}.attn_q.weight"), &device, rq)?,
                wk: matmul(ct, reader, &format!("{p}.attn_k.weight"), &device, rq)?,
                wv: matmul(ct, reader, &format!("{p}.attn_v.weight"), &device, rq)?,
                wo: matmul(ct, reader, &format!("{p}.attn_output.weight"), &device, rq)?,
                w_gate: matmul(ct, reader, &format!("{p}.ffn_gate.weight"), &device, rq)?,
                w_down: matmul(ct, reader, &format!("{p}.ffn_down.weight"), &device, rq)?,
                w_up: matmul(ct, reader, &format!("{p}.ffn_up.weight"), &device, rq)?,
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
        })
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
        let mut x = self.embeddings.index_select(&ids, 0)?.unsqueeze(0)?;
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
                .forward(&h)?
                .reshape((1, seq, n_head, hd))?
                .transpose(1, 2)?;
            let k = layer
                .wk
                .forward(&h)?
                .reshape((1, seq, n_kv, hd))?
                .transpose(1, 2)?;
            let v = layer
                .wv
                .forward(&h)?
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
            let y = layer.wo.forward(&y)?;
            let x1 = (x + y)?;
            let h = candle_nn::ops::rms_norm(&x1, &layer.ffn_norm, self.eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            let ff = layer.w_down.forward(&(gate * up)?)?;
            x = (x1 + ff)?;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.eps)?;
        self.output.forward(&last)?.flatten_all()
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
