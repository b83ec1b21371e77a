--- fmap.examples.hashtable: a persistent hash table of byte strings, the
-- worked example of doc/writing-a-structure.md.
--
--   local ht = require "fmap.examples.hashtable"
--   local h = ht.create(bf, 64)            -- or ht.open(bf [, offset])
--   h:put("apple", "red"); h:get("apple"); h:remove("apple"); h:count()
--   for k, v in h:pairs() do ... end
--[[
Layout, little-endian; bs is the block size, a block offset of 0 means none.
The directory and its n buckets are one run of 1 + n blocks, allocated by
create: bucket i (0 to n-1) is the block at directory + (i + 1) * bs, and a
key goes to bucket fnv1a(key) % n.

Control data: "hashtable@OFFSET", the directory's offset in decimal, when
create found the control data empty; else the caller keeps h:offset().

Directory block:
  OFFSET  SIZE  FIELD
       0     8  magic "fmapHASH"
       8     4  format version (1)
      12     4  n, the number of buckets (1 to 65536)
      16     8  the directory's own offset: a block that merely holds the
                magic is not a directory
      24     8  entries in the table

Bucket block, and each overflow block chained after it:
       0     8  next: the overflow block after this one, 0 for the last
       8     4  used: bytes the entries take from offset 16
      12     4  zero
      16        entries, one after another, as string.pack("<s4s4", k, v)
                writes them: u32 key length, key, u32 value length, value;
                zeros after them

Invariants (h:verify checks them):
  - every block of a chain is allocated and on one chain once (no cycle)
  - in each block the entries take exactly `used` bytes, 16 + used <= bs
  - every key is in the chain of its bucket, and once in the table
  - an overflow block holds at least one entry: one that empties is
    unlinked from its chain and freed
  - the directory's count is the number of entries in the chains
]]
local classify = require "fmap.classify"

local M = {}

local Table = {}
Table.__index = Table

local MAGIC, VERSION, MAX_BUCKETS = "fmapHASH", 1, 65536
local CONTROL = "hashtable@"
local D_SELF, D_COUNT = 16, 24              -- directory fields
local B_NEXT, B_USED, B_ENTRIES = 0, 8, 16  -- bucket fields
local sformat, byte = string.format, string.byte

-- FNV-1a, 32 bits. A key's bucket must be the same in every process, so
-- not Lua's own string hash, which is seeded per run.
local function fnv1a (s)
  local x = 2166136261
  for i = 1, #s do x = ((x ~ byte(s, i)) * 16777619) & 0xffffffff end
  return x
end

-- Raises in luaL_argerror's words unless self is a table and each of ...
-- (arguments #1, #2 of method fname) a string.
local function check (self, fname, ...)
  if getmetatable(self) ~= Table then
    error(sformat("bad argument #0 to '%s' (hash table expected, got %s; "
                  .. "call it with ':')", fname, type(self)), 3)
  end
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    if type(s) ~= "string" then
      error(sformat("bad argument #%d to '%s' (string expected, got %s)",
                    i, fname, type(s)), 3)
    end
  end
end

-- Raises in luaL_argerror's words unless bf is an open BlockFile.
local function check_bf (bf, fname)
  if type(bf) ~= "userdata" or not pcall(bf.block_size, bf) then
    error(sformat("bad argument #1 to '%s' (open BlockFile expected, got %s)",
                  fname, type(bf) == "userdata" and tostring(bf) or type(bf)),
          3)
  end
end

-- The number of buckets and of entries of the table whose directory is
-- at off, or nil and why there is none.
local function read_dir (bf, off)
  local ok, magic, version, n, self_off, count = pcall(bf.with, bf, off, 1,
    function (v) return v:unpack("<c8I4I4i8i8", 0) end)
  if not ok then
    return nil, sformat("no hash table at offset %d (%s)", off,
                        magic:match("%((.*)%)$") or magic)
  elseif magic ~= MAGIC or self_off ~= off then
    return nil, sformat("no hash table at offset %d (no magic)", off)
  elseif version ~= VERSION or n < 1 or n > MAX_BUCKETS
         or off + (n + 1) * bf:block_size() > bf:size() then
    return nil, sformat("hash table at offset %d is damaged (format "
                        .. "version %d, n = %d)", off, version, n)
  end
  return n, count
end

--- Creates an empty table: a directory and its buckets, one run of blocks.
-- Records "hashtable@OFFSET" in the control data if it is empty.
-- @param bf a BlockFile open for writing
-- @param nbuckets the number of buckets, 1 to 65536 (default 64)
-- @return the table, or nil, message, errno when the file cannot grow
function M.create (bf, nbuckets)
  check_bf(bf, "create")
  nbuckets = nbuckets or 64
  if math.type(nbuckets) ~= "integer" or nbuckets < 1
     or nbuckets > MAX_BUCKETS then
    error(sformat("bad argument #2 to 'create' (number of buckets from 1 "
                  .. "to %d expected, got %s)", MAX_BUCKETS,
                  tostring(nbuckets)), 2)
  end
  local dir, err, errno = bf:allocate_blocks(1 + nbuckets)
  if not dir then return nil, err, errno end
  bf:with(dir, 1, function (v)
    v:pack(0, "<c8I4I4i8i8", MAGIC, VERSION, nbuckets, dir, 0)
  end)
  if bf:control_data() == "" then
    local ok
    ok, err, errno = bf:set_control_data(CONTROL .. dir)
    if not ok then
      bf:free(dir, 1 + nbuckets)
      return nil, err, errno
    end
  end
  return M.open(bf, dir)
end

--- Opens a table.
-- @param bf a BlockFile
-- @param offset its directory's offset; default: the control data's
-- @return the table, or nil and a message when there is no sound
--   directory at offset (or none named in the control data)
function M.open (bf, offset)
  check_bf(bf, "open")
  if offset == nil then
    local s = bf:control_data():match("^" .. CONTROL .. "(%d+)$")
    offset = s and math.tointeger(tonumber(s))
    if not offset then return nil, "no hash table in the control data" end
  elseif math.type(offset) ~= "integer" then
    error(sformat("bad argument #2 to 'open' (integer expected, got %s)",
                  type(offset)), 2)
  end
  local n, why = read_dir(bf, offset)
  if not n then return nil, why end
  return setmetatable({ bf = bf, dir = offset, n = n,
                        bs = bf:block_size() }, Table)
end

--- The offset of the table's directory, for `open`.
function Table:offset ()
  check(self, "offset")
  return self.dir
end

--- The number of entries.
function Table:count ()
  check(self, "count")
  return self.bf:with(self.dir, 1, function (v) return v:u64(D_COUNT) end)
end

-- The offset of the bucket of key k.
local function bucket (self, k)
  return self.dir + (1 + fnv1a(k) % self.n) * self.bs
end

-- Walks the chain from the block v is on, looking for key k. Returns
-- the entry's position and size, and the offset of the block before its
-- own (0 for the bucket), leaving v on its block; or nil, leaving v on
-- the chain's last block.
local function find (v, k)
  local prev = 0
  while true do
    local pos, stop = B_ENTRIES, B_ENTRIES + v:u32(B_USED)
    while pos < stop do
      local klen = v:u32(pos)
      local size = 8 + klen + v:u32(pos + 4 + klen)
      if klen == #k and v:compare(pos + 4, k) == 0 then
        return pos, size, prev
      end
      pos = pos + size
    end
    local nxt = v:u64(B_NEXT)
    if nxt == 0 then return nil end
    prev = v:offset()
    v:retarget(nxt)
  end
end

-- Removes the entry of size bytes at pos from the block v is on. If that
-- empties an overflow block (prev, the block before it, is not 0), frees
-- it and links prev to the block after it, leaving v on prev.
local function delete (bf, v, pos, size, prev)
  local stop = B_ENTRIES + v:u32(B_USED)
  v:copy(pos, v, pos + size, stop - pos - size)
  v:fill(0, stop - size, size)
  v:set_u32(B_USED, stop - size - B_ENTRIES)
  if stop - size == B_ENTRIES and prev ~= 0 then
    local off, nxt = v:offset(), v:u64(B_NEXT)
    v:retarget(prev)
    v:set_u64(B_NEXT, nxt)
    bf:free(off)
  end
end

-- Appends an entry to the block v is on, which has room for it.
local function append (v, k, val)
  local stop = v:pack(B_ENTRIES + v:u32(B_USED), "<s4s4", k, val)
  v:set_u32(B_USED, stop - B_ENTRIES)
end

-- Adds d to the directory's count; leaves v on the directory.
local function add_count (self, v, d)
  v:retarget(self.dir)
  v:set_u64(D_COUNT, v:u64(D_COUNT) + d)
end

--- Sets the value of key k, replacing any value it had.
-- @return true, or nil, message, errno when the file cannot grow (the
--   table is then unchanged)
function Table:put (k, val)
  check(self, "put", k, val)
  local bf, room = self.bf, self.bs - B_ENTRIES
  local size = 8 + #k + #val
  if size > room then
    error(sformat("bad argument #2 to 'put' (an entry of %d bytes does not "
                  .. "fit in a block: at most %d)", size, room), 2)
  end
  local head = bucket(self, k)
  local v <close> = bf:get(head)
  local pos, old, prev = find(v, k)
  if pos and room - v:u32(B_USED) + old >= size then
    delete(bf, v, pos, old, 0)             -- replaced in its own block
    append(v, k, val)
    return true
  end
  local at = pos and v:offset()
  v:retarget(head)
  while room - v:u32(B_USED) < size do     -- the first block with room
    local nxt = v:u64(B_NEXT)
    if nxt == 0 then                       -- none: chain a new one
      local err, errno
      nxt, err, errno = bf:allocate()
      if not nxt then return nil, err, errno end
      v:set_u64(B_NEXT, nxt)
    end
    v:retarget(nxt)
  end
  append(v, k, val)
  if at then                               -- the old entry goes last
    v:retarget(at)
    delete(bf, v, pos, old, prev)
  else
    add_count(self, v, 1)
  end
  return true
end

--- The value of key k, or nil if it has none.
function Table:get (k)
  check(self, "get", k)
  local v <close> = self.bf:get(bucket(self, k))
  local pos = find(v, k)
  if not pos then return nil end
  local _, val = v:unpack("<s4s4", pos)
  return val
end

--- Removes key k.
-- @return true if it was in the table, false if not
function Table:remove (k)
  check(self, "remove", k)
  local v <close> = self.bf:get(bucket(self, k))
  local pos, size, prev = find(v, k)
  if not pos then return false end
  delete(self.bf, v, pos, size, prev)
  add_count(self, v, -1)
  return true
end

--- Iterates over the entries, bucket by bucket, for the generic `for`:
-- `for k, v in h:pairs() do ... end`. Its fourth value, the view it
-- reads with, is closed when the loop ends, `break` included. The table
-- must not change during the loop.
function Table:pairs ()
  check(self, "pairs")
  local dir, n, bs = self.dir, self.n, self.bs
  local v = self.bf:get(dir + bs)
  local i, pos = 0, B_ENTRIES
  return function ()
    while pos == B_ENTRIES + v:u32(B_USED) do  -- this block is done
      local nxt = v:u64(B_NEXT)
      if nxt == 0 then                         -- and so is its chain
        if i == n - 1 then return nil end
        i = i + 1
        nxt = dir + (i + 1) * bs
      end
      v:retarget(nxt)
      pos = B_ENTRIES
    end
    local k, val
    k, val, pos = v:unpack("<s4s4", pos)
    return k, val
  end, nil, nil, v
end

--- Checks every invariant of the layout (see the top of this file).
-- @return true, or nil and a message naming the first broken one
function Table:verify ()
  check(self, "verify")
  local bf, n, bs = self.bf, self.n, self.bs
  local dn, why = read_dir(bf, self.dir)
  if dn ~= n then
    return nil, why or sformat("the directory says %d buckets, not %d", dn, n)
  end
  local v <close> = bf:get(self.dir)
  local seen, keys, total = { [self.dir] = true }, {}, 0
  for i = 0, n - 1 do
    local off, prev = self.dir + (i + 1) * bs, 0
    while off ~= 0 do
      local where = sformat("bucket %d, block at %d", i, off)
      if seen[off] then return nil, where .. ": reached twice" end
      if not pcall(v.retarget, v, off) then
        return nil, where .. ": not an allocated block"
      end
      seen[off] = true
      local pos, stop = B_ENTRIES, B_ENTRIES + v:u32(B_USED)
      if stop > bs then return nil, where .. ": used passes its end" end
      if stop == B_ENTRIES and prev ~= 0 then
        return nil, where .. ": an empty overflow block"
      end
      while pos < stop do
        local klen = pos + 8 <= stop and v:u32(pos)
        local vlen = klen and pos + 8 + klen <= stop and v:u32(pos + 4 + klen)
        if not vlen or pos + 8 + klen + vlen > stop then
          return nil, sformat("%s: the entry at %d passes used", where, pos)
        end
        local k = v:read(pos + 4, klen)
        if fnv1a(k) % n ~= i then
          return nil, sformat("%s: key %q belongs in bucket %d", where, k,
                              fnv1a(k) % n)
        elseif keys[k] then
          return nil, sformat("%s: key %q is in the table twice", where, k)
        end
        keys[k], total, pos = true, total + 1, pos + 8 + klen + vlen
      end
      prev, off = off, v:u64(B_NEXT)
    end
  end
  v:retarget(self.dir)
  if v:u64(D_COUNT) ~= total then
    return nil, sformat("the directory counts %d entries, the buckets "
                        .. "hold %d", v:u64(D_COUNT), total)
  end
  return true
end

--- The block classifier: what `fmap.audit`, `scripts/blockmap.lua` and
-- `scripts/inspect.lua` call the table's blocks. Registered as
-- "hashtable" when this module is loaded.
M.classifier = {
  kinds = {
    hash_directory = { label = "hash directory", color = "#e6ab02" },
    hash_bucket = { label = "hash bucket", color = "#1b9e77" },
    hash_overflow = { label = "hash overflow", color = "#e7298a" },
  },
  detect = function (_, ctx)         -- every directory, wherever it is
    local found = ctx.find(MAGIC, 0, D_SELF)
    return #found > 0 and found or nil
  end,
  walk = function (bf, dir, emit)
    local n, count = read_dir(bf, dir)
    if not n then error(count, 0) end
    emit(dir, 1, "hash_directory")
    local overflow = 0
    for i = 1, n do
      local off, kind = dir + i * bf:block_size(), "hash_bucket"
      while off ~= 0 and emit(off, 1, kind) do
        if kind == "hash_overflow" then overflow = overflow + 1 end
        off = bf:with(off, 1, function (v) return v:u64(B_NEXT) end)
        kind = "hash_overflow"
      end
    end
    return { buckets = n, entries = count, overflow_blocks = overflow }
  end,
}
classify.register("hashtable", M.classifier)

--- The table's crash test, for `fmap.crashtest` and
-- `fmap scripts/crashtest.lua fmap.examples.hashtable`: puts that chain
-- overflow blocks, replace values and remove keys, each operation in a
-- transaction; every state a crash could leave must verify.
M.crashtest = {
  setup = function (bf)                  -- the state before: 40 entries
    local h = assert(M.create(bf, 4))
    for i = 1, 40 do h:put("k" .. i, ("v"):rep(100)) end
  end,
  run = function (bf)                    -- the operations under test
    local h = assert(M.open(bf))
    for i = 1, 60 do
      bf:transaction(function ()
        if i % 3 == 0 then h:remove("k" .. i)
        else h:put("k" .. i // 2, ("w"):rep(i * 10)) end
      end)
    end
  end,
  check = function (bf)                  -- is this state sound?
    local h, why = M.open(bf)
    if not h then return nil, why end
    return h:verify()
  end,
}

return M
