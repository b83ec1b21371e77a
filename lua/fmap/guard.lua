--- fmap.guard: refuses an operation of a structure while another
-- operation of the same structure runs.
--
-- Lua runs finalizers (__gc) in the middle of other code, at any
-- allocation, and a debug hook at any call or line. An operation of a
-- store makes several writes one after another; a finalizer that changed
-- the same store between two of them would meet it half-changed and could
-- leave links that point nowhere or blocks counted twice. So an operation
-- enters its structure's guard first, and a second one that starts before
-- the first has returned raises instead:
--
--   local _ <close> = enter(self.guard, "put")
--
-- Every handle of one structure shares its guard (guard.of).
--
-- The guard is left when the operation's scope ends: by a return or by an
-- error, since a to-be-closed variable is closed either way. An operation
-- whose callback yields holds it while its coroutine is suspended, until
-- the coroutine resumes or coroutine.close closes the variable; a
-- coroutine dropped there holds it for good (Lua does not close the
-- variables of a collected coroutine), and the structure, which may be
-- half-changed, refuses every later operation. An error
-- raised in a finalizer does not stop the code the finalizer interrupted
-- (Lua turns it into a warning), so the first operation completes.
local M = {}

local sformat = string.format

local GUARD = {
  __close = function (g) g.busy = false end,
  __name = "fmap.guard",
}

--- A guard for a structure.
-- @param what how errors name the structure, say "varchar at 4096"
function M.new (what)
  return setmetatable({ busy = false, what = what }, GUARD)
end

-- The guards of the structures of each BlockFile, by what names them
-- ("varchar at 4096"): every handle of one structure (varchar.open twice,
-- say) shares its guard. Weak by BlockFile: a collected file takes its
-- guards.
local of_file = setmetatable({}, { __mode = "k" })

--- The guard of the structure that what names in the BlockFile bf,
-- shared by all its handles.
function M.of (bf, what)
  local t = of_file[bf]
  if not t then
    t = {}
    of_file[bf] = t
  end
  local g = t[what]
  if not g then
    g = M.new(what)
    t[what] = g
  end
  return g
end

--- Raises for a method called on what is not its object: `s.get(x)`
-- written for `s:get(x)` passes x as self. what names the object
-- ("varchar"), fname the method; got says what self is (its type by
-- default); the error blames the method's caller, or the function level
-- levels up from bad_self (3 by default: bad_self, the method, its caller).
function M.bad_self (what, fname, self, got, level)
  error(sformat("bad argument #0 to '%s' (%s expected, got %s; call it "
                .. "with ':')", fname, what, got or type(self)), level or 3)
end

--- Enters g for the operation fname, or raises at the caller's caller
-- (the script that called the operation) if another operation runs.
-- @return g, to be held in a to-be-closed variable
function M.enter (g, fname)
  local busy = g.busy
  if busy then
    error(sformat("%s: %s called while its %s runs (from a finalizer, a "
                  .. "hook, a callback, or a coroutine suspended in it: "
                  .. "coroutine.close ends that); one operation of a "
                  .. "structure at a time", g.what, fname, busy), 3)
  end
  g.busy = fname
  return g
end

return M
