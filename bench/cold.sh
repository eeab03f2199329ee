#!/usr/bin/env bash
# Cold `pipe build //...` of one workspace with several pipe binaries and
# flags, interleaved so that load on the machine hits all alike: each run
# gets a fresh copy of the workspace and an empty cache. Prints, per
# variant, the median wall time and the median CPU time (user + system of
# pipe and of every process it started: the sandbox's helper, supervisors
# and commands), each also per action. A last line times the commands
# alone: each package's genrule command run by bash,
# as many at once as pipe's default -j, without pipe.
#
#   bash bench/cold.sh WORKSPACE RUNS BIN[:FLAG,FLAG] ...
#   bash bench/cold.sh /tmp/ws1k 5 /tmp/pipe-main /tmp/pipe:--sandbox=none /tmp/pipe:--sandbox=namespace
#
# WORKSPACE comes from `go run ./bench gen -packages N -files 10 DIR`.
# Wall times on a loaded machine swing; CPU times much less. The copies
# and caches go to $TMPDIR (default /tmp): TMPDIR=/dev/shm/x measures on
# a tmpfs, without the churn of a disk file system's recently deleted
# inodes. With perf installed the CPU time is `perf stat`'s task-clock of
# pipe and all its descendants, which also counts processes nobody reaps
# (a sandbox helper's supervisors when pipe kills the helper at exit);
# otherwise it is /usr/bin/time's user + system.
set -euo pipefail
src=$1 runs=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
actions=$(find "$src" -name BUILD.star | wc -l)
declare -A wall cpu
one() { # variant index, binary, flags
  local ws="$work/ws" cache="$work/cache"
  rm -rf "$ws" "$cache"
  cp -r "$src" "$ws"
  rm -rf "$ws/dist" "$ws/.pipe"
  local flags=() t
  IFS=, read -r -a flags <<<"$3"
  local perf=()
  if command -v perf >/dev/null; then perf=(perf stat -x, -e task-clock -o "$work/perf"); fi
  t=$( { cd "$ws" && PIPE_CACHE_DIR="$cache" /usr/bin/time -f '%e %U %S' "${perf[@]}" "$2" build "${flags[@]}" //... >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; tail -1 "$work/err"; } )
  read -r e u s <<<"$t"
  wall[$1]+="$e "
  if [ ${#perf[@]} -gt 0 ]; then
    cpu[$1]+="$(awk -F, '/task-clock/ {print $1 / 1000}' "$work/perf") "
  else
    cpu[$1]+="$(awk "BEGIN {print $u + $s}") "
  fi
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for r in $(seq "$runs"); do
  i=0
  for v in "$@"; do
    one $i "${v%%:*}" "$([[ $v == *:* ]] && echo "${v#*:}" || true)"
    i=$((i + 1))
  done
done
i=0
for v in "$@"; do
  w=$(echo "${wall[$i]}" | median) c=$(echo "${cpu[$i]}" | median)
  printf '%-45s wall %6.2f s (%5.2f ms/action)  cpu %6.2f s (%5.2f ms/action)  [wall: %s]\n' "$v" "$w" "$(awk "BEGIN {print $w * 1000 / $actions}")" "$c" "$(awk "BEGIN {print $c * 1000 / $actions}")" "${wall[$i]% }"
  i=$((i + 1))
done
# The commands alone, in a copy of the workspace with each package's
# output where its dependents read it: the output directories made first
# in one go, then each package's command started by bash as pipe starts
# it, as many at once as pipe's default -j (the number of CPUs), so that
# load on the machine slows both alike. What a variant costs beyond this
# is pipe's own per action.
jobs=$(nproc)
cp -r "$src" "$work/cmds"
(cd "$work/cmds" && find . -name BUILD.star | sort | xargs -n1 dirname >"$work/dirs" && sed 's#^#dist/#; s#$#/gen#' "$work/dirs" | xargs mkdir -p)
cat >"$work/cmds.sh" <<'SH'
cd "$1"
xargs -P "$3" -I{} /bin/bash -eo pipefail -c 'cat {}/files/*.txt | cksum > dist/{}/gen/out.txt' <"$2"
SH
perf=()
if command -v perf >/dev/null; then perf=(perf stat -x, -e task-clock -o "$work/perf"); fi
t=$( { /usr/bin/time -f '%e %U %S' "${perf[@]}" bash "$work/cmds.sh" "$work/cmds" "$work/dirs" "$jobs" >/dev/null 2>"$work/err"; tail -1 "$work/err"; } )
read -r e u s <<<"$t"
c=$(awk "BEGIN {print $u + $s}")
if [ ${#perf[@]} -gt 0 ]; then c=$(awk -F, '/task-clock/ {print $1 / 1000}' "$work/perf"); fi
printf '%-45s wall %6.2f s (%5.2f ms/action)  cpu %6.2f s (%5.2f ms/action)\n' "commands alone (bash -c per package, -P $jobs)" "$e" "$(awk "BEGIN {print $e * 1000 / $actions}")" "$c" "$(awk "BEGIN {print $c * 1000 / $actions}")"
# Per action beyond the command: CPU, and job-slot time (the difference
# in wall time times the jobs).
i=0
for v in "$@"; do
  w=$(echo "${wall[$i]}" | median) cv=$(echo "${cpu[$i]}" | median)
  printf '%-45s beyond the command: cpu %5.2f ms/action, job-slot time ((wall - the commands wall) x %d jobs) %5.2f ms/action\n' "$v" "$(awk "BEGIN {print ($cv - $c) * 1000 / $actions}")" "$jobs" "$(awk "BEGIN {print ($w - $e) * $jobs * 1000 / $actions}")"
  i=$((i + 1))
done
