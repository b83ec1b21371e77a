--- fmap.modules: the modules that are fields of the fmap table.
-- `fmap.NAME` is `require "fmap.NAME"` (require keeps it), for each
-- NAME here: so `fmap.audit(bf)` and `fmap.bptree.new(bf, 16, 16)` work
-- after one `require "fmap"`. The engine's binding reads this set when a
-- field of fmap is missing; a module joins by a line here, with no change
-- to the engine.
local M = {
  audit = true,      -- blocks a structure leaked or shares
  blockmap = true,   -- a picture of every block
  bptree = true,     -- the B+tree
  classify = true,   -- what each block is
  codec = true,      -- keys that sort as their values do
  crashtest = true,  -- every state a crash could leave, checked
  dot = true,        -- B+tree pictures through Graphviz
  dump = true,       -- the structures of a file as text, and back
  mmlist = true,     -- the persistent list
  profile = true,    -- what a structure costs in blocks
  progress = true,   -- the tools' progress bar on stderr
  varchar = true,    -- variable-size, reference-counted blobs
  workload = true,   -- the standard benchmark workload
}

return M
