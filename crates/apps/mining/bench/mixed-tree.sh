#!/usr/bin/env bash
# Builds the mixed tree for `bench mining` and `lizard.sh`: real code in six languages from
# what this machine has or the registries give, copied into DIR (default
# target/bench/mixed):
#   Rust       tokio's src (the cargo registry; `cargo fetch` brings it)
#   Python     the standard library's asyncio, email and json packages
#   Java       the JDK's java/util/concurrent (src.zip of the installed JDK)
#   C          ring's C sources (the cargo registry)
#   JavaScript lodash 4 (npm)
#   TypeScript rxjs 7's src (npm)
#   crates/apps/mining/bench/mixed-tree.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../../../.."
dir=${1:-target/bench/mixed}
rm -rf "$dir" && mkdir -p "$dir"
cargo fetch --locked -q
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
tokio=$(ls -d "$registry"tokio-1.* | sort -V | tail -1)
ring=$(ls -d "$registry"ring-0.17.* | sort -V | tail -1)
cp -r "$tokio/src" "$dir/rust"
mkdir -p "$dir/c" && find "$ring/crypto" -name '*.c' -exec cp --parents {} "$dir/c" \;
python=$(python3 -c 'import os, json; print(os.path.dirname(os.path.dirname(json.__file__)))')
mkdir -p "$dir/python"
for package in asyncio email json; do cp -r "$python/$package" "$dir/python/"; done
find "$dir/python" -name '__pycache__' -prune -exec rm -rf {} +
src_zip=$(ls /usr/lib/jvm/*/lib/src.zip 2>/dev/null | while read -r z; do [ -f "$z" ] && echo "$z"; done | head -1)
if [ -n "$src_zip" ]; then
  mkdir -p "$dir/java" && (cd "$dir/java" && unzip -q "$(realpath "$src_zip")" 'java.base/java/util/concurrent/*')
fi
npm_dir=target/bench/npm
[ -d "$npm_dir/node_modules/rxjs" ] \
  || npm install --silent --no-audit --no-fund --prefix "$npm_dir" lodash@4 rxjs@7 >/dev/null
mkdir -p "$dir/javascript" "$dir/typescript"
find "$npm_dir/node_modules/lodash" -maxdepth 1 -name '*.js' -exec cp {} "$dir/javascript/" \;
cp -r "$npm_dir/node_modules/rxjs/src" "$dir/typescript/rxjs"
# Only source files: both tools then see the same set.
find "$dir" -type f ! -name '*.rs' ! -name '*.py' ! -name '*.java' ! -name '*.c' \
  ! -name '*.js' ! -name '*.ts' -delete
for ext in rs py java c js ts; do
  printf '%-5s %5d files\n' "$ext" "$(find "$dir" -name "*.$ext" | wc -l)"
done
echo "$dir: $(find "$dir" -type f | wc -l) files, $(du -sh "$dir" | cut -f1)"
