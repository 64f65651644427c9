//! Turning logits into the next token: logit bias, repetition / frequency / presence
//! penalties, temperature, top-k, top-p, min-p, a seeded generator, and log probabilities.

use std::collections::HashMap;

/// Sampling settings of one request, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SamplingParams {
    /// 0 = greedy.
    pub(crate) temperature: f32,
    /// Nucleus mass in (0, 1].
    pub(crate) top_p: f32,
    /// Keep the k most likely (0 = all).
    pub(crate) top_k: usize,
    /// Drop tokens below `min_p × p(max)`.
    pub(crate) min_p: f32,
    /// HF-style multiplicative penalty on tokens already in the context (1 = off).
    pub(crate) repetition_penalty: f32,
    /// OpenAI frequency penalty over generated tokens.
    pub(crate) frequency_penalty: f32,
    /// OpenAI presence penalty over generated tokens.
    pub(crate) presence_penalty: f32,
    /// Token id → additive bias.
    pub(crate) logit_bias: Vec<(u32, f32)>,
    /// Seed of the generator.
    pub(crate) seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

/// SplitMix64: a small, fast, seedable generator (reproducible across platforms).
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A uniform f64 in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Applies bias and penalties to `logits` in place. `context` is every token in the
/// context (prompt and output), `generated` the output so far.
pub(crate) fn apply_penalties(
    logits: &mut [f32],
    params: &SamplingParams,
    context: &[u32],
    generated: &[u32],
) {
    for &(id, bias) in &params.logit_bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += bias;
        }
    }
    if params.repetition_penalty != 1.0 {
        let mut seen = vec![false; logits.len()];
        for &t in context {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        for (l, s) in logits.iter_mut().zip(seen) {
            if s {
                *l = if *l > 0.0 {
                    *l / params.repetition_penalty
                } else {
                    *l * params.repetition_penalty
                };
            }
        }
    }
    if params.frequency_penalty != 0.0 || params.presence_penalty != 0.0 {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in generated {
            *counts.entry(t).or_default() += 1;
        }
        for (t, c) in counts {
            if let Some(l) = logits.get_mut(t as usize) {
                *l -= params.frequency_penalty * c as f32 + params.presence_penalty;
            }
        }
    }
}

/// Log-softmax of `logits`.
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>();
    let lse = max + sum.ln() as f32;
    logits.iter().map(|&l| l - lse).collect()
}

/// Picks the next token from (already penalised and masked) `logits`.
pub(crate) fn sample(logits: &[f32], params: &SamplingParams, rng: &mut Rng) -> u32 {
    if params.temperature <= 0.0 || params.top_k == 1 {
        return super::model::argmax(logits) as u32;
    }
    let t = params.temperature;
    let mut cands: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, l / t))
        .collect();
    if cands.is_empty() {
        return super::model::argmax(logits) as u32;
    }
    cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    if params.top_k > 0 && params.top_k < cands.len() {
        cands.truncate(params.top_k);
    }
    let max = cands[0].1;
    let mut probs: Vec<f64> = cands.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= total;
    }
    let mut keep = probs.len();
    if params.min_p > 0.0 {
        let floor = probs[0] * params.min_p as f64;
        keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
    }
    if params.top_p < 1.0 {
        let mut acc = 0.0;
        let mut n = 0;
        for p in probs.iter().take(keep) {
            acc += p;
            n += 1;
            if acc >= params.top_p as f64 {
                break;
            }
        }
        keep = n.max(1);
    }
    let mass: f64 = probs[..keep].iter().sum();
    let mut r = rng.next_f64() * mass;
    for (i, p) in probs[..keep].iter().enumerate() {
        if r < *p {
            return cands[i].0;
        }
        r -= p;
    }
    cands[keep - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = vec![0.0, 3.0, 1.0, 2.9];
        let greedy = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(sample(&logits, &greedy, &mut Rng::new(1)), 1);
        let p = SamplingParams {
            seed: 7,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut r = Rng::new(7);
            (0..20).map(|_| sample(&logits, &p, &mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::new(7);
            (0..20).map(|_| sample(&logits, &p, &mut r)).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.iter().any(|&t| t != 1),
            "temperature 1 should not be greedy: {a:?}"
        );
    }

    #[test]
    fn top_k_one_and_min_p_restrict() {
        let logits = vec![0.0, 3.0, 1.0, 2.9];
        let k1 = SamplingParams {
            top_k: 2,
            ..Default::default()
        };
        let mut r = Rng::new(3);
        for _ in 0..50 {
            let t = sample(&logits, &k1, &mut r);
            assert!(t == 1 || t == 3);
        }
        let minp = SamplingParams {
            min_p: 0.5,
            ..Default::default()
        };
        for _ in 0..50 {
            let t = sample(&logits, &minp, &mut r);
            assert!(t == 1 || t == 3);
        }
    }

    #[test]
    fn penalties_lower_repeated_tokens() {
        let mut logits = vec![1.0, 1.0, -1.0];
        let p = SamplingParams {
            repetition_penalty: 2.0,
            frequency_penalty: 0.5,
            ..Default::default()
        };
        apply_penalties(&mut logits, &p, &[0, 2], &[0, 0]);
        assert_eq!(logits, vec![1.0 / 2.0 - 1.0, 1.0, -2.0]);
        let lp = log_softmax(&[0.0, 0.0]);
        assert!((lp[0] - (0.5f32).ln()).abs() < 1e-6);
    }
}
