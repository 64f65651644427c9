#!/usr/bin/env bash
# Starts or stops a Chroma server (`chroma run` from the chromadb PyPI package, API v2) on a
# fresh temporary data directory, for the remote::chromadb tests.
#
#   tests/python/chroma_server.sh start   # installs the venv if needed, prints the URL
#   tests/python/chroma_server.sh stop
#
# Environment: CHROMA_VENV (default ~/.cache/llama-stack-rs/chroma-venv, rebuilt when
# tests/python/chroma-requirements.txt changes), CHROMA_PORT (default 8000).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${CHROMA_VENV:-$HOME/.cache/llama-stack-rs/chroma-venv}"
PORT="${CHROMA_PORT:-8000}"
STATE="${TMPDIR:-/tmp}/llama-stack-rs-chroma-$PORT"
REQ="tests/python/chroma-requirements.txt"
URL="http://127.0.0.1:$PORT"

case "${1:-start}" in
  stop)
    if [ -f "$STATE.pid" ]; then kill "$(cat "$STATE.pid")" 2>/dev/null || true; rm -f "$STATE.pid"; fi
    rm -rf "$STATE.data"
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if ! { [ -x "$VENV/bin/chroma" ] && cmp -s "$REQ" "$VENV/.requirements"; }; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  cp "$REQ" "$VENV/.requirements"
fi
if curl -sf "$URL/api/v2/heartbeat" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
rm -rf "$STATE.data"
ANONYMIZED_TELEMETRY=False nohup "$VENV/bin/chroma" run --host 127.0.0.1 --port "$PORT" \
  --path "$STATE.data" >"$STATE.log" 2>&1 &
echo $! >"$STATE.pid"
for _ in $(seq 1 120); do
  if curl -sf "$URL/api/v2/heartbeat" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$STATE.pid")" 2>/dev/null || break
  sleep 0.5
done
echo "Chroma server did not start; log:" >&2
tail -n 40 "$STATE.log" >&2
exit 1
