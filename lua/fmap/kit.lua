--- fmap.kit: what every structure built on the block layer takes from
-- fmap, in one require (fmap's B+tree, blob store and list take it so):
--
--   local kit = require "fmap.kit"
--   local mark   -- fmap.profile's operation mark while a profile runs
--   kit.watch(function (f) mark = f end)
--   local VM = kit.view_methods     -- VM.u64(v, pos): no method lookup
--
-- Its fields:
--   view_methods  the views' method table: its functions called as plain
--                 functions (u64(v, pos) for v:u64(pos)) skip a lookup
--                 on the hot paths
--   accessors     adds offset() and blockfile() to a method table
--   watch, steps  fmap.opmark's: the operation mark of fmap.profile
--   guard, enter, bad_self
--                 fmap.guard, and its two functions every operation may
--                 call: one operation of a structure at a time
--   argcheck, argerror, typeerror, checkinteger
--                 fmap.argcheck, and the three every structure raises
--                 with, in liolib's words
local guard = require "fmap.guard"
local argcheck = require "fmap.argcheck"
local opmark = require "fmap.opmark"

local M = {
  guard = guard, enter = guard.enter, bad_self = guard.bad_self,
  argcheck = argcheck, argerror = argcheck.argerror,
  typeerror = argcheck.typeerror, checkinteger = argcheck.checkinteger,
  watch = opmark.watch, steps = opmark.steps,
}

-- The views' methods, from a view of a block of an anonymous BlockFile
-- made and closed here.
do
  local bf = assert(require("fmap").anonymous())
  local v = bf:get(bf:allocate())
  M.view_methods = getmetatable(v).__index
  v:release()
  bf:close()
end

-- The methods accessors adds, and the field of the handle each returns.
local FIELDS = { offset = "meta", blockfile = "bf" }

--- Adds offset() and blockfile() to methods, the method table of a
-- structure whose handles keep their meta block's offset in `meta` and
-- their BlockFile in `bf`.
-- @param methods the method table
-- @param check function(self, fname) that raises, at the caller of the
--   method, unless self is a live handle (the module's check_self)
function M.accessors (methods, check)
  for name, field in pairs(FIELDS) do
    --- offset(): the offset of the structure's meta block, what its
    -- module's open (a tree's open_at) takes to find it again;
    -- blockfile(): the structure's BlockFile.
    methods[name] = function (self)
      check(self, name)
      return self[field]
    end
  end
end

return M
