"""llama.cpp (through llama-cpp-python) on the same GGUF, threads and workload as
`cargo bench --bench local_inference`: model load, prompt processing of a 189-token
prompt, greedy generation of 128 tokens, RSS. Prints `name value unit` lines.

Usage: python benches/llm_side_by_side.py MODEL.gguf THREADS
"""
import os
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    rss0 = rss_mb()
    t = time.perf_counter()
    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048,
                n_batch=512, verbose=False)
    print(f"llm_load {time.perf_counter() - t:.3f} s")
    print(f"llm_rss_after_load {rss_mb() - rss0:.0f} MB")

    base = [1000 + (i * 37 % 20000) for i in range(188)]
    pp = []
    for run in range(5):
        ids = [500 + run] + base
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        pp.append(len(ids) / (time.perf_counter() - t))
    print(f"llm_prompt_tok_per_s {statistics.median(pp):.1f} tok/s (189-token prompt, median of 5)")

    tg = []
    for run in range(3):
        llm.reset()
        llm.eval(llm.tokenize(f"Once upon a time {run}".encode(), add_bos=False))
        t = time.perf_counter()
        for _ in range(128):
            logits = llm.scores[llm.n_tokens - 1]
            logits[0] = logits[2] = -1e9
            llm.eval([int(np.argmax(logits))])
        tg.append(128 / (time.perf_counter() - t))
    print(f"llm_generation_tok_per_s {statistics.median(tg):.1f} tok/s (128 tokens, median of 3)")


if __name__ == "__main__":
    main()
