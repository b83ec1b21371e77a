--- fmap.codec: order-preserving key codecs.
-- A B+tree compares keys as bytes (memcmp order). These functions turn Lua
-- values into byte strings whose byte order is the values' natural order,
-- and back:
--
--   local codec = require "fmap.codec"
--   codec.int(-5) < codec.int(3)                       -- as bytes
--   local k = codec.encode("u4 s i8", 7, "bob", -1)    -- a tuple
--   codec.decode("u4 s i8", k)                         --> 7  "bob"  -1
--   codec.size("u4 i8")                                --> 12 (fixed size)
--
-- Encodings (every integer big-endian, so byte order is numeric order):
--   uN   unsigned integer in N bytes (N = 1..8, default 8); u8 takes any
--        Lua integer as its unsigned 64-bit value (-1 is 2^64 - 1)
--   iN   signed integer in N bytes with the sign bit flipped, so negative
--        numbers sort before positive ones
--   d    a float (IEEE double): positive ones with the sign bit flipped,
--        negative ones with every bit inverted; NaN is refused, and -0.0
--        sorts just before 0.0
--   s    a string of any bytes: each 0x00 is written 0x00 0xFF and the
--        string ends with 0x00 0x00, so a string sorts before every string
--        it is a proper prefix of, and the components after it compare
--        only when the strings are equal
-- A tuple is its components' encodings one after another; as no encoding
-- is a proper prefix of another of the same type, tuples sort component by
-- component. Spaces in a format are ignored.
local argcheck = require "fmap.argcheck"

local M = {}

local pack, unpack = string.pack, string.unpack
local concat = table.concat
local mininteger = math.mininteger
local type, mtype, select = type, math.type, select

-- Argument errors (fmap.argcheck): the level counts from the function
-- raising, so 2 names the user's line in a public function and 3 in the
-- encoders (enc_*), one call below encode, uint, int, double and string.
local argerror, typeerror = argcheck.argerror, argcheck.typeerror

-- A format compiled: a list of {kind, size} and the total size, or -1
-- when a string makes it variable.
local compiled = {}

local function compile (fmt, fname)
  local c = compiled[fmt]
  if c then return c end
  if type(fmt) ~= "string" then
    typeerror(1, fname, "format string", fmt, 3)
  end
  local list, size, pos = {}, 0, 1
  while pos <= #fmt do
    local ch = fmt:sub(pos, pos)
    if ch == " " then
      pos = pos + 1
    elseif ch == "u" or ch == "i" then
      local digits = fmt:match("^%d+", pos + 1)
      local n = digits and tonumber(digits) or 8
      if n < 1 or n > 8 then
        argerror(1, fname, string.format("integer size %d in %q is not "
                 .. "in 1..8", n, fmt), 3)
      end
      list[#list + 1] = { ch, n }
      if size >= 0 then size = size + n end
      pos = pos + 1 + (digits and #digits or 0)
    elseif ch == "d" then
      list[#list + 1] = { "d", 8 }
      if size >= 0 then size = size + 8 end
      pos = pos + 1
    elseif ch == "s" then
      list[#list + 1] = { "s", -1 }
      size = -1
      pos = pos + 1
    else
      -- a key passed as the format: its bytes escaped, and a hint
      local binary = ch:match("[%c\128-\255]") ~= nil
      argerror(1, fname, string.format("invalid option %s in format %s%s",
               binary and string.format("%q", ch) or "'" .. ch .. "'",
               string.format("%q", fmt:sub(1, 40)):gsub("\\\n", "\\n"),
               binary and " (the format comes first: " .. fname
               .. "(format, ...))" or ""), 3)
    end
  end
  if #list == 0 then argerror(1, fname, "empty format", 3) end
  c = { list = list, size = size }
  compiled[fmt] = c
  return c
end

-- x as an integer: an integral float too (2^10, 3.0), as the engine's
-- arguments take it; else raises for argument arg of fname.
local function toint (x, arg, fname)
  if mtype(x) == "integer" then return x end
  local i = mtype(x) == "float" and math.tointeger(x)
  if i then return i end
  argerror(arg, fname, "integer expected, got " .. (mtype(x) and
           string.format("float %.14g", x) or type(x)), 4)
end

local function enc_uint (x, n, arg, fname)
  x = toint(x, arg, fname)
  if n < 8 and (x < 0 or x >= 1 << (8 * n)) then
    argerror(arg, fname, string.format("%d does not fit in u%d", x, n), 3)
  end
  return pack(">I" .. n, x)
end

local function enc_int (x, n, arg, fname)
  x = toint(x, arg, fname)
  if n == 8 then return pack(">I8", x ~ mininteger) end
  local half = 1 << (8 * n - 1)
  if x < -half or x >= half then
    argerror(arg, fname, string.format("%d does not fit in i%d", x, n), 3)
  end
  return pack(">I" .. n, x + half)
end

local function enc_double (x, arg, fname)
  if type(x) ~= "number" then typeerror(arg, fname, "number", x, 3) end
  if x ~= x then argerror(arg, fname, "NaN has no order", 3) end
  local bits = unpack(">i8", pack(">d", x))
  if bits < 0 then bits = ~bits else bits = bits ~ mininteger end
  return pack(">i8", bits)
end

local function enc_string (s, arg, fname)
  if type(s) ~= "string" then typeerror(arg, fname, "string", s, 3) end
  return (s:gsub("\0", "\0\255")) .. "\0\0"
end

--- Encodes values as one key whose byte order is the values' order.
-- @param fmt the components: `uN`, `iN` (N = 1..8, default 8), `d`, `s`
-- @param ... one value per component
-- @return the key, a string
function M.encode (fmt, ...)
  local list = compile(fmt, "encode").list
  local n = select("#", ...)
  if n ~= #list then
    argerror(2, "encode", string.format("%d value%s for %d component%s",
             n, n == 1 and "" or "s", #list, #list == 1 and "" or "s"))
  end
  if n == 1 then
    local x, c = ..., list[1]
    local kind, key = c[1], nil
    if kind == "u" then key = enc_uint(x, c[2], 2, "encode")
    elseif kind == "i" then key = enc_int(x, c[2], 2, "encode")
    elseif kind == "d" then key = enc_double(x, 2, "encode")
    else key = enc_string(x, 2, "encode") end
    return key   -- not a tail call: errors name the caller's line
  end
  local parts = {}
  for i = 1, n do
    local x, c = (select(i, ...)), list[i]
    local kind = c[1]
    if kind == "u" then parts[i] = enc_uint(x, c[2], i + 1, "encode")
    elseif kind == "i" then parts[i] = enc_int(x, c[2], i + 1, "encode")
    elseif kind == "d" then parts[i] = enc_double(x, i + 1, "encode")
    else parts[i] = enc_string(x, i + 1, "encode") end
  end
  return concat(parts)
end

local function short (fname, kind, at)
  argerror(2, fname, string.format("key too short for '%s' at byte %d",
           kind, at - 1), 3)
end

--- Decodes a key made by `encode` with the same format.
-- Raises if the key is not such an encoding (too short, too long, an
-- unterminated or badly escaped string, a NaN).
-- @param fmt the format it was encoded with
-- @param key the key
-- @return the values
function M.decode (fmt, key)
  local list = compile(fmt, "decode").list
  if type(key) ~= "string" then typeerror(2, "decode", "string", key) end
  local out, pos, len = {}, 1, #key
  for i = 1, #list do
    local kind, n = list[i][1], list[i][2]
    if kind == "s" then
      local parts, from = {}, pos
      while true do
        local z = key:find("\0", from, true)
        if not z or z == len then short("decode", kind .. " end", len + 1) end
        local nxt = key:byte(z + 1)
        if nxt == 0 then
          parts[#parts + 1] = key:sub(from, z - 1)
          pos = z + 2
          break
        elseif nxt == 255 then
          parts[#parts + 1] = key:sub(from, z)
          from = z + 2
        else
          argerror(2, "decode", string.format("bad escape 0x00 0x%02X in "
                   .. "a string at byte %d", nxt, z - 1))
        end
      end
      out[i] = concat(parts)
    else
      if pos + n - 1 > len then short("decode", kind .. n, pos) end
      if kind == "u" then
        out[i] = unpack(">I" .. n, key, pos)
      elseif kind == "i" then
        if n == 8 then out[i] = unpack(">I8", key, pos) ~ mininteger
        else out[i] = unpack(">I" .. n, key, pos) - (1 << (8 * n - 1)) end
      else
        local bits = unpack(">i8", key, pos)
        if bits < 0 then bits = bits ~ mininteger else bits = ~bits end
        local x = unpack(">d", pack(">i8", bits))
        if x ~= x then   -- encode refuses NaN: no key holds one
          argerror(2, "decode", string.format("a NaN at byte %d, which no "
                   .. "key encodes", pos - 1))
        end
        out[i] = x
      end
      pos = pos + n
    end
  end
  if pos <= len then
    argerror(2, "decode", string.format("%d byte%s left after the last "
             .. "component", len - pos + 1, len - pos + 1 == 1 and "" or "s"))
  end
  return table.unpack(out, 1, #list)
end

--- The size in bytes of every key of a format, or -1 when it has a string.
-- Pass it to `bptree.new` as the key size.
-- @param fmt a format
-- @return the size, or -1
function M.size (fmt)
  return compile(fmt, "size").size
end

-- The size argument of uint and int (fname): n, 8 when nil.
local function int_size (n, fname)
  n = n or 8
  if mtype(n) ~= "integer" or n < 1 or n > 8 then
    argerror(2, fname, "size must be an integer in 1..8", 3)
  end
  return n
end

--- An unsigned integer as a key: `encode("uN", x)`.
-- @param x an integer
-- @param n bytes, 1..8 (default 8)
function M.uint (x, n)
  local key = enc_uint(x, int_size(n, "uint"), 1, "uint")
  return key
end

--- A signed integer as a key: `encode("iN", x)`.
-- @param x an integer
-- @param n bytes, 1..8 (default 8)
function M.int (x, n)
  local key = enc_int(x, int_size(n, "int"), 1, "int")
  return key
end

--- A float as a key: `encode("d", x)`.
function M.double (x)
  local key = enc_double(x, 1, "double")
  return key
end

--- A string as a key component: `encode("s", s)`. A string that is a
-- whole key needs no encoding: byte order is already its order.
function M.string (s)
  local key = enc_string(s, 1, "string")
  return key
end

return M
