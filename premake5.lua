-- premake5.lua: the fmap build. Works under real premake5 and under
-- Debian's premake4:
--   premake4 --file=premake5.lua gmake && make -C build config=release
-- Outputs, all under build/ (ignored by git):
--   release:  build/bin/fmap, build/lib/fmap.so, build/lib/libfmapcore.a
--   debug:    build/debug/bin/..., sanitize: build/sanitize/bin/...
-- Lua 5.4 comes from Debian's liblua5.4-dev, never vendored.

local workspace = workspace or solution
-- premake5 replaced configuration() with filter(); premake4 has only the
-- former. Detect the feature rather than test the version.
local when = filter
  and function (cfg) filter("configurations:" .. cfg) end
  or function (cfg) configuration(cfg) end
local function debug_symbols ()
  if symbols then symbols "On" else flags { "Symbols" } end
end

local CONFIGS = { "release", "debug", "sanitize" }
local function outdir (cfg, sub)
  if cfg == "release" then return "build/" .. sub end
  return "build/" .. cfg .. "/" .. sub
end
local function per_config (sub)
  for _, cfg in ipairs(CONFIGS) do
    when(cfg)
      targetdir(outdir(cfg, sub))
      objdir("build/obj/" .. cfg)
  end
  when "*"
end

workspace "fmap"
  configurations (CONFIGS)
  location "build"
  language "C"
  includedirs { "/usr/include/lua5.4", "engine/core", "engine/binding",
               "engine/host" }
  buildoptions { "-std=c99", "-Wall", "-Wextra", "-fPIC" }

  when "release"
    buildoptions { "-O2" }
    defines { "NDEBUG" }
    debug_symbols()       -- for perf and callgrind; -O2 code is the same
  when "debug"
    buildoptions { "-O0" }
    debug_symbols()
  when "sanitize"
    buildoptions { "-O1", "-fno-omit-frame-pointer",
                   "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=undefined" }
    linkoptions { "-fsanitize=address,undefined" }
    debug_symbols()
  when "*"

-- The core (plain C, no Lua), as a static library every target links.
project "fmapcore"
  kind "StaticLib"
  files { "engine/core/fm.h", "engine/core/fmint.h", "engine/core/fm.c",
          "engine/core/txn.c", "engine/core/check.c", "engine/core/lock.c",
          "engine/core/mrc.h", "engine/core/mrc.c" }
  per_config "lib"

-- The Lua binding, a file per seam (binding.h says which holds what):
-- both the module and the host build it.
local BINDING = {
  "engine/binding/lfmap.h", "engine/binding/binding.h",
  "engine/binding/lfmap.c", "engine/binding/view.c",
  "engine/binding/node.c", "engine/binding/iter.c",
  "engine/binding/pack.c",
  "engine/binding/fault.c", "engine/binding/txn.c",
  "engine/binding/profile.c",
}

-- The engine as a Lua C module, for a plain lua5.4: require "fmap".
-- Lua's symbols come from the interpreter that loads it.
-- It stays loaded once loaded (-z nodelete): its SIGBUS handler, installed
-- for the whole process, must not point into unloaded code after the Lua
-- state that loaded it closes (lua_close dlcloses C modules).
project "fmap_module"
  kind "SharedLib"
  targetname "fmap"
  targetprefix ""
  files (BINDING)
  links { "fmapcore" }
  linkoptions { "-Wl,-z,nodelete" }
  per_config "lib"

-- The fmap executable: a drop-in lua 5.4 with the engine built in.
project "fmap"
  kind "ConsoleApp"
  files (BINDING)
  files { "engine/host/alloc.h", "engine/host/alloc.c", "engine/host/host.h",
          "engine/host/host.c", "engine/host/repl.c" }
  links { "fmapcore", "lua5.4", "readline", "m", "dl" }
  linkoptions { "-Wl,-E" }
  per_config "bin"

-- The block-layer benchmarks as plain C loops against the core, the
-- reference bench/bench_engine.lua compares the Lua binding with.
project "fmap_bench_core"
  kind "ConsoleApp"
  files { "bench/bench_core.c" }
  links { "fmapcore" }
  per_config "bin"

-- The LMDB peer of bench/bench.lua (the standard workload against
-- liblmdb, in C): built only where Debian's liblmdb-dev is installed
-- (bench/install_peers.sh); bench.lua reports it skipped otherwise.
if os.isfile("/usr/include/lmdb.h") then
  project "fmap_bench_lmdb"
    kind "ConsoleApp"
    files { "bench/bench_lmdb.c" }
    links { "lmdb" }
    per_config "bin"
end

-- Test-only: an LD_PRELOAD shim that makes a chosen system call fail,
-- for spec/faults_spec.lua (see testing/faultinject.c). Nothing links it.
project "faultinject"
  kind "SharedLib"
  files { "testing/shim.h", "testing/faultinject.c" }
  links { "dl" }
  per_config "lib"

-- Test-only: an LD_PRELOAD shim that records every write, truncation and
-- sync of a BlockFile's files, for spec/powerloss_spec.lua (see
-- testing/iorecord.c). Nothing links it.
project "iorecord"
  kind "SharedLib"
  files { "testing/shim.h", "testing/iorecord.c" }
  links { "dl" }
  per_config "lib"
