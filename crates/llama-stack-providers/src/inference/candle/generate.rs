//! The generation loop: one worker thread per loaded model runs queued requests one at a
//! time (prefill → sample → decode), reusing the KV cache for the longest common prefix with
//! the previous request, and reports text deltas through a bounded channel. It stops when
//! the request's token limit, an end-of-turn token or a stop sequence is reached, and
//! promptly when the receiver is dropped or the request is cancelled.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use llama_stack_core::api::inference::{FinishReason, TokenLogprob, TopLogprob};
use llama_stack_core::Error;
use tokio::sync::mpsc as tmpsc;
use tokio_util::sync::CancellationToken;

use super::model::CausalLm;
use super::sampler::{self, Rng, SamplingParams};
use super::tokenizer::ModelTokenizer;

/// Restricts which tokens may come next (e.g. to valid JSON of a schema).
pub(crate) trait TokenConstraint: Send {
    /// Sets the logits of tokens that may not come next to -inf.
    fn mask(&mut self, logits: &mut [f32]);
    /// Records that `token` was generated.
    fn advance(&mut self, token: u32);
    /// Whether the output is complete (only end-of-turn may follow).
    fn is_complete(&self) -> bool;
}

/// One generation request.
pub(crate) struct Job {
    /// The prompt's token ids.
    pub(crate) prompt: Vec<u32>,
    /// The most tokens to generate.
    pub(crate) max_tokens: usize,
    /// Sampling settings.
    pub(crate) params: SamplingParams,
    /// Stop sequences (not included in the output).
    pub(crate) stop: Vec<String>,
    /// `Some(k)`: report each token's log probability with k alternatives.
    pub(crate) logprobs: Option<usize>,
    /// Constrained decoding.
    pub(crate) constraint: Option<Box<dyn TokenConstraint>>,
    /// Where events go.
    pub(crate) events: tmpsc::Sender<Event>,
    /// The request's cancellation.
    pub(crate) cancel: CancellationToken,
}

/// What the worker reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// New text (possibly empty when only log probabilities are new).
    Delta {
        /// The text.
        text: String,
        /// Log probabilities of the tokens behind this text.
        logprobs: Vec<TokenLogprob>,
    },
    /// The end.
    Done {
        /// Why it stopped.
        finish: FinishReason,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
        /// Prompt tokens served from the KV cache.
        cached_tokens: usize,
    },
    /// A failure.
    Failed(Error),
}

/// A worker thread owning one model.
pub(crate) struct Engine {
    jobs: mpsc::SyncSender<Job>,
    _thread: JoinHandle<()>,
}

impl Engine {
    /// Starts the worker for `model`; the thread ends when the engine is dropped.
    pub(crate) fn spawn(
        name: &str,
        model: Box<dyn CausalLm>,
        tokenizer: Arc<ModelTokenizer>,
        queue: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let thread = std::thread::Builder::new()
            .name(format!("candle-{name}"))
            .spawn(move || {
                let mut worker = Worker {
                    model,
                    tokenizer,
                    cached: Vec::new(),
                    prompt_logits: None,
                };
                while let Ok(job) = rx.recv() {
                    worker.run(job);
                }
            })?;
        Ok(Engine {
            jobs: tx,
            _thread: thread,
        })
    }

    /// Queues a job; `Unavailable` when the queue is full.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Error> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                Error::unavailable("the local model's request queue is full; retry later")
                    .with_retryable(true)
            }
            mpsc::TrySendError::Disconnected(_) => {
                Error::unavailable("the local model's worker has stopped")
            }
        })
    }
}

struct Worker {
    model: Box<dyn CausalLm>,
    tokenizer: Arc<ModelTokenizer>,
    /// The tokens whose keys and values are in the model's KV cache.
    cached: Vec<u32>,
    /// The last prompt and the logits after it: a repeated prompt reuses them, so its first
    /// token is drawn from exactly the same distribution (recomputing the last prompt token
    /// alone takes another kernel path than a whole prompt, with slightly different rounding).
    prompt_logits: Option<(Vec<u32>, Vec<f32>)>,
}

/// Text decoded so far and how much of it was sent.
struct Detokenizer {
    tokens: Vec<u32>,
    prev: usize,
    current: usize,
    text: String,
}

impl Detokenizer {
    fn push(&mut self, tok: &ModelTokenizer, id: u32) -> Result<(), Error> {
        self.tokens.push(id);
        let prev_text = tok.decode(&self.tokens[self.prev..self.current])?;
        let text = tok.decode(&self.tokens[self.prev..])?;
        if text.len() > prev_text.len() && !text.ends_with('\u{FFFD}') {
            if let Some(new) = text.get(prev_text.len()..) {
                self.text.push_str(new);
            }
            self.prev = self.current;
            self.current = self.tokens.len();
        }
        Ok(())
    }
}

/// Where a stop sequence starts in `text` (searching from `from`), if any.
fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let start = floor_boundary(text, from.saturating_sub(s.len()));
            text[start..].find(s.as_str()).map(|i| start + i)
        })
        .min()
}

/// How many trailing bytes of `text` could be the start of a stop sequence.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if text.ends_with(&s[..i]) {
                hold = hold.max(i);
            }
        }
    }
    hold
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn token_logprob(tok: &ModelTokenizer, logprobs: &[f32], id: u32, k: usize) -> TokenLogprob {
    let text = tok.token_text(id);
    let mut top = Vec::new();
    if k > 0 {
        let mut idx: Vec<usize> = (0..logprobs.len()).collect();
        let k = k.min(idx.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
            logprobs[b].total_cmp(&logprobs[a])
        });
        idx.truncate(k);
        idx.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]));
        top = idx
            .into_iter()
            .map(|i| {
                let t = tok.token_text(i as u32);
                TopLogprob {
                    bytes: Some(t.as_bytes().to_vec()),
                    token: t,
                    logprob: logprobs[i],
                }
            })
            .collect();
    }
    TokenLogprob {
        bytes: Some(text.as_bytes().to_vec()),
        logprob: logprobs
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY),
        token: text,
        top_logprobs: top,
    }
}

impl Worker {
    fn run(&mut self, mut job: Job) {
        let prompt_tokens = job.prompt.len();
        if job.events.is_closed() || job.cancel.is_cancelled() {
            return;
        }
        let outcome = self.generate(&mut job);
        let event = match outcome {
            Ok(Some((finish, completion_tokens, cached_tokens))) => Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            },
            Ok(None) => return,
            Err(e) => {
                self.cached.clear();
                self.prompt_logits = None;
                Event::Failed(e)
            }
        };
        let _ = job.events.blocking_send(event);
    }

    fn send(&self, job: &Job, text: String, logprobs: &mut Vec<TokenLogprob>) -> bool {
        if text.is_empty() && logprobs.is_empty() {
            return true;
        }
        job.events
            .blocking_send(Event::Delta {
                text,
                logprobs: std::mem::take(logprobs),
            })
            .is_ok()
    }

    /// Runs the job; `Ok(None)` when the caller went away.
    fn generate(&mut self, job: &mut Job) -> Result<Option<(FinishReason, usize, usize)>, Error> {
        let prompt = &job.prompt;
        if prompt.is_empty() {
            return Err(Error::invalid_request("the prompt is empty"));
        }
        let mut common = self
            .cached
            .iter()
            .zip(prompt.iter())
            .take_while(|(a, b)| a == b)
            .count();
        let repeated = common == prompt.len();
        if repeated {
            common -= 1;
        }
        let internal = |e: candle_core::Error| Error::internal(format!("candle: {e}"));
        let stored = match &self.prompt_logits {
            Some((p, l)) if repeated && p == prompt => Some(l.clone()),
            _ => None,
        };
        let mut logits = match stored {
            Some(l) => {
                self.model.truncate_cache(prompt.len());
                l
            }
            None => {
                self.cached.truncate(common);
                self.model.truncate_cache(common);
                self.prompt_logits = None;
                let l = self
                    .model
                    .forward(&prompt[common..], common)
                    .map_err(internal)?;
                self.prompt_logits = Some((prompt.clone(), l.clone()));
                l
            }
        };
        self.cached = prompt.clone();
        let tok = self.tokenizer.clone();
        let mut rng = Rng::new(job.params.seed);
        let mut detok = Detokenizer {
            tokens: Vec::new(),
            prev: 0,
            current: 0,
            text: String::new(),
        };
        let mut sent = 0usize;
        let mut pending_lp: Vec<TokenLogprob> = Vec::new();
        let ctx_len = self.model.context_length();
        let mut by_sequence = false;
        let finish = loop {
            if job.events.is_closed() || job.cancel.is_cancelled() {
                return Ok(None);
            }
            sampler::apply_penalties(&mut logits, &job.params, &self.cached, &detok.tokens);
            if let Some(c) = job.constraint.as_mut() {
                if c.is_complete() {
                    for (i, l) in logits.iter_mut().enumerate() {
                        if !tok.eos_ids.contains(&(i as u32)) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                } else {
                    c.mask(&mut logits);
                    for &e in &tok.eos_ids {
                        if let Some(l) = logits.get_mut(e as usize) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            let id = sampler::sample(&logits, &job.params, &mut rng);
            if let Some(k) = job.logprobs {
                let lp = sampler::log_softmax(&logits);
                pending_lp.push(token_logprob(&tok, &lp, id, k));
            }
            if tok.eos_ids.contains(&id) {
                break FinishReason::Stop;
            }
            if let Some(c) = job.constraint.as_mut() {
                c.advance(id);
            }
            detok.push(&tok, id)?;
            if let Some(at) = find_stop(&detok.text, &job.stop, sent) {
                let text = detok.text[sent..at.max(sent)].to_string();
                sent = at;
                if !self.send(job, text, &mut pending_lp) {
                    return Ok(None);
                }
                by_sequence = true;
                break FinishReason::Stop;
            }
            let safe = detok.text.len() - held_back(&detok.text, &job.stop);
            if safe > sent {
                let text = detok.text[sent..safe].to_string();
                sent = safe;
                if !self.send(job, text, &mut pending_lp) {
                    return Ok(None);
                }
            }
            if detok.tokens.len() >= job.max_tokens || self.cached.len() + 1 >= ctx_len {
                break FinishReason::Length;
            }
            logits = self
                .model
                .forward(&[id], self.cached.len())
                .map_err(internal)?;
            self.cached.push(id);
        };
        if !by_sequence {
            // Flush text held back for a stop sequence that never completed, plus the bytes
            // of an unfinished UTF-8 sequence.
            let mut text = detok.text.get(sent..).unwrap_or("").to_string();
            if detok.current < detok.tokens.len() {
                let rest = tok.decode(&detok.tokens[detok.prev..])?;
                let done = tok.decode(&detok.tokens[detok.prev..detok.current])?;
                if let Some(tail) = rest.get(done.len()..) {
                    text.push_str(tail);
                }
            }
            if !self.send(job, text, &mut pending_lp) {
                return Ok(None);
            }
        }
        if !pending_lp.is_empty() && !self.send(job, String::new(), &mut pending_lp) {
            return Ok(None);
        }
        Ok(Some((finish, detok.tokens.len(), common)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_are_found_and_held_back() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop("abc EN", &stops, 0), None);
        assert_eq!(held_back("abc EN", &stops), 2);
        assert_eq!(find_stop("abc END x", &stops, 3), Some(4));
        assert_eq!(held_back("abc\n", &stops), 1);
        assert_eq!(find_stop("é\n\n", &stops, 1), Some(2));
        assert_eq!(held_back("abc", &stops), 0);
    }
}
