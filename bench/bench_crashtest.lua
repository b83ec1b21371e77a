--- bench/bench_crashtest.lua: how fast fmap.crashtest records and tries
-- crash states.
--   build/bin/fmap bench/bench_crashtest.lua [--adds N] [--rounds R]
-- A B+tree of 8-byte keys and values holds 40,000 entries (a file of a
-- few hundred blocks); run adds N more (default 5,000) without
-- transactions, about two stores each. Each round times, on fmap.clock:
--   run        the adds on a plain file, and under bf:record (what a
--              recorded store costs)
--   process    the states after every store, with a check that returns
--              true (the explorer's own cost: the bytes of the stores
--              between two states written into the working copy, an
--              open and a close), then with one that opens the tree
--   power      a flush after every 100 adds, each subset of pages
--              (at most 256 a flush) with the check that returns true
--   open       a read-only open and close of the file alone, the floor
-- The states' time runs from the first check to the end of the test.
-- Prints the best of R rounds (default 3).
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local crashtest = require "fmap.crashtest"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap bench/bench_crashtest.lua [--adds N] [--rounds R]

Times fmap.crashtest on a B+tree of a few hundred blocks (see the top of the file).]]
local cmd = cli.benchmark("bench_crashtest", HELP, {
  ["--adds"] = { key = "adds", kind = "integer", min = 1, value = "an N" },
  ["--rounds"] = { key = "rounds", kind = "integer", min = 1,
                   value = "an R" },
})
local opts = cmd:parse(arg)
local ADDS, ROUNDS, BASE = opts.adds or 5000, opts.rounds or 3, 40000

local clock = fmap.clock
local function key (i) return string.pack(">I8", i * 7919 % 1000003) end
local function newkey (i) return string.pack(">I8", i * 104729 % 1000003) end

local function setup (bf)
  local t = assert(bptree.new(bf, 8, 8))
  for i = 1, BASE do t:add(key(i), "12345678") end
end

local run_time
local function run (flushes)
  return function (bf)
    local t = assert(bptree.open(bf))
    local t0 = clock()
    for i = 1, ADDS do
      t:add(newkey(i), "abcdefgh")
      if flushes and i % 100 == 0 then bf:flush() end
    end
    run_time = clock() - t0
  end
end

-- A crash test whose check is check; its states, states a second, and
-- the report.
local function timed (mode, check, flushes)
  local first
  local report = crashtest.run{
    mode = mode, seed = 1, setup = setup, run = run(flushes),
    check = function (bf)
      first = first or clock()
      return check(bf)
    end,
  }
  local took = clock() - first
  return report.states, report.states / took, report
end

local function yes () return true end
local function opens (bf) return bptree.open(bf) ~= nil end

local best = {}
local function keep (name, v, higher)
  if best[name] == nil or (higher and v > best[name])
     or (not higher and v < best[name]) then
    best[name] = v
  end
end

local blocks, stores, path
for _ = 1, ROUNDS do
  -- the adds unrecorded, on a file
  path = cli.tmppath("-bench-crashtest.fmap")
  local bf = assert(fmap.create(path))
  setup(bf)
  bf:flush()
  run(false)(bf)
  keep("plain", run_time)
  blocks = bf:stats().blocks
  bf:close()
  -- the floor: a read-only open and close
  local n, t0 = 2000, clock()
  for _ = 1, n do assert(fmap.open(path, { readonly = true })):close() end
  keep("open", (clock() - t0) / n)
  os.remove(path)

  local states, rate, report = timed("process", yes)
  keep("recorded", run_time)
  stores = report.changes
  keep("process", rate, true)
  keep("process states", states)
  states, rate = timed("process", opens)
  keep("process open", rate, true)
  states, rate, report = timed("power", yes, true)
  keep("power", rate, true)
  keep("power states", states)
  keep("power points", report.points)
end

print(string.format("fmap.crashtest on a B+tree of %d entries (%d blocks), "
                    .. "%d adds, best of %d rounds", BASE, blocks, ADDS,
                    ROUNDS))
print(string.format("run        %d adds: %.3f s on a file, %.3f s "
                    .. "recorded (%d stores, %.1f us a store more)", ADDS,
                    best.plain, best.recorded, stores,
                    (best.recorded - best.plain) / stores * 1e6))
print(string.format("process    %d states: %.0f states/s (check: true), "
                    .. "%.0f states/s (check: open the tree)",
                    best["process states"], best.process,
                    best["process open"]))
print(string.format("power      %d states at %d flushes: %.0f states/s "
                    .. "(check: true)", best["power states"],
                    best["power points"], best.power))
print(string.format("open       read-only open and close: %.1f us",
                    best.open * 1e6))
