#!/usr/bin/env bash
# Measures no-op `pipe build //...` wall time, process start included:
#   - examples/hello (4 genrules)             budget 10 ms (issue: 30 ms)
#   - generated 1,000 packages x 10 files      budget 150 ms
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
