--- fmap.handle: the methods that the handle of every structure has (a
-- tree of fmap.bptree, a store of fmap.varchar, a list of fmap.mmlist),
-- written once: each structure's module adds them to its method table.
local M = {}

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
