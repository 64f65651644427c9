#!/usr/bin/env bash
# SmolLM2-135M Q4_1 on llama.cpp (llama-cpp-python from PyPI, compiled here for this CPU:
# about 5 minutes of CPU the first time) and on our inline::candle provider, same file, same
# thread count, same workload; prints both and the ratio candle / llama.cpp.
#
# Usage: benches/llm_side_by_side.sh [THREADS]   (default 2; needs python3 and the models)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
export HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}"
export HF_HUB_OFFLINE=1
VENV="${VENV:-target/bench-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36" numpy
fi
GGUF="$(ls "$HF_HUB_CACHE"/models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf | head -n1)"
mkdir -p target
echo "== llama.cpp ($THREADS threads)"
OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" benches/llm_side_by_side.py "$GGUF" "$THREADS" | tee target/side_by_side_llamacpp.txt
echo "== llama-stack-rs inline::candle ($THREADS threads)"
CANDLE_NUM_THREADS="$THREADS" cargo bench -q --bench local_inference | tee target/side_by_side_candle.txt
echo "== candle / llama.cpp"
python3 - <<'PY'
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
a = read("target/side_by_side_llamacpp.txt")
b = read("target/side_by_side_candle.txt")
for k in ("llm_prompt_tok_per_s", "llm_generation_tok_per_s"):
    if k in a and k in b and a[k] > 0:
        print(f"{k}: candle {b[k]:.1f} / llama.cpp {a[k]:.1f} = {b[k] / a[k]:.2f}x")
PY
