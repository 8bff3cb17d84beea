#!/usr/bin/env bash
# repostats' API against nginx serving the same bytes as static files, side by side.
#
#   crates/apps/repostats/bench/wrk-vs-nginx.sh [seconds] [connections] [rounds]
#
# Needs: a release build (cargo build --release), wrk and nginx (Debian packages). Starts a
# fake GitHub with generated data, `conveyor up` on a scratch SQLite file, refreshes, then
# swaps `up` for `conveyor serve` on the same file, saves the two answers, serves them from
# nginx, then runs wrk on each pair in turn, `rounds`
# times, swapping which server goes first each round: on a shared machine whose speed drifts
# by half within a minute, only interleaved runs compare. Prints every run, then the
# medians and their ratio.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
SECONDS_EACH="${1:-5}"
CONNECTIONS="${2:-50}"
ROUNDS="${3:-5}"
BIN="${CONVEYOR_BIN:-target/release/conveyor}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" fake-github --addr 127.0.0.1:7300 --latency-ms 1 >"$WORK/fake.log" 2>&1 &
GITHUB_API_URL=http://127.0.0.1:7300 RUST_LOG=warn "$BIN" --database-url "sqlite://$WORK/bench.db" \
  --listen 127.0.0.1:8300 --minitwit-web off --minitwit-api off --average-store "$WORK/files" \
  --repostats-refresh off --repostats-per-ip 0 up >"$WORK/conveyor.log" 2>&1 &
UP=$!
for _ in $(seq 1 50); do curl -fs -o /dev/null http://127.0.0.1:8300/ping && break; sleep 0.2; done
curl -fs -X POST http://127.0.0.1:8300/api/repostats/refresh >/dev/null
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8300/api/repostats/status | grep -q '"with_languages":100' && break
  sleep 0.2
done
sleep 1.5   # the snapshot reloads within a second
# What is measured is `conveyor serve`, the API alone, as replicas run it; `up` only filled
# the database (its workers fetched the languages).
kill "$UP"
wait "$UP" 2>/dev/null || true
RUST_LOG=warn "$BIN" --database-url "sqlite://$WORK/bench.db" --listen 127.0.0.1:8300 \
  --minitwit-web off --minitwit-api off --average-store "$WORK/files" --repostats-per-ip 0 \
  serve >"$WORK/serve.log" 2>&1 &
for _ in $(seq 1 50); do curl -fs -o /dev/null http://127.0.0.1:8300/ping && break; sleep 0.2; done

mkdir -p "$WORK/www"
curl -fs 'http://127.0.0.1:8300/repos?language=python' >"$WORK/www/repos.json"
curl -fs 'http://127.0.0.1:8300/stats' >"$WORK/www/stats.json"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:8301;
    default_type application/json;
    location = /repos { alias $WORK/www/repos.json; }
    location = /stats { alias $WORK/www/stats.json; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"

RESULTS="$WORK/results.tsv"
run() { # url name
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency "$1" | awk -v name="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    /Requests\/sec/ {rps=$2} / 99%/ {p99=ms($2)}
    END {printf "%s\t%s\t%.2f\n", name, rps, p99}' | tee -a "$RESULTS"
}
echo "bytes: /repos?language=python $(wc -c <"$WORK/www/repos.json"), /stats $(wc -c <"$WORK/www/stats.json")"
echo "name, req/s, p99 ms; $ROUNDS rounds of ${SECONDS_EACH}s each, $CONNECTIONS connections"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    run 'http://127.0.0.1:8300/repos?language=python' conveyor-repos
    run 'http://127.0.0.1:8301/repos' nginx-repos
    run 'http://127.0.0.1:8300/stats' conveyor-stats
    run 'http://127.0.0.1:8301/stats' nginx-stats
  else
    run 'http://127.0.0.1:8301/repos' nginx-repos
    run 'http://127.0.0.1:8300/repos?language=python' conveyor-repos
    run 'http://127.0.0.1:8301/stats' nginx-stats
    run 'http://127.0.0.1:8300/stats' conveyor-stats
  fi
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rps, p99 = line.split("\t")
    runs.setdefault(name, []).append((float(rps), float(p99)))
for route in ("repos", "stats"):
    ours, theirs = runs[f"conveyor-{route}"], runs[f"nginx-{route}"]
    a = statistics.median(r for r, _ in ours)
    b = statistics.median(r for r, _ in theirs)
    p99 = statistics.median(p for _, p in ours)
    worst = max(p for _, p in ours)
    ratios = sorted(x[0] / y[0] for x, y in zip(ours, theirs))
    print(f"/{route}: conveyor median {a:,.0f} req/s, nginx {b:,.0f} req/s, ratio of medians "
          f"{a / b:.2f} (per round {ratios[0]:.2f}-{ratios[-1]:.2f}), conveyor p99 median {p99:.2f} ms, worst {worst:.2f} ms")
PY
