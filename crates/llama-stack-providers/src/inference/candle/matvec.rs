//! Matrix × vector products for 4-bit weights, used for one-token (decode) steps.
//!
//! Weights are GGUF Q4_1 blocks of 32 (`w = d·q + m`, `q` in 0..=15; Q4_0 maps onto this with
//! `m = -8·d`), repacked at load so that the 32 bytes of a pair of blocks hold the first block
//! in their low nibbles and the second in their high nibbles. The vector is quantized to 8
//! bits per block of 32 (`y = dy·p`), so a block's dot product is
//! `d·dy·Σ q·p + m·dy·Σ p`: integer multiply-adds (AVX-512 VNNI `vpdpbusd`, else AVX2
//! `vpmaddubsw`, else scalar) and one scale per block. candle has no SIMD Q4_1 kernel on x86
//! and requantizing to Q8_0 costs 70 % more memory traffic than these 4-bit weights.

use candle_core::quantized::{GgmlDType, QTensor};

/// Elements per quantization block.
pub(crate) const BLOCK: usize = 32;
/// Elements per pair of blocks (the unit of the packed layout).
const PAIR: usize = 2 * BLOCK;

/// A vector quantized to 8 bits per block of 32.
pub(crate) struct QVector {
    /// The quantized values.
    q: Vec<i8>,
    /// Scale of each block.
    d: Vec<f32>,
    /// Each block's scale repeated over the 8 lanes of its half of a 16-lane vector.
    d_lanes: Vec<f32>,
    /// `d · Σ q` of each block.
    sums: Vec<f32>,
}

impl QVector {
    /// An empty vector (buffers are reused by [`QVector::quantize`]).
    pub(crate) fn new() -> Self {
        QVector {
            q: Vec::new(),
            d: Vec::new(),
            d_lanes: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// Quantizes `x` (its length a multiple of 64).
    pub(crate) fn quantize(&mut self, x: &[f32]) {
        let blocks = x.len() / BLOCK;
        self.q.resize(x.len(), 0);
        self.d.resize(blocks, 0.0);
        self.sums.resize(blocks, 0.0);
        self.d_lanes.resize(blocks * 8, 0.0);
        for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
            let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in self.q[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(chunk) {
                let r = (v * inv).round() as i8;
                *q = r;
                sum += i32::from(r);
            }
            self.d[b] = d;
            self.sums[b] = d * sum as f32;
            self.d_lanes[b * 8..(b + 1) * 8].fill(d);
        }
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }
}

/// A matrix of 4-bit weights in the packed layout (see the module docs).
pub(crate) struct Q4Matrix {
    rows: usize,
    cols: usize,
    /// `cols / 2` bytes per row.
    qs: Vec<u8>,
    /// Per row and block: the scale.
    d: Vec<f32>,
    /// Per row and block: the minimum.
    m: Vec<f32>,
}

/// Which kernel the CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// AVX-512 with VNNI.
    Avx512Vnni,
    /// AVX2.
    Avx2,
    /// Portable Rust.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Kernel::Avx512Vnni;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }
}

/// The little-endian IEEE half-precision number at `bytes[at..at + 2]`.
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => sign * man as f32 * (-24f32).exp2(),
        31 => f32::from_bits((u32::from(h & 0x8000) << 16) | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits((u32::from(h & 0x8000) << 16) | ((exp + 112) << 23) | (man << 13)),
    }
}

impl Q4Matrix {
    /// Repacks a 2-D Q4_0 or Q4_1 tensor whose rows are a multiple of 64 long; `None` for
    /// other tensors.
    pub(crate) fn from_qtensor(t: &QTensor) -> candle_core::Result<Option<Self>> {
        let (rows, cols) = match t.shape().dims() {
            [r, c] => (*r, *c),
            _ => return Ok(None),
        };
        let (block_bytes, has_min) = match t.dtype() {
            GgmlDType::Q4_0 => (18, false),
            GgmlDType::Q4_1 => (20, true),
            _ => return Ok(None),
        };
        if !cols.is_multiple_of(PAIR) || rows == 0 {
            return Ok(None);
        }
        let data = t.data()?;
        let blocks = cols / BLOCK;
        if data.len() != rows * blocks * block_bytes {
            candle_core::bail!(
                "{:?} tensor of shape ({rows}, {cols}) has {} bytes",
                t.dtype(),
                data.len()
            );
        }
        let mut qs = vec![0u8; rows * cols / 2];
        let mut d = vec![0f32; rows * blocks];
        let mut m = vec![0f32; rows * blocks];
        // The 32 values of a block in order.
        let mut vals = [[0u8; BLOCK]; 2];
        for r in 0..rows {
            for pair in 0..blocks / 2 {
                for (half, v) in vals.iter_mut().enumerate() {
                    let b = r * blocks + pair * 2 + half;
                    let raw = &data[b * block_bytes..(b + 1) * block_bytes];
                    let scale = f16_at(raw, 0);
                    let (min, nibbles) = if has_min {
                        (f16_at(raw, 2), &raw[4..20])
                    } else {
                        (-8.0 * scale, &raw[2..18])
                    };
                    d[b] = scale;
                    m[b] = min;
                    // GGUF: element j in the low nibble of byte j, element j + 16 in its high
                    // nibble.
                    for (j, &byte) in nibbles.iter().enumerate() {
                        v[j] = byte & 0x0f;
                        v[j + 16] = byte >> 4;
                    }
                }
                let out = &mut qs[r * cols / 2 + pair * BLOCK..r * cols / 2 + (pair + 1) * BLOCK];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = vals[0][i] | (vals[1][i] << 4);
                }
            }
        }
        Ok(Some(Q4Matrix {
            rows,
            cols,
            qs,
            d,
            m,
        }))
    }

    /// The number of rows (outputs).
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns (inputs).
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// `out = self · x`, spread over candle's CPU thread pool.
    pub(crate) fn matvec(&self, x: &QVector, out: &mut [f32], kernel: Kernel) {
        debug_assert_eq!(x.len(), self.cols);
        debug_assert_eq!(out.len(), self.rows);
        const ROWS_PER_ITEM: usize = 16;
        let items = self.rows.div_ceil(ROWS_PER_ITEM);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let out_len = out.len();
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let start = range.start * ROWS_PER_ITEM;
            let end = (range.end * ROWS_PER_ITEM).min(self.rows);
            let ptr = &out_ptr;
            // SAFETY: the pool hands out disjoint item ranges, so each row range is written
            // by one thread only, and `start..end` lies within `out` (end ≤ rows = out_len).
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start), end - start) };
            debug_assert!(end <= out_len);
            self.rows_into(start, x, dst, kernel);
        });
    }

    /// Rows `start..start + dst.len()` of the product.
    pub(crate) fn rows_into(&self, start: usize, x: &QVector, dst: &mut [f32], kernel: Kernel) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::detect` only returns these variants when the CPU has the
            // features the functions are compiled for.
            Kernel::Avx512Vnni => unsafe { x86::rows_avx512(self, start, x, dst) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { x86::rows_avx2(self, start, x, dst) },
            _ => {
                for (i, o) in dst.iter_mut().enumerate() {
                    *o = self.row_scalar(start + i, x);
                }
            }
        }
    }

    /// One row's dot product with `x`, in portable Rust.
    fn row_scalar(&self, r: usize, x: &QVector) -> f32 {
        let blocks = self.cols / BLOCK;
        let qs = &self.qs[r * self.cols / 2..(r + 1) * self.cols / 2];
        let mut acc = 0f32;
        for pair in 0..blocks / 2 {
            let bytes = &qs[pair * BLOCK..(pair + 1) * BLOCK];
            for half in 0..2 {
                let b = pair * 2 + half;
                let y = &x.q[b * BLOCK..(b + 1) * BLOCK];
                let shift = 4 * half as u32;
                let dot: i32 = bytes
                    .iter()
                    .zip(y)
                    .map(|(&w, &p)| i32::from((w >> shift) & 0x0f) * i32::from(p))
                    .sum();
                let rb = r * blocks + b;
                acc += self.d[rb] * x.d[b] * dot as f32 + self.m[rb] * x.sums[b];
            }
        }
        acc
    }
}

/// A pointer the thread pool's workers may share (each writes its own disjoint rows).
struct SendPtr(*mut f32);
// SAFETY: see `Q4Matrix::matvec`: concurrent writers never touch the same element.
unsafe impl Sync for SendPtr {}
// SAFETY: as above.
unsafe impl Send for SendPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Q4Matrix, QVector, BLOCK, PAIR};

    /// Rows `start..start + dst.len()` with AVX-512 VNNI, four rows at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn rows_avx512(m: &Q4Matrix, start: usize, x: &QVector, dst: &mut [f32]) {
        let cols = m.cols;
        let blocks = cols / BLOCK;
        let pairs = cols / PAIR;
        let low = _mm256_set1_epi8(0x0f);
        // Lanes 0-7 take element 0 of a 2-element vector, lanes 8-15 element 1.
        let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut i = 0;
        while i < dst.len() {
            let n = (dst.len() - i).min(4);
            let mut acc = [_mm512_setzero_ps(); 4];
            for p in 0..pairs {
                // SAFETY (all loads): `p < pairs` keeps every offset inside the row of `qs`,
                // `x.q` (cols bytes), `x.d_lanes` (blocks · 8 floats) and the `d` of the row.
                let y = _mm512_loadu_si512(x.q.as_ptr().add(p * PAIR) as *const _);
                let dy = _mm512_loadu_ps(x.d_lanes.as_ptr().add(p * 16));
                for (k, a) in acc.iter_mut().enumerate().take(n) {
                    let r = start + i + k;
                    let v = _mm256_loadu_si256(
                        m.qs.as_ptr().add(r * cols / 2 + p * BLOCK) as *const __m256i
                    );
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    let w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, y);
                    let dpair = _mm_castpd_ps(_mm_load_sd(
                        m.d.as_ptr().add(r * blocks + p * 2) as *const f64
                    ));
                    let dw = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(dpair));
                    *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, dy), *a);
                }
            }
            for (k, a) in acc.iter().enumerate().take(n) {
                let r = start + i + k;
                dst[i + k] = _mm512_reduce_add_ps(*a) + min_term(m, r, x);
            }
            i += n;
        }
    }

    /// Rows `start..start + dst.len()` with AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2(m: &Q4Matrix, start: usize, x: &QVector, dst: &mut [f32]) {
        let cols = m.cols;
        let blocks = cols / BLOCK;
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        for (i, o) in dst.iter_mut().enumerate() {
            let r = start + i;
            let mut acc = _mm256_setzero_ps();
            for b in 0..blocks {
                // SAFETY (all loads): `b < blocks` keeps the offsets inside the row and `x`.
                let v = _mm256_loadu_si256(
                    m.qs.as_ptr().add(r * cols / 2 + (b / 2) * BLOCK) as *const __m256i
                );
                let w = if b.is_multiple_of(2) {
                    _mm256_and_si256(v, low)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16(v, 4), low)
                };
                let y = _mm256_loadu_si256(x.q.as_ptr().add(b * BLOCK) as *const __m256i);
                // u8 · i8 pairs summed to i16 (at most 2·15·128: no saturation), then to i32.
                let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), ones);
                let s = _mm256_set1_ps(*m.d.get_unchecked(r * blocks + b) * *x.d.get_unchecked(b));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, acc);
            }
            let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
            *o = _mm_cvtss_f32(h) + min_term(m, r, x);
        }
    }

    /// `Σ m·dy·Σp` over the blocks of row `r`.
    fn min_term(m: &Q4Matrix, r: usize, x: &QVector) -> f32 {
        let blocks = m.cols / BLOCK;
        m.m[r * blocks..(r + 1) * blocks]
            .iter()
            .zip(&x.sums)
            .map(|(a, b)| a * b)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::{Device, Tensor};

    use super::*;

    /// A deterministic pseudo-random matrix.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn check(dtype: GgmlDType, rows: usize, cols: usize) {
        let w = Tensor::from_vec(values(rows * cols, 7), (rows, cols), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, dtype).unwrap();
        let m = Q4Matrix::from_qtensor(&qt).unwrap().unwrap();
        let xv = values(cols, 11);
        let mut x = QVector::new();
        x.quantize(&xv);
        // Reference: the dequantized weights times the dequantized vector, in f64.
        let wd = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let xd: Vec<f64> = (0..cols)
            .map(|i| f64::from(x.q[i]) * f64::from(x.d[i / BLOCK]))
            .collect();
        let exact: Vec<f64> = wd
            .iter()
            .map(|row| row.iter().zip(&xd).map(|(a, b)| f64::from(*a) * b).sum())
            .collect();
        let scale = exact.iter().fold(0f64, |a, v| a.max(v.abs()));
        let mut kernels = vec![Kernel::Scalar, Kernel::detect()];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx2);
        }
        for kernel in kernels {
            let mut out = vec![0f32; rows];
            m.matvec(&x, &mut out, kernel);
            for (r, (o, e)) in out.iter().zip(&exact).enumerate() {
                // Integer dot products are exact; only f32 rounding of the per-block sums
                // remains (a few ulps of the row's magnitude).
                assert!(
                    (f64::from(*o) - e).abs() <= 1e-5 * scale.max(1.0),
                    "{kernel:?} {dtype:?} row {r}: {o} vs {e}"
                );
            }
        }
    }

    #[test]
    fn kernels_match_the_dequantized_product() {
        check(GgmlDType::Q4_1, 37, 576);
        check(GgmlDType::Q4_1, 64, 1536);
        check(GgmlDType::Q4_0, 19, 128);
    }

    #[test]
    fn quantized_vector_round_trips_within_half_a_step() {
        let xv = values(128, 3);
        let mut x = QVector::new();
        x.quantize(&xv);
        for (i, v) in xv.iter().enumerate() {
            let d = x.d[i / BLOCK];
            assert!((f32::from(x.q[i]) * d - v).abs() <= 0.5 * d + 1e-7);
        }
        let mut zeros = QVector::new();
        zeros.quantize(&[0.0; 64]);
        assert!(zeros.q.iter().all(|&q| q == 0) && zeros.sums.iter().all(|&s| s == 0.0));
    }

    #[test]
    fn other_formats_and_odd_shapes_are_not_repacked() {
        let w = Tensor::from_vec(values(64 * 96, 5), (64, 96), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        assert!(Q4Matrix::from_qtensor(&q).unwrap().is_none());
        let w = Tensor::from_vec(values(64 * 128, 5), (64, 128), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q4Matrix::from_qtensor(&q).unwrap().is_none());
    }
}
