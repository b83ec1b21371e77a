--- fmap.help: the REPL's `help()`.
-- `help()` lists the fmap API one line each; `help(x)` describes x: a
-- function, a module, a BlockFile, a view, or a name such as
-- `"bf:allocate"`. The engine's functions are described here; a function
-- written in Lua is described by the LDoc comment above it in its source.
local M = {}

local BF, VIEW = "fmap.BlockFile", "fmap.View"

-- The engine's API, in the order help() lists it: name, arguments and
-- results, one line, and (optionally) more.
local API = {
  { "fmap", "module", "the block engine: files of fixed-size blocks" },
  { "fmap.create", "(path [, block_size]) -> bf | nil, msg, errno",
    "creates a block file (truncates)",
    "block_size: a multiple of 4096 up to 2^30, default fmap.BLOCKSIZE.\n"
    .. "Block 0 is the control block; the first allocate() returns the\n"
    .. "next one." },
  { "fmap.open",
    "(path [, {readonly = true | repair = true}]) -> bf | nil, msg, errno",
    "opens an existing block file",
    "Fails (nil, message, errno) when the file is missing, unreadable,\n"
    .. "not an fmap file, has a corrupt header, or another writer has it\n"
    .. "(a writer holds an exclusive lock; read-only opens share one).\n"
    .. "repair = true rebuilds the free list from the blocks' marks: the\n"
    .. "blocks a crash or a damaged list lost come back." },
  { "fmap.anonymous", "([block_size]) -> bf",
    "a block file in memory only" },
  { "fmap.memclr", "(view)", "zeroes a view" },
  { "fmap.clock", "() -> seconds", "a monotonic clock, for benchmarks" },
  { "fmap.batch_iterator", "(fill, width [, watch, key, message]) -> iterator",
    "a generic-for iterator over batches that fill reads",
    "fill(buffer) stores values in buffer[1..n] and returns n (0 or nil at\n"
    .. "the end), a multiple of width; each step returns the next width\n"
    .. "values (a negative width walks each batch from its end). With\n"
    .. "watch, a step first checks rawget(watch, key) against its value\n"
    .. "at the start and raises message if it changed. Each step is one C\n"
    .. "call." },
  { "fmap.BLOCKSIZE", "", "the default block size (4096)" },
  { "fmap.VERSION", "", "the engine's version string" },
  { "fmap.FORMAT_VERSION", "", "the on-disk format version" },

  { "BlockFile", "type", "an open block file (bf)" },
  { "bf:allocate", "() -> offset", "allocates one zeroed block",
    "Reuses freed blocks first, else grows the file (by a quarter, so\n"
    .. "n allocations cost O(n) in all). Growth may move the map; views\n"
    .. "stay valid." },
  { "bf:allocate_blocks", "(n) -> offset",
    "allocates n contiguous zeroed blocks" },
  { "bf:free", "(offset [, n])",
    "frees n blocks (default 1)",
    "Raises on an offset that is not block-aligned, out of range, or\n"
    .. "already free (a double free). Views over the blocks die." },
  { "bf:get", "(offset [, blocks]) -> view",
    "a view of blocks (default 1)",
    "Release it with v:release(), bf:release(v), or a <close> variable:\n"
    .. "  local v <close> = bf:get(off)" },
  { "bf:release", "(view)", "releases a view" },
  { "bf:with", "(offset, [blocks,] fn) -> fn's results",
    "fn(view), released even on error",
    "blocks defaults to 1. fn may yield; closing its coroutine releases\n"
    .. "the view too." },
  { "bf:control_data", "() -> string",
    "the user's control data" },
  { "bf:set_control_data", "(s)",
    "stores it, then commits as bf:sync() does",
    "At most (block_size - 256) / 2 bytes: 1920 for 4096. Inside a\n"
    .. "transaction it is part of it, committed by commit()." },
  { "bf:set_control_data_nosync", "(s)",
    "stores it without syncing" },
  { "bf:block_size", "() -> n", "bytes per block" },
  { "bf:size", "() -> n", "file size in bytes, as mapped" },
  { "bf:path", "() -> path | nil", "the file's path, nil when anonymous" },
  { "bf:readonly", "() -> boolean", "whether it was opened read-only" },
  { "bf:address", "() -> n", "the map's address (moves on growth)" },
  { "bf:valid", "(address) -> boolean", "whether address is still the map's" },
  { "bf:sync", "() -> true | nil, msg, errno",
    "commits what changed, without waiting for the disk",
    "Outside a transaction only; inside one it checks the map." },
  { "bf:flush", "() -> true | nil, msg, errno",
    "commits what changed, durably: returns once on disk",
    "Raises inside a transaction: commit it instead." },
  { "bf:begin", "()", "starts a transaction",
    "Everything it changes (bytes, allocations, frees, control data,\n"
    .. "growth) commits or rolls back as one. Raises inside another." },
  { "bf:commit", "([{sync = false}]) -> true | nil, msg, errno",
    "commits the transaction; durable unless sync = false" },
  { "bf:rollback", "()", "undoes the transaction",
    "Views over blocks it allocated die; others read the restored bytes." },
  { "bf:in_transaction", "() -> boolean", "whether a transaction is open" },
  { "bf:transaction", "(fn, ...) -> fn's results | nil, msg, errno",
    "fn(...) in a transaction: committed when it returns",
    "Rolled back, and the error raised again, when fn raises." },
  { "bf:fail_after", "(n [, \"kill\"])",
    "the n-th store from now raises (or kills the process)",
    "Stores are writes through views, allocate, free and control data:\n"
    .. "a test of recovery code. fail_after(nil) disarms it." },
  { "bf:close", "()", "closes; raises if views are live",
    "Collects garbage first; raises, listing them, if views are still\n"
    .. "live (see bf:live_views()). Trims the unused tail." },
  { "bf:remove", "()", "closes if open, deletes the file" },
  { "bf:stats", "() -> table",
    "sizes, counts of blocks and views" },
  { "bf:check", "() -> true | nil, problems",
    "lists every inconsistency found" },
  { "bf:live_views", "() -> list",
    "live views, where each was taken" },
  { "bf:free_list", "() -> list",
    "free runs: {offset =, blocks =}" },
  { "bf:is_free", "(offset) -> boolean", "whether the block is free",
    "false for the control block and for blocks past the allocated\n"
    .. "area; an offset that is not block-aligned raises." },
  { "bf:entry_iterator", "(fill [, watch, key, message]) -> iterator",
    "a generic-for iterator reading entries straight from the file",
    "fill() returns the next run: pos, count, stride, len [, len2], count\n"
    .. "entries at file offsets pos, pos + stride, ... (a negative stride\n"
    .. "walks down), in allocated blocks; nil ends it, a count of 0 asks\n"
    .. "again. Each step reads the next entry's len bytes, and the len2\n"
    .. "after them, as strings; nothing is read ahead and no view is held.\n"
    .. "watch, key and message as for fmap.batch_iterator." },

  { "bf:searcher", "(countpos, pos, stride [, at [, len]]) -> search",
    "v:search with its node layout fixed, over blocks, with no view",
    "search(offset, key [, upper [, depth [, below]]]) -> index, found,\n"
    .. "field, count, node searches the node in the allocated block at\n"
    .. "offset as v:search(countpos, pos, stride, key, upper, at, len)\n"
    .. "would a view of that block; node is the offset searched. With\n"
    .. "depth (default 1) it descends: it searches depth nodes, each at\n"
    .. "the u64 beside the hit in the one before (the searcher needs at and\n"
    .. "no len), then, given below (another searcher of the file), one\n"
    .. "more node with below's layout, and returns what the last search\n"
    .. "found. A B+tree's get: child(root, key, false, height - 1, leaf).\n"
    .. "Raises if a block is free or past the allocated area, if a count's\n"
    .. "entries would pass the block, or if depth passes the file's blocks." },

  { "View", "type",
    "a window on blocks (v); 0-based positions" },
  { "#v", "", "the view's length in bytes" },
  { "v:offset", "() -> offset", "file offset of its first block" },
  { "v:blocks", "() -> n", "how many blocks it spans" },
  { "v:live", "() -> boolean", "whether it can still be used" },
  { "v:blockfile", "() -> bf", "the BlockFile it belongs to" },
  { "v:release", "()", "releases it; any later use raises" },
  { "v:retarget", "(offset [, blocks]) -> v",
    "points it at other blocks",
    "A walk over many nodes reuses one view instead of acquiring one\n"
    .. "per node. blocks defaults to 1, whatever the view covered." },
  { "v:read", "([pos [, len]]) -> string", "bytes (default: to the end)" },
  { "v:write", "(pos, s) -> next_pos", "writes s at pos" },
  { "v:fill", "(byte [, pos [, len]])", "memset" },
  { "v:compare", "(pos, s_or_view [, other_pos [, len]]) -> -1 | 0 | 1",
    "memcmp, without building a string" },
  { "v:copy", "(pos, src_view, src_pos, len)",
    "memmove; src_view may be v" },
  { "v:pack", "(pos, fmt, ...) -> next_pos",
    "string.pack, in place",
    "Nothing is written if a value is wrong or would not fit." },
  { "v:unpack", "(fmt [, pos]) -> values..., next_pos",
    "string.unpack, in place" },
  { "v:u8 .. v:u64, v:i8 .. v:i64", "(pos) -> n",
    "little-endian reads: the fast path",
    "u64 returns a Lua integer: 2^63 and above read back negative, as\n"
    .. "string.unpack gives them. Searches compare bytes: keep sorted\n"
    .. "integer keys big-endian (string.pack \">I8\")." },
  { "v:set_u8 .. v:set_i64", "(pos, n)", "little-endian writes" },
  { "v:bsearch",
    "(pos, count, stride, key [, upper [, at [, len]]]) -> index, found [, field]",
    "binary search of sorted entries",
    "Returns the 0-based index of the first entry >= key (> key with\n"
    .. "upper), and whether one equals key. With at, also the field at\n"
    .. "at + index * stride: a little-endian u64 (a child beside a\n"
    .. "separator), or with len a string of len bytes (an entry's value);\n"
    .. "nil when that field passes the view. One call does a node's work." },
  { "v:search",
    "(countpos, pos, stride, key [, upper [, at [, len]]]) -> index, found, field, count",
    "bsearch of a node that holds its own count",
    "As bsearch, the count being the little-endian u32 at countpos;\n"
    .. "returns it as well (the field is nil without at)." },
  { "v:insert_key",
    "(countpos, pos, stride, capacity, key [, value]) -> index, count, inserted",
    "puts an entry into a counted sorted run",
    "Puts key..value (stride bytes in all) after the entries equal to key\n"
    .. "in the run of count entries (the u32 at countpos), moving the rest\n"
    .. "up, and stores count + 1; a run of capacity entries is left as it\n"
    .. "is. Returns where it went (or would go), the count after and\n"
    .. "whether it went in: a leaf's insert in one call." },
  { "v:remove_key", "(countpos, pos, stride, key) -> index, removed, count",
    "removes a key's entries from a counted sorted run",
    "Removes every entry whose first #key bytes equal key from the run\n"
    .. "of count entries (the u32 at countpos), moves the rest down and\n"
    .. "stores the new count: a leaf's delete in one call." },
  { "v:insert", "(pos, len, s [, s2]) -> next_pos",
    "opens a gap and writes into it",
    "Moves the len bytes at pos up by #s + #s2 and writes s, then s2,\n"
    .. "at pos: an entry put into a sorted run in one call." },
  { "v:read_entries", "(t, pos, count, stride, len [, len2]) -> n",
    "fixed-size entries read into a table, in one call",
    "Stores in t[1], t[2], ... the len bytes of each of count entries\n"
    .. "stride bytes apart from pos; with len2, each followed by the len2\n"
    .. "bytes after them (a key, then its value). Returns how many strings\n"
    .. "it stored; t is reused as it is (an iterator's buffer)." },
  { "v:bsearch_slots", "(pos, count, stride, key [, upper]) -> index, found",
    "binary search of strings found through a table of slots",
    "Slot i is the little-endian u32 at pos + i * stride: the position in\n"
    .. "the view of a u32 length and that many bytes (a slotted node's\n"
    .. "cells). Strings sort as bytes, a proper prefix first." },
  { "v:hex", "([pos [, len]]) -> string",
    "a hexdump -C style dump" },

  { "Structures", "type", "in Lua, on blocks; help \"NAME\" lists one's API" },
  { "fmap.bptree", "module", "a B+tree over blocks (fs2's bptree)" },
  { "fmap.varchar", "module", "variable-size, reference-counted blobs" },
  { "fmap.mmlist", "module", "a persistent list (fs2's mmlist)" },
  { "fmap.codec", "module", "keys that sort as their values do" },
  { "fmap.audit", "module", "blocks a structure leaked or shares" },
  { "fmap.blockmap", "module", "a picture of every block (PNG, SVG)" },
  { "fmap.dot", "module", "B+tree pictures through Graphviz" },
  { "fmap.classify", "module", "what each block is: classifiers, scans" },

  { "REPL", "type", "what the fmap REPL adds" },
  { "help", "([x])", "this help; help(x) describes x" },
  { "show", "(tree_or_bf) -> path",
    "draws it to a temporary file",
    "A B+tree as an SVG through Graphviz (its DOT text without\n"
    .. "Graphviz), a BlockFile as its block map (PNG)." },
}

-- The fixed-width accessors share one line in the list; each has its own
-- entry for help(v.u32) and help "v:set_i16".
for _, bits in ipairs({ 8, 16, 32, 64 }) do
  for _, sign in ipairs({ "u", "i" }) do
    local kind = string.format("%s %d-bit (%d byte%s)",
      sign == "u" and "unsigned" or "signed", bits, bits // 8,
      bits == 8 and "" or "s")
    API[#API + 1] = { "v:" .. sign .. bits, "(pos) -> n",
                      "reads a little-endian " .. kind .. " integer",
                      sign .. bits == "u64" and "A Lua integer: 2^63 and "
                      .. "above read back negative, as string.unpack\n"
                      .. "gives them (compare with math.ult)." or nil,
                      hidden = true }
    API[#API + 1] = { "v:set_" .. sign .. bits, "(pos, n)",
                      "writes a little-endian " .. kind .. " integer",
                      "n must fit, signed or unsigned.", hidden = true }
  end
end

local BY_NAME = {}
for _, e in ipairs(API) do
  BY_NAME[e[1]] = e
end

-- "bf:get" -> "BlockFile", "get"; "fmap.open" -> "fmap", "open".
local function split (name)
  local owner, sep, field = name:match("^(.-)([.:])([%w_]+)$")
  if owner == "bf" then return BF, field end
  if owner == "v" then return VIEW, field end
  if owner == "fmap" and sep == "." then return "fmap", field end
  return nil
end

-- The engine's functions by value: the fmap table's, and the methods in
-- the metatables the binding registers.
local function engine_functions ()
  local found = {}
  local ok, fmap = pcall(require, "fmap")
  if not ok then return found end
  local reg = debug.getregistry()
  for _, e in ipairs(API) do
    local owner, field = split(e[1])
    local where
    if owner == "fmap" then
      where = fmap
    elseif owner ~= nil and type(reg[owner]) == "table" then
      where = rawget(reg[owner], "__index")
    end
    local f = type(where) == "table" and rawget(where, field)
    if type(f) == "function" then found[f] = e end
  end
  return found
end

local COLUMN = 40  -- where one-line descriptions start
local WIDTH = 78   -- and where they wrap

-- "  head   description": the description wrapped at WIDTH under itself,
-- and starting on a line of its own when the head leaves no room.
local function two_columns (head, text)
  head = "  " .. head
  if text == "" then return head end
  local lines, line = {}, nil
  for word in text:gmatch("%S+") do
    if line and #line + 1 + #word > WIDTH - COLUMN then
      lines[#lines + 1] = line
      line = word
    else
      line = line and (line .. " " .. word) or word
    end
  end
  lines[#lines + 1] = line
  local indent = string.rep(" ", COLUMN)
  local body = table.concat(lines, "\n" .. indent)
  if #head > COLUMN - 2 then return head .. "\n" .. indent .. body end
  return head .. string.rep(" ", COLUMN - #head) .. body
end

local function line_of (e)
  local sig = e[2]
  if sig == "module" or sig == "type" then sig = "" end
  return two_columns(e[1] .. sig, e[3])
end

local function describe_entry (e)
  local out = { e[1] .. ((e[2] == "module" or e[2] == "type") and ""
                         or e[2]), "  " .. e[3] }
  if e[4] then
    out[#out + 1] = "  " .. e[4]:gsub("\n", "\n  ")
  end
  return table.concat(out, "\n")
end

-- Source files, read once, for the comments above functions.
local sources = {}

local function source_lines (path)
  if sources[path] == nil then
    local lines = {}
    local f = io.open(path, "r")
    if f then
      for l in f:lines() do lines[#lines + 1] = l end
      f:close()
    end
    sources[path] = lines
  end
  return sources[path]
end

--- The LDoc comment above a Lua function, without its comment marks.
-- @param f a function
-- @return the comment, or nil if f is not Lua code from a file or has
-- none
function M.ldoc (f)
  local info = debug.getinfo(f, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
  local lines = source_lines(info.source:sub(2))
  local first = info.linedefined - 1
  local out = {}
  for i = first, 1, -1 do
    local l = lines[i]
    if l == nil or not l:match("^%s*%-%-") then break end
    table.insert(out, 1, (l:gsub("^%s*%-%-%-?%s?", "")))
    if l:match("^%s*%-%-%-") then
      return table.concat(out, "\n")
    end
  end
  return nil
end

--- How a Lua function is called: its parameter names.
-- @param f a function
-- @param method true to leave out the first parameter (self)
-- @return "(a, b, ...)", or "(...)" for a C function
function M.signature (f, method)
  local info = debug.getinfo(f, "Su")
  if info.what ~= "Lua" then return "(...)" end
  -- a parameter its comment calls optional ("@param where optional ...")
  -- is shown in brackets, as the engine's are; one whose name starts
  -- with "_" is internal, and left out
  local doc = M.ldoc(f) or ""
  local params, optional = {}, 0
  for i = method and 2 or 1, info.nparams do
    local name = debug.getlocal(f, i)
    if name:sub(1, 1) == "_" then        -- internal: left out
    elseif doc:match("@param " .. name .. " optional") then
      params[#params + 1] = (#params > 0 and " [, " or "[") .. name
      optional = optional + 1
    else
      params[#params + 1] = (#params > 0 and ", " or "") .. name
    end
  end
  if info.isvararg then
    params[#params + 1] = (#params > 0 and ", " or "") .. "..."
  end
  return "(" .. table.concat(params) .. string.rep("]", optional) .. ")"
end

local function index_of (v)
  local mt = debug.getmetatable(v)
  local index = mt and rawget(mt, "__index")
  return type(index) == "table" and index or nil
end

-- The name a value goes by: a global ("print"), a field of a loaded
-- module ("string.format", "fmap.bptree.new"), or a method of a global
-- object ("t:add", and then true); nil if none.
local function find_name (v)
  for k, x in next, _G do
    if x == v and type(k) == "string" then return k end
  end
  local best
  for modname, mod in pairs(package.loaded) do
    if mod == v then return modname end
    if type(mod) == "table" and modname ~= "_G" then
      for k, x in next, mod do
        if x == v and type(k) == "string" then
          local name = modname .. "." .. k
          if best == nil or #name < #best then best = name end
        end
      end
    end
  end
  if best then return best end
  for k, x in next, _G do
    local index = type(k) == "string" and index_of(x)
    if index then
      for m, f in next, index do
        if f == v and type(m) == "string" then return k .. ":" .. m, true end
      end
    end
  end
  return nil
end

-- The first sentence of a comment, cut to fit in room columns.
local function summary (doc, room)
  local text = doc:match("^(.-)\n%s*@") or doc
  text = text:gsub("%s*\n%s*", " ")
  text = text:match("^(.-%.)%s") or text:match("^(.-%.)$") or text
  if #text > room then
    text = text:sub(1, room - 3):match("^(.*%S)%s") or text:sub(1, room - 3)
    text = text:gsub("[%s%p]+$", "") .. "..."
  end
  return text
end

local function methods_of (mt)
  local index = mt and rawget(mt, "__index")
  local names = {}
  if type(index) == "table" then
    for k, f in next, index do
      if type(k) == "string" and type(f) == "function" then
        names[#names + 1] = k
      end
    end
  end
  table.sort(names)
  return names
end

-- One line per public function of a module or class table: its
-- signature and the first sentence of its comment. Names that start with
-- '_' (private ones, metamethods) are left out.
local function list_functions (t, prefix, sep)
  local names = {}
  for k, f in next, t do
    if type(k) == "string" and type(f) == "function" and k:sub(1, 1) ~= "_"
    then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  local out = {}
  local engine = engine_functions()
  for _, k in ipairs(names) do
    local f = t[k]
    local e = engine[f]
    if e then
      out[#out + 1] = line_of(e)
    else
      local doc = M.ldoc(f)
      out[#out + 1] = two_columns(prefix .. sep .. k
                                  .. M.signature(f, sep == ":"),
                                  doc and summary(doc, WIDTH - COLUMN) or "")
    end
  end
  return table.concat(out, "\n")
end

local function overview ()
  local out = { "The fmap API (help(x) for more on x; x may be a name, "
                .. "e.g. help \"bf:get\"):" }
  for _, e in ipairs(API) do
    if e[2] == "module" and e[1] ~= "fmap" then
      out[#out + 1] = line_of(e)
    elseif e[2] == "module" or e[2] == "type" then
      out[#out + 1] = ""
      out[#out + 1] = string.format("%s  -- %s", e[1], e[3])
    elseif not e.hidden then
      out[#out + 1] = line_of(e)
    end
  end
  return table.concat(out, "\n")
end

local function describe_function (f)
  local e = engine_functions()[f]
  if e then return describe_entry(e) end
  local name, method = find_name(f)
  -- a global the API describes by name (the REPL's show, a wrapper)
  if name and not method and BY_NAME[name] then
    return describe_entry(BY_NAME[name])
  end
  name = name or "function"
  local doc = M.ldoc(f)
  if doc then
    return name .. M.signature(f, method) .. "\n  " .. doc:gsub("\n", "\n  ")
  end
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    if name == "function" then return "a C function, not described" end
    return name .. ": a built-in function; see "
           .. "https://www.lua.org/manual/5.4/manual.html#pdf-" .. name
  end
  return string.format("%s%s: a Lua function defined at %s:%d (no comment)",
                       name, M.signature(f, method), info.short_src,
                       info.linedefined)
end

local function describe_typed (v, typename, entry)
  local out = { tostring(v), "  " .. entry[3] }
  local mt = debug.getregistry()[typename]
  local names = methods_of(mt)
  if #names > 0 then
    out[#out + 1] = "Methods:"
    local prefix = typename == BF and "bf:" or "v:"
    for _, k in ipairs(names) do
      local e = BY_NAME[prefix .. k]
      out[#out + 1] = e and line_of(e) or two_columns(prefix .. k .. "(...)",
                                                      "(not described)")
    end
  end
  return table.concat(out, "\n")
end

-- The structures written in Lua, by module; the name help gives an object
-- of each in a method's name ("t:add"), and other names it takes for it.
local STRUCTURES = {
  { "fmap.bptree", "t", tree = true, bptree = true },
  { "fmap.varchar", "s", vc = true, varchar = true, store = true },
  { "fmap.mmlist", "l", list = true, mmlist = true },
}

-- The methods of structure st (its module's _methods), or nil.
local function structure_methods (st)
  local ok, mod = pcall(require, st[1])
  local methods = ok and type(mod) == "table" and rawget(mod, "_methods")
  return type(methods) == "table" and methods or nil
end

-- The name an object of the structure whose methods are index goes by.
local function object_name (index)
  for _, st in ipairs(STRUCTURES) do
    if structure_methods(st) == index then return st[2] end
  end
  return "obj"
end

-- The description of method field of a structure, the one that prefix
-- names ("t") or, without a prefix, the first that has it; nil if none.
local function describe_method (prefix, field)
  for _, st in ipairs(STRUCTURES) do
    local methods = (prefix == nil or prefix == st[2] or st[prefix])
                    and structure_methods(st)
    local f = methods and rawget(methods, field)
    if type(f) == "function" and field:sub(1, 1) ~= "_" then
      local doc = M.ldoc(f) or "(no comment)"
      return string.format("%s:%s%s  -- a method of %s\n  %s", st[2], field,
                           M.signature(f, true), st[1],
                           (doc:gsub("\n", "\n  ")))
    end
  end
  return nil
end

local function describe_table (t)
  local name = find_name(t)
  if name == "fmap" then
    local out = { describe_entry(BY_NAME.fmap) }
    for _, e in ipairs(API) do
      if e[1]:match("^fmap%.") and e[2] ~= "module" and not e.hidden then
        out[#out + 1] = line_of(e)
      end
    end
    return table.concat(out, "\n")
  end
  local out = {}
  local entry = name and BY_NAME[name]
  local mt = debug.getmetatable(t)
  if mt and rawget(mt, "__tostring") then  -- an object that says what it is
    out[1] = (name and (name .. ": ") or "") .. tostring(t)
  else
    out[1] = (name or "a table") .. (entry and ("  -- " .. entry[3]) or "")
  end
  local funcs = list_functions(t, name or "t", ".")
  if funcs ~= "" then
    out[#out + 1] = funcs
  end
  local index = index_of(t)
  if index and index ~= t then
    local methods = list_functions(index, name or object_name(index), ":")
    if methods ~= "" then
      out[#out + 1] = "Methods:"
      out[#out + 1] = methods
    end
  end
  if #out == 1 then
    out[1] = out[1] .. ": no functions; it prints as:\n"
             .. require("fmap.repl").format(t)
  end
  return table.concat(out, "\n")
end

local function describe_name (name)
  local e = BY_NAME[name]
  local prefix, method = name:match("^([%w_]+):([%w_]+)$")
  if e == nil and prefix then
    -- "t:add", "l:get": a structure's method, before the engine's "bf:get"
    for _, st in ipairs(STRUCTURES) do
      if st[2] == prefix or st[prefix] then
        local text = describe_method(prefix, method)
        if text then return text end
      end
    end
  end
  if e == nil then
    -- "allocate", "view:read", "BlockFile.get": try the engine's names
    local field = name:match("[.:]([%w_]+)$") or name
    for _, prefix in ipairs({ "bf:", "v:", "fmap." }) do
      if BY_NAME[prefix .. field] then
        e = BY_NAME[prefix .. field]
        break
      end
    end
  end
  if e and e[2] ~= "module" then return describe_entry(e) end
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" then return describe_table(mod) end
  if e then return describe_entry(e) end
  -- "add", "tree:add": a method of one of the structures
  local text = describe_method(nil, method or name)
  if text then return text end
  return string.format("no help for %q; help() lists what there is", name)
end

--- Describes x, or lists the whole API when x is absent.
-- @param x a function, module, BlockFile, view or other value; or a name
-- ("bf:get", "fmap.open", "fmap.bptree")
-- @return the description
function M.text (...)
  if select("#", ...) == 0 then return overview() end
  local x = ...
  local mt = debug.getmetatable(x)
  local typename = mt and rawget(mt, "__name")
  if typename == BF then return describe_typed(x, BF, BY_NAME.BlockFile) end
  if typename == VIEW then return describe_typed(x, VIEW, BY_NAME.View) end
  local tx = type(x)
  if tx == "string" then return describe_name(x) end
  if tx == "function" then return describe_function(x) end
  if tx == "table" then return describe_table(x) end
  return string.format("%s: a %s value", tostring(x), tx)
end

--- Prints help: the API, or a description of x (see text).
-- @param ... nothing, or the value or name to describe
function M.help (...)
  io.stdout:write(M.text(...), "\n")
end

return M
