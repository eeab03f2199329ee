#!/usr/bin/env bash
# Measures no-op `pipe build //...` wall time, process start included:
#   - examples/hello (4 genrules)             budget 10 ms (issue: 30 ms)
#   - generated 1,000 packages x 10 files      budget 150 ms
# and pipe test (no-op, scaffolded workspace; budget 50 ms) and the Python
# environment (30 MB of wheels) against pip install --target.
# Usage: bash bench/run.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-21}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIPE_CACHE_DIR="$work/cache"
go build -o "$work/pipe" ./cmd/pipe
echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), $(uname -r)"
cp -r examples/hello "$work/hello"
rm -rf "$work/hello/dist" "$work/hello/.pipe"
echo "== examples/hello"
go run ./bench noop -pipe "$work/pipe" -runs "$runs" "$work/hello"
echo "== 1,000 packages x 10 files"
go run ./bench gen -packages 1000 -files 10 "$work/big" >/dev/null
go run ./bench noop -pipe "$work/pipe" -runs "$runs" "$work/big"
echo "== python_bundle, 30 MB of dependencies"
go run ./bench bundle -pipe "$work/pipe" "$work/bundle"
echo "== remote cache: bazel-remote over HTTP and gRPC (needs bazel-remote: see .ci/run)"
go run ./bench remote -pipe "$work/pipe" "$work/remote"
echo "== pipe test: no-op on the scaffolded workspace (needs Debian's python3-fastapi, python3-pytest, python3-httpx and pyenv's 3.11/3.12)"
go run ./bench pytest -pipe "$work/pipe" -runs "$runs" "$work/pytest" || echo "(not measured)"
echo "== the locked host environment: 30 MB of wheels, cold/warm/hot, against pip install --target"
go run ./bench pyenv -pipe "$work/pipe" "$work/pyenv" || echo "(not measured)"
