#!/usr/bin/env bash
# Compares one edit in a large workspace under two pipe binaries,
# interleaved so that load on the machine hits both alike. Each binary has
# its own copy of a workspace built by `go run ./bench gen` (and built by
# that binary once, so its state files are its own); both use the cache
# they were built with.
#
#   bash bench/one-edit.sh OLD_PIPE OLD_WS NEW_PIPE NEW_WS [RUNS]
#
# Each run, for each binary: a settled build (which records the snapshot),
# a timed no-op, then one source file at the head of a chain of ten
# packages is rewritten and the build after it is timed, with its --events.
# "beyond the actions" is the wall time minus the summed duration of the
# executed actions (they form one chain, so they run one after another).
# Prints the medians: wall, user+system CPU, peak RSS, wall beyond the
# actions, and the number of actions executed.
set -euo pipefail
old=$1 oldws=$2 new=$3 newws=$4 runs=${5:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=$(ls -d "$oldws"/pkgs/g*/p* | wc -l)
mid=$((n / 2))
edit=$(printf 'pkgs/g%02d/p%04d/files/f0.txt' $((mid / 100)) "$mid")
timed() { # NAME BIN WS: one build, appends "wall cpu rss beyond executed" to $work/NAME
  local name=$1 bin=$2 ws=$3
  (cd "$ws" && /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" build --events "$work/ev" >/dev/null 2>&1)
  read -r wall u s rss <"$work/time"
  python3 - "$work/ev" "$wall" "$u" "$s" "$rss" >>"$work/$name" <<'PY'
import json, sys
ev, wall, u, s, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ran = [json.loads(l) for l in open(ev) if '"executed"' in l]
acts = sum(e["duration_ms"] for e in ran if e.get("status") == "executed")
print(f"{wall*1000:.0f} {(u+s)*1000:.0f} {rss/1024:.0f} {wall*1000-acts:.0f} {len(ran)}")
PY
}
for i in $(seq "$runs"); do
  for b in old new; do
    if [ $b = old ]; then bin=$old ws=$oldws; else bin=$new ws=$newws; fi
    sleep 0.3; (cd "$ws" && "$bin" build >/dev/null 2>&1) # settle, record the snapshot
    sleep 0.3; timed noop-$b "$bin" "$ws"
    echo "edit $b $i $(date +%s%N)" >"$ws/$edit"
    timed edit-$b "$bin" "$ws"
  done
done
python3 - "$work" "$runs" <<'PY'
import statistics, sys
work, runs = sys.argv[1], sys.argv[2]
print(f"medians of {runs} interleaved runs (wall ms, user+sys CPU ms, peak RSS MB, wall beyond the actions ms, executed)")
for what in ("noop", "edit"):
    for b in ("old", "new"):
        rows = [list(map(float, l.split())) for l in open(f"{work}/{what}-{b}")]
        med = [statistics.median(c) for c in zip(*rows)]
        rng = (min(r[0] for r in rows), max(r[0] for r in rows))
        print(f"{what:4} {b}: wall {med[0]:.0f} ({rng[0]:.0f}-{rng[1]:.0f}), cpu {med[1]:.0f}, rss {med[2]:.0f}, beyond actions {med[3]:.0f}, executed {med[4]:.0f}")
PY
