--- fmap.opmark: how a structure marks its operations for fmap.profile,
-- at the cost of one test of an upvalue while no profile runs.
--
--   local opmark = require "fmap.opmark"
--   local mark   -- fmap.profile's operation mark while a profile runs
--   opmark.watch(function (f) mark = f end)
--   ...
--   function Tree:get (key)
--     if mark then mark("bptree.get") end
--     ...
--   function Tree:add (key, value)
--     if mark then mark("bptree.add", key, value) end
--
-- mark(name [, a [, b]]) starts an operation named name, which lasts
-- until the next one starts (or a phase, an operation of profile.op, or
-- the profile ends): a mark is a call at the top of each public
-- operation, with no end to mark, no call frame added (the levels of the
-- operation's errors are unchanged) and no to-be-closed variable. The
-- lengths of the strings a and b are the bytes the user stores (the
-- denominator of the write amplification). While an operation of
-- profile.op is open, marks do nothing: the user's operation encloses
-- them. So a structure built on others marks its operations with
-- profile.op, which encloses the marks of the structures it calls; a
-- structure whose operations call none of its own public ones, or other
-- structures', marks them with mark.
--
-- An iterator's steps are operations of their own: wrap the iterator
-- (opmark.steps) while mark is set.
local M = {}

--- The current mark: fmap.profile's while it runs, else nil.
M.mark = nil

-- The setters of the modules that watch, called when the mark changes.
local watchers = {}

--- Calls setter(mark) now and each time a profile starts or ends.
-- @param setter function(mark): stores mark (a function, or nil) in the
--   module's upvalue
function M.watch (setter)
  watchers[#watchers + 1] = setter
  setter(M.mark)
end

-- Sets the mark, and tells the watchers: fmap.profile's, as a profile
-- starts (f its mark) and ends (f nil).
function M._set (f)
  M.mark = f
  for i = 1, #watchers do watchers[i](f) end
end

--- An iterator whose every step starts an operation named name, for a
-- generic `for`: f, s, c as an iterator's first three values. A step
-- taken while no profile runs is f's alone.
-- @return the wrapped iterator, s, c
function M.steps (name, f, s, c)
  return function (a, b)
    local m = M.mark
    if m then m(name) end
    return f(a, b)
  end, s, c
end

return M
