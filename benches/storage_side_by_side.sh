#!/usr/bin/env bash
# Storage overhead side by side: redis-benchmark (SET/GET, 1 and 32 clients) next to our
# kv_redis, and raw tokio-postgres next to kv_postgres / sql_postgres (printed by the
# bench itself as "overhead N.NNx" = raw ops/s ÷ our ops/s).
# Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (db test, user postgres).
# Usage: benches/storage_side_by_side.sh [operations per case, default 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
ops="${1:-20000}"
declare -A peer
for c in 1 32; do
  while IFS=, read -r test rps _; do
    test="${test//\"/}"; rps="${rps//\"/}"
    peer["$test c=$c"]="$rps"
  done < <(redis-benchmark -h 127.0.0.1 -p 6379 -t set,get -n "$ops" -c "$c" --csv | tail -n +2)
done
out="$(LLAMA_STACK_BENCH_OPS="$ops" cargo bench --quiet --all-features --bench storage 2>/dev/null)"
echo "$out"
echo
echo "kv_redis vs redis-benchmark (ops/s, ratio = redis-benchmark ÷ ours):"
for c in 1 32; do
  for op in set get; do
    ours="$(echo "$out" | awk -v op="kv_redis $op" -v c="c=$c" '$0 ~ "^"op" " && $3 == c {print $5}')"
    theirs="${peer[${op^^} c=$c]:-}"
    if [ -n "$ours" ] && [ -n "$theirs" ]; then
      awk -v o="$ours" -v t="$theirs" -v op="$op" -v c="$c" \
        'BEGIN { printf "  %-4s c=%-3s ours %10.0f  redis-benchmark %10.0f  ratio %.2fx\n", op, c, o, t, t / o }'
    fi
  done
done
