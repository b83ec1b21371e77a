--- spec/helpers.lua: shared by every spec (loaded by busted's `helper`).
-- Exposes `h` as a global for the specs, and `fmap` loaded once.
--
-- Random numbers. Every spec that draws random numbers draws them from
-- one seed, chosen once per run and printed on stderr when the run starts:
--   random seed N; replay with FMAP_SEED=N
-- FMAP_SEED=N (an integer) in the environment replays that run: the
-- seed is N instead of one read from /dev/urandom (or, failing that, the
-- time). Each test (each `it`) starts with math.random seeded from the
-- seed and the test's full name, so a test draws the same numbers
-- whatever ran before it, and FMAP_SEED=N replays a failure with only its
-- spec file, or only the failing test (--filter), as well as with the
-- whole run. The fuzzers (crash, faults, fuzz_api and hostile specs) seed
-- their rounds and their child processes from h.SEED too.

-- Loaded once, as busted's helper: a spec's require "helpers" gets the
-- same table (a second load would choose and print a second seed).
if rawget(_G, "h") then return _G.h end

local M = {}

-- The run's seed: $FMAP_SEED, else 31 random bits, else the time.
local function choose_seed ()
  local env = os.getenv("FMAP_SEED")
  if env and env ~= "" then
    local n = math.tointeger(tonumber(env))
    if not n then error("FMAP_SEED must be an integer, not " .. env, 0) end
    return n
  end
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(4)
  if f then f:close() end
  if bytes and #bytes == 4 then
    return string.unpack("<I4", bytes) & 0x7fffffff
  end
  return os.time()
end

--- The run's random seed (see the top of this file).
M.SEED = choose_seed()
io.stderr:write(string.format("random seed %d; replay with FMAP_SEED=%d\n",
                              M.SEED, M.SEED))

-- A 32-bit FNV-1a hash of s: a test's full name as a second seed.
local function hash (s)
  local x = 2166136261
  for i = 1, #s do x = ((x ~ s:byte(i)) * 16777619) & 0xffffffff end
  return x
end

--- Seeds math.random for what is named name (a test's full name), from
-- the run's seed: the draws that follow are those of any run with the
-- same seed.
function M.reseed (name)
  math.randomseed(M.SEED, hash(name))
end

-- At the start of each spec file: busted insulates the files, unloading
-- the modules one required when it ends, but the fmap table, loaded once
-- (below), keeps the Lua modules its fields loaded (fmap.audit,
-- fmap.bptree...). Drop them, so that a file's fmap.audit is the one
-- that sees the classifiers the file registers with its own
-- require "fmap.classify".
do
  local busted = require "busted"
  busted.subscribe({ "file", "start" }, function ()
    local fmap = require "fmap"
    for name in pairs(require "fmap.modules") do rawset(fmap, name, nil) end
    return nil, true
  end)
  -- Before each test's body (after its before_each): reseed, from the
  -- names of the test and of the blocks around it.
  busted.subscribe({ "test", "start" }, function (element)
    local names, e = {}, element
    while e and e.descriptor ~= "file" do
      if e.name then table.insert(names, 1, e.name) end
      e = busted.parent(e)
    end
    M.reseed(table.concat(names, " "))
    return nil, true
  end)
end

--- A fresh temporary path (not created), unique across processes.
function M.tmpname (suffix)
  return require("fmap.cli").tmppath("-fmap-spec" .. (suffix or ".fmap"))
end

-- Whether /dev/shm takes files (nil until asked).
local shm

--- A fresh temporary path, as tmpname's, but in memory (/dev/shm) when
-- the machine has it: for the specs that write thousands of files or
-- flush often (a flush to a disk costs milliseconds).
function M.shm_tmpname (suffix)
  local path = M.tmpname(suffix)
  local there = path:gsub("^.*/", "/dev/shm/")
  if shm == nil then
    local f = io.open(there, "w")
    shm = f ~= nil
    if f then f:close(); os.remove(there) end
  end
  return shm and there or path
end

--- The message of the error f raises, without its "file:line: " prefix.
-- Fails the spec when f does not raise.
function M.errmsg (f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, but the call succeeded")
  err = tostring(err)
  return (err:gsub("^[^:\n]+:%d+: ", ""))
end

--- The line of the call to line(): where a spec took a view, for the
-- "acquired at" of the messages about it.
function M.line ()
  return debug.getinfo(2, "l").currentline
end

--- Collects garbage and asserts that no view of bf is live.
function M.no_live_views (bf)
  collectgarbage()
  collectgarbage()
  if not bf or tostring(bf):match("closed") then return end
  local live = bf:live_views()
  if #live > 0 then
    local t = {}
    for _, v in ipairs(live) do
      t[#t + 1] = string.format("offset %d acquired at %s", v.offset, v.where)
    end
    error("live views left: " .. table.concat(t, "; "), 2)
  end
end

--- A BlockFile in a new file for each test of the describe block that
-- calls it. Before each test, bind(path, bf) hands the test its path and
-- BlockFile (to set the spec's locals); after the test, bind() without
-- arguments returns the BlockFile as the test left it (a test may close
-- the file and open it again), which is checked for live views
-- (no_live_views) and closed, and the file is removed.
--   local path, bf
--   h.fixture(function (p, b) if p then path, bf = p, b end return bf end)
-- The describe block's own before_each and after_each, registered after
-- it, run after the fixture's.
-- @param create optional function(path) -> bf, fmap.create by default
function M.fixture (bind, create)
  local busted = require "busted"
  local path
  busted.before_each(function ()
    path = M.tmpname()
    bind(path, assert((create or require("fmap").create)(path)))
  end)
  busted.after_each(function ()
    local bf = bind()
    if bf and not tostring(bf):match("closed") then
      M.no_live_views(bf)
      bf:close()
    end
    os.remove(path)
  end)
end

--- Reads a whole file.
function M.readfile (path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Writes a whole file.
function M.writefile (path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- The path of the fmap executable under test.
function M.bin ()
  return os.getenv("FMAP_BIN") or "build/bin/fmap"
end

--- Runs a shell command; returns its stdout, and its exit status.
function M.run (cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  return out, status
end

--- Runs the Lua chunk code in a child fmap, args (a string) on its
-- command line; returns its output (stdout and stderr) and exit status.
function M.run_lua (code, args)
  local script = M.tmpname(".lua")
  M.writefile(script, code)
  local out, status = M.run(string.format("%s %s %s 2>&1", M.bin(), script,
                                          args or ""))
  os.remove(script)
  return out, status
end

--- Calls f(...) under a budget of Lua VM instructions, as pcall does:
-- an operation on damaged data must end, with its results or an error.
-- Past the budget it raises "still running".
function M.bounded (f, ...)
  debug.sethook(function () error("still running", 0) end, "", 2e8)
  local r = table.pack(pcall(f, ...))
  debug.sethook()
  return table.unpack(r, 1, r.n)
end

--- Damages up to 4 random allocated blocks of bf (with math.random):
-- random bytes, a u64 link among the first 21 set to another block, or a
-- u32 among the first 41 (kinds, flags, counts) set at random. Returns
-- how many blocks it changed.
function M.damage (bf)
  local bs, st = bf:block_size(), bf:stats()
  local top = st.blocks - st.tail_blocks
  local damaged = 0
  for _ = 1, math.random(4) do
    local off = math.random(1, top - 1) * bs
    if not bf:is_free(off) then
      damaged = damaged + 1
      bf:with(off, 1, function (v)
        local how = math.random(3)
        if how == 1 then
          for _ = 1, math.random(8) do
            v:write(math.random(0, bs - 1), string.char(math.random(0, 255)))
          end
        elseif how == 2 then
          v:set_u64(8 * math.random(0, 20), math.random(0, top) * bs)
        else
          v:set_u32(4 * math.random(0, 40), math.random(0, 2^32 - 1))
        end
      end)
    end
  end
  return damaged
end

--- Runs each of ops under M.bounded and asserts that it ended with its
-- results or a string error; where names the run in a failure. Returns
-- how many raised.
function M.all_end (ops, where)
  local errors = 0
  for i, op in ipairs(ops) do
    local ok, err = M.bounded(op)
    if not ok then
      errors = errors + 1
      assert(type(err) == "string", where .. ", operation " .. i
             .. " raised a " .. type(err))
      assert(not err:find("still running", 1, true),
             where .. ", operation " .. i .. " did not end")
    end
  end
  return errors
end

--- Rounds of random damage, drawn from the test's seed (M.SEED). Each
-- round gives make a new anonymous BlockFile and the round's number; make
-- builds structures in it and returns the operations to try on them, which
-- run (M.all_end) after M.damage. Returns how many operations raised.
function M.damage_rounds (rounds, make)
  local fmap = require "fmap"
  local seed = M.SEED
  local damaged, errors = 0, 0
  for round = 1, rounds do
    local bf = assert(fmap.anonymous())
    local ops = make(bf, round)
    damaged = damaged + M.damage(bf)
    errors = errors + M.all_end(ops, "seed " .. seed .. ", round " .. round)
    ops = nil
    pcall(bf.close, bf)
  end
  -- damage need not show (a changed byte may be one no operation reads),
  -- but some must have been done
  assert(damaged > 0, "seed " .. seed .. ": nothing was damaged")
  return errors
end

_G.h = M
_G.fmap = require "fmap"
return M
