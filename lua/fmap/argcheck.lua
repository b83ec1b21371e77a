--- fmap.argcheck: the argument checks of fmap's Lua modules, raising in
-- luaL_argerror's words, "bad argument #N to 'FNAME' (MESSAGE)", as the
-- engine's own functions do.
--
--   local argcheck = require "fmap.argcheck"
--   argcheck.checktype(key, 1, "get", "string")
--   --> bad argument #1 to 'get' (string expected, got nil)
--
-- One argument order everywhere: the value checked (for the checks), the
-- argument's number, the name of the function the user called, what is
-- checked, then the level. The level is error's, counted from the caller
-- of the argcheck function: 1 blames that caller's line, 2 (the default)
-- the line that called it, which is the user's when a public function
-- checks its own arguments; a helper one call below the public function
-- passes 3, and so on. Never call these in a tail position (`return
-- argerror(...)`): Lua drops the frame of a tail call, which shifts the
-- levels by one.
local M = {}

local error, type, format = error, type, string.format
local mtype, tointeger = math.type, math.tointeger

--- Raises "bad argument #n to 'fname' (msg)".
-- @param n the argument's number (0 for a method's self)
-- @param fname the function the user called, as the user named it
-- @param msg why the argument is refused
-- @param level as error's, from the caller (default 2: its caller's line)
function M.argerror (n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg),
        (level or 2) + 1)
end

--- Raises "bad argument #n to 'fname' (expected expected, got TYPE)",
-- TYPE being type(x), as luaL_typeerror words it.
-- @param expected what was expected: a type's name, or a phrase
--   ("non-empty string")
-- @param x the value the caller got
function M.typeerror (n, fname, expected, x, level)
  error(format("bad argument #%d to '%s' (%s expected, got %s)", n, fname,
               expected, type(x)), (level or 2) + 1)
end

--- Returns x when type(x) is tname; else raises as `typeerror`.
-- @param x the argument
-- @param tname a type's name ("string", "table", "function", ...)
-- @return x
function M.checktype (x, n, fname, tname, level)
  if type(x) ~= tname then
    error(format("bad argument #%d to '%s' (%s expected, got %s)", n, fname,
                 tname, type(x)), (level or 2) + 1)
  end
  return x
end

--- x as an integer: an integer, or a float of integral value (2^10, 3.0),
-- as the engine's arguments take it. Else raises in luaL_checkinteger's
-- words: "number has no integer representation" (a float),
-- "integer expected, got TYPE" (anything else).
-- @return the integer
function M.checkinteger (x, n, fname, level)
  local t = mtype(x)
  if t == "integer" then return x end
  local i = t == "float" and tointeger(x)
  if not i then
    error(format("bad argument #%d to '%s' (%s)", n, fname,
                 t == "float" and "number has no integer representation"
                 or "integer expected, got " .. type(x)), (level or 2) + 1)
  end
  return i
end

--- The reason an error in luaL_argerror's words gives: "bad argument #1
-- to 'get' (offset 4097 is not block-aligned)" -> "offset 4097 is not
-- block-aligned"; any other message whole. For a function that calls an
-- engine function on its user's behalf and raises about its own argument.
-- @param msg an error value
-- @return a string
function M.reason (msg)
  msg = tostring(msg)
  return msg:match("%((.*)%)$") or msg
end

return M
