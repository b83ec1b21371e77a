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

math.randomseed(os.time())
_G.h = M
_G.fmap = require "fmap"
return M
