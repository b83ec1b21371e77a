#!/usr/bin/env bash
# bench/bench_pair.sh OTHER [PAIRS] [ONLY] [N]: times this checkout's
# build against another checkout's (a clone at another commit, built) on
# the standard workload, both at the same time, each pinned to one of the
# first two cores, the cores swapped from pair to pair. On a shared VM the
# rates of one run and the next differ by 20-30%, more than most changes;
# two builds running side by side see the same machine.
#   OTHER  a checkout with build/bin/fmap, say:
#            git clone -q . /tmp/old && git -C /tmp/old checkout REV
#            (cd /tmp/old && premake4 --file=premake5.lua gmake &&
#             make -C build config=release)
#   PAIRS  how many pairs (default 4)
#   ONLY   bench/bench.lua's --only (default fmap)
#   N      records (default 1000000)
# Prints, per pair, the rates (ops/s) of both, then for each peer and
# phase this build's rate over the other's. Exits 1 if a run fails, 2 on a usage error.
set -uo pipefail
usage () {
  echo "bench_pair.sh: $1" >&2
  echo "usage: bash bench/bench_pair.sh OTHER [PAIRS] [ONLY] [N]" >&2
  exit 2
}
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  echo "usage: bash bench/bench_pair.sh OTHER [PAIRS] [ONLY] [N]"
  echo
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
[ $# -ge 1 ] || usage "OTHER, a built checkout to compare with, is missing"
other="$(cd "$1" 2>/dev/null && pwd)" || usage "no folder $1"
pairs="${2:-4}"
only="${3:-fmap}"
n="${4:-1000000}"
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || usage "PAIRS wants a positive integer"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || usage "N wants a positive integer"
for d in "$here" "$other"; do
  [ -x "$d/build/bin/fmap" ] || usage "$d/build/bin/fmap is missing: build it"
done

# Runs a command on core $1, where there are two cores to pin to.
pin () {
  local core="$1"; shift
  if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    taskset -c "$core" "$@"
  else
    "$@"
  fi
}

# The rate rows of a bench.lua output: label, then four rates, commas out.
rows () {
  awk '$NF == "ok" {
         label = ""; i = 1
         while ($i !~ /^[0-9,]+$/) { label = label (label ? " " : "") $i; i++ }
         printf "%s", label
         for (k = i; k < i + 4; k++) { r = $k; gsub(",", "", r); printf "\t%s", r }
         printf "\n"
       }' "$1"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "this: $here ($(git -C "$here" rev-parse --short HEAD 2>/dev/null))"
echo "other: $other ($(git -C "$other" rev-parse --short HEAD 2>/dev/null))"
echo "bench.lua --n $n --only $only, $pairs pair(s)"
status=0
for p in $(seq 1 "$pairs"); do
  mine=$(( p % 2 )); theirs=$(( 1 - mine ))
  (cd "$here" && pin "$mine" build/bin/fmap bench/bench.lua --n "$n" \
     --only "$only" > "$tmp/this.$p" 2>&1) &
  a=$!
  (cd "$other" && pin "$theirs" build/bin/fmap bench/bench.lua --n "$n" \
     --only "$only" > "$tmp/other.$p" 2>&1) &
  b=$!
  wait "$a" || { echo "this build's run failed:" >&2; cat "$tmp/this.$p" >&2; status=1; }
  wait "$b" || { echo "the other build's run failed:" >&2; cat "$tmp/other.$p" >&2; status=1; }
  echo "pair $p (this build on core $mine, the other on core $theirs)"
  rows "$tmp/this.$p" > "$tmp/rows.this.$p"
  rows "$tmp/other.$p" > "$tmp/rows.other.$p"
  for w in this other; do
    awk -F '\t' -v w="$w" '{ printf "  %-5s %-15s insert %s  get %s  scan %s  delete %s\n",
                               w, $1, $2, $3, $4, $5 }' "$tmp/rows.$w.$p"
  done
  awk -F '\t' 'NR == FNR { other[$1] = $0; next }
       ($1 in other) {
         split(other[$1], o, "\t")
         printf "  %-15s this/other  insert %.2f  get %.2f  scan %.2f  delete %.2f\n",
           $1, $2 / o[2], $3 / o[3], $4 / o[4], $5 / o[5]
       }' "$tmp/rows.other.$p" "$tmp/rows.this.$p"
done
exit "$status"
