"""llama.cpp (through llama-cpp-python) on the same GGUF, threads and workload as
`cargo bench --bench local_inference`: model load plus a first 1-token call, resident memory
after it, prompt processing of a 189-token prompt (5 runs, no cache reuse), time to first
token of a short chat turn (5 runs), greedy generation of 128 tokens (3 runs). Throughput is
given as the best wall-clock run and as tokens per CPU-second (user + system time of the
process over all runs). Prints `name value unit` lines.

Usage: python benches/llm_side_by_side.py MODEL.gguf THREADS
"""
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
    llm.eval(llm.tokenize(b"Hi", add_bos=False))
    print(f"llm_load_and_first_call {time.perf_counter() - t:.3f} s")
    print(f"llm_rss_after_load {rss_mb() - rss0:.0f} MB")

    base = [1000 + (i * 37 % 20000) for i in range(188)]
    pp, cpu, n = [], 0.0, 0
    for run in range(5):
        ids = [500 + run] + base
        llm.reset()
        t, c = time.perf_counter(), time.process_time()
        llm.eval(ids)
        pp.append(len(ids) / (time.perf_counter() - t))
        cpu += time.process_time() - c
        n += len(ids)
    print(f"llm_prompt_tok_per_s {max(pp):.1f} tok/s (189-token prompt, best of 5; median {statistics.median(pp):.1f})")
    print(f"llm_prompt_tok_per_cpu_s {n / cpu:.1f} tok/CPU-s")

    llm.reset()
    ttft = []
    for run in range(5):
        t = time.perf_counter()
        llm.create_chat_completion(
            [{"role": "user", "content": f"Question {run}: what is the capital of France?"}],
            max_tokens=1, temperature=0.0)
        ttft.append(time.perf_counter() - t)
    print(f"llm_time_to_first_token {statistics.median(ttft):.3f} s (chat turn, median of 5)")

    tg, cpu = [], 0.0
    for run in range(3):
        llm.reset()
        llm.eval(llm.tokenize(f"Once upon a time {run}".encode(), add_bos=False))
        t, c = time.perf_counter(), time.process_time()
        for _ in range(128):
            logits = llm.scores[llm.n_tokens - 1]
            logits[0] = logits[2] = -1e9
            llm.eval([int(np.argmax(logits))])
        tg.append(128 / (time.perf_counter() - t))
        cpu += time.process_time() - c
    print(f"llm_generation_tok_per_s {max(tg):.1f} tok/s (128 tokens, best of 3; median {statistics.median(tg):.1f})")
    print(f"llm_generation_tok_per_cpu_s {3 * 128 / cpu:.1f} tok/CPU-s")


if __name__ == "__main__":
    main()
