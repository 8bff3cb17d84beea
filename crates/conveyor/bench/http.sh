#!/usr/bin/env bash
# The HTTP enqueue path against the same server's HTTP ceiling, on each store.
#
#   crates/conveyor/bench/http.sh [seconds] [connections] [stores]
#
# For each store (sqlite, postgres; default both) it starts `conveyor up` on a scratch
# database and measures, with wrk:
#   1. GET /healthz with `connections` connections: the server's HTTP ceiling;
#   2. one connection POSTing single no-op jobs for 5 s: an idle server's enqueue latency;
#   3. `connections` connections POSTing single no-op jobs for `seconds`: the rate, p50, p99;
#   4. then the backlog: jobs still waiting 2 s after the load ended, and the time until
#      none is;
#   5. POST /api/jobs/batch with 1,000 jobs a request on 4 connections: jobs a second.
# Queue `default` gets SLOTS slots (default 64, as `up`), see below.
# Needs: a release build (cargo build --release), wrk, curl, python3; PostgreSQL at
# BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), where a scratch
# database is created and dropped. CONVEYOR_BIN picks another binary (to compare builds).
set -euo pipefail
cd "$(dirname "$0")/../../.."
SECS="${1:-10}"
CONNECTIONS="${2:-50}"
STORES="${3:-sqlite postgres}"
# Slots of queue `default` (`up`'s default, 64): with 8 a worker moved only about 6,800
# no-op jobs a second however fast the store was (`conveyor bench queue --workers 1
# --batch 8`), behind what HTTP enqueues.
SLOTS="${SLOTS:-64}"
BIN="${CONVEYOR_BIN:-target/release/conveyor}"
PG="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PORT=8310
BASE="http://127.0.0.1:$PORT"
WORK="$(mktemp -d)"
SCRATCH="conveyor_bench_http_$$"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP DATABASE IF EXISTS $SCRATCH" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/one.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"noop","args":{}}'
LUA
python3 -c 'import json; print(json.dumps({"jobs": [{"kind": "noop"}] * 1000}))' >"$WORK/batch.json"
cat >"$WORK/batch.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/batch.json")
wrk.body = f:read("*a")
f:close()
LUA

# wrk's requests a second, and a latency percentile from --latency's table.
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
percentile() { awk -v p="$2%" '$1 == p {print $2}' "$1"; }
# Jobs of queue `default` not yet ended.
waiting() {
  curl -fs "$BASE/api/queues" | python3 -c '
import json, sys
counts = {}
for q in json.load(sys.stdin):
    if q["queue"] == "default":
        counts = q["counts"]
print(sum(counts.get(s, 0) for s in ("available", "running", "retryable", "scheduled")))'
}

run_store() {
  local store="$1" url
  case "$store" in
    sqlite) url="sqlite://$WORK/bench.db" ;;
    postgres)
      psql "$PG" -qc "DROP DATABASE IF EXISTS $SCRATCH" >/dev/null
      psql "$PG" -qc "CREATE DATABASE $SCRATCH" >/dev/null
      url="${PG%/*}/$SCRATCH" ;;
  esac
  RUST_LOG=warn "$BIN" --database-url "$url" --listen "127.0.0.1:$PORT" \
    --minitwit-web off --minitwit-api off --average-store "$WORK/files" \
    --repostats-refresh off --mining-index off --queues "default=$SLOTS" \
    up >"$WORK/$store.log" 2>&1 &
  local up=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$BASE/healthz" && break; sleep 0.1; done

  wrk -t2 -c"$CONNECTIONS" -d"${SECS}s" "$BASE/healthz" >"$WORK/health.txt"
  wrk -t1 -c1 -d5s --latency -s "$WORK/one.lua" "$BASE/api/jobs" >"$WORK/idle.txt"
  while [ "$(waiting)" != 0 ]; do sleep 0.2; done
  wrk -t2 -c"$CONNECTIONS" -d"${SECS}s" --latency -s "$WORK/one.lua" "$BASE/api/jobs" >"$WORK/one.txt"
  local ended
  ended=$(date +%s.%N)
  sleep 2
  local at_two
  at_two=$(waiting)
  while [ "$(waiting)" != 0 ]; do sleep 0.05; done
  local drained
  drained=$(python3 -c "import time; print(f'{time.time() - $ended:.2f}')")
  wrk -t2 -c4 -d"${SECS}s" -s "$WORK/batch.lua" "$BASE/api/jobs/batch" >"$WORK/batch.txt"
  local errors
  errors=$(grep -hE "Non-2xx|Socket errors" "$WORK/one.txt" "$WORK/batch.txt" "$WORK/idle.txt" || true)

  local health one batch
  health=$(rate "$WORK/health.txt")
  one=$(rate "$WORK/one.txt")
  batch=$(rate "$WORK/batch.txt")
  python3 - "$store" "$health" "$one" "$batch" "$at_two" "$drained" \
    "$(percentile "$WORK/one.txt" 50)" "$(percentile "$WORK/one.txt" 99)" \
    "$(percentile "$WORK/idle.txt" 50)" <<'PY'
import sys
store, health, one, batch, at_two, drained, p50, p99, idle = sys.argv[1:]
health, one, batch = float(health), float(one), float(batch)
print(f"{store}: healthz {health:,.0f}/s | POST /api/jobs {one:,.0f} jobs/s "
      f"({one / health:.2f} of healthz), p50 {p50}, p99 {p99} | waiting 2 s after: {at_two}, "
      f"drained after {drained} s | batch {batch * 1000:,.0f} jobs/s | idle p50 {idle}")
PY
  if [ -n "$errors" ]; then echo "  wrk reported: $errors"; fi
  kill "$up"
  wait "$up" 2>/dev/null || true
}

for store in $STORES; do
  run_store "$store"
done
