#!/usr/bin/env bash
# Installs llama-cpp-python[server] (the version below) into a venv, from a wheel compiled
# once for this CPU and cached under ~/.cache/llama-stack-rs/wheels/<flags key>/, then
# checks that it generates (a broken build fails here, not in the middle of the tests).
#
#   tests/python/llama_cpp_install.sh [VENV]   # default ~/.cache/llama-stack-rs/peers-venv
#
# The build enables the CPU's AVX/AVX2/FMA/F16C/AVX-512 features explicitly (read from
# /proc/cpuinfo) instead of -march=native, and leaves AMX off: ggml's AMX path dies with a
# general-protection fault in virtual machines that advertise AMX without granting it.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=0.3.36
VENV="${1:-$HOME/.cache/llama-stack-rs/peers-venv}"
CACHE="$HOME/.cache/llama-stack-rs/wheels"
HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}"

flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
cpu=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
            avx512_vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  if [[ "$cpu" == *" ${pair%%:*} "* ]]; then flags="$flags -DGGML_${pair#*:}=ON"; fi
done
key=$(printf '%s %s' "$VERSION" "$flags" | sha256sum | cut -c1-12)
dir="$CACHE/$key"
wheel=$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $VERSION ($flags)" >&2
  mkdir -p "$dir"
  CMAKE_ARGS="$flags" "$VENV/bin/pip" wheel -q --disable-pip-version-check --no-cache-dir --no-deps \
    -w "$dir" "llama-cpp-python==$VERSION"
  wheel=$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi
if [ "$(cat "$VENV/.llama_cpp_build" 2>/dev/null)" != "$key" ] \
   || ! "$VENV/bin/python" -c 'import llama_cpp, llama_cpp.server.app' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${wheel}[server]" numpy
fi
rm -f "$VENV/.llama_cpp_build"
GGUF="$(ls "$HF_HUB_CACHE"/models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf | head -n1)"
"$VENV/bin/python" - "$GGUF" <<'PY'
import sys
import llama_cpp

llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0)
assert out["choices"][0]["text"], out
PY
echo "$key" >"$VENV/.llama_cpp_build"
echo "$VENV"
