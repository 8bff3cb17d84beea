#!/usr/bin/env bash
# lizard (PyPI), the POC's analyzer, over the Rust files of DIR with as many threads as
# `conveyor bench mining` uses, for the files-a-second comparison in the mining notes:
#   crates/apps/mining/bench/lizard.sh DIR [threads]
set -euo pipefail
dir=${1:?usage: lizard.sh DIR [threads]}
threads=${2:-$(nproc)}
python3 -c 'import lizard' 2>/dev/null || python3 -m pip install --quiet lizard
files=$(find "$dir" -type f -name '*.rs' | wc -l)
start=$(date +%s.%N)
# lizard exits with the number of functions over its complexity threshold, not an error.
python3 -m lizard -l rust -t "$threads" "$dir" >/dev/null || true
end=$(date +%s.%N)
python3 - "$files" "$start" "$end" <<'PY'
import sys
files, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"lizard: {files} Rust files in {end - start:.2f} s: {files / (end - start):.1f} files/s")
PY
