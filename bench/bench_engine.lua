--- bench/bench_engine.lua: the block layer from Lua beside the same loops
-- in plain C against the core (build/bin/fmap_bench_core), in one run.
--   build/bin/fmap bench/bench_engine.lua [--n N] [--file PATH]
-- Prints ns per operation for C and Lua, their ratio, and what the Lua
-- path costs per call beyond C; then the floor of any operation from Lua,
-- a call into C that does nothing but check its view (v:offset()), which
-- has no C loop to compare with, and the floor of a loop that makes two
-- empty calls from Lua into C (type(v) twice), which bench/bench.lua
-- holds the two-call operations to.
local fmap = require "fmap"

local cli = require "fmap.cli"
local cmd = cli.benchmark("bench_engine",
  "usage: fmap bench/bench_engine.lua [--n N] [--file PATH]", { "file",
    ["--n"] = { key = "n", kind = "integer", min = 10 },
  })
local opts = cmd:parse(arg)
local n = opts.n or 1000000
local path = opts.file or cli.tmppath("-bench-engine.fmap")

-- The C side: the executable beside the host that runs this script.
local function c_results ()
  local here = arg[-1] and arg[-1]:match("^(.*)/[^/]*$") or "build/bin"
  local exe = here .. "/fmap_bench_core"
  local p = io.popen(string.format("%q %q %d", exe, path .. ".c", n))
  local out = p:read("a")
  local ok = p:close()
  local r = {}
  for name, ops, secs in out:gmatch("(%S+) (%d+) (%S+)\n") do
    r[name] = tonumber(secs) / tonumber(ops) * 1e9
  end
  if not ok or not next(r) then
    return nil, exe .. " did not run (build it: make -C build "
                .. "config=release fmap_bench_core)"
  end
  return r
end

local clock = fmap.clock
local results = {}
local function timed (name, ops, f)
  collectgarbage()
  local t = clock()
  f()
  results[name] = (clock() - t) / ops * 1e9
end

local bf = assert(fmap.create(path))

timed("alloc_free", n, function ()
  for _ = 1, n do
    local off = bf:allocate()
    bf:free(off)
  end
end)

local bulk = n // 10
timed("alloc_bulk", bulk, function ()
  local offs = {}
  for k = 1, bulk do offs[k] = bf:allocate() end
  for k = 1, bulk do bf:free(offs[k]) end
end)

local off = bf:allocate()
timed("get_release", n, function ()
  for _ = 1, n do
    local v = bf:get(off)
    v:release()
  end
end)

local v = bf:get(off)
timed("u64_rw", n, function ()
  local acc = 0
  for k = 0, n - 1 do
    local pos = (k & 511) * 8
    v:set_u64(pos, k)
    acc = acc + v:u64(pos)
  end
  assert(acc ~= 0)
end)

local key = string.rep("\0", 15) .. "\1"
timed("compare16", n, function ()
  local acc = 0
  for k = 0, n - 1 do acc = acc + v:compare((k & 255) * 16, key) end
  return acc
end)
-- The floor: the least a call from Lua into one of the view's C functions
-- costs, the loop included. v:offset() checks its view and returns a
-- field; every operation above makes at least one such call.
timed("call", n, function ()
  local acc = 0
  for _ = 1, n do acc = acc + v:offset() end
  return acc
end)
-- The floor of two calls: a loop that calls a C function that does
-- nothing (type) twice, as get + release and u64 write + read each call
-- the engine twice.
timed("call2", n, function ()
  for _ = 1, n do
    type(v)
    type(v)
  end
end)
v:release()
bf:close()
os.remove(path)

local c, err = c_results()
local rows = {
  { "alloc_free", "allocate + free of one block" },
  { "alloc_bulk", "allocate n/10 blocks, then free them" },
  { "get_release", "get + release of a 1-block view" },
  { "u64_rw", "u64 write + read through a view" },
  { "compare16", "compare of a 16-byte key" },
}
print(string.format("fmap block layer, n = %d (%s)", n, fmap.VERSION))
print(string.format("%-40s %10s %10s %8s %12s", "operation", "C ns/op",
                    "Lua ns/op", "Lua/C", "Lua cost/op"))
for _, r in ipairs(rows) do
  local name, what = r[1], r[2]
  local l = results[name]
  if c then
    print(string.format("%-40s %10.1f %10.1f %7.1fx %10.1f ns", what,
                        c[name], l, l / c[name], l - c[name]))
  else
    print(string.format("%-40s %10s %10.1f", what, "-", l))
  end
end
print(string.format("%-40s %10s %10.1f", "floor: one call of v:offset()", "-",
                    results.call))
print(string.format("%-40s %10s %10.1f",
                    "floor: two empty calls, type(v) twice", "-",
                    results.call2))
if not c then print("C loop skipped: " .. err) end
