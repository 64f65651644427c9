#!/usr/bin/env bash
# Vector indexes side by side on one machine, in one run: llama-stack-rs's inline::faiss
# (usearch HNSW) and inline::sqlite-vec through benches/vector_io.rs, then FAISS (faiss-cpu
# from PyPI: the exact IndexFlatL2 that Llama Stack's inline::faiss uses, and FAISS's HNSW
# with the same parameters) on the same embeddings and queries. Single-threaded FAISS
# searches, one query at a time.
#
#   benches/vector_io_side_by_side.sh            # sizes 10000,100000
#
# Needs the MiniLM model in HF_HUB_CACHE (default ../shared/models/hub).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}" HF_HUB_OFFLINE=1
VENV="${FAISS_VENV:-$HOME/.cache/llama-stack-rs/faiss-venv}"
if ! "$VENV/bin/python" -c 'import faiss, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "faiss-cpu>=1.8" numpy
fi
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VECTOR_BENCH_INGEST=0 VECTOR_BENCH_INDEXES="${VECTOR_BENCH_INDEXES:-faiss_hnsw,sqlite_vec}" \
  cargo bench --profile "${BENCH_PROFILE:-bench}" --bench vector_io --features remote-vector-io
"$VENV/bin/python" benches/vector_io_side_by_side.py "$TARGET/vector-bench"
