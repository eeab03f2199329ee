#!/usr/bin/env bash
# Cost of one command in the namespace sandbox, for several builds of
# internal/sandbox, interleaved so that load on the machine hits all
# alike. Each DIR holds a test binary of the package (sandbox.test) and
# the pipe-sandbox built with it, as an installed pipe has it next to
# itself:
#
#   go test -c -o DIR/sandbox.test ./internal/sandbox && go build -o DIR/pipe-sandbox ./cmd/pipe-sandbox
#   bash bench/sandbox.sh ROUNDS COMMANDS DIR...
#
# Prints, per round and DIR, BenchmarkRun's wall time per command (plain:
# /bin/true without a sandbox; runner-*: through a build's helpers) and
# the CPU time per command of the whole benchmark process tree (perf
# stat's task-clock, which also counts supervisors nobody reaps).
set -euo pipefail
rounds=$1 n=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
  for d in "$@"; do
    for b in plain runner-pid runner-isolated runner-isolated-10-inputs; do
      (cd "$d" && perf stat -x, -e task-clock -o "$out" ./sandbox.test -test.run XXX -test.bench "Run/$b\$" -test.benchtime "${n}x") |
        awk -v d="$d" -v r="$r" -v b="$b" '/ns\/op/ {printf "round %s  %-20s %-28s wall %6.2f ms", r, d, b, $3 / 1e6}'
      awk -F, -v n="$n" '/task-clock/ {printf "  cpu %6.2f ms\n", $1 / n}' "$out"
    done
  done
done
