#!/usr/bin/env bash
# No-change `pipe deploy` of 5 stacks against moto (budget 1 s; design: 300 ms),
# and `cdk deploy --all` of the same assembly against the same moto.
# The CDK CLI (aws-cdk@2.1148.1, the version that reads schema-55 assemblies)
# is installed from npm into bench/work/cdk unless PIPE_CDK_CLI names one;
# without npm the comparison is skipped.
# Usage: bash bench/deploy/run.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/pipe" ./cmd/pipe
cdk=${PIPE_CDK_CLI:-}
if [ -z "$cdk" ] && command -v npm >/dev/null; then
  mkdir -p bench/work/cdk
  if [ ! -x bench/work/cdk/node_modules/.bin/cdk ]; then
    (cd bench/work/cdk && npm install --no-audit --no-fund --silent aws-cdk@2.1148.1 >/dev/null)
  fi
  cdk=$PWD/bench/work/cdk/node_modules/.bin/cdk
fi
go run ./bench/deploy -pipe "$work/pipe" -cdk "$cdk" -runs "$runs"
