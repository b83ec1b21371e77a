--- fmap.dump: the structures of an fmap file as portable text, and back:
-- what scripts/dump.lua, load.lua and compact.lua run.
--
--   local dump = require "fmap.dump"
--   dump.write(bf, io.stdout)                  -- every structure, as text
--   dump.load("store.dump", "new.fmap")        -- a new file from the text
--   dump.copy(bf, "new.fmap")                  -- the same, with no text
--
-- A dump holds what the structures hold, never where: B+tree records,
-- blobs with their reference counts, list items, the hash table example's
-- records; the block size; and the control data, where a number that
-- names a structure's offset is written as a reference to that structure
-- (#N), so that a load writes the structure's new offset there. A B+tree
-- whose values are all 8-byte offsets of live blobs of one blob store in
-- the file (a key -> blob index) is dumped with its values as references
-- to those blobs (@N), which a load rewrites to the blobs' new offsets.
-- Structures are numbered in the order of the dump, blobs in the order
-- the trees first name them and then by content, so dumping a loaded file
-- gives the same text again.
--[[
Format, version 1: lines of text ending in "\n", one item each; the first
word says what the line is, fields are separated by one space.

  fmap-dump 1                         the format and its version
  block-size 4096                     the block size of the file dumped
  structures 4                        how many sections follow
  control "bptree@" #3 " vc@" #1      the control data: strings and
                                      references to structures (#N)
  begin 1 varchar blobs=2             a section: its number, kind, figures
  blob 1 refs=1 "hello"               a blob: its number, references, bytes
  blob 2 refs=2 x"00ff10"
  end 1
  begin 2 mmlist items=1
  item ""                             a list item, in list order
  end 2
  begin 3 bptree key-size=-1 value-size=8 records=2 values=blobs#1
  record "apple" @1                   a key and its value (here: blob 1 of
  record "pear" @2                    section 1), in key order
  end 3
  begin 4 hashtable buckets=64 records=1
  record "k" "v"                      the hash table's records, by key
  end 4
  end-of-dump checksum=9a3c1d0e5b7f2a61

A line that starts with "#" is a comment, after the first line: a load
skips it (the checksum covers it). A dump of a file another BlockFile had
open for writing says so in one, after the first line.

Strings: "..." holds the bytes 0x20 to 0x7e as they are, but for `"` and
`\`, and every other byte as \xHH; x"..." holds every byte as two hex
digits, and is written instead when it is shorter (mostly binary bytes).
The checksum is a 64-bit hash of the lines before it (FNV-1a over each
line's bytes taken as little-endian 8-byte words, then its length, each
product xor-shifted): a dump cut short or changed is refused.
]]
local fmap = require "fmap"
local classify = require "fmap.classify"
local bptree = require "fmap.bptree"
local varchar = require "fmap.varchar"
local mmlist = require "fmap.mmlist"
local progress = require "fmap.progress"
local cli = require "fmap.cli"

local M = {}

--- The first word of a dump, and the version of the format this module
-- writes and reads.
M.FORMAT, M.VERSION = "fmap-dump", 1
--- The kinds of structure a dump holds, in the order of its sections:
-- blob stores first, since trees name their blobs.
M.KINDS = { "varchar", "mmlist", "bptree", "hashtable" }
--- The module of the hash table example, which a dump or load of one
-- needs (its classifier finds the tables).
M.HASHTABLE = "fmap.examples.hashtable"

local sformat, spack, sunpack = string.format, string.pack, string.unpack
local concat = table.concat

local function fail (fmt, ...) error(sformat(fmt, ...), 0) end

---------------------------------------------------------------------------
-- Strings
---------------------------------------------------------------------------

local ESC, HEX, UNHEX = {}, {}, {}
for b = 0, 255 do
  local c = string.char(b)
  HEX[c] = sformat("%02x", b)
  ESC[c] = "\\x" .. HEX[c]
  UNHEX[sformat("%02x", b)] = c
  UNHEX[sformat("%02X", b)] = c
end
local SPECIAL = '[%z\1-\31\127-\255"\\]'
local RAW = "[%z\1-\31\127-\255]"

--- A byte string as a dump writes it: `"..."` with \xHH escapes, or
-- `x"..."` in hex when that is shorter.
-- @param s a string
-- @return the text
function M.quote (s)
  if not s:find(SPECIAL) then return '"' .. s .. '"' end
  local esc, n = s:gsub(SPECIAL, ESC)
  if 2 * n > #s then return 'x"' .. s:gsub(".", HEX) .. '"' end
  return '"' .. esc .. '"'
end

-- The string that starts at pos of line: its bytes and the position after
-- it, or nil and what is wrong.
local function read_string (line, pos)
  local c = line:sub(pos, pos)
  if c == '"' then
    local e = line:find('"', pos + 1, true)
    if not e then return nil, "a string with no closing quote" end
    local body = line:sub(pos + 1, e - 1)
    if body:find(RAW) then
      return nil, "a string holds a byte a dump writes as \\xHH"
    end
    if body:find("\\", 1, true) then
      local s, n = body:gsub("\\x(%x%x)", UNHEX)
      if select(2, body:gsub("\\", "")) ~= n then
        return nil, "a string holds a \\ that starts no \\xHH"
      end
      body = s
    end
    return body, e + 1
  elseif c == "x" and line:sub(pos + 1, pos + 1) == '"' then
    local e = line:find('"', pos + 2, true)
    if not e then return nil, "a string with no closing quote" end
    local hex = line:sub(pos + 2, e - 1)
    if #hex % 2 ~= 0 or hex:find("%X") then
      return nil, "a hex string of other than pairs of hex digits"
    end
    return (hex:gsub("%x%x", UNHEX)), e + 1
  end
  return nil, "a string expected"
end

--- The bytes of one string as `quote` writes it.
-- @param text `"..."` or `x"..."`, nothing around it
-- @return the bytes, or nil and what is wrong
function M.unquote (text)
  if type(text) ~= "string" then
    error("bad argument #1 to 'unquote' (string expected, got "
          .. type(text) .. ")", 2)
  end
  local s, after = read_string(text, 1)
  if s and after ~= #text + 1 then
    return nil, "text after the string"
  end
  return s, after
end

---------------------------------------------------------------------------
-- The checksum: 64 bits, FNV-1a over little-endian 8-byte words, each
-- step's product xor-shifted right so that a change in a word's high
-- bytes reaches the low bits too (a product carries only upward)
---------------------------------------------------------------------------

local PRIME, BASIS = 0x100000001b3, 0xcbf29ce484222325
local TAIL = {}
for n = 1, 7 do TAIL[n] = "<I" .. n end

local function hash_line (h, s)
  local n, i = #s, 1
  while i + 31 <= n do
    local a, b, c, d = sunpack("<i8i8i8i8", s, i)
    h = (h ~ a) * PRIME
    h = ((h ~ (h >> 29)) ~ b) * PRIME
    h = ((h ~ (h >> 29)) ~ c) * PRIME
    h = ((h ~ (h >> 29)) ~ d) * PRIME
    h = h ~ (h >> 29)
    i = i + 32
  end
  while i + 7 <= n do
    h = (h ~ (sunpack("<i8", s, i))) * PRIME
    h = h ~ (h >> 29)
    i = i + 8
  end
  if i <= n then
    h = (h ~ (sunpack(TAIL[n - i + 1], s, i))) * PRIME
    h = h ~ (h >> 29)
  end
  h = (h ~ n) * PRIME
  return h ~ (h >> 29)
end

local function hex64 (h) return sformat("%016x", h) end

---------------------------------------------------------------------------
-- Reading structures out of a file
---------------------------------------------------------------------------

-- The live blobs of the store vc, whose meta block is at meta: their
-- offsets, in file order, and their references by offset, found by
-- walking its class lists and its list of large blobs with the layout's
-- constants (the store has no iterator); each blob is read through vc,
-- which checks it.
local function blob_offsets (bf, vc, meta)
  local L = varchar.layout
  local g = L.geometry(bf:block_size())
  local out, refs, seen = {}, {}, {}
  local v <close> = bf:get(meta)
  local w <close> = bf:get(meta)
  local function damaged (what, b)
    fail("varchar at %d is damaged: %s at %d", meta, what, b)
  end
  -- Walks the list of blocks that starts at b, through their H_NEXT
  -- links: visit(b) with w on each block. list names it in messages.
  local function walk (b, list, visit)
    while b ~= 0 do
      if seen[b] then damaged(list .. " reaches a block twice", b) end
      seen[b] = true
      if not pcall(w.retarget, w, b) then
        damaged(list .. " names no allocated block", b)
      end
      visit(b)
      b = w:u64(L.H_NEXT)
    end
  end
  for c = 1, g.classes do
    for list = 0, 1 do                -- partial blocks, then full ones
      walk(v:u64(L.M_CLASS + 16 * (c - 1) + 8 * list), "a class list",
           function (b)
        local tag = w:u64(0)
        if tag & 0xffffffff ~= L.SLAB or tag >> 32 ~= c
           or w:u64(L.H_OWNER) ~= meta then
          damaged("a class list names a block not its own", b)
        end
        local carved, size = w:u32(L.S_CARVED), g.sizes[c]
        if carved > g.slots[c] then damaged("too many slots carved", b) end
        for k = 0, carved - 1 do
          local slot = L.SLAB_HDR + k * size
          local n = w:u32(slot + 4)
          if n >= 1 then
            local x = b + slot + 8
            out[#out + 1], refs[x] = x, n
          end
        end
      end)
    end
  end
  walk(v:u64(L.M_LHEAD), "the large list", function (b)
    if w:u32(0) ~= L.LARGE or w:u64(L.H_OWNER) ~= meta then
      damaged("the large list names a block not its own", b)
    end
    local x = b + L.LHDR
    out[#out + 1], refs[x] = x, w:u32(4)
  end)
  table.sort(out)
  if #out ~= vc:count() then
    fail("varchar at %d is damaged: it counts %d blobs, its lists hold %d",
         meta, vc:count(), #out)
  end
  return out, refs
end

-- What each kind of structure needs from a file: open(bf, offset), the
-- method that counts its items, and the name of that count in the dump.
local SOURCES = {
  varchar = { open = varchar.open, size = "count", count = "blobs" },
  mmlist = { open = mmlist.open, size = "size", count = "items" },
  bptree = { open = bptree.open_at, size = "size", count = "records" },
  hashtable = { size = "count", count = "records",
                open = function (bf, off)
                  return require(M.HASHTABLE).open(bf, off)
                end },
}

--- Opens a structure of a kind a dump holds.
-- @param bf an open BlockFile (read-only is enough)
-- @param kind "varchar", "mmlist", "bptree" or "hashtable" (its module
--   must be loaded: `HASHTABLE`)
-- @param offset its meta block
-- @return the structure's handle, or nil and why not (no such kind
--   included)
function M.open (bf, kind, offset)
  local src = SOURCES[kind]
  if not src then return nil, "a dump holds no " .. tostring(kind) end
  local ok, obj, why = pcall(src.open, bf, offset)
  if not ok then return nil, (tostring(obj):gsub("^.-%((.*)%)$", "%1")) end
  return obj, why
end

local RANK = {}
for i, k in ipairs(M.KINDS) do RANK[k] = i end

-- A tree's values as references to one store's blobs: the store's
-- section, if every value is 8 bytes naming a live blob of that store,
-- and no blob is named more often than its references count; and the
-- blobs in the order the tree first names them.
local function references (tree, blob_of)
  local store, named, order = nil, {}, {}
  for value in tree.obj:values() do
    if #value ~= 8 then return nil end
    local x = sunpack("<i8", value)
    local s = blob_of[x]
    if not s or (store and s ~= store) then return nil end
    store = s
    local n = named[x]
    if n then
      if n + 1 > s.refs[x] then return nil end
      named[x] = n + 1
    else
      named[x] = 1
      order[#order + 1] = x
    end
  end
  return store, order
end

--- What a dump of bf holds: its sections in order, the control data as
-- strings and references, and warnings about what it leaves out.
-- @param bf an open BlockFile (read-only is enough)
-- @param opts optional: `structure` (the offset of one structure to dump,
--   with the blob store its values name), `raw_values` (true: never read
--   a tree's values as references to blobs)
-- @return `{block_size, sections = {{index, kind, offset, obj, count,
--   store}}, control = {string or {section = n}, ...}, warnings}`; raises
--   (a string) when a structure cannot be read
function M.plan (bf, opts)
  opts = opts or {}
  local r = classify.scan(bf)
  for _, e in ipairs(r.errors) do
    fail("%s cannot be read: %s (scripts/inspect.lua --audit says more)",
         e.label, e.message)
  end
  local warnings, found = {}, {}
  for i, s in ipairs(r.structures) do
    if SOURCES[s.name] then
      found[#found + 1] = { kind = s.name, offset = s.root, scan = i }
    else
      warnings[#warnings + 1] = sformat("%s: a dump holds no %s structure; "
                                        .. "left out", s.label, s.name)
    end
  end
  local unknown = r.counts.unknown or 0
  if unknown > 0 then
    warnings[#warnings + 1] = sformat("%d block%s no structure owns (a "
      .. "structure with no classifier, or leaked blocks): left out",
      unknown, unknown == 1 and "" or "s")
  end
  table.sort(found, function (a, b)
    if a.kind ~= b.kind then return RANK[a.kind] < RANK[b.kind] end
    return a.scan < b.scan
  end)
  local by_offset = {}
  for _, s in ipairs(found) do
    local obj, why = SOURCES[s.kind].open(bf, s.offset)
    if not obj then fail("%s@%d cannot be read: %s", s.kind, s.offset, why) end
    s.obj = obj
    s.count = obj[SOURCES[s.kind].size](obj)
    by_offset[s.offset] = s
  end

  -- The blobs of every store, and the trees whose values name them.
  local blob_of, stores = {}, {}
  local wanted = found
  if opts.structure then
    local s = by_offset[opts.structure]
    if not s then
      local names = {}
      for _, f in ipairs(found) do
        names[#names + 1] = f.kind .. "@" .. f.offset
      end
      fail("no structure at offset %d (the file holds %s)", opts.structure,
           #names > 0 and concat(names, ", ") or "none")
    end
    wanted = { s }
  end
  local trees = {}
  for _, s in ipairs(found) do
    if s.kind == "varchar" then
      s.blobs, s.refs = blob_offsets(bf, s.obj, s.offset)
      for _, x in ipairs(s.blobs) do blob_of[x] = s end
      stores[#stores + 1] = s
    end
  end
  for _, s in ipairs(wanted) do
    if s.kind == "bptree" and not opts.raw_values and #stores > 0
       and s.count > 0 and (s.obj:value_size() == 8
                            or s.obj:value_size() == -1) then
      s.store, s.named = references(s, blob_of)
      if s.store then trees[#trees + 1] = s end
    end
  end
  if opts.structure and wanted[1].store then
    wanted = { wanted[1].store, wanted[1] }
  end

  -- Blob numbers: in the order the trees first name them, then the
  -- others by content, so that the numbers do not depend on offsets.
  for _, st in ipairs(stores) do
    local id, order = {}, {}
    for _, t in ipairs(trees) do
      if t.store == st then
        for _, x in ipairs(t.named) do
          if not id[x] then
            order[#order + 1] = x
            id[x] = #order
          end
        end
      end
    end
    local rest = {}
    for _, x in ipairs(st.blobs) do
      if not id[x] then
        local key = hash_line(BASIS, st.obj:get(x)) ~ st.refs[x]
        rest[#rest + 1] = { key, x }
      end
    end
    table.sort(rest, function (a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      return a[2] < b[2]
    end)
    for _, e in ipairs(rest) do
      order[#order + 1] = e[2]
      id[e[2]] = #order
    end
    st.order, st.id = order, id
  end

  local sections = {}
  for i, s in ipairs(wanted) do
    s.index = i
    sections[i] = s
  end

  -- The control data: numbers naming a dumped structure become
  -- references; one naming a structure left out empties it.
  local cd, control = bf:control_data(), {}
  local all = {}
  for _, s in ipairs(r.structures) do all[s.root] = true end
  local pos, lost = 1, nil
  for first, digits, last in cd:gmatch("()(%d+)()") do
    local n = math.tointeger(tonumber(digits))
    local s = n and by_offset[n]
    if s and s.index and sections[s.index] == s then
      if first > pos then control[#control + 1] = cd:sub(pos, first - 1) end
      control[#control + 1] = { section = s.index }
      pos = last
    elseif n and all[n] then
      lost = lost or n
    end
  end
  if pos <= #cd then control[#control + 1] = cd:sub(pos) end
  if lost then
    warnings[#warnings + 1] = sformat("the control data %q names the "
      .. "structure at %d, which this dump leaves out: the dump's control "
      .. "data is empty", cd, lost)
    control = {}
  end
  return { block_size = bf:block_size(), sections = sections,
           control = control, warnings = warnings }
end

-- Feeds the plan's sections to sink, calling tick (if not nil) once per
-- item.
local function emit (plan, sink, tick)
  sink:header(plan.block_size, plan.control, #plan.sections)
  for _, s in ipairs(plan.sections) do
    local params = {}
    if s.kind == "bptree" then
      params = { { "key-size", s.obj:key_size() },
                 { "value-size", s.obj:value_size() } }
    elseif s.kind == "hashtable" then
      params = { { "buckets", s.obj.n } }
    end
    params[#params + 1] = { SOURCES[s.kind].count, s.count }
    if s.store then params[#params + 1] = { "values", s.store.index } end
    sink:begin(s.index, s.kind, params)
    local n = 0
    if s.kind == "varchar" then
      local vc, refs = s.obj, s.refs
      for id, x in ipairs(s.order) do
        sink:blob(id, refs[x], vc:get(x))
        if tick then tick() end
      end
      n = #s.order
    elseif s.kind == "mmlist" then
      for _, item in s.obj:iterate() do
        sink:item(item)
        n = n + 1
        if tick then tick() end
      end
    elseif s.kind == "bptree" then
      local id = s.store and s.store.id
      for k, v in s.obj:iterate() do
        if id then v = id[sunpack("<i8", v)] end
        sink:record(k, v)
        n = n + 1
        if tick then tick() end
      end
    else
      local all = {}
      for k, v in s.obj:pairs() do all[#all + 1] = { k, v } end
      table.sort(all, function (a, b) return a[1] < b[1] end)
      for _, e in ipairs(all) do
        sink:record(e[1], e[2])
        if tick then tick() end
      end
      n = #all
    end
    if n ~= s.count then
      fail("%s@%d changed or is damaged: it counts %d %s, %d were read",
           s.kind, s.offset, s.count, SOURCES[s.kind].count, n)
    end
    sink:finish(s.index)
  end
  sink:close()
end

-- A progress bar labelled label, or a silent one when label is nil.
local function bar_for (label, total, unit)
  if not label then return progress.new("", total, { tty = false }) end
  return progress.new(label, total, { unit = unit })
end

-- Runs f(bar) in protected mode, bar a progress bar of items labelled
-- label (see bar_for), cleared at the end: what f returns, or nil and
-- the message of what it raised.
local function with_bar (label, f)
  local bar = bar_for(label, nil, "items")
  local ok, r = pcall(f, bar)
  bar:done()
  if not ok then return nil, tostring(r) end
  return r
end

local function total_of (plan)
  local n = 0
  for _, s in ipairs(plan.sections) do n = n + s.count end
  return n
end

--- The B+tree a tool reads: the one at offset, else the one the control
-- data names, else the only one in the file.
-- @param bf an open BlockFile (read-only is enough)
-- @param offset optional: the tree's meta block
-- @return the tree, or nil and why there is none (naming the trees in
--   the file when there are several)
function M.open_tree (bf, offset)
  local at = offset or bptree._control_offset(bf:control_data())
  if not at then
    local r = classify.scan(bf, { only = { bptree = true } })
    local roots = {}
    for _, s in ipairs(r.structures) do roots[#roots + 1] = s.root end
    if #roots == 0 then return nil, "no B+tree in the file" end
    if #roots > 1 then
      return nil, sformat("no B+tree in the control data, and %d in the "
                          .. "file, at %s: name one with --tree OFFSET",
                          #roots, concat(roots, ", "))
    end
    at = roots[1]
  end
  local ok, t = pcall(bptree.open_at, bf, at)
  if not ok then
    return nil, (tostring(t):gsub("^.-%((.*)%)$", "%1"))
  end
  return t
end

---------------------------------------------------------------------------
-- The text
---------------------------------------------------------------------------

-- The comment a dump holds when another BlockFile had the file open for
-- writing.
local WRITER = "# writer: another BlockFile had it open: this dump is its "
                 .. "last commit as of the dump's open"

-- A sink that writes the dump's lines to out, hashing them; comments
-- (lines starting with "#") follow the first line.
local function text_sink (out, comments)
  local h, lines, bytes = BASIS, 0, 0
  local quote = M.quote
  local function put (line)
    h = hash_line(h, line)
    lines, bytes = lines + 1, bytes + #line + 1
    local ok, err = out:write(line, "\n")
    if not ok then fail("%s", err) end
  end
  local sink = {}
  function sink.header (_, bs, control, n)
    put(M.FORMAT .. " " .. M.VERSION)
    for _, c in ipairs(comments or {}) do put(c) end
    put("block-size " .. bs)
    put("structures " .. n)
    local parts = {}
    for _, c in ipairs(control) do
      parts[#parts + 1] = type(c) == "table" and "#" .. c.section
                          or quote(c)
    end
    if #parts == 0 then parts[1] = '""' end
    put("control " .. concat(parts, " "))
  end
  function sink.begin (_, index, kind, params)
    local parts = { "begin", index, kind }
    for _, p in ipairs(params) do
      parts[#parts + 1] = p[1] == "values" and "values=blobs#" .. p[2]
                          or p[1] .. "=" .. p[2]
    end
    put(concat(parts, " "))
  end
  function sink.blob (_, id, refs, bytes)
    put("blob " .. id .. " refs=" .. refs .. " " .. quote(bytes))
  end
  function sink.item (_, bytes) put("item " .. quote(bytes)) end
  function sink.record (_, k, v)
    put("record " .. quote(k) .. " "
        .. (math.type(v) == "integer" and "@" .. v or quote(v)))
  end
  function sink.finish (_, index) put("end " .. index) end
  function sink.close ()
    local line = "end-of-dump checksum=" .. hex64(h)
    local ok, err = out:write(line, "\n")
    if not ok then fail("%s", err) end
    lines, bytes = lines + 1, bytes + #line + 1
  end
  function sink.figures () return lines, bytes end
  return sink
end

--- Writes a dump of bf's structures to out.
-- @param bf an open BlockFile (read-only is enough)
-- @param out an io file open for writing (io.stdout)
-- @param opts optional: `structure`, `raw_values` (as for `plan`),
--   `progress` (a label: draw a progress bar on stderr, if a terminal)
-- @return `{structures, records (items of every kind), lines, bytes,
--   warnings}`, or nil and a message when a structure cannot be read or
--   out cannot be written
function M.write (bf, out, opts)
  opts = opts or {}
  return with_bar(opts.progress, function (bar)
    local plan = bar:during(M.plan, bf, opts)
    local total = total_of(plan)
    bar:total(total)
    local sink = text_sink(out, bf:stats().writer and { WRITER } or nil)
    emit(plan, sink, bar.enabled and function () bar:add() end or nil)
    local lines, bytes = sink.figures()
    return { structures = #plan.sections, records = total, lines = lines,
             bytes = bytes, warnings = plan.warnings }
  end)
end

-- The first word of the lines of a section's items, by kind.
local ITEM = { varchar = "blob", mmlist = "item", bptree = "record",
               hashtable = "record" }

-- Reads a dump from inp, line by line: header() reads up to the block
-- size, run(sink) the rest into sink.
local function reader (inp, name, opts)
  local h, n, bytes = BASIS, 0, 0
  local raw = inp:lines("L")
  local rd = {}
  local function bad (fmt, ...)
    fail("%s:%d: " .. fmt, name, n, ...)
  end
  -- the next line without its newline, nil at the end; a last line with
  -- no newline is a dump cut short
  local function lines ()
    local line = raw()
    if line == nil then return nil end
    if line:byte(-1) ~= 10 then
      fail("%s: the dump ends in the middle of line %d: it was cut short",
           name, n + 1)
    end
    return line:sub(1, -2)
  end
  -- the next line, hashed; nil at the end of the input. Comments are
  -- hashed and skipped.
  local function next_line ()
    local line
    repeat
      line = lines()
      if line == nil then return nil end
      n, bytes = n + 1, bytes + #line + 1
      if line:find("^end%-of%-dump") then return line, true end
      h = hash_line(h, line)
    until line:byte(1) ~= 35   -- "#"
    return line
  end
  local function need ()
    local line, last = next_line()
    if line == nil then
      fail("%s: the dump ends at line %d, before its end-of-dump line: it "
           .. "was cut short", name, n)
    end
    return line, last
  end
  local function integer (s, what)
    local v = s and s:match("^%-?%d+$") and math.tointeger(tonumber(s))
    if not v then bad("%s: an integer expected, got %q", what, s or "") end
    return v
  end
  function rd.header ()
    local line = raw()
    n = 1
    if line == nil then fail("%s: empty, not an fmap dump", name) end
    local whole = line:byte(-1) == 10
    if whole then line = line:sub(1, -2) end
    bytes = #line + 1
    local version = line:match("^" .. M.FORMAT:gsub("%-", "%%-")
                               .. " (%d+)$")
    local first = M.FORMAT .. " " .. M.VERSION
    if not whole and first:sub(1, #line) == line then
      fail("%s: the dump ends in the middle of line 1: it was cut short",
           name)
    elseif not version then
      fail("%s: not an fmap dump (its first line is not \"%s\")", name,
           first)
    elseif tonumber(version) ~= M.VERSION then
      fail("%s: a dump in format version %s; this fmap reads version %d",
           name, version, M.VERSION)
    elseif not whole then
      fail("%s: the dump ends in the middle of line 1: it was cut short",
           name)
    end
    h = hash_line(h, line)
    line = need()
    local bs = line:match("^block%-size (%S+)$")
    if not bs then bad("block-size expected, got %q", line:sub(1, 60)) end
    bs = integer(bs, "block-size")
    if bs < 4096 or bs % 4096 ~= 0 or bs > 1 << 30 then
      bad("block-size %d is not a multiple of 4096 up to 2^30", bs)
    end
    return { block_size = bs }
  end

  -- The tokens of a control line: strings and #N.
  local function control (line, nsections)
    local out, pos = {}, #"control " + 1
    if line:sub(1, pos - 1) ~= "control " then
      bad("control expected, got %q", line:sub(1, 60))
    end
    while pos <= #line do
      local c = line:sub(pos, pos)
      if c == "#" then
        local d, after = line:match("^(%d+)()", pos + 1)
        local i = d and math.tointeger(tonumber(d))
        if not i or i < 1 or i > nsections then
          bad("control: #%s names no section (1 to %d)", d or "",
              nsections)
        end
        out[#out + 1] = { section = i }
        pos = after
      else
        local s, after = read_string(line, pos)
        if not s then bad("control: %s", after) end
        if s ~= "" then out[#out + 1] = s end
        pos = after
      end
      if pos <= #line then
        if line:sub(pos, pos) ~= " " then
          bad("control: a space expected between its parts")
        end
        pos = pos + 1
      end
    end
    return out
  end

  function rd.run (sink, tick)
    local line = need()
    local ns = line:match("^structures (%S+)$")
    if not ns then bad("structures expected, got %q", line:sub(1, 60)) end
    ns = integer(ns, "structures")
    local cd = control(need(), ns)
    sink:header(nil, cd, ns)
    local kinds = {}
    for index = 1, ns do
      line = need()
      local i, kind, rest = line:match("^begin (%d+) (%S+)(.*)$")
      if not i then
        bad("begin %d expected, got %q", index, line:sub(1, 60))
      elseif tonumber(i) ~= index then
        bad("section %s where section %d was expected", i, index)
      elseif not SOURCES[kind] then
        bad("section %d: unknown kind %q (a dump holds %s)", index, kind,
            concat(M.KINDS, ", "))
      end
      kinds[index] = kind
      local params, seen = {}, {}
      for word in rest:gmatch("%S+") do
        local k, v = word:match("^([%l%-]+)=(.+)$")
        if not k then bad("section %d: %q is no name=value", index, word) end
        if seen[k] then bad("section %d: %s twice", index, k) end
        seen[k] = true
        if k == "values" then
          local s = v:match("^blobs#(%d+)$")
          s = s and math.tointeger(tonumber(s))
          if not s or s < 1 or s >= index or kinds[s] ~= "varchar" then
            bad("section %d: values=%s names no blob store before it",
                index, v)
          end
          params[#params + 1] = { k, s }
        else
          params[#params + 1] = { k, integer(v, k) }
        end
      end
      local want = kind == "bptree" and { "key-size", "value-size" }
                   or kind == "hashtable" and { "buckets" } or {}
      want[#want + 1] = SOURCES[kind].count
      for _, k in ipairs(want) do
        if not seen[k] then bad("section %d (%s): no %s=", index, kind, k) end
      end
      for k in pairs(seen) do
        local known = k == "values" and kind == "bptree"
        for _, w in ipairs(want) do known = known or w == k end
        if not known then
          bad("section %d (%s): unknown field %s", index, kind, k)
        end
      end
      local count, store
      for _, p in ipairs(params) do
        if p[1] == SOURCES[kind].count then count = p[2] end
        if p[1] == "values" then store = p[2] end
      end
      if count < 0 then bad("section %d: a negative count", index) end
      local ok, err = pcall(sink.begin, sink, index, kind, params)
      if not ok then bad("section %d: %s", index, err) end
      local got = 0
      local last
      while true do
        line, last = need()
        if last then
          bad("section %d ends with no 'end %d' line", index, index)
        end
        local word = line:match("^(%S+)")
        if word == "end" then break end
        if word ~= ITEM[kind] then
          bad("'end %d' expected, or another %s line, got %q", index,
              ITEM[kind], line:sub(1, 60))
        end
        got = got + 1
        if got > count then
          bad("section %d (%s) holds more than the %d %s its begin line "
              .. "says", index, kind, count, SOURCES[kind].count)
        end
        local a, b, pos, err
        if kind == "varchar" then
          local id, refs, at = line:match("^blob (%d+) refs=(%d+) ()")
          if not id then bad("blob ID refs=N \"...\" expected") end
          if tonumber(id) ~= got then
            bad("blob %s where blob %d was expected", id, got)
          end
          a, pos = read_string(line, at)
          if not a then bad("%s", pos) end
          refs = math.tointeger(tonumber(refs))
          if not refs or refs < 1 or refs > 0xffffffff then
            bad("blob %d: refs must be from 1 to 2^32 - 1", got)
          end
          ok, err = pcall(sink.blob, sink, got, refs, a)
        elseif kind == "mmlist" then
          if line:sub(1, 5) ~= "item " then bad("item \"...\" expected") end
          a, pos = read_string(line, 6)
          if not a then bad("%s", pos) end
          ok, err = pcall(sink.item, sink, a)
        else
          if line:sub(1, 7) ~= "record " then
            bad("record \"KEY\" \"VALUE\" expected")
          end
          a, pos = read_string(line, 8)
          if not a then bad("%s", pos) end
          if line:sub(pos, pos) ~= " " then bad("a space expected") end
          if store then
            local id, after = line:match("^@(%d+)()", pos + 1)
            if not id then
              bad("section %d holds blob references: @N expected", index)
            end
            b, pos = math.tointeger(tonumber(id)), after
          else
            b, pos = read_string(line, pos + 1)
            if not b then bad("%s", pos) end
          end
          ok, err = pcall(sink.record, sink, a, b)
        end
        if pos ~= #line + 1 then bad("text after the last field") end
        if not ok then bad("%s", err) end
        if tick then tick(bytes) end
      end
      if line ~= "end " .. index then
        bad("'end %d' expected, got %q", index, line:sub(1, 60))
      end
      if got ~= count then
        bad("section %d (%s) ends after %d %s; its begin line says %d",
            index, kind, got, SOURCES[kind].count, count)
      end
      ok, err = pcall(sink.finish, sink, index)
      if not ok then bad("%s", err) end
    end
    local last
    line, last = need()
    if not last then
      bad("end-of-dump expected after section %d, got %q", ns,
          line:sub(1, 60))
    end
    local sum = line:match("^end%-of%-dump checksum=(%x+)$")
    if not sum then bad("end-of-dump checksum=HEX expected") end
    if sum:lower() ~= hex64(h) and not opts.ignore_checksum then
      fail("%s: checksum mismatch: the dump was changed or damaged after "
           .. "it was written (its lines hash to %s, its end-of-dump line "
           .. "says %s)", name, hex64(h), sum)
    end
    if raw() ~= nil then
      n = n + 1
      bad("text after the end-of-dump line")
    end
    local ok, err = pcall(sink.close, sink)
    if not ok then fail("%s", err) end
  end
  return rd
end

---------------------------------------------------------------------------
-- Writing structures into a file
---------------------------------------------------------------------------

-- Raises the message of a failed call that returned nil, msg.
local function check (x, msg, ...)
  if x == nil then error(msg, 0) end
  return x, msg, ...
end

-- A sink that makes the structures in bf: made[index] = {kind, offset,
-- obj, count}.
local function file_sink (bf)
  local made, cur = {}, nil
  local sink = { made = made }
  function sink.header (_, _, control, n)
    sink.control, sink.n = control, n
  end
  function sink.begin (_, index, kind, params)
    local p = {}
    for _, e in ipairs(params) do p[e[1]] = e[2] end
    local obj
    if kind == "varchar" then
      obj = check(varchar.new(bf))
    elseif kind == "mmlist" then
      obj = check(mmlist.new(bf))
    elseif kind == "bptree" then
      local vs = p["value-size"]
      if p.values and vs ~= 8 and vs ~= -1 then
        fail("values=blobs#%d, but value-size=%d: a blob reference takes "
             .. "8 bytes", p.values, vs)
      end
      local ok, t, err = pcall(bptree.new_at, bf, nil, p["key-size"], vs)
      if not ok then fail("%s", (tostring(t):gsub("^[^:]*:%d+: ", ""))) end
      obj = check(t, err)
    else
      local ht = require(M.HASHTABLE)
      local ok, h, err = pcall(ht.create, bf, p.buckets)
      if not ok then fail("%s", (tostring(h):gsub("^[^:]*:%d+: ", ""))) end
      obj = check(h, err)
    end
    cur = { kind = kind, obj = obj, offset = obj:offset(), count = 0,
            ids = kind == "varchar" and {} or nil,
            store = p.values and made[p.values], values = p.values }
    made[index] = cur
  end
  function sink.blob (_, id, refs, bytes)
    local vc = cur.obj
    local x = check(vc:put(bytes))
    for _ = 2, refs do vc:ref(x) end
    cur.ids[id] = x
    cur.count = cur.count + 1
  end
  function sink.item (_, bytes)
    check(cur.obj:append(bytes))
    cur.count = cur.count + 1
  end
  function sink.record (_, k, v)
    if cur.store then
      local x = cur.store.ids[v]
      if not x then
        fail("@%d: section %d holds no blob %d", v, cur.values, v)
      end
      v = spack("<i8", x)
    end
    if cur.kind == "bptree" then
      local ok, done, err = pcall(cur.obj.add, cur.obj, k, v)
      if not ok then fail("%s", (tostring(done):gsub("^[^:]*:%d+: ", ""))) end
      check(done, err)
    else
      if cur.obj:get(k) ~= nil then
        fail("key %s twice in a hash table", M.quote(k))
      end
      check(cur.obj:put(k, v))
    end
    cur.count = cur.count + 1
  end
  function sink.finish () cur = nil end
  function sink.close ()
    local parts = {}
    for _, c in ipairs(sink.control or {}) do
      parts[#parts + 1] = type(c) == "table" and tostring(made[c.section]
                                                          .offset) or c
    end
    local ok, done, err = pcall(bf.set_control_data, bf, concat(parts))
    if not ok then
      fail("the control data: %s", (tostring(done):gsub("^.-%((.*)%)$",
                                                         "%1")))
    end
    check(done, err)
  end
  return sink
end

-- The folder holding path, for sync_dir.
local function folder (path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

-- Raises unless the journal beside bf's file is empty: a journal whose
-- commits readers keep out of the file (a writer that opens beside
-- readers adopts the journal rather than copy it in under them) would
-- replay over the file that takes the path's name.
local function no_journal (bf)
  local st = bf:stats()
  if st.journal_bytes > 0 then
    fail("%s: its journal holds commits not yet in the file, kept there "
         .. "by a process that has it open read-only; a journal left "
         .. "beside the new file would replay over it: run again once no "
         .. "process has the file open", st.path)
  end
end

-- Makes the file at path anew, atomically: fill(bf) writes the new
-- file, named path .. suffix while it is made, in one transaction; then
-- it is closed (durably, its tail trimmed), renamed over path and the
-- folder synced. An fmap file at path is held open for writing until
-- then (which copies a crashed writer's journal into it, and keeps other
-- writers out), or `held` is the caller's BlockFile open for writing on
-- it; its journal must be empty. On failure the new file is removed and
-- path is untouched. Returns what fill returns, or raises.
local function make_file (path, bs, suffix, opts, fill)
  local old
  if opts.held then
    no_journal(opts.held)
  elseif cli.exists(path) then
    if not opts.force then
      fail("%s exists; --force replaces it", path)
    end
    local bf, err = fmap.open(path)
    if bf then
      old = bf
      local ok, why = pcall(no_journal, bf)
      if not ok then
        bf:close()
        error(why, 0)
      end
    elseif err:find("locked", 1, true) then
      fail("%s", err)
    end
  end
  local tmp = path .. suffix
  local bf, err = fmap.create(tmp, bs)
  if not bf then
    if old then old:close() end
    fail("%s", err)
  end
  local ok, r, cerr = pcall(bf.transaction, bf, fill, bf)
  if ok and r == nil then ok, r = false, cerr end
  if ok and opts.verify then
    ok, r = pcall(opts.verify, bf, r)
  end
  if not ok then
    pcall(bf.close, bf)
    os.remove(tmp)
    os.remove(tmp .. "-wal")
    if old then old:close() end
    error(r, 0)
  end
  local closed, cl = pcall(bf.close, bf)
  local renamed, rerr = closed, cl
  if closed then renamed, rerr = os.rename(tmp, path) end
  if not renamed then
    os.remove(tmp)
    os.remove(tmp .. "-wal")
    if old then old:close() end
    fail("%s", tostring(rerr))
  end
  fmap.sync_dir(folder(path))
  if old then old:close() end
  return r
end

-- The structures that a file sink made, as load and copy return them:
-- {kind, offset, count} each.
local function made_list (made)
  local out = {}
  for i, m in ipairs(made) do
    out[i] = { kind = m.kind, offset = m.offset, count = m.count }
  end
  return out
end

-- Verifies each structure that sink made, and that it holds what the
-- dump said.
local function verify_made (made)
  for _, m in ipairs(made) do
    local ok, why = m.obj:verify()
    if not ok then
      fail("%s at %d does not verify after the copy: %s", m.kind, m.offset,
           why)
    end
  end
end

--- Makes a new fmap file from a dump.
-- @param input the dump: a path, or an io file open for reading
-- @param path the new file; refused if it exists, unless `opts.force`
-- @param opts optional: `block_size` (the new file's, the dump's by
--   default), `force` (replace a file at path), `ignore_checksum` (load a
--   dump whose checksum does not match: edited by hand), `name` (the
--   dump's name in messages, for an io file), `progress` (a label: draw a
--   progress bar on stderr, if a terminal)
-- @return `{structures = {{kind, offset, count}}, block_size}`, or nil
--   and a message: the dump's name and line, and what is wrong there.
--   The new file is made under a temporary name (path .. ".load-tmp"),
--   in one transaction, and renamed to path once whole: a failure leaves
--   no file behind.
function M.load (input, path, opts)
  opts = opts or {}
  local ok, r = pcall(function ()
    local inp, name = input, opts.name or "dump"
    if type(input) == "string" then
      local err
      inp, err = io.open(input, "rb")
      if not inp then fail("%s", err) end
      name = input
    end
    if cli.exists(path) and not opts.force then
      fail("%s exists; --force replaces it", path)
    end
    local total = type(input) == "string" and inp:seek("end") or nil
    if total then inp:seek("set", 0) end
    local rd = reader(inp, name, opts)
    local bs = rd.header().block_size
    bs = opts.block_size or bs
    local bar = bar_for(opts.progress, total, "bytes")
    local made
    local done, res = pcall(make_file, path, bs, ".load-tmp", opts,
                            function (bf)
      local sink = file_sink(bf)
      rd.run(sink, bar.enabled and function (b) bar:set(b) end or nil)
      made = sink.made
      return true
    end)
    bar:done()
    if type(input) == "string" then inp:close() end
    if not done then error(res, 0) end
    return { structures = made_list(made), block_size = bs }
  end)
  if not ok then return nil, tostring(r) end
  return r
end

--- Copies the structures of bf into a new file, laid out anew: a load of
-- bf's dump, without the text. Each structure made is verified before
-- the file takes its name.
-- @param bf an open BlockFile (read-only is enough; to replace bf's own
--   file, open it for writing and pass its path: it is held open until
--   the copy has taken its place, and its journal must be empty)
-- @param path the new file; refused if it exists, unless `opts.force` or
--   it is bf's own file
-- @param opts optional: `force`, `raw_values` (as for `plan`), `strict`
--   (fail rather than leave out what `plan` warns about: blocks no
--   structure owns), `suffix` (of the temporary name, ".compact-tmp"),
--   `progress` (a label)
-- @return `{structures = {{kind, offset, count}}, records, warnings}`,
--   or nil and a message
function M.copy (bf, path, opts)
  opts = opts or {}
  return with_bar(opts.progress, function (bar)
    local plan = bar:during(M.plan, bf, { raw_values = opts.raw_values })
    if opts.strict and #plan.warnings > 0 then
      fail("%s", concat(plan.warnings, "; "))
    end
    bar:total(total_of(plan))
    local tick = bar.enabled and function () bar:add() end or nil
    local held = bf:path() == path and bf
    local made
    local done, res = pcall(make_file, path, plan.block_size,
      opts.suffix or ".compact-tmp",
      { force = opts.force, held = held,
        verify = function ()
          bar:label((opts.progress or "") .. " (verifying)")
          bar:during(verify_made, made)
        end },
      function (nbf)
        local sink = file_sink(nbf)
        emit(plan, sink, tick)
        made = sink.made
        return true
      end)
    if not done then error(res, 0) end
    return { structures = made_list(made), records = total_of(plan),
             warnings = plan.warnings }
  end)
end

return M
