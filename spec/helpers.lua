--- spec/helpers.lua: shared by every spec (loaded by busted's `helper`).
-- Exposes `h` as a global for the specs, and `fmap` loaded once.
local M = {}

--- A fresh temporary path (not created), unique across processes.
function M.tmpname (suffix)
  return require("fmap.cli").tmppath("-fmap-spec" .. (suffix or ".fmap"))
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

math.randomseed(os.time())
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

--- Rounds of random damage, seeded by $FMAP_SEED or the time. Each round
-- gives make a new anonymous BlockFile and the round's number; make
-- builds structures in it and returns the operations to try on them, which
-- run (M.all_end) after M.damage. Returns how many operations raised.
function M.damage_rounds (rounds, make)
  local fmap = require "fmap"
  local seed = tonumber(os.getenv("FMAP_SEED")) or os.time()
  math.randomseed(seed)
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
