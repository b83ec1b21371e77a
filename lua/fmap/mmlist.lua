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
  - L <= 48; leaves 0..L-1 are allocated runs of 2^k blocks, the others 0;
    no leaf overlaps another, the meta block or the varchar's meta block
  - n <= B * (2^L - 1); L = 0 when n = 0; otherwise L is the number of
    leaves n items need, or one more
  - entries 1..n are live blobs of the list's varchar with one reference
    each, and the varchar holds no other blob; entries past n mean nothing
    (pop and swap_delete write 0 into the entry they vacate, so a count
    grown by damage meets a 0 rather than another item's blob)
  - the varchar verifies

Checks. A leaf block carries no stamp of its owner: all of it is entries.
So open checks the directory (L against n, every leaf an allocated run
that overlaps nothing of the list's, leaves past L 0) and that each leaf
holding items starts with a live blob of the list's varchar, which a leaf
of another list or structure does not. A handle keeps the leaf offsets it
checked; an operation that finds another offset in the meta block checks
that leaf again before using it (one comparison otherwise). A spare leaf,
holding no item, can only be checked for its place: one of another
structure's allocated runs, named there by damage, would pass. An entry is
checked (the varchar locates its blob) before the blob is used. So a
damaged list raises "mmlist at M is corrupt: ..." before anything is
written, and mmlist.open returns nil and that message.
]]

local varchar = require "fmap.varchar"
local kit = require "fmap.kit"
local mark   -- fmap.profile's operation mark while a profile runs, else nil
kit.watch(function (f) mark = f end)
local guard, argcheck, accessors = kit.guard, kit.argcheck, kit.accessors

local M = {}

local List = {}
List.__index = List
List.__name = "mmlist"   -- what errors and help call it

-- Constants are <const>: the compiler folds them into the instructions
-- that use them, where a plain local is an upvalue fetched at each use.
local MAGIC <const> = "fmapMLST"
local VERSION <const> = 1
local MAXLEAF <const> = 48
local M_VERSION <const>, M_BS <const>, M_SELF <const>, M_COUNT <const> =
  8, 16, 24, 32
local M_VC <const>, M_LEAVES <const>, M_LEAF <const> = 40, 48, 64

--- The on-disk layout's constants, as the comment at the top of this file
-- gives them, for code that reads lists without the list's own
-- (`fmap.classify.mmlist`): `MAGIC`, `VERSION`, `MAXLEAF` (leaves at
-- most) and the meta block's field offsets `M_` (`M_LEAF`: leaf 0's
-- offset, leaf k's at M_LEAF + 8k).
M.layout = {
  MAGIC = MAGIC, VERSION = VERSION, MAXLEAF = MAXLEAF,
  M_VERSION = M_VERSION, M_BS = M_BS, M_SELF = M_SELF, M_COUNT = M_COUNT,
  M_VC = M_VC, M_LEAVES = M_LEAVES, M_LEAF = M_LEAF,
}

local math_type, type, error = math.type, type, error
local pcall, tostring, sformat = pcall, tostring, string.format
local enter, getmetatable, bad_self = kit.enter, getmetatable, kit.bad_self
local argerror, typeerror = kit.argerror, kit.typeerror
local checkinteger, check_bf = kit.checkinteger, varchar._check_bf
local meta_view, own_view = varchar._meta_view, varchar._own_view
local VM = kit.view_methods   -- called as plain functions: no lookup
local u64, set_u64, vretarget, vlive = VM.u64, VM.set_u64, VM.retarget,
  VM.live

-- The varchar's primitives on a view of the list's (see varchar.lua): a
-- fast form, which returns false where it found the item's blob amiss or
-- the varchar's guard held, and the checked form, which then raises as
-- the method would.
local VC = varchar._methods
local vc_get, vc_get_checked = VC._get, VC._get_checked
local vc_put, vc_put_checked = VC._put, VC._put_checked
local vc_take, vc_take_checked = VC._take, VC._take_checked
local vc_replace, vc_replace_checked = VC._replace, VC._replace_checked

-- The leaf holding 0-based entry j, for B entries per block:
-- floor(log2(j // B + 1)), found in integer steps (no call).
local function leaf_of (j, B)
  local q = j // B + 1
  local k = 0
  if q >= 1 << 32 then q = q >> 32; k = 32 end
  if q >= 1 << 16 then q = q >> 16; k = k + 16 end
  if q >= 1 << 8 then q = q >> 8; k = k + 8 end
  if q >= 1 << 4 then q = q >> 4; k = k + 4 end
  if q >= 1 << 2 then q = q >> 2; k = k + 2 end
  if q >= 2 then k = k + 1 end
  return k
end

-- floor(log2(q)) for q = 1..4096, by lookup: the leaf of entry j is
-- LOG2[j // B + 1] for the first 4096 * B entries (two million with
-- 4096-byte blocks), leaf_of's loop past them.
local LOG2 = {}
for q = 1, 4096 do LOG2[q] = leaf_of((q - 1) * 8, 8) end

-- Entries that leaves 0..L-1 hold.
local function capacity (L, B)
  return B * ((1 << L) - 1)
end

-- The guard of the list at meta, shared by its handles (fmap.guard).
local function guard_of (bf, meta)
  return guard.of(bf, sformat("mmlist at %d", meta))
end

-- After a rollback of its BlockFile: the leaves checked and the views
-- cached may be gone; they are found again when next needed.
local function forget (l)
  l.leaves = {}
  for k in pairs(l.views) do l.views[k] = nil end
end

-- A handle on the list at meta, whose varchar is vc.
local function handle (bf, meta, vc)
  local bs = bf:block_size()
  local l = setmetatable({
    bf = bf, meta = meta, vc = vc, bs = bs, B = bs // 8, ro = bf:readonly(),
    leaves = {},     -- leaf k's offset, once checked (check_leaf)
    guard = guard_of(bf, meta),
    views = setmetatable({}, { __mode = "v" }),   -- meta_view's
  }, List)
  bf:on_rollback(l, forget)
  return l
end

--- Creates an empty list: allocates its meta block and its varchar.
-- @param bf a BlockFile
-- @return the list, or nil, message, errno when the BlockFile cannot grow
function M.new (bf)
  check_bf(bf, "new")
  if bf:readonly() then argerror(1, "new", "the BlockFile is read-only") end
  local vc, msg, errno = varchar.new(bf)
  if not vc then return nil, msg, errno end
  local meta
  meta, msg, errno = bf:allocate()
  if not meta then
    bf:free(vc:offset())   -- the varchar's meta block, all it holds yet
    return nil, msg, errno
  end
  local v <close> = bf:get(meta)
  v:write(0, MAGIC)
  v:set_u32(M_VERSION, VERSION)
  v:set_u64(M_BS, bf:block_size())
  v:set_u64(M_SELF, meta)
  v:set_u64(M_VC, vc:offset())
  return handle(bf, meta, vc)
end

-- Raises "mmlist at M is corrupt: ..." (a damaged file, not a misuse).
local function corrupt (self, fmt, ...)
  varchar._lostmap(self.bf)   -- a lost map reads as damage: say that first
  error(sformat("mmlist at %d is corrupt: " .. fmt, self.meta, ...), 0)
end

-- Raises for a count n that is negative (a u64 past 2^63), and returns
-- it else. Operations check its sign only where it fails their own checks.
local function check_count (self, n)
  if n < 0 then corrupt(self, "it counts %d items", n) end
  return n
end

-- Checks the count n and the leaf count L against each other; v points
-- at the meta block. Returns L.
local function check_leaves (self, v, n)
  check_count(self, n)
  local L = v:u64(M_LEAVES)
  if L < 0 or L > MAXLEAF then
    corrupt(self, "it counts %d leaves, at most %d", L, MAXLEAF)
  end
  local need = n == 0 and 0 or leaf_of(n - 1, self.B) + 1
  if L < need or L > need + 1 or (n == 0 and L ~= 0) then
    corrupt(self, "%d item%s need%s %d lea%s, but it has %d", n,
            n == 1 and "" or "s", n == 1 and "s" or "", need,
            need == 1 and "f" or "ves", L)
  end
  return L
end

-- Checks leaf k at off, as the meta block (v points at it, and does
-- after) names it, before the list reads or writes it, then remembers it
-- in self.leaves. A leaf carries no stamp, so what is checked is its
-- place (an allocated run of 2^k blocks overlapping nothing of the
-- list's) and, when it holds items, that its first is a live blob of the
-- list's varchar. Returns off.
local function check_leaf (self, v, k, off)
  local n = v:u64(M_COUNT)
  local L = check_leaves(self, v, n)
  local bs, blocks = self.bs, 1 << k
  local what = sformat("leaf %d (%d block%s at %d)", k, blocks,
                       blocks == 1 and "" or "s", off)
  if k >= L then corrupt(self, "%s is past its %d leaves", what, L) end
  if off <= 0 or off % bs ~= 0 or not pcall(v.retarget, v, off, blocks) then
    corrupt(self, "%s is not an allocated run", what)
  end
  v:retarget(self.meta)
  local top = off + blocks * bs
  if self.meta >= off and self.meta < top then
    corrupt(self, "%s holds the list's meta block", what)
  end
  local vcoff = self.vc:offset()
  if vcoff >= off and vcoff < top then
    corrupt(self, "%s holds its varchar's meta block", what)
  end
  for j = 0, L - 1 do
    local o = v:u64(M_LEAF + 8 * j)
    if j ~= k and o ~= 0 and o < top and off < o + (bs << j) then
      corrupt(self, "%s overlaps leaf %d (at %d)", what, j, o)
    end
  end
  local first = capacity(k, self.B)   -- the leaf's first entry, 0-based
  if first < n then
    v:retarget(off)
    local x = v:u64(0)
    v:retarget(self.meta)
    if not pcall(self.vc.refs, self.vc, x) then
      corrupt(self, "%s is not the list's: its first entry, item %d, names "
              .. "offset %d, which is not a live blob of its varchar", what,
              first + 1, x)
    end
  end
  self.leaves[k] = off
  return off
end

--- Opens the list whose meta block is at offset.
-- @param bf a BlockFile
-- @param offset what l:offset() returned
-- @return the list, or nil and a message when no list is there or its
-- directory of leaves is damaged
function M.open (bf, offset)
  check_bf(bf, "open")
  offset = checkinteger(offset, 2, "open")
  -- the guard a list there has: open reads what an operation changes
  local _ <close> = enter(guard_of(bf, offset), "open")
  local ok, v = pcall(bf.get, bf, offset)
  if not ok then argerror(2, "open", argcheck.reason(v)) end
  local bs = bf:block_size()
  local magic, version = v:read(0, 8), v:u32(M_VERSION)
  local vbs, vself, vcoff = v:u64(M_BS), v:u64(M_SELF), v:u64(M_VC)
  local n, L = v:u64(M_COUNT), v:u64(M_LEAVES)
  v:release()
  if magic ~= MAGIC then
    return nil, sformat("offset %d does not hold an mmlist (no magic)",
                        offset)
  elseif version ~= VERSION then
    return nil, sformat("the mmlist at %d has format version %d, not %d",
                        offset, version, VERSION)
  elseif vbs ~= bs or vself ~= offset or L > MAXLEAF or L < 0
         or n < 0 or n > capacity(L, bs // 8) then
    return nil, sformat("the mmlist at %d is corrupt (its meta block "
                        .. "disagrees with the file)", offset)
  end
  local vc, msg
  ok, vc, msg = pcall(varchar.open, bf, vcoff)
  if not ok or not vc then
    return nil, sformat("the mmlist at %d is corrupt (its varchar: %s)",
                        offset, ok and msg or vc)
  end
  local self = handle(bf, offset, vc)
  -- every leaf now, so that a damaged directory is found before any
  -- operation writes; a message, as for a damaged meta block
  ok, msg = pcall(function ()
    local w <close> = bf:get(offset)
    L = check_leaves(self, w, n)
    for k = 0, MAXLEAF - 1 do
      local off = w:u64(M_LEAF + 8 * k)
      if k < L then check_leaf(self, w, k, off)
      elseif off ~= 0 then
        corrupt(self, "leaf %d, past the %d allocated, is at %d, not 0", k,
                L, off)
      end
    end
  end)
  if not ok then return nil, msg end
  return self
end

-- Raises unless the list's BlockFile is writable, for method fname (at
-- the level of error's, 3 by default: the method's caller).
local function check_writable (self, fname, level)
  if self.ro then
    error(sformat("cannot %s: the BlockFile is read-only", fname), level or 3)
  end
end

-- Raises unless self is a list, for method fname: a method called with
-- '.' for ':' is passed something else; and, for a method that changes
-- the list (changes true), unless its BlockFile is writable. Raises at
-- the method's caller.
local function check_self (self, fname, changes)
  if getmetatable(self) ~= List then
    bad_self("mmlist", fname, self, nil, 4)
  end
  if changes then check_writable(self, fname, 4) end
end

-- l:offset() (for mmlist.open) and l:blockfile().
accessors(List, check_self)

--- The number of items (also #l).
-- Not guarded: it reads one word, which every operation writes last.
function List:size ()
  check_self(self, "size")
  -- a view of its own: unguarded, size may run inside an operation (from
  -- a finalizer), whose view it must not move
  local v <close> = own_view(self)
  return check_count(self, v:u64(M_COUNT))
end
List.__len = List.size

-- Never raises (a closed file's handles are printed too); the count only
-- when the file can be read.
function List:__tostring ()
  local ok, n = pcall(List.size, self)
  if ok then
    return sformat("mmlist (meta at %d, %d items)", self.meta, n)
  end
  return sformat("mmlist (meta at %d, %s)", self.meta,
                 tostring(self.bf):match("closed") and "closed BlockFile"
                 or "unreadable")
end

-- i as an index in 1..n (argument arg of fname), or raises; n is the
-- count of the list self.
local function check_index (self, i, n, arg, fname, level)
  level = level or 3
  if math_type(i) ~= "integer" then i = checkinteger(i, arg, fname, level) end
  if i < 1 or i > n then
    check_count(self, n)
    argerror(arg, fname, n == 0
             and sformat("index %d out of range: the list is empty", i)
             or sformat("index %d out of range 1..%d", i, n), level)
  end
  return i
end

-- The file offset of 0-based entry j, below the count; v must point at
-- the meta block, and does after.
local function entry (self, v, j)
  local B = self.B
  local k = LOG2[j // B + 1] or leaf_of(j, B)
  local off = u64(v, M_LEAF + 8 * k)
  if off ~= self.leaves[k] then off = check_leaf(self, v, k, off) end
  return off + 8 * (j - B * ((1 << k) - 1))   -- capacity(k, B), inline
end

-- Points v at the block of the entry at file offset e (in a leaf checked
-- already); returns its position in v.
local function at (self, v, e)
  local r = e % self.bs
  v:retarget(e - r)
  return r
end

-- Raises err, the error of a varchar primitive called on x, the blob of
-- item i: as "mmlist at M is corrupt: ..." when x is no live blob (the
-- list's damage, not a bad argument of the caller's).
local function item_error (self, i, x, err)
  if not pcall(self.vc.refs, self.vc, x) then
    local why = type(err) == "string"
                and err:match("is not a live blob( %b())") or ""
    corrupt(self, "item %d names offset %d, which is not a live blob of "
            .. "its varchar%s", i, x, why)
  end
  error(err, 0)
end

-- The results of the varchar primitive f (vc._get_checked,
-- _replace_checked) called on v and x, the blob of item i, and ...; its
-- error raised as item_error's.
local function on_item (self, i, f, v, x, ...)
  local ok, a, b, c = pcall(f, self.vc, v, x, ...)
  if not ok then item_error(self, i, x, a) end
  return a, b, c
end

-- Checks, before an item is taken, the leaves that shrink(n - 1) frees:
-- a damaged directory must fail before the item is gone.
local function check_shrink (self, v, n)
  local L = check_leaves(self, v, n)
  local keep = n == 1 and 0 or leaf_of(n - 2, self.B) + 2
  for k = keep, L - 1 do
    local off = v:u64(M_LEAF + 8 * k)
    if off ~= self.leaves[k] then check_leaf(self, v, k, off) end
  end
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
    self.leaves[L] = nil
    self.bf:free(off, 1 << L)
  end
end

-- The operations that every benchmark runs (append, get, set and pop)
-- start with begin, which does what enter and meta_view do, and get and
-- set go on with item, which does what check_index, entry and at do. Their
-- item goes through the varchar's fast primitive, then, where that
-- returns false, through its checked form. A retarget asks for the one
-- cache line it reads next (the entry), not for the whole block. They
-- read and write the meta block through a second view of the list's, kept
-- on it (views[2], weakly, as views[1]), and move only the first.

-- Checks self, the method fname's item s (argument sarg, when given) and,
-- for a method that writes, that the file is writable, as check_self and
-- check_writable do. Then makes the list's two views before the guard is
-- taken (so nothing raises while it is held but not yet closed): v, which
-- may point anywhere, and mv, on the meta block; and enters the guard for
-- fname. Returns the guard, for the method's to-be-closed variable, v and
-- mv; raises at the method's caller.
local function begin (self, fname, writes, s, sarg)
  if getmetatable(self) ~= List then
    bad_self("mmlist", fname, self, nil, 4)
  end
  if sarg and type(s) ~= "string" then
    typeerror(sarg, fname, "string", s, 3)
  end
  if writes and self.ro then
    error(sformat("cannot %s: the BlockFile is read-only", fname), 3)
  end
  local views = self.views
  local v, mv = views[1], views[2]
  if v == nil or not vlive(v) then v = own_view(self, 3); views[1] = v end
  if mv == nil or not vlive(mv) then mv = own_view(self, 3); views[2] = mv end
  local g = self.guard
  if g.busy then enter(g, fname, 4) end
  g.busy = fname
  return g, v, mv
end

-- The 1-based index i (argument 1 of fname) checked against the count in
-- mv; points v at the cache line of item i's entry. Returns the entry's
-- position in v, its file offset and i as an integer. Raises at the
-- method's caller.
local function item (self, v, mv, i, fname)
  local n = u64(mv, M_COUNT)
  if math_type(i) ~= "integer" or i < 1 or i > n then
    i = check_index(self, i, n, 1, fname, 4)
  end
  local j, B = i - 1, self.B                  -- entry(self, mv, i - 1)
  local k = LOG2[j // B + 1] or leaf_of(j, B)
  local off = u64(mv, M_LEAF + 8 * k)
  if off ~= self.leaves[k] then off = check_leaf(self, mv, k, off) end
  local e = off + 8 * (j - B * ((1 << k) - 1))
  local r = e % self.bs
  vretarget(v, e - r, 1, r)
  return r, e, i
end

--- Appends s.
-- @return the new item's index (the new size), or nil, message, errno when
-- the BlockFile cannot grow
function List:append (s)
  if mark then mark("mmlist.append", s) end
  local _ <close>, v, mv = begin(self, "append", true, s, 1)
  local n, B = u64(mv, M_COUNT), self.B
  local L, grown
  if n % B == 0 or n < 0 then   -- maybe the first entry of a new leaf
    L = check_leaves(self, mv, n)
    if n == capacity(L, B) then   -- a new leaf, 2^L blocks
      if L >= MAXLEAF then error("the list is full", 2) end
      local off, msg, errno
      if L == 0 then off, msg, errno = self.bf:allocate()
      else off, msg, errno = self.bf:allocate_blocks(1 << L) end
      if not off then return nil, msg, errno end
      set_u64(mv, M_LEAF + 8 * L, off)
      set_u64(mv, M_LEAVES, L + 1)
      self.leaves[L] = off
      grown = off
    end
  end
  local e = entry(self, mv, n)
  local vc = self.vc
  local x, msg, errno
  if not grown then
    x, msg, errno = vc_put(vc, v, s)
    if x == false then
      local ok
      ok, x, msg, errno = pcall(vc_put_checked, vc, v, s)
      if not ok then error(x, 0) end
    end
  else
    local ok
    ok, x, msg, errno = pcall(vc_put, vc, v, s)
    if ok and x == false then
      ok, x, msg, errno = pcall(vc_put_checked, vc, v, s)
    end
    if not (ok and x) then  -- the list as it was: no leaf for no item
      set_u64(mv, M_LEAF + 8 * L, 0)
      set_u64(mv, M_LEAVES, L)
      self.leaves[L] = nil
      self.bf:free(grown, 1 << L)
      if not ok then error(x, 0) end
    end
  end
  if not x then return nil, msg, errno end
  local r = e % self.bs
  vretarget(v, e - r, 1, r)
  set_u64(v, r, x)
  set_u64(mv, M_COUNT, n + 1)
  return n + 1
end

--- The item at index i (1..#l).
function List:get (i)
  if mark then mark("mmlist.get") end
  local _ <close>, v, mv = begin(self, "get")
  local r, _, j = item(self, v, mv, i, "get")
  local x = u64(v, r)
  local s = vc_get(self.vc, v, x)
  if not s then s = on_item(self, j, vc_get_checked, v, x, "get") end
  return s
end

--- Replaces the item at index i with s.
-- @return true, or nil, message, errno when the BlockFile cannot grow
function List:set (i, s)
  if mark then mark("mmlist.set", s) end
  local _ <close>, v, mv = begin(self, "set", true, s, 2)
  local r, e, j = item(self, v, mv, i, "set")
  local x = u64(v, r)
  local vc = self.vc
  local ok, y, msg, errno = pcall(vc_replace, vc, v, x, s, "set")
  if not ok then
    vc.guard.busy = false                    -- _replace raised: its guard
    item_error(self, j, x, y)
  end
  if y == false then
    y, msg, errno = on_item(self, j, vc_replace_checked, v, x, s, "set")
  end
  if not y then return nil, msg, errno end
  if y ~= x then
    vretarget(v, e - r, 1, r)
    set_u64(v, r, y)
  end
  return true
end

--- Exchanges the items at indices i and j.
function List:swap (i, j)
  if mark then mark("mmlist.swap") end
  local _ <close>, v, mv = begin(self, "swap", true)
  local n = u64(mv, M_COUNT)
  i = check_index(self, i, n, 1, "swap")
  j = check_index(self, j, n, 2, "swap")
  if i == j then return end
  local ei, ej = entry(self, mv, i - 1), entry(self, mv, j - 1)
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
  if mark then mark("mmlist.pop") end
  local _ <close>, v, mv = begin(self, "pop", true)
  local n = u64(mv, M_COUNT)
  if n <= 0 then
    check_count(self, n)
    return nil
  end
  local B = self.B
  local shrinks = (n - 1) % B == 0
  if shrinks then check_shrink(self, mv, n) end
  local e = entry(self, mv, n - 1)
  local r = e % self.bs
  vretarget(v, e - r, 1, r)
  local x = u64(v, r)
  set_u64(v, r, 0)      -- vacated: it names no blob (see the invariants)
  local vc = self.vc
  local ok, s = pcall(vc_take, vc, v, x, "pop")
  if not ok then vc.guard.busy = false      -- _take raised: its guard
  elseif s == false then ok, s = pcall(vc_take_checked, vc, v, x, "pop") end
  if not ok then        -- x is not taken: the entry as it was
    vretarget(v, e - r, 1, r)
    set_u64(v, r, x)
    item_error(self, n, x, s)
  end
  set_u64(mv, M_COUNT, n - 1)
  if shrinks then shrink(self, mv, n - 1) end
  return s
end

--- Removes the item at index i, moving the last item into its place.
-- @return the removed item
function List:swap_delete (i)
  if mark then mark("mmlist.swap_delete") end
  local _ <close>, v, mv = begin(self, "swap_delete", true)
  local n = u64(mv, M_COUNT)
  i = check_index(self, i, n, 1, "swap_delete")
  local shrinks = (n - 1) % self.B == 0
  if shrinks then check_shrink(self, mv, n) end
  local ei, elast = entry(self, mv, i - 1), entry(self, mv, n - 1)
  local x = v:u64(at(self, v, ei))
  local ok, s = pcall(vc_take, self.vc, v, x, "swap_delete")
  if not ok then self.vc.guard.busy = false  -- _take raised: its guard
  elseif s == false then
    ok, s = pcall(vc_take_checked, self.vc, v, x, "swap_delete")
  end
  if not ok then item_error(self, i, x, s) end
  local pl = at(self, v, elast)
  local last = v:u64(pl)
  v:set_u64(pl, 0)
  if i ~= n then v:set_u64(at(self, v, ei), last) end
  set_u64(mv, M_COUNT, n - 1)
  if shrinks then shrink(self, mv, n - 1) end
  return s
end

-- A step of iterate over it = {list, last}: the guard is held while the
-- step reads, not while the loop's body runs. It stops after the item
-- that was last when the loop began (reading nothing, so that a profile
-- counts no step for it), or at the list's end if it shrank.
local function step (it, i)
  if mark then mark("mmlist.step") end
  i = i + 1
  if i > it[2] then return nil end
  local self = it[1]
  local _ <close> = enter(self.guard, "iterate")
  local v = meta_view(self)
  local n = v:u64(M_COUNT)
  if i > n then
    check_count(self, n)
    return nil
  end
  local x = u64(v, at(self, v, entry(self, v, i - 1)))
  local s = vc_get(self.vc, v, x)
  if not s then s = on_item(self, i, vc_get_checked, v, x, "iterate") end
  return i, s
end

--- An iterator for the generic for: `for i, s in l:iterate() do`. It
-- holds no view between steps, so breaking out needs no cleanup; each step
-- reads the list as it is then. It visits the items there were when it
-- began, as `for i = 1, #l` would: items appended in the loop are not
-- visited (so a loop that appends ends), and it stops early if the list
-- shrinks below the next index.
function List:iterate ()
  if mark then mark("mmlist.iterate") end
  check_self(self, "iterate")
  local v <close> = own_view(self)
  return step, { self, check_count(self, v:u64(M_COUNT)) }, 0
end

--- `l[i] = s` would only set a field of the handle, never an item:
-- raises, naming the methods that write (a key that is no number is set
-- on the handle, as on any table). `l[i]` is not an item either: reads
-- go through `l:get(i)`, and __index stays the method table, so that a
-- method call costs no function call more.
function List.__newindex (self, k, s)
  if type(k) ~= "number" then   -- l[1.0] is l[1] to Lua: numbers all
    rawset(self, k, s)
    return
  end
  error(sformat("l[%s] = ... does not write the list: l:set(i, s) replaces "
                .. "an item, l:append(s) adds one (and l:get(i) reads one)",
                tostring(k)), 2)
end

--- `pairs(l)` walks the items, as `l:iterate()` does.
function List:__pairs ()
  return List.iterate(self)
end

--- Checks every invariant in the comment at the top of this file.
-- @return true, or nil and a message listing the problems, one per line
function List:verify ()
  check_self(self, "verify")
  local _ <close> = enter(self.guard, "verify")
  local bf, B, bs = self.bf, self.B, self.bs
  local problem, problems, result = varchar._problems()
  local v <close> = bf:get(self.meta)
  local n, L = v:u64(M_COUNT), v:u64(M_LEAVES)
  if v:read(0, 8) ~= MAGIC or v:u32(M_VERSION) ~= VERSION
     or v:u64(M_SELF) ~= self.meta or v:u64(M_BS) ~= bs then
    problem("meta block: bad magic, version, own offset or block size")
  end
  if L > MAXLEAF or L < 0 then
    problem("%d leaves, at most %d", L, MAXLEAF)
    L = L < 0 and 0 or MAXLEAF
  end
  if n < 0 or n > capacity(L, B) then
    problem("%d items, but %d leaves hold %d", n, L, capacity(L, B))
  end
  local need = n <= 0 and 0 or leaf_of(n - 1, B) + 1
  if L < need or L > need + 1 or (n == 0 and L ~= 0) then
    problem("%d items need %d leaves, %d allocated", n, need, L)
  end
  -- the meta blocks, then each leaf: {start, blocks, what}
  local extents = { { self.meta, 1, "the meta block" },
                    { self.vc:offset(), 1, "the varchar's meta block" } }
  local leaves = {}
  for k = 0, MAXLEAF - 1 do
    local off = v:u64(M_LEAF + 8 * k)
    if k < L then
      leaves[k] = off
      if off <= 0 or off % bs ~= 0 then
        problem("leaf %d: bad offset %d", k, off)
      else
        for b = 0, (1 << k) - 1 do
          local blk = off + b * bs
          if blk >= bf:size() or bf:is_free(blk) then
            problem("leaf %d: block %d is not allocated", k, blk)
            break
          end
        end
        for _, x in ipairs(extents) do
          if off < x[1] + x[2] * bs and x[1] < off + (bs << k) then
            problem("leaf %d (at %d) overlaps %s (at %d)", k, off, x[3],
                    x[1])
          end
        end
        extents[#extents + 1] = { off, 1 << k, "leaf " .. k }
      end
    elseif off ~= 0 then
      problem("leaf %d past the %d allocated is not 0", k, L)
    end
  end
  local seen = {}
  if #problems == 0 then
    for j = 0, n - 1 do
      local k = j < B and 0 or leaf_of(j, B)
      local x = v:u64(at(self, v, leaves[k] + 8 * (j - capacity(k, B))))
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
  return result()
end

-- The methods, for help "l:append" and help(obj).
M._methods = List

return M
