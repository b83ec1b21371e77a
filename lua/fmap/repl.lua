--- fmap.repl: what the fmap REPL prints and completes.
-- The host (engine/host/host.c) calls `start` once when the REPL begins, `show`
-- with the results of each chunk, and `complete` when Tab is pressed. All
-- of it reads values with raw access and never calls a metamethod other
-- than `__tostring`, so looking at a value cannot change it.
local M = {}

--- Nesting levels printed before a table shows as `{...}`.
M.MAX_DEPTH = 4
--- Entries of one table printed before the rest is summarised.
M.MAX_ITEMS = 50
--- Bytes of a string printed inside a table before it is cut.
M.MAX_STRING = 120
--- A table whose printed form fits in this many columns takes one line.
M.WIDTH = 78

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
            local nil not or repeat return then true until while]])
    :gmatch("%a+") do
  KEYWORDS[w] = true
end

local function is_name (s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
         and not KEYWORDS[s]
end

-- The C escapes Lua reads back; other control bytes as \ddd.
local ESCAPES = { ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ["\v"] = "\\v", ["\\"] = "\\\\", ['"'] = '\\"' }

--- Quotes a string as a Lua literal that reads back to the same bytes,
-- cut after `limit` bytes. Valid UTF-8 stays readable; any other byte
-- above 127 (binary data from a view) is written as \xHH.
-- @param s the string
-- @param limit bytes kept, or nil for all
-- @return the literal
function M.quote (s, limit)
  local cut = ""
  if limit and #s > limit then
    cut = string.format("..(%d more bytes)", #s - limit)
    s = s:sub(1, limit)
  end
  local high = utf8.len(s) and "" or "\128-\255"
  s = s:gsub('[%c\\"' .. high .. "]", function (c)
    return ESCAPES[c] or (c:byte() < 128 and string.format("\\%03d", c:byte())
                          or string.format("\\x%02X", c:byte()))
  end)
  return '"' .. s .. '"' .. cut
end

-- tostring, but a failing __tostring becomes part of the output rather
-- than an error that would hide every other result.
local function safe_tostring (v)
  local ok, s = pcall(tostring, v)
  if ok then return s end
  return string.format("<%s: __tostring failed: %s>", type(v), tostring(s))
end

local function has_tostring (v)
  local mt = debug.getmetatable(v)
  return mt ~= nil and rawget(mt, "__tostring") ~= nil
end

local TYPE_RANK = { number = 1, string = 2, boolean = 3 }

-- Numbers in order, then strings, then booleans, then the rest by type
-- and by what tostring says (their address).
local function key_less (a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local ra, rb = TYPE_RANK[ta] or 4, TYPE_RANK[tb] or 4
    if ra ~= rb then return ra < rb end
    return ta < tb
  end
  if ta == "number" then
    if a ~= a then return false end  -- nan sorts last
    return b ~= b or a < b
  elseif ta == "string" then
    return a < b
  elseif ta == "boolean" then
    return b and not a
  end
  return safe_tostring(a) < safe_tostring(b)
end

local format_value

local function format_key (k, ctx, depth)
  if is_name(k) then return k end
  return "[" .. format_value(k, ctx, depth) .. "]"
end

-- Formats a table's entries: the sequence 1..n first, then the other keys
-- sorted. Returns the formatted parts and whether any spans lines.
local function table_parts (t, ctx, depth)
  local parts, multiline = {}, false
  local function add (s)
    parts[#parts + 1] = s
    if s:find("\n", 1, true) then multiline = true end
  end
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, key_less)
  local total, shown = n + #keys, 0
  for i = 1, n do
    if shown == M.MAX_ITEMS then break end
    add(format_value(rawget(t, i), ctx, depth + 1))
    shown = shown + 1
  end
  for _, k in ipairs(keys) do
    if shown == M.MAX_ITEMS then break end
    add(format_key(k, ctx, depth + 1) .. " = "
        .. format_value(rawget(t, k), ctx, depth + 1))
    shown = shown + 1
  end
  if total > shown then
    add(string.format("...(%d more)", total - shown))
  end
  return parts, multiline
end

local function format_table (t, ctx, depth)
  if ctx.open[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if depth >= M.MAX_DEPTH then return "{...}" end
  ctx.open[t] = true
  local parts, multiline = table_parts(t, ctx, depth)
  ctx.open[t] = nil
  local indent = string.rep("  ", depth)
  local line = "{ " .. table.concat(parts, ", ") .. " }"
  if not multiline and #indent + #line <= M.WIDTH then return line end
  local inner = indent .. "  "
  for i, p in ipairs(parts) do
    parts[i] = inner .. p
  end
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

function format_value (v, ctx, depth)
  local tv = type(v)
  if tv == "string" then
    return M.quote(v, M.MAX_STRING)
  elseif tv == "table" and not has_tostring(v) then
    return format_table(v, ctx, depth)
  end
  return safe_tostring(v)
end

--- Formats a value for reading: tables nested over lines with their keys
-- sorted, cut at `MAX_DEPTH` levels and `MAX_ITEMS` entries, a table met
-- again inside itself as `<cycle>`; strings quoted; anything with a
-- `__tostring` (a BlockFile, a view) through it.
-- @param v any value
-- @return a string
function M.format (v)
  return format_value(v, { open = {} }, 0)
end

--- Prints the results of a REPL chunk, separated by tabs as `print` does.
-- A string result is printed as it is, less one final newline (so
-- `v:hex()` shows a hexdump); anything else through `format`.
-- @param ... the results
function M.show (...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[i] = type(v) == "string" and v:gsub("\n$", "") or M.format(v)
  end
  io.stdout:write(table.concat(out, "\t"), "\n")
end

-- Field lookup without side effects: raw fields, then the tables of
-- __index chains; an __index function is never called.
local function peek (v, key)
  for _ = 1, 16 do  -- a bound: __index chains may loop
    if type(v) == "table" then
      local got = rawget(v, key)
      if got ~= nil then return got end
    end
    local mt = debug.getmetatable(v)
    local index = mt and rawget(mt, "__index")
    if type(index) ~= "table" then return nil end
    v = index
  end
  return nil
end

-- Every string key reachable from v by peek.
local function fields (v)
  local seen, names = {}, {}
  for _ = 1, 16 do
    if type(v) == "table" then
      for k in next, v do
        if is_name(k) and not seen[k] then
          seen[k] = true
          names[#names + 1] = k
        end
      end
    end
    local mt = debug.getmetatable(v)
    local index = mt and rawget(mt, "__index")
    if type(index) ~= "table" then break end
    v = index
  end
  return names
end

local function callable (v)
  if type(v) == "function" then return true end
  local mt = debug.getmetatable(v)
  return mt ~= nil and rawget(mt, "__call") ~= nil
end

--- Completes the word before the cursor: a global or keyword, or a field
-- (after `.`) or method (after `:`) of the value a dotted name leads to,
-- looking through metatables' `__index` tables so that BlockFile and view
-- methods complete. Names that start with `__` (metamethods) are left out
-- unless the text asks for them.
-- @param text the word, e.g. `"bf:al"`, `"string.fo"`, `"pri"`
-- @return a sorted array of whole words that may replace text
function M.complete (text)
  local matches = {}
  local head, sep, partial = text:match("^(.*)([.:])([%w_]*)$")
  if head == nil then
    if not text:match("^[%a_][%w_]*$") and text ~= "" then return matches end
    for _, name in ipairs(fields(_G)) do
      if name:sub(1, #text) == text then matches[#matches + 1] = name end
    end
    for word in pairs(KEYWORDS) do
      if word:sub(1, #text) == text then matches[#matches + 1] = word end
    end
  else
    local v = _G
    for name in (head .. "."):gmatch("(.-)%.") do
      if not is_name(name) then return matches end
      v = peek(v, name)
      if v == nil then return matches end
    end
    local hidden = partial:sub(1, 1) ~= "_"  -- metamethods, unless asked
    for _, name in ipairs(fields(v)) do
      if name:sub(1, #partial) == partial
         and not (hidden and name:sub(1, 2) == "__")
         and (sep == "." or callable(peek(v, name))) then
        matches[#matches + 1] = head .. sep .. name
      end
    end
  end
  table.sort(matches)
  return matches
end

--- Sets up the REPL: the globals `help` and `fmap` (unless already set),
-- and the hint under the banner.
-- @param version the host's version string, e.g. "fmap 0.1"
function M.start (version)
  if rawget(_G, "help") == nil then
    _G.help = require("fmap.help").help
  end
  if rawget(_G, "fmap") == nil then
    local ok, fmap = pcall(require, "fmap")
    if ok then _G.fmap = fmap end
  end
  if rawget(_G, "show") == nil then
    -- show(t) / show(bf): a picture in a temporary file; the REPL prints
    -- the path it returns (fmap.dot.show).
    _G.show = function (...) return require("fmap.dot").show(...) end
  end
  io.stdout:write(string.format(
    "%s: help() lists the API, help(x) describes x, Ctrl-D leaves.\n",
    tostring(version or "fmap")))
end

return M
