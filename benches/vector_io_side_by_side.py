"""Peer for benches/vector_io.rs: FAISS (faiss-cpu) on the same MiniLM embeddings.

Llama Stack's `inline::faiss` keeps an exact `IndexFlatL2`; this measures that, and FAISS's
own HNSW (`IndexHNSWFlat`, M=16, efConstruction=128, efSearch=128, the parameters of
llama-stack-rs's `inline::faiss`), one query at a time as an API serves them: load rate,
p50/p99 latency for k=10, recall@10 against exact inner product. Reads
`<target>/vector-bench/minilm-<n>.f32` and `queries-<q>.f32` written by the Rust bench.
Prints `name value unit` lines like the Rust bench.
"""
import os
import sys
import time

import faiss
import numpy as np

DIM = 384
K = 10


def load(path, rows=None):
    data = np.fromfile(path, dtype="<f4").reshape(-1, DIM)
    return data if rows is None else data[:rows]


def timed_queries(index, queries):
    lat = []
    found = []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), K)
        lat.append((time.perf_counter() - t) * 1000.0)
        found.append(ids[0])
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, round((len(lat) - 1) * p))]
    return pick(0.5), pick(0.99), found


def main():
    faiss.omp_set_num_threads(1)
    bench_dir = sys.argv[1]
    sizes = [int(s) for s in os.environ.get("VECTOR_BENCH_SIZES", "10000,100000").split(",")]
    n_queries = int(os.environ.get("VECTOR_BENCH_QUERIES", "200"))
    corpus_all = load(os.path.join(bench_dir, f"minilm-{max(sizes)}.f32"))
    queries = load(os.path.join(bench_dir, f"queries-{n_queries}.f32"))
    for n in sizes:
        corpus = corpus_all[:n]
        exact = faiss.IndexFlatIP(DIM)
        exact.add(corpus)
        _, truth = exact.search(queries, K)
        for name, make in [
            ("py_faiss_flatl2", lambda: faiss.IndexFlatL2(DIM)),
            ("py_faiss_hnsw", lambda: faiss.IndexHNSWFlat(DIM, 16)),
        ]:
            index = make()
            if name == "py_faiss_hnsw":
                index.hnsw.efConstruction = 128
                index.hnsw.efSearch = 128
            t = time.perf_counter()
            for start in range(0, n, 1000):
                index.add(corpus[start:start + 1000])
            wall = time.perf_counter() - t
            print(f"{name}_load_{n} {n / wall:.0f} chunks/s ({n} chunks in {wall:.1f} s)")
            p50, p99, found = timed_queries(index, queries)
            print(f"{name}_query_{n} p50 {p50:.2f} ms p99 {p99:.2f} ms (k = {K}, {len(queries)} queries)")
            hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth))
            print(f"{name}_recall10_{n} {hits / (len(queries) * K):.4f} (against exact search)")


if __name__ == "__main__":
    main()
