#!/usr/bin/env bash
# Starts or stops moto's standalone S3-compatible server for the remote::s3 tests.
#
#   tests/python/s3_server.sh start   # installs the venv if needed, prints the endpoint URL
#   tests/python/s3_server.sh stop
#
# Environment: S3_VENV (default ~/.cache/llama-stack-rs/s3-venv, rebuilt when
# tests/python/s3-requirements.txt changes), S3_PORT (default 9010).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${S3_VENV:-$HOME/.cache/llama-stack-rs/s3-venv}"
PORT="${S3_PORT:-9010}"
STATE="${TMPDIR:-/tmp}/llama-stack-rs-s3-$PORT"
REQ="tests/python/s3-requirements.txt"
URL="http://127.0.0.1:$PORT"

case "${1:-start}" in
  stop)
    if [ -f "$STATE.pid" ]; then kill "$(cat "$STATE.pid")" 2>/dev/null || true; rm -f "$STATE.pid"; fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if ! { [ -x "$VENV/bin/moto_server" ] && cmp -s "$REQ" "$VENV/.requirements"; }; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  cp "$REQ" "$VENV/.requirements"
fi
if curl -sf "$URL/moto-api/" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$STATE.log" 2>&1 &
echo $! >"$STATE.pid"
for _ in $(seq 1 120); do
  if curl -sf "$URL/moto-api/" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$STATE.pid")" 2>/dev/null || break
  sleep 0.5
done
echo "moto server did not start; log:" >&2
tail -n 40 "$STATE.log" >&2
exit 1
