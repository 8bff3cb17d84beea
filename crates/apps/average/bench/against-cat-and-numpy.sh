#!/usr/bin/env bash
# Issue 5's three figures, measured together on the same files, round after round:
#   processing  Conveyor's time from the end of generation to the job's end (its resource);
#   cat         reading the job's input files to /dev/null (page cache warm, as for Conveyor);
#   numpy       bench/numpy_average.py, one process, on the same files (needs numpy).
#
#   crates/apps/average/bench/against-cat-and-numpy.sh [ROUNDS] [URL]
#
# Against a running `conveyor up` (or `serve` plus workers) whose average store is a local
# directory on this machine. Each round submits F = 1,000 files of C = 10,000 numbers; the
# jobs are deleted at the end, not between rounds: on an ext4 without a journal (this
# machine's), creating files within about 35 s of deleting many scans past every inode just
# freed, which more than doubled the next rounds' times. Environment: CONVEYOR (the binary, default target/release/conveyor),
# FILES and ENTRIES (defaults 1000 and 10000).
set -euo pipefail

rounds=${1:-5}
url=${2:-http://127.0.0.1:8000}
conveyor=${CONVEYOR:-target/release/conveyor}
files=${FILES:-1000}
entries=${ENTRIES:-10000}
here=$(cd "$(dirname "$0")" && pwd)
numpy=yes
python3 -c 'import numpy' 2>/dev/null || {
    numpy=
    echo "numpy is not installed (pip install numpy): its column is left empty" >&2
}

seconds() { # seconds taken by "$@", to the millisecond
    local start end
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    echo "scale=3; ($end - $start) / 1000000000" | bc | sed 's/^\./0./'
}

jobs=()
trap 'for id in "${jobs[@]}"; do curl -fsS -X DELETE "$url/api/average/jobs/$id" > /dev/null; done' EXIT
printf '%-6s %-11s %-7s %-7s %s\n' round processing cat numpy processing/cat
for round in $(seq 1 "$rounds"); do
    read -r id processing input < <("$conveyor" average run --url "$url" \
        --files "$files" --entries "$entries" --seed "$round" --json |
        python3 -c 'import json, sys; j = json.load(sys.stdin)["job"]
print(j["id"], j["timings"]["processing_seconds"], j["input_location"])')
    jobs+=("$id")
    case $input in
    file://*) dir=${input#file://} ;;
    *)
        echo "the store is not a local directory ($input): nothing to cat" >&2
        exit 1
        ;;
    esac
    cat_seconds=$(seconds sh -c "cat '$dir'/* > /dev/null")
    numpy_seconds=
    if [ -n "$numpy" ]; then
        numpy_seconds=$(python3 "$here/numpy_average.py" "$dir" | awk '{print $(NF-1)}')
    fi
    ratio=$(echo "scale=2; $processing / $cat_seconds" | bc | sed 's/^\./0./')
    printf '%-6s %-11s %-7s %-7s %s\n' "$round" "$processing" "$cat_seconds" "$numpy_seconds" "$ratio"
done
