#!/usr/bin/env bash
# testing/memcheck.sh [lsan|valgrind|all]: fails on memory leaks.
#   lsan      the whole spec suite under the sanitizer build
#             (build/sanitize/bin/fmap), LeakSanitizer on: busted closes
#             the Lua state at exit, so whatever the engine did not free
#             by then is reported, and the exit status is not 0
#   valgrind  a representative part under valgrind --leak-check=full with
#             the release build: the block-layer specs, a share of the
#             hostile-file and API fuzz specs, and a script that leaves
#             BlockFiles and views for the collector and lua_close; with
#             FMAP_ALLOC=system, so that valgrind sees every Lua object
#             (the host's pool would hide a use of a freed view)
#   all       both (the default)
# Needs the builds (make -C build config=release, config=sanitize),
# busted and Debian's valgrind.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
busted="$(command -v busted)"
status=0

if [ "$mode" = lsan ] || [ "$mode" = all ]; then
  echo "== LeakSanitizer: every spec under build/sanitize/bin/fmap"
  if ! ASAN_OPTIONS=detect_leaks=1 FMAP_BIN=build/sanitize/bin/fmap \
       busted --lua=build/sanitize/bin/fmap -o utfTerminal; then
    echo "memcheck: the sanitizer run failed or leaked" >&2
    status=1
  fi
fi

if [ "$mode" = valgrind ] || [ "$mode" = all ]; then
  export FMAP_ALLOC=system
  vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect
      --error-exitcode=99)
  run () {   # a name, then the command
    local name="$1"; shift
    echo "== valgrind: $name"
    if ! "${vg[@]}" "$@"; then
      echo "memcheck: valgrind found leaks or errors in $name" >&2
      status=1
    fi
  }
  run "spec/blockfile_spec.lua" build/bin/fmap "$busted" \
    spec/blockfile_spec.lua
  # the views, less the loops that make finalizers move the map under
  # every read (each runs for minutes under valgrind; the sanitizer
  # build runs them)
  run "spec/view_spec.lua (no finalizer loops)" build/bin/fmap "$busted" \
    --filter-out="and finalizers" spec/view_spec.lua
  # the transactions and the journal, less the every-store loops (each
  # takes minutes under valgrind; the sanitizer build runs them)
  run "spec/transaction_spec.lua (no every-store loop)" build/bin/fmap \
    "$busted" --filter-out="every store" spec/transaction_spec.lua
  FMAP_FUZZ_SCALE=0.05 run "spec/hostile_spec.lua (5%)" \
    build/bin/fmap "$busted" spec/hostile_spec.lua
  FMAP_FUZZ_SCALE=0.15 run "spec/fuzz_api_spec.lua (15%)" \
    build/bin/fmap "$busted" spec/fuzz_api_spec.lua
  tmp="$(mktemp -d)"
  run "BlockFiles and views left to the collector" build/bin/fmap - \
    "$tmp" <<'LUA'
local fmap = require "fmap"
local dir = arg[1]
for i = 1, 20 do
  local path = dir .. "/m" .. i .. ".fmap"
  local bf = assert(fmap.create(path, i % 2 == 0 and 8192 or 4096))
  local offs = {}
  for k = 1, 50 do offs[k] = bf:allocate_blocks(k % 3 + 1) end
  for k = 1, 50, 2 do bf:free(offs[k], k % 3 + 1) end
  bf:set_control_data(string.rep("c", i))
  local v = bf:get(offs[2])                 -- left live
  v:pack(0, "<s4z", "kept", "zero")
  pcall(bf.close, bf)                       -- refuses: a live view
  bf:check(); bf:free_list(); bf:live_views(); bf:stats()
  if i % 3 == 0 then v:release(); bf:close()
    local ro = assert(fmap.open(path, { readonly = true }))
    ro:check()                              -- left open for the collector
    assert(fmap.open(path)):close()         -- a writer beside the reader
  elseif i % 3 == 1 then
    bf = nil; v = nil; collectgarbage()     -- the finalizers close it
    assert(fmap.open(path, { repair = true })):close()
  end
end
assert(fmap.open(dir .. "/missing.fmap") == nil)
local a = fmap.anonymous()
for _ = 1, 1000 do a:allocate() end
assert(not pcall(a.with, a, 4096, 1, function() error("released anyway") end))
LUA
  rm -rf "$tmp"
fi

if [ "$status" -eq 0 ]; then echo "memcheck: no leaks"; fi
exit "$status"
