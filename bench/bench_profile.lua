--- bench/bench_profile.lua: what fmap.profile costs. The standard
-- workload's get phase (lua/fmap/workload.lua) on a B+tree of N records,
-- with profiling off and on, side by side; then the miss curve of a
-- profile of M gets (its one pass over the trace, and the report).
--   build/bin/fmap bench/bench_profile.lua [--n N] [--ops M] [--rounds R]
-- N = 200,000 and M = 1,000,000 by default; each timing is the best of R
-- rounds (3), the off and on runs interleaved. Prints gets per second
-- both ways and their ratio (target: at most 3x), and the seconds the
-- curve of M operations takes (target: at most 2 s).
local fmap = require "fmap"
local W = require "fmap.workload"
local profile = require "fmap.profile"
local cli = require "fmap.cli"

local opts = cli.benchmark("bench_profile",
  "usage: fmap bench/bench_profile.lua [--n N] [--ops M] [--rounds R]", {
    "n", "rounds",
    ["--ops"] = { key = "ops", kind = "integer", min = 1 },
  }):parse(arg)
local N, M, R = opts.n or 200000, opts.ops or 1000000, opts.rounds or 3
local clock = fmap.clock

local path = cli.tmppath("-bench-profile.fmap")
local bf = assert(fmap.create(path))
local t = fmap.bptree.new(bf, 16, 16)
local store = W.bptree_store(t)
assert(W.insert(store, N).ok)

-- The get phase, timed by the workload; on: inside a profile of bf.
local off, on = math.huge, math.huge
for _ = 1, R do
  local r = W.get(store, N)
  assert(r.ok)
  off = math.min(off, r.secs)
  local secs
  assert(profile(bf, function ()
    local p = W.get(store, N)
    assert(p.ok)
    secs = p.secs
  end))
  on = math.min(on, secs)
end

-- M gets in the workload's order, profiled; then the report, whose miss
-- curves come from one pass over the trace (and from the report alone:
-- the pass is timed by itself too, as profile.stack_distances' engine
-- call, over the same number of accesses).
local report, curve = nil, math.huge
for _ = 1, R do
  local get, key = t.get, W.key
  local secs
  report = assert(profile(bf, function ()
    for j = 0, M - 1 do get(t, key((j * 7919) % N)) end
    -- the report is made when fn returns: time it from here
    secs = clock()
  end))
  curve = math.min(curve, clock() - secs)
end
bf:close()
os.remove(path)

print(string.format("fmap.profile on the workload's get, N = %d (%s; best "
                    .. "of %d)", N, fmap.VERSION, R))
print(string.format("%-34s %12.0f gets/s", "get, profiling off", N / off))
print(string.format("%-34s %12.0f gets/s", "get, profiling on", N / on))
print(string.format("%-34s %12.2fx (target: at most 3x)", "on / off", on / off))
print(string.format("%-34s %12.3f s  (target: at most 2 s)",
                    string.format("miss curve of %d gets", M), curve))
print(string.format("%-34s %12d accesses, %d blocks; %.2f misses/get with "
                    .. "%d blocks cached", "", report.accesses,
                    report.blocks, report:misses(64, "main"), 64))
