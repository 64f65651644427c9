#!/usr/bin/env bash
# HTTP server load benchmark of our server alone (not run in CI; side by side with Python
# Llama Stack on a mock upstream: server_side_by_side.sh). Builds the `llama-stack` binary
# with the bench profile, starts it on the starter distribution (or CONFIG), and measures
# with `oha` (or `wrk`) req/s and p50/p99 latency of GET /v1/health and GET /v1/models at
# concurrency 1 and 32, plus cold start (process start → first served /v1/health) and idle RSS.
#   bash benches/server_http.sh
# Needs: oha (cargo install oha) or wrk (apt-get install wrk), curl, python3.
# POST /v1/chat/completions needs an inference provider with a registered model: set
# CHAT_MODEL=<model id> and a config (CONFIG=path/to/run.yaml) that serves it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18321}
DURATION=${DURATION:-10}
CONFIG=${CONFIG:-starter}
# The bench profile has the release settings and shares artifacts with `cargo bench`.
cargo build --profile bench -p llama-stack --features server --bin llama-stack >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release/llama-stack
data=$(mktemp -d); trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

t0=$(date +%s.%N)
SQLITE_STORE_DIR="$data" LLAMA_STACK_LOG=warn "$BIN" run "$CONFIG" --port "$PORT" &
pid=$!
until curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null; do sleep 0.005; done
t1=$(date +%s.%N)
echo "cold start to first /v1/health: $(echo "($t1 - $t0) * 1000" | bc) ms"
echo "idle RSS: $(ps -o rss= -p "$pid") KiB"

load() { # url concurrency [body]
  if command -v oha >/dev/null; then
    if [ -n "${3:-}" ]; then
      oha -z "${DURATION}s" -c "$2" --no-tui -m POST -H 'content-type: application/json' -d "$3" "$1"
    else
      oha -z "${DURATION}s" -c "$2" --no-tui "$1"
    fi | grep -E "Requests/sec|50.00%|99.00%"
  else
    wrk -t "$([ "$2" -gt 1 ] && echo 2 || echo 1)" -c "$2" -d "${DURATION}s" --latency "$1" | grep -E "Requests/sec|  50%|  99%"
  fi
}
for c in 1 32; do
  echo "== GET /v1/health  c=$c"; load "http://127.0.0.1:$PORT/v1/health" "$c"
  echo "== GET /v1/models  c=$c"; load "http://127.0.0.1:$PORT/v1/models" "$c"
  if [ -n "${CHAT_MODEL:-}" ] && command -v oha >/dev/null; then
    echo "== POST /v1/chat/completions  c=$c"
    load "http://127.0.0.1:$PORT/v1/chat/completions" "$c" \
      "{\"model\":\"$CHAT_MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1}"
  fi
done
echo "RSS after load: $(ps -o rss= -p "$pid") KiB"
