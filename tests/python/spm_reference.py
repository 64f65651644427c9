"""Reference token ids of llama.cpp's SentencePiece ("llama") tokenizer.

Builds a small SentencePiece-BPE vocabulary (pieces learnt by merging the most frequent
adjacent pairs of a small corpus, score = -merge rank, 256 byte-fallback tokens <0xNN>,
<unk>/<s>/</s>), writes it as a vocabulary-only GGUF (with and without
`tokenizer.ggml.add_space_prefix`), tokenizes test texts with llama.cpp
(llama-cpp-python, `Llama(path, vocab_only=True)`, special tokens parsed) and writes
vocabulary + ids to tests/data/spm-reference.json, which the Rust tests read.

Run: ~/.cache/llama-stack-rs/peers-venv/bin/python tests/python/spm_reference.py
"""

import collections
import json
import os
import struct
import sys
import tempfile

from llama_cpp import Llama

CORPUS = """
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox
runs into the forest. Hello world! Hello there, how are you today? I am fine, thank
you. Tokenizers split text into pieces; the pieces are looked up in a vocabulary.
Numbers like 12345 and 2024 appear in text too. Question: what is the capital of
France? Answer: Paris is the capital of France. In the beginning there was the word.
"""
MERGES = 220
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "two  spaces and   three",
    "tabs\tand\nnew lines\n\n",
    "unknown: é, 日本語, 🙂!",
    "<s>after a control token</s> and text",
    "What is the capital of France?",
    "",
    " ",
    "Numbers 12345 2024",
    "the the the thethe",
]

SPACE = "\u2581"


def learn_vocab():
    words = collections.Counter(SPACE + w for w in CORPUS.split())
    seqs = {w: list(w) for w in words}
    pieces = []
    seen = set()
    for w in words:
        for c in w:
            if c not in seen:
                seen.add(c)
                pieces.append(c)
    merged = []
    for _ in range(MERGES):
        pairs = collections.Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        new = a + b
        merged.append(new)
        for w in words:
            s = seqs[w]
            out = []
            i = 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    scores = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(6)  # BYTE
        scores.append(0.0)
    # SentencePiece BPE: merged pieces by rank, then single characters.
    for rank, p in enumerate(merged):
        if p not in tokens:
            tokens.append(p)
            types.append(1)
            scores.append(-float(rank))
    for i, c in enumerate(sorted(seen)):
        if c not in tokens:
            tokens.append(c)
            types.append(1)
            scores.append(-float(len(merged) + i))
    return tokens, scores, types


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, kind, value):
    out = gguf_string(key) + struct.pack("<I", kind)
    if kind == 8:
        out += gguf_string(value)
    elif kind == 4:
        out += struct.pack("<I", value)
    elif kind == 6:
        out += struct.pack("<f", value)
    elif kind == 7:
        out += struct.pack("<?", value)
    elif kind == 9:
        elem, items = value
        out += struct.pack("<IQ", elem, len(items))
        for it in items:
            if elem == 8:
                out += gguf_string(it)
            elif elem == 6:
                out += struct.pack("<f", it)
            elif elem == 5:
                out += struct.pack("<i", it)
    return out


def write_gguf(path, tokens, scores, types, add_space_prefix):
    kvs = [
        gguf_kv("general.architecture", 8, "llama"),
        gguf_kv("general.name", 8, "spm-test"),
        gguf_kv("llama.context_length", 4, 256),
        gguf_kv("llama.embedding_length", 4, 64),
        gguf_kv("llama.block_count", 4, 1),
        gguf_kv("llama.feed_forward_length", 4, 128),
        gguf_kv("llama.attention.head_count", 4, 4),
        gguf_kv("llama.attention.head_count_kv", 4, 4),
        gguf_kv("llama.rope.dimension_count", 4, 16),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        gguf_kv("tokenizer.ggml.model", 8, "llama"),
        gguf_kv("tokenizer.ggml.tokens", 9, (8, tokens)),
        gguf_kv("tokenizer.ggml.scores", 9, (6, scores)),
        gguf_kv("tokenizer.ggml.token_type", 9, (5, types)),
        gguf_kv("tokenizer.ggml.unknown_token_id", 4, 0),
        gguf_kv("tokenizer.ggml.bos_token_id", 4, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", 4, 2),
        gguf_kv("tokenizer.ggml.add_bos_token", 7, False),
        gguf_kv("tokenizer.ggml.add_space_prefix", 7, add_space_prefix),
    ]
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)))
        for kv in kvs:
            f.write(kv)
        f.write(b"\0" * (-f.tell() % 32))


def main():
    tokens, scores, types = learn_vocab()
    out = {
        "tokens": tokens,
        "scores": scores,
        "token_types": types,
        "variants": [],
    }
    with tempfile.TemporaryDirectory() as d:
        for add_space_prefix in (True, False):
            path = os.path.join(d, f"spm-{add_space_prefix}.gguf")
            write_gguf(path, tokens, scores, types, add_space_prefix)
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            cases = [
                {"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)}
                for t in TEXTS
            ]
            out["variants"].append({"add_space_prefix": add_space_prefix, "cases": cases})
            del llm
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dst = os.path.join(root, "data", "spm-reference.json")
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {dst}: {len(tokens)} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
