#!/usr/bin/env bash
# What confining the programs of steps costs per action: a pytest action
# (`pipe test --cache-test-results=no` of the workspace `pipe new fastapi`
# scaffolds, one py_test) and a cdk synth (`pipe build --verify` of a
# one-stack app: the bundle and the synth run again, nothing else), OLD
# and NEW pipe interleaved, each with its own copy of the workspace and
# its own cache. Prints the median wall time and CPU (user + sys of pipe
# and everything it started) of each.
#
#   bash bench/confine.sh OLD_PIPE NEW_PIPE NODE_MODULES [RUNS]
#
# Each pipe should have its pipe-sandbox next to it, as installed.
set -euo pipefail
old=$1 new=$2 nm=$(realpath "$3") runs=${4:-9}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin() { if [ "$1" = old ]; then echo "$old"; else echo "$new"; fi; }

# The pytest workspace, made once by bench pytest (wheels of Debian's
# FastAPI stack and pytest, and their lock), copied for each pipe. The
# scaffold pins newer versions than Debian's: the project is rewritten to
# ask for what the lock holds. bench pytest's own first test fails on the
# pinned project, hence || true.
(cd "$here" && go run ./bench pytest -pipe "$new" -runs 1 "$work/py" >/dev/null 2>&1) || true
cat >"$work/py/ws/packages/my-api/pyproject.toml" <<'EOF'
[project]
name = "my-api"
version = "0.1.0"
requires-python = ">=3.12"
dependencies = ["aws-lambda-powertools[tracer]", "fastapi", "uvicorn"]

[dependency-groups]
dev = ["httpx", "pytest"]

[tool.pytest.ini_options]
addopts = "--import-mode=importlib"
pythonpath = ["."]
testpaths = ["tests"]
EOF
# The synth workspace.
mkdir -p "$work/cdk/infra/src"
printf 'workspace(name = "b", node_modules = %s)\n' "\"$nm\"" >"$work/cdk/WORKSPACE.star"
printf '{"context": {}}\n' >"$work/cdk/infra/cdk.json"
printf 'cdk_stack(name = "infra", app = "src/main.ts", srcs = ["src/main.ts"])\n' >"$work/cdk/infra/BUILD.star"
cat >"$work/cdk/infra/src/main.ts" <<'EOF'
import { App, Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';

const app = new App();
const stack = new Stack(app, 'BenchStack');
new s3.Bucket(stack, 'Bucket');
new sqs.Queue(stack, 'Queue');
EOF
for b in old new; do
  cp -r "$work/py" "$work/py-$b"
  cp -r "$work/cdk" "$work/cdk-$b"
done

pytest() { (cd "$work/py-$1/ws" && PIPE_CACHE_DIR="$work/py-$1/cache" PIPE_PYTHON_INDEX="file://$work/py-$1/wheels" "$(bin "$1")" test --cache-test-results=no //packages/my-api:test >/dev/null 2>&1); }
synth() { (cd "$work/cdk-$1" && PIPE_CACHE_DIR="$work/cdk-$1/cache" "$(bin "$1")" build --verify //infra >/dev/null 2>&1); }

# One measurement: "wall cpu" in ms; a failed command stops the script.
measure() {
  /usr/bin/time -o "$work/time" -f '%e %U %S' "$@" || { echo "failed: $*" >&2; exit 1; }
  awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' "$work/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for what in pytest synth; do
  for b in old new; do $what $b; $what $b; done # warm: environments made, caches filled
  declare -A wall=() cpu=()
  for i in $(seq "$runs"); do
    for b in old new; do
      measure bash -c "$(declare -f bin $what); old=$old new=$new work=$work; $what $b" >"$work/m"
      read -r w c <"$work/m"
      wall[$b]+="$w "
      cpu[$b]+="$c "
    done
  done
  for b in old new; do
    echo "$what $b: wall $(echo "${wall[$b]}" | tr ' ' '\n' | grep . | median) ms, cpu $(echo "${cpu[$b]}" | tr ' ' '\n' | grep . | median) ms (median of $runs)"
  done
done
