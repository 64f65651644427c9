//! Element-wise and row kernels of the BERT encoder: erf-based GELU, exp, softmax and layer
//! normalisation on `f32` slices.
//!
//! Each kernel is written branch-free over a slice so that the compiler turns it into SIMD
//! code for the target CPU; reductions keep `LANES` partial sums for the same reason.
//! `erf` is a rational approximation (absolute error below 5e-7 against libm) and `exp`
//! a range-reduced polynomial (relative error below 3e-7), far inside what sentence
//! embeddings need.

/// Partial sums kept by the reductions (one AVX-512 register of `f32`).
const LANES: usize = 16;

/// Numerator coefficients of the rational erf approximation, in `x²`, highest degree first.
const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];

/// Denominator coefficients of the rational erf approximation, in `x²`, highest degree first.
const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// The error function (absolute error below 5e-7 for every input, including ±∞).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    // Beyond |x| = 4, erf is ±1 to within 2e-8.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ERF_P[0];
    for c in &ERF_P[1..] {
        p = p * x2 + *c;
    }
    let mut q = ERF_Q[0];
    for c in &ERF_Q[1..] {
        q = q * x2 + *c;
    }
    x * p / q
}

/// Exact (erf) GELU in place: `x · (1 + erf(x / √2)) / 2`, as BERT's `hidden_act = "gelu"`.
pub(crate) fn gelu_erf(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Tanh-approximated GELU in place (`gelu_new`, `gelu_pytorch_tanh`).
pub(crate) fn gelu_tanh(xs: &mut [f32]) {
    const C: f32 = 0.797_884_6; // √(2/π)
    for x in xs.iter_mut() {
        let u = C * (*x + 0.044_715 * *x * *x * *x);
        // tanh(u) = 1 - 2 / (exp(2u) + 1)
        let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *x = 0.5 * *x * (1.0 + t);
    }
}

/// ReLU in place.
pub(crate) fn relu(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = x.max(0.0);
    }
}

/// `e^x` for `f32` (relative error below 3e-7; inputs below -87 give about 1.6e-38,
/// inputs above 88 saturate at about 1.65e38).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and the rest.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2^23 trick (plain arithmetic, vectorises on any x86-64).
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on |r| <= ln2/2 by its Taylor polynomial to degree 7.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// The sum of `xs`, with `LANES` partial sums.
#[inline]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += *x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Softmax of `row` in place (numerically stable: the maximum is subtracted first).
pub(crate) fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// Layer normalisation of `row` in place: `(x - mean) / sqrt(var + eps) · gamma + beta`
/// (biased variance, as PyTorch's `LayerNorm`). `gamma` and `beta` have `row`'s length.
pub(crate) fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    for x in row.iter_mut() {
        *x -= mean;
    }
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += *x * *x;
        }
    }
    let var = (acc.iter().sum::<f32>() + chunks.remainder().iter().map(|x| x * x).sum::<f32>()) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = *x * inv * *g + *b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| lo + (hi - lo) * i as f32 / n as f32)
            .collect()
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f64;
        for x in grid(-10.0, 10.0, 200_000) {
            let got = erf(x) as f64;
            let want = libm::erf(x as f64);
            worst = worst.max((got - want).abs());
        }
        assert!(worst < 5e-7, "max |erf - libm::erf| = {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert!((erf(f32::INFINITY) - 1.0).abs() < 5e-7);
        assert!((erf(f32::NEG_INFINITY) + 1.0).abs() < 5e-7);
        assert!(erf(-0.3) < 0.0 && erf(0.3) > 0.0);
    }

    #[test]
    fn gelu_erf_matches_the_libm_formula() {
        let xs = grid(-12.0, 12.0, 50_000);
        let mut got = xs.clone();
        gelu_erf(&mut got);
        for (x, g) in xs.iter().zip(&got) {
            let x = *x as f64;
            let want = 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let tol = 5e-7 * x.abs().max(1.0);
            assert!(
                (*g as f64 - want).abs() < tol,
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_tanh_matches_the_formula_and_relu_clips() {
        let xs = grid(-8.0, 8.0, 10_000);
        let mut got = xs.clone();
        gelu_tanh(&mut got);
        for (x, g) in xs.iter().zip(&got) {
            let x = *x as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let want = 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (*g as f64 - want).abs() < 1e-6,
                "gelu_tanh({x}) = {g}, want {want}"
            );
        }
        let mut r = vec![-1.5, 0.0, 2.5];
        relu(&mut r);
        assert_eq!(r, vec![0.0, 0.0, 2.5]);
    }

    #[test]
    fn exp_matches_libm() {
        for x in grid(-87.0, 88.0, 200_000) {
            let got = exp(x) as f64;
            let want = libm::exp(x as f64);
            let rel = ((got - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {got}, want {want} (rel {rel})");
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 20.0).collect();
        let orig = row.clone();
        softmax(&mut row);
        let total: f64 = row.iter().map(|&x| x as f64).sum();
        assert!((total - 1.0).abs() < 1e-6);
        let max = orig.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = orig.iter().map(|&x| (x as f64 - max).exp()).sum();
        for (o, p) in orig.iter().zip(&row) {
            let want = (*o as f64 - max).exp() / z;
            assert!((*p as f64 - want).abs() < 1e-6 * want.max(1e-3));
        }
        // Large values do not overflow.
        let mut big = vec![1e4f32, 1e4 - 1.0, -1e4];
        softmax(&mut big);
        assert!(big.iter().all(|x| x.is_finite()));
        assert!(big[0] > big[1] && big[1] > big[2]);
    }

    #[test]
    fn layer_norm_matches_a_double_precision_reference() {
        for n in [1usize, 7, 16, 384, 1000] {
            let row: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos() * 3.0 + 1.5).collect();
            let gamma: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 0.001).collect();
            let beta: Vec<f32> = (0..n).map(|i| i as f32 * -0.002).collect();
            let mut got = row.clone();
            layer_norm(&mut got, &gamma, &beta, 1e-12);
            let mean = row.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = (row[i] as f64 - mean) / (var + 1e-12).sqrt() * gamma[i] as f64
                    + beta[i] as f64;
                assert!((got[i] as f64 - want).abs() < 1e-4, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn sum_matches_a_plain_loop() {
        for n in [0usize, 1, 15, 16, 17, 32, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let want_sum: f64 = a.iter().map(|&x| x as f64).sum();
            assert!((sum(&a) as f64 - want_sum).abs() < 1e-4 * want_sum.abs().max(1.0));
        }
    }
}
