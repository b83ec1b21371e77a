--- fmap.mmlist: a persistent list of byte strings with O(1) append, pop,
-- get, set, swap, swap_delete and size: fs2's mmlist in Lua's idiom.
-- Indices are 1-based, as Lua sequences are; items of any size live in a
-- fmap.varchar of the list's own.
--[[
Layout, little-endian. bs is the block size, B = bs / 8 entries per block.

Meta block (mmlist.new allocates it; l:offset() names it):
  OFFSET  SIZE  FIELD
       0     8  magic "fmapMLST"
       8     4  format version (1)
      12     4  zero
      16     8  block size
      24     8  the meta block's own offset
      32     8  n, the number of items
      40     8  the offset of the items' varchar (its meta block)
      48     8  L, leaves allocated
      56     8  zero
      64  8*48  leaf k's offset, k = 0..47 (0 past L)

The index is a directory of leaves of doubling size: leaf k is a run of
2^k blocks holding B * 2^k entries, each the u64 varchar offset of an
item. Leaves 0..k-1 hold B * (2^k - 1) entries, so item i (0-based
j = i - 1) lives in leaf k = floor(log2(j // B + 1)) at entry
j - B * (2^k - 1): O(1), and a get reads the meta block, one block of one
leaf and the item's block. Leaves are allocated as the list grows into
them; when it shrinks, a leaf is freed once the leaf before it is empty
too (one empty leaf is kept, so alternating append and pop at a boundary
allocates nothing), and every leaf is freed when the list becomes empty.

Invariants (l:verify checks them):
  - L <= 48; leaves 0..L-1 are allocated runs of 2^k blocks, the others 0
  - n <= B * (2^L - 1); L = 0 when n = 0; otherwise L is the number of
    leaves n items need, or one more
  - entries 1..n are live blobs of the list's varchar with one reference
    each, and the varchar holds no other blob; entries past n mean nothing
  - the varchar verifies
]]

local varchar = require "fmap.varchar"

local M = {}

local List = {}
List.__index = List

local MAGIC = "fmapMLST"
local VERSION = 1
local MAXLEAF = 48
local M_VERSION, M_BS, M_SELF, M_COUNT, M_VC, M_LEAVES, M_LEAF =
  8, 16, 24, 32, 40, 48, 64

local math_type, type, error, log, floor = math.type, type, error,
  math.log, math.floor
local argerr, typename, check_bf = varchar._argerr, varchar._typename,
  varchar._check_bf

-- The leaf holding 0-based entry j, for B entries per block.
local function leaf_of (j, B)
  local q = j // B + 1
  if q == 1 then return 0 end
  local k = floor(log(q, 2))
  if (1 << k) > q then k = k - 1 elseif (2 << k) <= q then k = k + 1 end
  return k
end

-- Entries that leaves 0..L-1 hold.
local function capacity (L, B)
  return B * ((1 << L) - 1)
end

--- Creates an empty list: allocates its meta block and its varchar.
-- @param bf a BlockFile
-- @return the list, or nil, message, errno when the BlockFile cannot grow
function M.new (bf)
  check_bf(bf, "new")
  if bf:readonly() then argerr("new", 1, "the BlockFile is read-only") end
  local vc, msg, errno = varchar.new(bf)
  if not vc then return nil, msg, errno end
  local meta
  meta, msg, errno = bf:allocate()
  if not meta then return nil, msg, errno end
  local bs = bf:block_size()
  local v <close> = bf:get(meta)
  v:write(0, MAGIC)
  v:set_u32(M_VERSION, VERSION)
  v:set_u64(M_BS, bs)
  v:set_u64(M_SELF, meta)
  v:set_u64(M_VC, vc:offset())
  return setmetatable({ bf = bf, meta = meta, vc = vc, bs = bs, B = bs // 8,
                        ro = false }, List)
end

--- Opens the list whose meta block is at offset.
-- @param bf a BlockFile
-- @param offset what l:offset() returned
-- @return the list, or nil and a message when no list is there
function M.open (bf, offset)
  check_bf(bf, "open")
  if math_type(offset) ~= "integer" then argerr("open", 2, typename(offset)) end
  local ok, v = pcall(bf.get, bf, offset)
  if not ok then
    argerr("open", 2, string.format("offset %d is not an allocated block",
                                    offset))
  end
  local bs = bf:block_size()
  local magic, version = v:read(0, 8), v:u32(M_VERSION)
  local vbs, vself, vcoff = v:u64(M_BS), v:u64(M_SELF), v:u64(M_VC)
  local n, L = v:u64(M_COUNT), v:u64(M_LEAVES)
  v:release()
  if magic ~= MAGIC then
    return nil, string.format("offset %d does not hold an mmlist (no magic)",
                              offset)
  elseif version ~= VERSION then
    return nil, string.format("the mmlist at %d has format version %d, "
                              .. "not %d", offset, version, VERSION)
  elseif vbs ~= bs or vself ~= offset or L > MAXLEAF or L < 0
         or n < 0 or n > capacity(L, bs // 8) then
    return nil, string.format("the mmlist at %d is corrupt (its meta block "
                              .. "disagrees with the file)", offset)
  end
  local vc, msg
  ok, vc, msg = pcall(varchar.open, bf, vcoff)
  if not ok or not vc then
    return nil, string.format("the mmlist at %d is corrupt (its varchar: "
                              .. "%s)", offset, ok and msg or vc)
  end
  return setmetatable({ bf = bf, meta = offset, vc = vc, bs = bs,
                        B = bs // 8, ro = bf:readonly() }, List)
end

--- The offset of the list's meta block, for mmlist.open.
function List:offset ()
  return self.meta
end

--- The list's BlockFile.
function List:blockfile ()
  return self.bf
end

--- The number of items (also #l).
function List:size ()
  local v <close> = self.bf:get(self.meta)
  return v:u64(M_COUNT)
end
List.__len = List.size

function List:__tostring ()
  return string.format("mmlist (meta at %d, %d items)", self.meta,
                       self:size())
end

local function check_writable (self, fname)
  if self.ro then
    error(string.format("cannot %s: the BlockFile is read-only", fname), 3)
  end
end

local function check_string (s, n, fname)
  if type(s) ~= "string" then
    argerr(fname, n, "string expected, got " .. type(s), 3)
  end
end

-- Raises unless i is an index in 1..n (argument n of fname).
local function check_index (i, n, arg, fname)
  if math_type(i) ~= "integer" then argerr(fname, arg, typename(i), 3) end
  if i < 1 or i > n then
    argerr(fname, arg, n == 0
           and string.format("index %d out of range: the list is empty", i)
           or string.format("index %d out of range 1..%d", i, n), 3)
  end
end

-- The file offset of 0-based entry j; v must point at the meta block.
local function entry (self, v, j)
  local B = self.B
  local k = j < B and 0 or leaf_of(j, B)
  return v:u64(M_LEAF + 8 * k) + 8 * (j - B * ((1 << k) - 1))
end

-- Points v at the block of the entry at file offset e; returns its
-- position in v.
local function at (self, v, e)
  local r = e % self.bs
  v:retarget(e - r)
  return r
end

-- After the count fell to n, frees the leaves it no longer needs; v must
-- point at the meta block. Only a count that is a multiple of B can leave
-- a leaf empty, so callers skip the others.
local function shrink (self, v, n)
  local L = v:u64(M_LEAVES)
  local keep = n == 0 and 0 or leaf_of(n - 1, self.B) + 2
  while L > keep do
    L = L - 1
    local off = v:u64(M_LEAF + 8 * L)
    v:set_u64(M_LEAF + 8 * L, 0)
    v:set_u64(M_LEAVES, L)
    self.bf:free(off, 1 << L)
  end
end

--- Appends s.
-- @return the new item's index (the new size), or nil, message, errno when
-- the BlockFile cannot grow
function List:append (s)
  check_string(s, 1, "append")
  check_writable(self, "append")
  local v <close> = self.bf:get(self.meta)
  local n, B = v:u64(M_COUNT), self.B
  if n % B == 0 then   -- maybe the first entry of a leaf not there yet
    local L = v:u64(M_LEAVES)
    if n == capacity(L, B) then   -- a new leaf, 2^L blocks
      if L >= MAXLEAF then error("the list is full", 2) end
      local off, msg, errno
      if L == 0 then off, msg, errno = self.bf:allocate()
      else off, msg, errno = self.bf:allocate_blocks(1 << L) end
      if not off then return nil, msg, errno end
      v:set_u64(M_LEAF + 8 * L, off)
      v:set_u64(M_LEAVES, L + 1)
    end
  end
  local e = entry(self, v, n)
  local x, msg, errno = self.vc:_put(v, s)
  if not x then return nil, msg, errno end
  v:set_u64(at(self, v, e), x)
  v:retarget(self.meta)
  v:set_u64(M_COUNT, n + 1)
  return n + 1
end

--- The item at index i (1..#l).
function List:get (i)
  local v <close> = self.bf:get(self.meta)
  check_index(i, v:u64(M_COUNT), 1, "get")
  local e = entry(self, v, i - 1)
  return self.vc:_get(v, v:u64(at(self, v, e)), "get")
end

--- Replaces the item at index i with s.
-- @return true, or nil, message, errno when the BlockFile cannot grow
function List:set (i, s)
  check_string(s, 2, "set")
  check_writable(self, "set")
  local v <close> = self.bf:get(self.meta)
  check_index(i, v:u64(M_COUNT), 1, "set")
  local e = entry(self, v, i - 1)
  local pos = at(self, v, e)
  local x = v:u64(pos)
  local y, msg, errno = self.vc:_replace(v, x, s, "set")
  if not y then return nil, msg, errno end
  if y ~= x then v:set_u64(at(self, v, e), y) end
  return true
end

--- Exchanges the items at indices i and j.
function List:swap (i, j)
  check_writable(self, "swap")
  local v <close> = self.bf:get(self.meta)
  local n = v:u64(M_COUNT)
  check_index(i, n, 1, "swap")
  check_index(j, n, 2, "swap")
  if i == j then return end
  local ei, ej = entry(self, v, i - 1), entry(self, v, j - 1)
  local pi = at(self, v, ei)
  local xi = v:u64(pi)
  local pj = at(self, v, ej)
  local xj = v:u64(pj)
  v:set_u64(pj, xi)
  v:set_u64(at(self, v, ei), xj)
end

--- Removes the last item.
-- @return it, or nil when the list is empty
function List:pop ()
  check_writable(self, "pop")
  local v <close> = self.bf:get(self.meta)
  local n = v:u64(M_COUNT)
  if n == 0 then return nil end
  local e = entry(self, v, n - 1)
  local s = self.vc:_take(v, v:u64(at(self, v, e)), "pop")
  v:retarget(self.meta)
  v:set_u64(M_COUNT, n - 1)
  if (n - 1) % self.B == 0 then shrink(self, v, n - 1) end
  return s
end

--- Removes the item at index i, moving the last item into its place.
-- @return the removed item
function List:swap_delete (i)
  check_writable(self, "swap_delete")
  local v <close> = self.bf:get(self.meta)
  local n = v:u64(M_COUNT)
  check_index(i, n, 1, "swap_delete")
  local ei, elast = entry(self, v, i - 1), entry(self, v, n - 1)
  local s = self.vc:_take(v, v:u64(at(self, v, ei)), "swap_delete")
  if i ~= n then
    local last = v:u64(at(self, v, elast))
    v:set_u64(at(self, v, ei), last)
  end
  v:retarget(self.meta)
  v:set_u64(M_COUNT, n - 1)
  if (n - 1) % self.B == 0 then shrink(self, v, n - 1) end
  return s
end

local function step (self, i)
  i = i + 1
  local v <close> = self.bf:get(self.meta)
  if i > v:u64(M_COUNT) then return nil end
  local e = entry(self, v, i - 1)
  return i, self.vc:_get(v, v:u64(at(self, v, e)), "iterate")
end

--- An iterator for the generic for: `for i, s in l:iterate() do`. It
-- holds no view between steps, so breaking out needs no cleanup; each step
-- reads the list as it is then.
function List:iterate ()
  return step, self, 0
end

--- Checks every invariant in the comment at the top of this file.
-- @return true, or nil and a message listing the problems, one per line
function List:verify ()
  local bf, B, bs = self.bf, self.B, self.bs
  local problems = {}
  local function problem (fmt, ...)
    if #problems < 50 then problems[#problems + 1] = fmt:format(...) end
  end
  local v <close> = bf:get(self.meta)
  local n, L = v:u64(M_COUNT), v:u64(M_LEAVES)
  if v:read(0, 8) ~= MAGIC or v:u32(M_VERSION) ~= VERSION
     or v:u64(M_SELF) ~= self.meta or v:u64(M_BS) ~= bs then
    problem("meta block: bad magic, version, own offset or block size")
  end
  if L > MAXLEAF then
    problem("%d leaves, at most %d", L, MAXLEAF)
    L = MAXLEAF
  end
  if n > capacity(L, B) then
    problem("%d items, but %d leaves hold %d", n, L, capacity(L, B))
  end
  local need = n == 0 and 0 or leaf_of(n - 1, B) + 1
  if L < need or L > need + 1 or (n == 0 and L ~= 0) then
    problem("%d items need %d leaves, %d allocated", n, need, L)
  end
  local leaves = {}
  for k = 0, MAXLEAF - 1 do
    local off = v:u64(M_LEAF + 8 * k)
    if k < L then
      leaves[k] = off
      if off == 0 or off % bs ~= 0 then
        problem("leaf %d: bad offset %d", k, off)
      else
        for b = 0, (1 << k) - 1 do
          local blk = off + b * bs
          if blk >= bf:size() or bf:is_free(blk) then
            problem("leaf %d: block %d is not allocated", k, blk)
            break
          end
        end
      end
    elseif off ~= 0 then
      problem("leaf %d past the %d allocated is not 0", k, L)
    end
  end
  local seen = {}
  if #problems == 0 then
    for j = 0, n - 1 do
      local e = entry(self, v, j)
      local x = v:u64(at(self, v, e))
      v:retarget(self.meta)
      if seen[x] then
        problem("items %d and %d share the blob at %d", seen[x], j + 1, x)
      end
      seen[x] = j + 1
      local ok, refs = pcall(self.vc.refs, self.vc, x)
      if not ok then
        problem("item %d: %s", j + 1, refs)
      elseif refs ~= 1 then
        problem("item %d: its blob has %d references", j + 1, refs)
      end
    end
  end
  local ok, msg = self.vc:verify()
  if not ok then problem("varchar: %s", msg) end
  if self.vc:count() ~= n then
    problem("the varchar holds %d blobs for %d items", self.vc:count(), n)
  end
  if #problems > 0 then return nil, table.concat(problems, "\n") end
  return true
end

return M
