#!/usr/bin/env bash
# lizard (PyPI), the POC's analyzer, over the source files of DIR with as many threads as
# `conveyor bench mining` uses, for the files-a-second comparison in the mining notes:
#   crates/apps/mining/bench/lizard.sh DIR [threads]
# It counts the files of the languages both lizard and Conveyor measure, which are the
# files lizard reads (run it on a tree of source files only, as mixed-tree.sh builds).
set -euo pipefail
dir=${1:?usage: lizard.sh DIR [threads]}
threads=${2:-$(nproc)}
python3 -c 'import lizard' 2>/dev/null || python3 -m pip install --quiet lizard
files=$(find "$dir" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.cc' \
  -o -name '*.hpp' -o -name '*.cs' -o -name '*.go' -o -name '*.java' -o -name '*.js' \
  -o -name '*.ts' -o -name '*.kt' -o -name '*.php' -o -name '*.rb' -o -name '*.rs' \
  -o -name '*.scala' -o -name '*.swift' -o -name '*.py' \) | wc -l)
start=$(date +%s.%N)
# lizard exits with the number of functions over its complexity threshold, not an error.
python3 -m lizard -t "$threads" "$dir" >/dev/null || true
end=$(date +%s.%N)
python3 - "$files" "$start" "$end" <<'PY'
import sys
files, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"lizard: {files} files in {end - start:.2f} s: {files / (end - start):.1f} files/s")
PY
