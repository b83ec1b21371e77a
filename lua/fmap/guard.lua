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
--
-- Ctrl-C in the fmap host, which stops a script between two instructions,
-- waits while a function of a structure's file runs (2 s at most), so that
-- it stops between two operations of a structure, never half-way through
-- one. The files are the engine's list (FMAP_STRUCTURES in lfmap.h), and
-- the guard fills it: the file that takes a guard with guard.of is a
-- structure's from then on. A module may also say so as it loads, before
-- its first guard (guard.structure).
local M = {}

require "fmap"   -- its luaopen makes the registry's list of structures

local sformat = string.format
local getinfo, getregistry = debug.getinfo, debug.getregistry

-- The engine's list of structures (FMAP_STRUCTURES in lfmap.h): the
-- sources of their chunks, and the names the host shows for them.
local STRUCTURES = "fmap.structures"

-- Lists the file of the function that called guard.of or
-- guard.structure as a structure's, under name (by default the last two
-- parts of its path, "fmap/bptree.lua"), unless it is listed already.
local function list_file (name)
  local source = getinfo(3, "S").source
  local list = getregistry()[STRUCTURES]
  if type(list) ~= "table" or source:sub(1, 1) ~= "@" then return end
  if name == nil and list[source] ~= nil then return end
  list[source] = name or source:match("[^/]+/[^/]+$") or source:sub(2)
end

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
-- shared by all its handles. The caller's file is a structure's from then
-- on (see guard.structure).
function M.of (bf, what)
  list_file()
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

--- Declares the calling module a structure, for the fmap host's Ctrl-C:
-- while a function of the module's file runs, Ctrl-C waits for it to
-- return (2 s at most, then it stops anyway and says so). guard.of does
-- the same for the file that calls it; a module calls this from its main
-- chunk to be waited for before it takes its first guard, or to be named.
-- @param name what the host's message calls it; by default the last two
-- parts of the file's path ("fmap/bptree.lua")
function M.structure (name)
  list_file(name)
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
-- @param level the level to raise at, from enter (3 by default: enter,
--   the operation, its caller)
-- @return g, to be held in a to-be-closed variable
function M.enter (g, fname, level)
  local busy = g.busy
  if busy then
    error(sformat("%s: %s called while its %s runs (from a finalizer, a "
                  .. "hook, a callback, or a coroutine suspended in it: "
                  .. "coroutine.close ends that); one operation of a "
                  .. "structure at a time", g.what, fname, busy), level or 3)
  end
  g.busy = fname
  return g
end

return M
