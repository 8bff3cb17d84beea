#!/usr/bin/env bash
# Issue 27's speed comparison, side by side: `conveyor bench mining` (the analyzers called
# directly, and the whole pipeline) alternated with lizard on the same files and threads,
# ROUNDS times, then each figure's range and the ratios the goal names (pipeline / direct,
# pipeline / lizard). This machine is shared: trust ranges of alternated rounds, not a run.
#   crates/apps/mining/bench/compare.sh DIR [threads] [rounds]
set -euo pipefail
dir=${1:?usage: compare.sh DIR [threads] [rounds]}
threads=${2:-2}
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
conveyor=${CONVEYOR:-$here/../../../../target/release/conveyor}
[ -x "$conveyor" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
results=$(mktemp)
for round in $(seq "$rounds"); do
  bench=$("$conveyor" bench mining --path "$dir" --threads "$threads" --runs 3 --json)
  lizard=$("$here/lizard.sh" "$dir" "$threads" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) files\/s$/\1/p')
  echo "$bench" | python3 -c '
import json, sys
b = json.load(sys.stdin)
direct, pipeline = b["direct_files_per_second"], b["pipeline_files_per_second"]
lizard = float(sys.argv[1])
print(json.dumps({"direct": direct, "pipeline": pipeline, "lizard": lizard}),
      file=open(sys.argv[2], "a"))
print(f"round {sys.argv[3]}: direct {direct:.0f}, pipeline {pipeline:.0f}, lizard {lizard:.0f}"
      f" files/s; pipeline/direct {pipeline / direct:.2f}, pipeline/lizard {pipeline / lizard:.1f}x")
' "$lizard" "$results" "$round"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def span(values, fmt):
    # The range, and the median: rounds are paired, so their ratios are the figures to trust.
    middle = sorted(values)[len(values) // 2]
    return f"{fmt.format(min(values))}-{fmt.format(max(values))} (median {fmt.format(middle)})"
print("direct", span([r["direct"] for r in rows], "{:.0f}"),
      "| pipeline", span([r["pipeline"] for r in rows], "{:.0f}"),
      "| lizard", span([r["lizard"] for r in rows], "{:.0f}"), "files/s")
print("pipeline/direct", span([r["pipeline"] / r["direct"] for r in rows], "{:.2f}"),
      "(goal 0.8) | pipeline/lizard", span([r["pipeline"] / r["lizard"] for r in rows], "{:.1f}"),
      "x (goal 5x)")
PY
rm -f "$results"
