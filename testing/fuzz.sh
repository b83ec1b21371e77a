#!/usr/bin/env bash
# testing/fuzz.sh [SECONDS]: builds testing/fuzz_open.c with libFuzzer
# (clang -fsanitize=fuzzer,address,undefined) and fuzzes the core's file
# open path for SECONDS (default 60) from the seed corpus in spec/corpus/
# (regenerated there by the target itself if missing). New inputs go to
# build/fuzz/corpus, crashes to build/fuzz/crash-*; the exit status is
# non-zero if the fuzzer found a crash, a leak or a failed assertion.
# Needs Debian's clang and libclang-rt-14-dev (or the clang version's).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
out=build/fuzz
mkdir -p "$out/corpus"
cc="${CC_FUZZ:-clang}"
"$cc" -g -O1 -std=c99 -Wall -Wextra -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iengine/core testing/fuzz_open.c engine/core/txn.c engine/core/check.c \
  engine/core/lock.c \
  -o "$out/fuzz_open"
if [ -z "$(ls -A spec/corpus 2>/dev/null)" ]; then
  mkdir -p spec/corpus
  FMAP_FUZZ_MKSEEDS=spec/corpus "$out/fuzz_open"
fi
# the strings a mutation can hardly find by itself
printf '%s\n' 'hdr="\x89fmap\x0d\x0a\x1a"' 'free="fmapFREE"' \
  'v1="\x01\x00\x00\x00"' 'v2="\x02\x00\x00\x00"' 'v3="\x03\x00\x00\x00"' \
  'bs="\x00\x10\x00\x00"' \
  > "$out/fmap.dict"
log="$out/fuzz.log"
# The fuzzer's own status decides; its log is read afterwards (a status
# taken from a pipeline ending in `|| true` could be true's).
set +e
"$out/fuzz_open" -max_total_time="$secs" -max_len=8192 -timeout=10 \
  -rss_limit_mb=2048 -handle_xfsz=0 -print_final_stats=1 -dict="$out/fmap.dict" \
  -artifact_prefix="$out/" "$out/corpus" spec/corpus > "$log" 2>&1
status=$?
set -e
grep -E '^(#[0-9]+ +(INITED|DONE|pulse))|ERROR|SUMMARY|^stat::' "$log" ||
  true
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
echo "fuzz_open: ${runs:-?} executions in ${secs} s, exit status $status" \
     "(log: $log)"
exit "$status"
