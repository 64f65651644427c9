#!/usr/bin/env bash
# Starts or stops llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) serving the
# SmolLM2 GGUF from the Hugging Face cache, for the remote-inference tests.
#
#   tests/python/llama_cpp_server.sh start   # prints the base URL once the server answers
#   tests/python/llama_cpp_server.sh stop
#
# Environment: LLAMA_CPP_VENV (default ~/.cache/llama-stack-rs/peers-venv, must have
# llama_cpp with its server extra), HF_HUB_CACHE, LLAMA_CPP_PORT (default 8091).
# Models served: `smollm2` (chat/completions) and `smollm2-embed` (embeddings).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${LLAMA_CPP_VENV:-$HOME/.cache/llama-stack-rs/peers-venv}"
PORT="${LLAMA_CPP_PORT:-8091}"
STATE="${TMPDIR:-/tmp}/llama-stack-rs-llama-cpp-$PORT"
HF_HUB_CACHE="${HF_HUB_CACHE:-$(cd .. && pwd)/shared/models/hub}"
URL="http://127.0.0.1:$PORT/v1"

case "${1:-start}" in
  stop)
    if [ -f "$STATE.pid" ]; then kill "$(cat "$STATE.pid")" 2>/dev/null || true; rm -f "$STATE.pid"; fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if curl -sf "$URL/models" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
GGUF="$(ls "$HF_HUB_CACHE"/models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf | head -n1)"
[ -f "$GGUF" ] || { echo "SmolLM2 GGUF not found under $HF_HUB_CACHE" >&2; exit 1; }
cat > "$STATE.json" <<JSON
{
  "host": "127.0.0.1",
  "port": $PORT,
  "models": [
    {"model": "$GGUF", "model_alias": "smollm2", "n_ctx": 4096, "n_threads": 1, "n_threads_batch": 1, "verbose": false},
    {"model": "$GGUF", "model_alias": "smollm2-embed", "embedding": true, "n_ctx": 2048, "n_threads": 1, "n_threads_batch": 1, "verbose": false}
  ]
}
JSON
nohup "$VENV/bin/python" -m llama_cpp.server --config_file "$STATE.json" >"$STATE.log" 2>&1 &
echo $! >"$STATE.pid"
for _ in $(seq 1 120); do
  if curl -sf "$URL/models" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$STATE.pid")" 2>/dev/null || break
  sleep 0.5
done
echo "llama.cpp server did not start; log:" >&2
tail -n 40 "$STATE.log" >&2
exit 1
