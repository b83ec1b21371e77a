--- fmap.repl: what the fmap REPL prints and completes.
-- The host (engine/host/repl.c) calls `start` once when the REPL begins, `show`
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
--- Lines of a chunk's results printed before the rest is cut (`more()`
-- prints them all); a line wider than `WIDTH + 2` columns counts as the
-- rows it takes on such a screen.
M.MAX_LINES = 30

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

-- The escapes kept readable; any other control byte is written as its
-- decimal code, as string.format's %q writes it.
local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ["\\"] = "\\\\", ['"'] = '\\"' }

-- What string.gsub puts for an escaped byte, alone or followed by a digit
-- (before which its code takes three digits), looked up without a call.
local QUOTED = {}
for b = 0, 255 do
  local c = string.char(b)
  QUOTED[c] = ESCAPES[c] or ("\\" .. b)
  for d = 0, 9 do
    QUOTED[c .. d] = (ESCAPES[c] or string.format("\\%03d", b)) .. d
  end
end

--- Quotes a string as a Lua literal that reads back to the same bytes,
-- cut after `limit` bytes. Newlines, returns and tabs are written `\n`,
-- `\r`, `\t`, any other control byte as its decimal code (`\0`, `\7`,
-- `\27`; three digits before a digit), as `%q` does. Bytes above 127
-- stay as they are in UTF-8 text; in binary data (a string that is not
-- UTF-8, or that holds a zero byte) they are written `\ddd` too.
-- @param s the string
-- @param limit optional: bytes kept, or nil for all
-- @return the literal
function M.quote (s, limit)
  local binary = s:find("\0", 1, true) ~= nil or utf8.len(s) == nil
  local cut = ""
  if limit and #s > limit then
    if not binary then  -- cut between two characters, not inside one
      while limit > 0 and (s:byte(limit + 1) & 0xC0) == 0x80 do
        limit = limit - 1
      end
    end
    cut = string.format("..(%d more bytes)", #s - limit)
    s = s:sub(1, limit)
  end
  s = s:gsub(binary and '[%c\\"\128-\255]%d?' or '[%c\\"]%d?', QUOTED)
  return '"' .. s .. '"' .. cut
end

--- Whether the REPL prints a string as it is rather than quoted: UTF-8
-- text with no control byte other than newlines and tabs.
-- @param s the string
-- @return a boolean
function M.printable (s)
  return not s:find("[\0-\8\11-\31\127]") and utf8.len(s) ~= nil
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
    if shown == ctx.items then break end
    add(format_value(rawget(t, i), ctx, depth + 1))
    shown = shown + 1
  end
  for _, k in ipairs(keys) do
    if shown == ctx.items then break end
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
  if depth >= ctx.depth then return "{...}" end
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
    return M.quote(v, ctx.string)
  elseif tv == "table" and not has_tostring(v) then
    return format_table(v, ctx, depth)
  end
  return safe_tostring(v)
end

-- The limits of what the REPL prints; with all, what more() prints: every
-- entry and byte, and levels up to a bound that keeps a linked list of
-- tables from exhausting the stack.
local function limits (all)
  if all then return { open = {}, depth = 100, items = math.huge } end
  return { open = {}, depth = M.MAX_DEPTH, items = M.MAX_ITEMS,
           string = M.MAX_STRING }
end

--- Formats a value for reading: tables nested over lines with their keys
-- sorted, cut at `MAX_DEPTH` levels and `MAX_ITEMS` entries, a table met
-- again inside itself as `<cycle>`; strings quoted; anything with a
-- `__tostring` (a BlockFile, a view) through it.
-- @param v any value
-- @return a string
function M.format (v)
  return format_value(v, limits(false), 0)
end

-- Printing results: the pieces of the results printed last, for more();
-- and the host's pager, which start receives.
local last, host_page

-- One result as the REPL lays it out: its text (a printable string as it
-- is, less one final newline, so that v:hex() is a hexdump; another string
-- quoted, cut after top bytes unless top is nil; anything else through
-- format_value); whether it is a summary (text, a scalar, a value printed
-- through its __tostring) rather than a table laid out by format; a
-- table's summary field when it is text; and, for a string cut, the
-- string itself and how many bytes were left out.
local function piece (v, ctx, top)
  local tv = type(v)
  if tv == "string" then
    if M.printable(v) then
      return { text = (v:gsub("\n$", "")), summary = true }
    end
    local p = { text = M.quote(v, top), summary = true }
    if top and #v > top then p.whole, p.cut = v, #v - top end
    return p
  end
  if tv == "table" and not has_tostring(v) then
    local head = rawget(v, "summary")
    if type(head) == "string" then
      head = M.printable(head) and head:gsub("\n$", "")
             or M.quote(head, top)
    else
      head = nil
    end
    return { text = format_value(v, ctx, 0), head = head }
  end
  return { text = format_value(v, ctx, 0), summary = true }
end

-- The pieces of results, and how many bytes of their strings were cut.
local function pieces (ctx, top, ...)
  local list, cut = { n = select("#", ...) }, 0
  for i = 1, list.n do
    list[i] = piece((select(i, ...)), ctx, top)
    cut = cut + (list[i].cut or 0)
  end
  return list, cut
end

-- Lays pieces out: on one line separated by tabs, as print does, when each
-- fits on one; else each on lines of its own, the summaries first (text,
-- scalars, values with a __tostring, and a table's summary field), then
-- the tables. With whole, the strings that were cut are quoted whole.
local function arrange (list, whole)
  local texts, one_line = {}, true
  for i = 1, list.n do
    local p = list[i]
    texts[i] = (whole and p.whole) and M.quote(p.whole) or p.text
    if texts[i]:find("\n", 1, true) then one_line = false end
  end
  if one_line then return table.concat(texts, "\t", 1, list.n) end
  local out = {}
  for i = 1, list.n do
    if list[i].summary then out[#out + 1] = texts[i] end
    if list[i].head then out[#out + 1] = list[i].head end
  end
  for i = 1, list.n do
    if not list[i].summary then out[#out + 1] = texts[i] end
  end
  return table.concat(out, "\n")
end

-- The first rows lines of text, a line counting as the rows it takes on
-- a screen of WIDTH + 2 columns; and, when that is not all of it, what is
-- left out ("12 more lines", or "300 more bytes" of a last line cut).
local function first_rows (text, rows)
  local cols, used, pos = M.WIDTH + 2, 0, 1
  while true do
    local nl = text:find("\n", pos, true)
    local stop = nl and nl - 1 or #text
    local width = utf8.len(text, pos, stop) or (stop - pos + 1)
    local need = math.max(1, (width + cols - 1) // cols)
    if used + need > rows then
      local room = (rows - used) * cols
      local shown = text:sub(1, pos - 2)            -- the lines before
      local left = 1 + select(2, text:sub(pos):gsub("\n", ""))
      if room > 0 then                           -- the part that fits
        local cut = utf8.len(text, pos, stop)
                    and (utf8.offset(text, room + 1, pos) - 1)
                    or (pos + room - 1)
        shown = text:sub(1, cut)
        if left == 1 then
          return shown, string.format("%d more bytes", stop - cut)
        end
      end
      return shown, string.format("%d more line%s", left,
                                  left == 1 and "" or "s")
    end
    used = used + need
    if nl == nil then return text, nil end
    pos = nl + 1
  end
end

--- Prints the results of a REPL chunk. A printable string (see
-- `printable`) is printed as it is, less one final newline (so `v:hex()`
-- shows a hexdump), another string as a literal (see `quote`); anything
-- else through `format`. Results that each fit on a line are separated by
-- tabs, as `print` does; otherwise each takes lines of its own, summaries
-- first (text, scalars, values printed through a `__tostring`, a table's
-- `summary` field when it is text) and tables after. What passes
-- `MAX_LINES` is cut, and a last line says how much and that `more()`
-- prints it all.
-- @param ... the results
function M.show (...)
  -- a literal is cut short enough to fit the lines, so that it stays a
  -- literal (a byte takes up to 4 columns)
  local top = math.max(1, M.MAX_LINES * (M.WIDTH + 2) // 4)
  local list, cut = pieces(limits(false), top, ...)
  local text = arrange(list)
  -- more() lays them out again with the cut strings whole: the pieces
  -- keep texts and strings, nothing that could hold a view alive
  last = list
  local shown, left = first_rows(text, M.MAX_LINES)
  if left == nil and cut > 0 then
    left = string.format("%d more bytes", cut)
  end
  io.stdout:write(shown, "\n")
  if left then
    io.stdout:write("-- ", left, ": more() shows it all\n")
  end
end

local function on_path (name)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. name, "r")
    if f then
      f:close()
      return true
    end
  end
  return false
end

--- The pager `page` runs: `$PAGER`, else `less -FRX` when less is on the
-- PATH (it leaves at once when the text fits on the screen, and leaves
-- it there).
-- @return a shell command, or nil for none (also when PAGER is empty or
-- `cat`)
function M.pager ()
  local pager = os.getenv("PAGER")
  if pager then
    if pager:match("^%s*$") or pager:match("^%s*cat%s*$") then return nil end
    return pager
  end
  return on_path("less") and "less -FRX" or nil
end

--- Prints text, through the pager (see `pager`) when the REPL runs with
-- its output on a terminal; printed as it is otherwise, or when the
-- pager cannot run (with a line on stderr that says why).
-- @param text the text
function M.page (text)
  local cmd = host_page and M.pager()
  if cmd then
    local ok, err = host_page(cmd, text)
    if ok then return end
    if ok == nil then
      io.stderr:write("fmap: ", tostring(err), "; printing instead\n")
    end
  end
  io.stdout:write(text)
end

--- Prints whole what the REPL cut: the results it printed last, or the
-- values given, with every entry and level of their tables and every byte
-- of their strings; through the pager (see `page`).
-- @param ... nothing, or the values to print
function M.more (...)
  local text
  if select("#", ...) > 0 then
    text = arrange((pieces(limits(true), nil, ...)))
  elseif last then
    text = arrange(last, true)
  else
    text = "-- no results yet: more() prints the last ones whole"
  end
  M.page(text .. "\n")
end

-- The fmap table's modules (fmap.modules): fields its __index loads.
local function fmap_modules (v)
  local loaded = rawget(package, "loaded")
  if type(loaded) ~= "table" or v == nil or rawget(loaded, "fmap") ~= v then
    return nil
  end
  local ok, mods = pcall(require, "fmap.modules")
  return ok and type(mods) == "table" and mods or nil
end

--- v[key] without side effects, as a method call would find it: raw
-- fields, then the tables of __index chains; an __index function is never
-- called, and a chain longer than 16 tables (it may loop) finds nothing.
-- help() reads methods through it too.
function M.lookup (v, key)
  for _ = 1, 16 do
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

-- M.lookup, and the one __index function it stands in for: the fmap
-- table's, which loads a module of its list.
local function peek (v, key)
  local mods = fmap_modules(v)
  if mods and rawget(mods, key) and rawget(v, key) == nil then
    local ok, mod = pcall(require, "fmap." .. key)
    return ok and mod or nil
  end
  return M.lookup(v, key)
end

-- Every string key reachable from v by peek; with methods_only, only
-- those of its class (the __index tables), not its own fields.
local function fields (v, methods_only)
  local seen, names = {}, {}
  local function add (k)
    if is_name(k) and not seen[k] then
      seen[k] = true
      names[#names + 1] = k
    end
  end
  for k in pairs(fmap_modules(v) or {}) do add(k) end
  for level = 1, 16 do
    if type(v) == "table" and not (methods_only and level == 1) then
      for k in next, v do add(k) end
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

-- An object: a value whose metatable's __index is a table, its class.
local function is_object (v)
  local mt = debug.getmetatable(v)
  return mt ~= nil and type(rawget(mt, "__index")) == "table"
end

--- Completes the word before the cursor: a global or keyword, or a field
-- (after `.`) or method (after `:`) of the value a dotted name leads to,
-- looking through metatables' `__index` tables, never calling one. After
-- `fmap.` come its modules too (`fmap.bptree`, `fmap.audit`...). On an
-- object (a value whose metatable's `__index` is a table: a BlockFile, a
-- view, a B+tree) both `.` and `:` list its public methods only, not its
-- own fields. Names that start with `_` (private ones, metamethods) are
-- left out unless the text asks for them.
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
    local private = partial:sub(1, 1) == "_"   -- asked for
    local methods = not private and is_object(v)
    for _, name in ipairs(fields(v, methods)) do
      if name:sub(1, #partial) == partial
         and (private or name:sub(1, 1) ~= "_")
         and ((sep == "." and not methods) or callable(peek(v, name))) then
        matches[#matches + 1] = head .. sep .. name
      end
    end
  end
  table.sort(matches)
  return matches
end

--- Sets up the REPL: the globals `help`, `more`, `show` and `fmap`
-- (unless already set), and the hint under the banner.
-- @param version the host's version string, e.g. "fmap 0.1"
-- @param page optional: the host's pager, `page(command, text)` -> true
-- when it paged, false when its output is not a terminal, nil and a
-- message when the pager could not run
function M.start (version, page)
  host_page = type(page) == "function" and page or nil
  if rawget(_G, "help") == nil then
    _G.help = require("fmap.help").help
  end
  if rawget(_G, "more") == nil then
    _G.more = M.more
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
