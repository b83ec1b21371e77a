#!/usr/bin/env bash
# scripts/build.sh: the one entry point of the quick start and of CI.
#   bash scripts/build.sh demo    install what is missing, build, run the demo
#   bash scripts/build.sh test    install what is missing, build, run every spec
#   bash scripts/build.sh build   install what is missing, build
# Debian 12 as root (or with sudo). Ends `test` with "specs: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build, the specs and the tools they drive need from Debian.
PACKAGES=(build-essential lua5.4 liblua5.4-dev lua-busted premake4
          libreadline-dev tmux graphviz)

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

# Runs busted under one build of the host; adds to the totals.
PASSED=0
FAILED=0
run_specs () {
  local bin=$1 label=$2 out
  shift 2
  echo "== specs under $bin ($label)"
  out=$(mktemp)
  set +e
  env "$@" FMAP_BIN="$bin" busted --lua="$bin" -o utfTerminal 2>&1 \
    | tee "$out"
  set -e
  # busted's closing line: "N successes / N failures / N errors / N pending"
  local line s f e
  line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' \
         "$out" | tail -n 1 || true)
  rm -f "$out"
  if [ -z "$line" ]; then
    echo "busted did not finish under $bin"
    FAILED=$((FAILED + 1))
    return
  fi
  s=$(echo "$line" | sed -E 's/^.*\b([0-9]+) success.*$/\1/')
  f=$(echo "$line" | sed -E 's/^.*\b([0-9]+) failure.*$/\1/')
  e=$(echo "$line" | sed -E 's/^.*\b([0-9]+) error.*$/\1/')
  PASSED=$((PASSED + s))
  FAILED=$((FAILED + f + e))
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
    install_missing
    build release sanitize
    run_specs build/bin/fmap release
    # Leaks are checked by their own script; here ASan and UBSan watch
    # every access the suite makes.
    run_specs build/sanitize/bin/fmap sanitize \
      ASAN_OPTIONS=detect_leaks=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    echo "specs: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    ;;
  *)
    echo "usage: bash scripts/build.sh demo|test|build" >&2
    exit 2
    ;;
esac
