#!/usr/bin/env bash
# scripts/build.sh: the one entry point of the quick start and of CI.
#   bash scripts/build.sh demo    install what is missing, build, run the demo
#   bash scripts/build.sh test    install what is missing, build, run every spec
#   bash scripts/build.sh build   install what is missing, build
# Debian 12 as root (or with sudo). `test` runs the suite under the release
# and the sanitizer builds, a valgrind leak check and a 60 s libFuzzer run,
# and ends with "specs: N passed, N failed" (each extra check counts as one).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build, the specs and the tools they drive need from Debian.
PACKAGES=(build-essential lua5.4 liblua5.4-dev lua-busted premake4
          libreadline-dev tmux graphviz luarocks)

install_missing () {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
      || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

build () {
  premake4 --file=premake5.lua gmake >/dev/null
  local cfg
  for cfg in "$@"; do
    make -s -C build config="$cfg" -j"$(nproc)"
  done
}

# The checks run two at a time, one per core of a small machine, each
# into a log of its own that is printed whole when it ends; the totals
# are added up after.
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
PASSED=0
FAILED=0

# Starts busted under one build of the host, in the background.
start_specs () {
  local bin=$1 label=$2
  shift 2
  ( set +e
    env "$@" FMAP_BIN="$bin" busted --lua="$bin" -o utfTerminal \
      >"$LOGS/$label.log" 2>&1
    echo $? >"$LOGS/$label.status" ) &
}

# Starts a check that is not a busted suite, in the background; it counts
# as one spec.
start_check () {
  local label=$1
  shift
  ( set +e
    "$@" >"$LOGS/$label.log" 2>&1
    echo $? >"$LOGS/$label.status" ) &
}

# Prints a suite's log and adds its counts to the totals. A run whose
# exit status is not 0 although every spec passed (a leak that
# LeakSanitizer reports at exit, a crash after the summary) counts as one
# failure more.
tally_specs () {
  local label=$1 status line s f e
  echo "== specs under the $label build"
  cat "$LOGS/$label.log"
  status=$(cat "$LOGS/$label.status" 2>/dev/null || echo 1)
  # busted's closing line: "N successes / N failures / N errors / N pending"
  line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' \
         "$LOGS/$label.log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    echo "busted did not finish under the $label build"
    FAILED=$((FAILED + 1))
    return
  fi
  s=$(echo "$line" | sed -E 's/^.*\b([0-9]+) success.*$/\1/')
  f=$(echo "$line" | sed -E 's/^.*\b([0-9]+) failure.*$/\1/')
  e=$(echo "$line" | sed -E 's/^.*\b([0-9]+) error.*$/\1/')
  PASSED=$((PASSED + s))
  FAILED=$((FAILED + f + e))
  if [ "$status" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
    echo "busted under the $label build exited with status $status after" \
         "its specs"
    FAILED=$((FAILED + 1))
  fi
}

# Prints a check's log and counts it.
tally_check () {
  local label=$1 status
  echo "== $label"
  cat "$LOGS/$label.log"
  status=$(cat "$LOGS/$label.status" 2>/dev/null || echo 1)
  if [ "$status" -eq 0 ]; then
    PASSED=$((PASSED + 1))
  else
    echo "FAILED: $label"
    FAILED=$((FAILED + 1))
  fi
}

case "${1:-}" in
  build)
    install_missing
    build release
    ;;
  demo)
    install_missing
    build release
    build/bin/fmap scripts/demo.lua
    ;;
  test)
    # libFuzzer comes with clang's runtime; valgrind checks for leaks.
    install_missing clang libclang-rt-14-dev valgrind
    build release sanitize
    # The release build, and beside it the sanitizer build: ASan and
    # UBSan watch every access the suite makes, and LeakSanitizer every
    # allocation left when the Lua state closes. The randomized specs run
    # half their cases there (the release run does them all).
    echo "== the spec suite under the release and the sanitizer builds," \
         "side by side (their logs follow when both end)"
    start_specs build/bin/fmap release
    start_specs build/sanitize/bin/fmap sanitize \
      FMAP_FUZZ_SCALE="${FMAP_FUZZ_SCALE:-0.5}" \
      ASAN_OPTIONS=detect_leaks=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    wait
    tally_specs release
    tally_specs sanitize
    echo "== the valgrind leak check beside 60 s of libFuzzer"
    start_check "valgrind leak check" bash testing/memcheck.sh valgrind
    start_check "libFuzzer on the file-open path" bash testing/fuzz.sh 60
    wait
    tally_check "valgrind leak check"
    tally_check "libFuzzer on the file-open path"
    echo "specs: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    ;;
  -h|--help)
    cat <<'EOF'
usage: bash scripts/build.sh demo|test|build
Installs what is missing (Debian 12, as root or with sudo), builds fmap
into build/, then:
  demo    runs the demo (scripts/demo.lua)
  test    runs every spec under the release and the sanitizer builds, a
          valgrind leak check and 60 s of libFuzzer, and ends with the
          line "specs: N passed, N failed"
  build   nothing more
Example:
  bash scripts/build.sh test
Exit status: 0 when all of it succeeded, 1 when a step failed, 2 for a
bad argument.
EOF
    ;;
  *)
    echo "usage: bash scripts/build.sh demo|test|build" >&2
    exit 2
    ;;
esac
