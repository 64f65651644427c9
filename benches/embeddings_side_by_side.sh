#!/usr/bin/env bash
# all-MiniLM-L6-v2 on sentence-transformers (PyPI, torch on CPU) and on our
# inline::sentence-transformers provider, same model files, same thread count, same
# workload, in one run: 1 thread (sentences per CPU-second) and 2 threads (best wall-clock
# round), then the ratios ours / sentence-transformers.
#
# Usage: benches/embeddings_side_by_side.sh [REPEATS]   (default 2: each side runs REPEATS
# times per thread count, alternating; the best figure of each side is kept)
# Needs python3 and the model in HF_HUB_CACHE (default ../shared/models/hub). The venv
# (VENV, default ~/.cache/llama-stack-rs/st-venv) gets sentence-transformers and torch from
# PyPI if missing; PyPI's torch wheel brings CUDA libraries (several GB) but runs on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-2}"
# PROFILE=dev reuses the test build's optimised dependencies (opt-level 3, no LTO) instead
# of the LTO bench profile.
PROFILE="${PROFILE:-bench}"
export HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1
VENV="${VENV:-$HOME/.cache/llama-stack-rs/st-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  "$VENV/bin/pip" install -q sentence-transformers torch
fi
MODEL="$(ls -d "$HF_HUB_CACHE"/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*/ | head -n1)"
OUT=target/embeddings_side_by_side
mkdir -p "$OUT"
rm -f "$OUT"/*.txt
cargo bench -q --all-features --profile "$PROFILE" --bench embeddings --no-run
for threads in 1 2; do
  for rep in $(seq 1 "$REPEATS"); do
    echo "== sentence-transformers, $threads thread(s), run $rep"
    OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
      "$VENV/bin/python" benches/embeddings_side_by_side.py "$MODEL" "$threads" \
      | tee -a "$OUT/st_$threads.txt"
    echo "== llama-stack-rs inline::sentence-transformers, $threads thread(s), run $rep"
    CANDLE_NUM_THREADS="$threads" cargo bench -q --all-features --profile "$PROFILE" --bench embeddings \
      | tee -a "$OUT/rs_$threads.txt"
  done
done
echo "== ours / sentence-transformers (best of $REPEATS runs per side)"
python3 - "$OUT" <<'PY'
import sys

out = sys.argv[1]


def best(path, prefix):
    vals = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(prefix):
            key = parts[0][len(prefix):]
            try:
                v = float(parts[1])
            except ValueError:
                continue
            lower_is_better = key.startswith(("load", "rss", "import"))
            if key not in vals or (v < vals[key] if lower_is_better else v > vals[key]):
                vals[key] = v
    return vals


for threads, keys in ((1, ("batch1_per_cpu_s", "batch32_per_cpu_s")),
                      (2, ("batch1_best_wall", "batch32_best_wall"))):
    st = best(f"{out}/st_{threads}.txt", "st_")
    rs = best(f"{out}/rs_{threads}.txt", "rs_")
    for k in keys:
        if k in st and k in rs and st[k] > 0:
            unit = "sentences/CPU-s" if k.endswith("cpu_s") else "sentences/s"
            print(f"{threads} thread(s) {k}: ours {rs[k]:.1f} / sentence-transformers "
                  f"{st[k]:.1f} {unit} = {rs[k] / st[k]:.2f}x")
st = best(f"{out}/st_1.txt", "st_")
rs = best(f"{out}/rs_1.txt", "rs_")
print(f"load (model + first call): ours {rs.get('load', 0):.3f} s, sentence-transformers "
      f"{st.get('load', 0):.3f} s (+ {st.get('import', 0):.1f} s to import torch)")
print(f"RSS after load: ours {rs.get('rss_total', 0):.0f} MB (model {rs.get('rss_model', 0):.0f} MB), "
      f"sentence-transformers {st.get('rss_total', 0):.0f} MB (model {st.get('rss_model', 0):.0f} MB)")
PY
