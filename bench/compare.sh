#!/usr/bin/env bash
# Compares the no-op `pipe build //...` of two pipe binaries on one
# workspace, interleaved so that load on the machine hits both alike:
# each binary gets its own copy of the workspace and its own cache, a warm
# up, then RUNS timed builds in turn. Prints each median and the ratio.
#
#   bash bench/compare.sh OLD_PIPE NEW_PIPE WORKSPACE [RUNS]
#
# Also counts instructions of one no-op build each with callgrind when
# valgrind is installed: repeatable on a loaded machine, where wall times
# are not (GODEBUG=asyncpreemptoff=1 keeps callgrind and Go's signals apart).
set -euo pipefail
old=$1 new=$2 src=$3 runs=${4:-21}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for b in old new; do
  cp -r "$src" "$work/ws-$b"
  rm -rf "$work/ws-$b/dist" "$work/ws-$b/.pipe"
done
bin() { if [ "$1" = old ]; then echo "$old"; else echo "$new"; fi; }
run() { (cd "$work/ws-$1" && PIPE_CACHE_DIR="$work/cache-$1" "$(bin "$1")" build >/dev/null 2>&1); }
for b in old new; do run $b; run $b; done
sleep 0.3 # past the racy window, so stats are trusted
for b in old new; do run $b; done
declare -A times
for i in $(seq "$runs"); do
  for b in old new; do
    s=$(date +%s%N); run $b; e=$(date +%s%N)
    times[$b]+="$(( (e - s) / 1000 )) "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(echo "${times[old]}" | median); mn=$(echo "${times[new]}" | median)
echo "wall, median of $runs: old $((mo / 1000)).$(( (mo % 1000) / 100 )) ms, new $((mn / 1000)).$(( (mn % 1000) / 100 )) ms, new/old $(awk "BEGIN {printf \"%.3f\", $mn/$mo}")"
if command -v valgrind >/dev/null; then
  for b in old new; do
    (cd "$work/ws-$b" && GODEBUG=asyncpreemptoff=1 PIPE_CACHE_DIR="$work/cache-$b" \
      valgrind --tool=callgrind --callgrind-out-file="$work/cg-$b" "$(bin $b)" build >/dev/null 2>"$work/cg-$b.log")
  done
  io=$(grep -o 'Collected : [0-9]*' "$work/cg-old.log" | grep -o '[0-9]*$')
  in=$(grep -o 'Collected : [0-9]*' "$work/cg-new.log" | grep -o '[0-9]*$')
  echo "instructions: old $io, new $in, new/old $(awk "BEGIN {printf \"%.3f\", $in/$io}")"
fi
