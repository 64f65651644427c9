//! Token counting and [`chunk_text`]: fixed-size token windows with overlap, measured in
//! cl100k_base tokens (the tokenizer OpenAI's file search counts chunk sizes in).

use llama_stack_core::{Error, Result};
use tiktoken_rs::{CoreBPE, Rank};

use super::guard::catch_quietly;

/// The tokenizer whose counts chunk sizes are measured in.
pub const TOKENIZER: &str = "tiktoken:cl100k_base";

/// The cl100k_base encoder, built on first use and shared by every later call.
fn bpe() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Longest piece of text handed to the encoder at once. Its pattern backtracks across
/// whitespace runs and the encoder panics past the regex engine's backtracking limit
/// (3 MB of spaces reach it), so longer texts are encoded piece by piece, cut where the
/// tokens are the same as for the whole text.
const SEGMENT_BYTES: usize = 16 * 1024;

/// `text` as cl100k_base tokens; special-token text such as `<|endoftext|>` is ordinary
/// text here.
fn encode(text: &str) -> Result<Vec<Rank>> {
    let bpe = bpe();
    catch_quietly(|| {
        if text.len() <= SEGMENT_BYTES {
            return bpe.encode_ordinary(text);
        }
        let mut tokens = Vec::with_capacity(text.len() / 4);
        let mut rest = text;
        while !rest.is_empty() {
            let cut = segment_end(rest);
            tokens.extend(bpe.encode_ordinary(&rest[..cut]));
            rest = &rest[cut..];
        }
        tokens
    })
    .map_err(|panic| Error::invalid_request(format!("the text cannot be tokenized: {panic}")))
}

/// Where the first segment of `rest` ends: the last place within [`SEGMENT_BYTES`] where
/// no cl100k_base pre-token spans the cut, failing that the last character boundary
/// within the limit (a cut inside a run of one character class, where the tokens near the
/// cut may differ from those of the whole text).
fn segment_end(rest: &str) -> usize {
    if rest.len() <= SEGMENT_BYTES {
        return rest.len();
    }
    let limit = floor_char_boundary(rest, SEGMENT_BYTES);
    (1..limit)
        .rev()
        .find(|&i| is_clean_cut(rest, i))
        .unwrap_or(limit)
}

/// Whether no cl100k_base pre-token spans byte `i` of `text`: after a line break and
/// before a non-space, or between a non-space and a space followed by an ASCII letter
/// (the pattern's alternatives cannot continue across either).
fn is_clean_cut(text: &str, i: usize) -> bool {
    let bytes = text.as_bytes();
    let char_at = |at: usize| text.get(at..).and_then(|s| s.chars().next());
    let char_before = |at: usize| text.get(..at).and_then(|s| s.chars().next_back());
    let non_space = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
    if i > 0 && bytes.get(i - 1) == Some(&b'\n') {
        return non_space(char_at(i));
    }
    bytes.get(i) == Some(&b' ')
        && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
        && non_space(char_before(i))
}

/// Number of cl100k_base tokens in `text` (should the tokenizer fail on a pathological
/// text, an estimate of one token per four bytes).
pub fn count_tokens(text: &str) -> usize {
    encode(text).map_or_else(|_| text.len().div_ceil(4), |tokens| tokens.len())
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    /// The window's text; when a window edge falls inside a multi-byte character, the
    /// whole character is included.
    pub text: String,
    /// Offset of the window's first token in the document.
    pub start_token: usize,
    /// Offset one past the window's last token in the document.
    pub end_token: usize,
    /// Number of tokens in the window (`end_token - start_token`).
    pub token_count: usize,
}

/// Cuts `text` into windows of at most `max_tokens` tokens, each starting
/// `max_tokens - overlap_tokens` tokens after the previous one.
///
/// The windows cover every token: the first starts at 0 and the last ends at the total.
/// Empty text gives no chunks; `max_tokens == 0` or `overlap_tokens >= max_tokens` is an
/// `InvalidRequest` error.
pub fn chunk_text(text: &str, max_tokens: usize, overlap_tokens: usize) -> Result<Vec<TextChunk>> {
    if max_tokens == 0 {
        return Err(Error::invalid_param(
            "max_chunk_size_tokens",
            max_tokens,
            "Must be at least 1",
        ));
    }
    if overlap_tokens >= max_tokens {
        return Err(Error::invalid_param(
            "chunk_overlap_tokens",
            overlap_tokens,
            &format!("Must be less than max_chunk_size_tokens ({max_tokens})"),
        ));
    }
    let tokens = encode(text)?;
    let offsets = byte_offsets(text, &tokens)?;
    let step = max_tokens - overlap_tokens;
    let mut chunks = Vec::with_capacity(tokens.len().div_ceil(step));
    let mut start = 0;
    while start < tokens.len() {
        let end = (start + max_tokens).min(tokens.len());
        let from = floor_char_boundary(text, offsets[start]);
        let to = ceil_char_boundary(text, offsets[end]);
        chunks.push(TextChunk {
            text: text[from..to].to_owned(),
            start_token: start,
            end_token: end,
            token_count: end - start,
        });
        if end == tokens.len() {
            break;
        }
        start += step;
    }
    Ok(chunks)
}

/// Byte offset in `text` where each token starts, plus `text.len()` at the end: the
/// tokens' bytes concatenate to the text, so token windows map to byte ranges.
fn byte_offsets(text: &str, tokens: &[Rank]) -> Result<Vec<usize>> {
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    let mut at = 0;
    offsets.push(at);
    for token in tokens {
        let bytes = bpe()
            .decode_bytes(std::slice::from_ref(token))
            .map_err(|e| {
                Error::internal(format!("cl100k_base cannot decode its own token: {e}"))
            })?;
        at += bytes.len();
        offsets.push(at);
    }
    if at != text.len() {
        return Err(Error::internal(format!(
            "cl100k_base tokens cover {at} bytes of a {}-byte text",
            text.len()
        )));
    }
    Ok(offsets)
}

/// The largest character boundary of `text` at or before `i`.
fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary of `text` at or after `i`.
fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;
    use std::time::{Duration, Instant};

    /// Checks the window invariants of `chunks` for `text`: sizes, steps, full coverage, and
    /// each text being the window's bytes widened to whole characters.
    fn check_windows(text: &str, chunks: &[TextChunk], max: usize, overlap: usize) {
        let offsets = byte_offsets(text, &encode(text).unwrap()).unwrap();
        let total = offsets.len() - 1;
        assert_eq!(total, count_tokens(text));
        if total == 0 {
            assert!(chunks.is_empty());
            return;
        }
        assert_eq!(chunks.first().unwrap().start_token, 0);
        assert_eq!(chunks.last().unwrap().end_token, total);
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.token_count <= max && c.token_count > 0, "{c:?}");
            assert_eq!(c.token_count, c.end_token - c.start_token);
            let from = floor_char_boundary(text, offsets[c.start_token]);
            let to = ceil_char_boundary(text, offsets[c.end_token]);
            assert!(from <= offsets[c.start_token] && offsets[c.end_token] <= to);
            assert_eq!(c.text, text[from..to], "chunk {i}");
            if i + 1 < chunks.len() {
                assert_eq!(c.token_count, max, "only the last window may be short");
                assert_eq!(chunks[i + 1].start_token, c.start_token + max - overlap);
            }
        }
    }

    #[test]
    fn counts_are_cl100k_tokens() {
        assert_eq!(TOKENIZER, "tiktoken:cl100k_base");
        assert_eq!(count_tokens("hello world"), 2);
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("<|endoftext|>"), 7);
    }

    #[test]
    fn windows_respect_size_and_overlap_and_cover_the_text() {
        let text: String = (0..300).map(|i| format!("word{i} ")).collect();
        let total = count_tokens(&text);
        for (max, overlap) in [(50, 10), (64, 0), (7, 6), (1, 0), (total, 3), (10_000, 400)] {
            let chunks = chunk_text(&text, max, overlap).unwrap();
            check_windows(&text, &chunks, max, overlap);
        }
        // Without overlap, the chunks concatenate back to the text.
        let chunks = chunk_text(&text, 37, 0).unwrap();
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn short_and_empty_texts() {
        let chunks = chunk_text("hello world", 800, 400).unwrap();
        assert_eq!(
            chunks,
            [TextChunk {
                text: "hello world".into(),
                start_token: 0,
                end_token: 2,
                token_count: 2
            }]
        );
        assert!(chunk_text("", 800, 400).unwrap().is_empty());
    }

    #[test]
    fn invalid_sizes_are_rejected() {
        for (max, overlap) in [(0, 0), (10, 10), (10, 11)] {
            let err = chunk_text("hello", max, overlap).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{max} {overlap}");
        }
    }

    #[test]
    fn multi_byte_text_chunks_without_losing_characters() {
        let text = "家族👨‍👩‍👧‍👦で東京へ🚄。naïve café — ünïcödé ✓ 🎉🎉🎉 漢字かな交じり文".repeat(20);
        for (max, overlap) in [(1, 0), (2, 1), (3, 0), (5, 2), (17, 4)] {
            let chunks = chunk_text(&text, max, overlap).unwrap();
            check_windows(&text, &chunks, max, overlap);
            assert!(text.starts_with(&chunks[0].text));
            assert!(text.ends_with(&chunks[chunks.len() - 1].text));
        }
    }

    #[test]
    fn one_megabyte_chunks_quickly() {
        let paragraph = "Retrieval augmented generation splits documents into chunks, \
            embeds them and stores the vectors; queries find the nearest chunks. 東京 🚄\n";
        let text = paragraph.repeat(1_000_000 / paragraph.len() + 1);
        count_tokens("warm up");
        let started = Instant::now();
        let chunks = chunk_text(&text, 800, 400).unwrap();
        let took = started.elapsed();
        check_windows(&text, &chunks, 800, 400);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn long_texts_are_encoded_in_pieces_with_the_same_tokens() {
        let mut text = String::new();
        for i in 0..3_000 {
            text.push_str(&format!("Line {i}: naïve café, 東京 🚄 — done.\n"));
            if i % 500 == 0 {
                // A long line without line breaks.
                text.push_str(&"minified{key:value, other: [1,2,3]} ".repeat(2_000));
                text.push('\n');
            }
        }
        assert!(text.len() > 4 * SEGMENT_BYTES);
        assert_eq!(encode(&text).unwrap(), bpe().encode_ordinary(&text));
        let cuts: Vec<usize> = {
            let mut at = 0;
            let mut cuts = Vec::new();
            while at < text.len() {
                at += segment_end(&text[at..]);
                cuts.push(at);
            }
            cuts
        };
        assert!(cuts.len() > 4, "{cuts:?}");
    }

    #[test]
    fn pathological_runs_chunk_quickly_without_panics() {
        count_tokens("warm up");
        for text in [
            "a".repeat(1_000_000),
            " ".repeat(1_000_000) + "x",
            "\n".repeat(1_000_000),
            " \t\u{3000}\r".repeat(300_000),
            "7".repeat(1_000_000),
            "!".repeat(1_000_000),
            "é".repeat(500_000),
            "a ".repeat(500_000),
        ] {
            let started = Instant::now();
            let chunks = chunk_text(&text, 800, 100).unwrap();
            let took = started.elapsed();
            check_windows(&text, &chunks, 800, 100);
            let sample = text.chars().next();
            assert!(took < Duration::from_secs(2), "{sample:?}: {took:?}");
        }
    }

    #[test]
    fn megabytes_of_spaces_do_not_reach_the_backtracking_limit() {
        let text = " ".repeat(3_000_000) + "x";
        let total = count_tokens(&text);
        assert!(total > 0);
        let chunks = chunk_text(&text, 8_000, 0).unwrap();
        assert_eq!(chunks.last().unwrap().end_token, total);
    }
}
