#!/usr/bin/env bash
# SmolLM2-135M Q4_1 on llama.cpp (llama-cpp-python 0.3.36 built for this CPU's SIMD
# features) and on our inline::candle provider: same file, same thread count, same
# workload, in one run; prints both and the ratios candle / llama.cpp.
#
# For each thread count (default "1 2") both peers run the same workload; the primary
# figures are tokens per CPU-second at 1 thread (stable on a shared machine) and the best
# wall-clock run at 2 threads.
#
# Usage: benches/llm_side_by_side.sh [THREADS...]   (needs python3 and the models)
# llama-cpp-python: installed into $VENV (default ~/.cache/llama-stack-rs/peers-venv) by
# tests/python/llama_cpp_install.sh, from a wheel compiled once for this CPU and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=("${@:-1 2}")
read -r -a THREADS <<<"${THREADS[*]}"
export HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}"
export HF_HUB_OFFLINE=1
VENV=$(tests/python/llama_cpp_install.sh "${VENV:-$HOME/.cache/llama-stack-rs/peers-venv}" | tail -n1)
GGUF="$(ls "$HF_HUB_CACHE"/models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf | head -n1)"
mkdir -p target
# Build first so that compiling does not overlap the measurements.
cargo bench -q --all-features --bench local_inference --no-run
for t in "${THREADS[@]}"; do
  echo "== llama.cpp ($t threads)"
  OMP_NUM_THREADS="$t" "$VENV/bin/python" benches/llm_side_by_side.py "$GGUF" "$t" \
    | tee "target/side_by_side_llamacpp_$t.txt"
  echo "== llama-stack-rs inline::candle ($t threads)"
  CANDLE_NUM_THREADS="$t" RAYON_NUM_THREADS="$t" cargo bench -q --all-features --bench local_inference \
    | grep '^llm_' | tee "target/side_by_side_candle_$t.txt"
done
echo "== candle / llama.cpp"
python3 - "${THREADS[@]}" <<'PY'
import sys
def read(p):
    out = {}
    for line in open(p):
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out
keys = ("llm_prompt_tok_per_cpu_s", "llm_generation_tok_per_cpu_s", "llm_prompt_tok_per_s",
        "llm_generation_tok_per_s", "llm_time_to_first_token", "llm_load_and_first_call",
        "llm_rss_after_load")
for t in sys.argv[1:]:
    a = read(f"target/side_by_side_llamacpp_{t}.txt")
    b = read(f"target/side_by_side_candle_{t}.txt")
    for k in keys:
        if k in a and k in b and a[k] > 0:
            print(f"{t} thread(s) {k}: candle {b[k]:.3g} / llama.cpp {a[k]:.3g} = {b[k] / a[k]:.2f}x")
PY
