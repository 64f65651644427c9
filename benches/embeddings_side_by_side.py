"""sentence-transformers (PyPI, torch CPU) on all-MiniLM-L6-v2 with the same workload as
`cargo bench --bench embeddings`: model load, RSS, sentences per CPU-second and best
wall-clock sentences/s at batch 1 (short sentences) and batch 32 (~60-token sentences).
Prints `name value unit` lines.

Usage: python benches/embeddings_side_by_side.py MODEL_DIR THREADS
"""
import os
import sys
import time


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def short_sentence(i):
    return f"Note {i}: the weather today is mild and sunny."


def long_sentence(i):
    return (
        f"Report {i} says the weather, the markets and a small cat on a mat near the "
        "window of an old house in the quiet town were all calm, while the river rose "
        "slowly after three days of rain and the farmers waited for the fields to dry "
        "before the harvest."
    )


def cpu_s():
    return time.process_time()


def measure(model, texts_for_round, batch, rounds):
    """Returns (sentences per CPU-second over all rounds, best wall sentences/s)."""
    best = 0.0
    n_total = 0
    c0 = cpu_s()
    for r in range(rounds):
        texts = texts_for_round(r)
        t = time.perf_counter()
        for i in range(0, len(texts), batch):
            model.encode(texts[i:i + batch], batch_size=batch, normalize_embeddings=True,
                         convert_to_numpy=True)
        best = max(best, len(texts) / (time.perf_counter() - t))
        n_total += len(texts)
    return n_total / (cpu_s() - c0), best


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    rss0 = rss_mb()
    t = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer
    print(f"st_import {time.perf_counter() - t:.3f} s (import torch and sentence_transformers)")
    torch.set_num_threads(threads)
    rss1 = rss_mb()
    t = time.perf_counter()
    model = SentenceTransformer(path, device="cpu")
    model.encode(["warm up"], normalize_embeddings=True)
    print(f"st_load {time.perf_counter() - t:.3f} s (model load and first call)")
    print(f"st_rss_model {rss_mb() - rss1:.0f} MB (after load, minus after import)")
    print(f"st_rss_total {rss_mb():.0f} MB (process, after load; {rss0:.0f} MB before imports)")
    tok = model.tokenizer
    print(f"st_tokens_short {len(tok(short_sentence(0))['input_ids'])} tokens")
    print(f"st_tokens_long {len(tok(long_sentence(0))['input_ids'])} tokens")
    # Warm-up of both shapes.
    measure(model, lambda r: [short_sentence(900 + i) for i in range(8)], 1, 1)
    measure(model, lambda r: [long_sentence(900 + i) for i in range(32)], 32, 1)

    b1_cpu, b1_wall = measure(model, lambda r: [short_sentence(r * 1000 + i) for i in range(64)],
                              1, 6)
    print(f"st_batch1_per_cpu_s {b1_cpu:.1f} sentences/CPU-s")
    print(f"st_batch1_best_wall {b1_wall:.1f} sentences/s (best of 6 rounds of 64)")
    b32_cpu, b32_wall = measure(model, lambda r: [long_sentence(r * 1000 + i) for i in range(32)],
                                32, 8)
    print(f"st_batch32_per_cpu_s {b32_cpu:.1f} sentences/CPU-s")
    print(f"st_batch32_best_wall {b32_wall:.1f} sentences/s (best of 8 batches of 32)")
    print(f"st_threads {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
