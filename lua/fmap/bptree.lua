--- fmap.bptree: a persistent B+tree in the blocks of a BlockFile.
--
-- Keys and values are byte strings; keys compare as bytes (memcmp order,
-- a proper prefix first: see fmap.codec for keys that must sort as numbers
-- or tuples). Sizes are fixed per tree, or -1 for any length. Duplicate
-- keys are allowed. Every node is one block; the tree reaches its blocks
-- through views and writes them in place.
--
--   local t = bptree.new(bf, 16, 16)      -- or bptree.open(bf)
--   t:add(k, v); t:put(k, v); t:get(k); t:has(k); t:count(k)
--   t:remove(k [, where]); t:first(); t:last()
--   for k, v in t:range(from, to) do ... end   -- also seek, prefix
--
-- On-disk layout. Integers are little-endian; a block offset of 0 means
-- none. B = block size.
--
-- Control data (bptree.new / bptree.open): the string "bptree@OFFSET", the
-- offset of the meta block in decimal. Trees made with new_at are found by
-- their meta offset alone.
--
-- Meta block:
--   OFFSET SIZE FIELD
--        0    8 magic "fmapBPTR"
--        8    4 format version (1)
--       12    4 node layout: 1 fixed, 2 slotted
--       16    8 key size (signed; -1: any length)
--       24    8 value size (signed; -1: any length)
--       32    8 root node
--       40    8 height: levels of nodes, 1 when the root is a leaf
--       48    8 size: entries in the tree
--
-- Every node starts with
--        0    1 kind: 1 leaf, 2 internal
--        1    1 flags: bit 0 set when a key of the node may be in an
--               overflow run (slotted layout only; set when one comes in,
--               recomputed when the heap is compacted)
--        2    2 zero
--        4    4 count: entries (leaf) or separators (internal)
-- An internal node with n separators S[0..n-1] has n + 1 children
-- C[0..n]; every key in the subtree of C[j] lies in [S[j-1], S[j]] (both
-- ends included; S[-1] and S[n] are the node's own bounds).
--
-- Fixed layout: key size K >= 1 and value size V >= 0 known, and at least
-- 4 entries fit in a node (else the tree uses the slotted layout).
--   leaf       8  8 previous leaf      16  8 next leaf
--             24    entries: count x (K key bytes, V value bytes)
--   internal   8  8 C[0]
--             16    entries: count x (K bytes of S[j], 8 bytes C[j+1]),
--                   then 0xFF bytes up to the node's capacity
--   (so C[j] is at 8 + j * (K + 8)). The 0xFF padding sorts after or
--   equal to every key, so a search over the whole capacity finds the
--   right child too; the descents search the count's entries with
--   searchers (bf:searcher, which reads the count in the same call), and
--   the padding stays part of the format (verify checks it).
--
-- Slotted layout: keys or values of any length, or too large for the
-- fixed one. A node has a slot array growing up from its header and a heap
-- of cells growing down from the end of the block; deleting a cell leaves
-- dead bytes, reclaimed by compacting the heap when room is needed.
--   leaf       8  8 previous leaf      16  8 next leaf
--             24  4 heap start (lowest cell byte; B when empty)
--             28  4 dead bytes in the heap
--             32    slots: count x 4 (the cell's position in the block)
--   internal   8  4 heap start        12  4 dead bytes
--             16  8 C[0]
--             24    slots: count x 12 (cell position of S[j] in 4 bytes,
--                   then C[j+1] in 8), so C[j] is at 16 + 12 * j
-- A leaf cell is a key field then a value field; an internal cell is a key
-- field. A field is
--   4 bytes length L < 2^31, then L bytes          (inline)
--   4 bytes 2^31 + L, then the 8-byte offset of an overflow run   (overflow)
-- An overflow run is ceil(L / B) contiguous blocks holding the L bytes from
-- its first byte. A leaf cell is at most a quarter of the node, so at least
-- 4 entries fit: a value (then a key) too long for that goes to a run.
-- Separators in slotted nodes are the shortest byte strings between the
-- last key on their left and the first on their right.
--
-- Invariants (t:verify() checks every one and reports the first broken,
-- with the node's offset):
--   - all leaves are at level 1 and all paths from the root have `height`
--     nodes; a node's kind matches its level
--   - keys in a node are in order (equal keys allowed); every key of the
--     subtree of C[j] is in [S[j-1], S[j]]
--   - fill: no node holds more than its capacity; every node but the root
--     holds at least one entry (a leaf) or one separator (internal); an
--     internal root holds at least one separator
--   - leaves are doubly linked in key order: the first has no previous,
--     the last no next
--   - the entries counted in the leaves are the meta block's size
--   - fixed internal nodes: the slots after the last entry are 0xFF
--   - slotted nodes: cells lie in the heap without overlapping, live and
--     dead bytes add up, the flag is set if a key overflows, and every run
--     is allocated and owned by one field
--   - no block is used twice, none is free
--
-- Duplicates. Separators are copies (or, slotted, shortened copies) of
-- keys, so equal keys can straddle a separator that equals them. Lookups
-- therefore descend to the leftmost leaf that may hold the key (taking
-- C[j] for the first separator >= key) and follow the leaf links from
-- there; an insertion descends to the rightmost such leaf and goes after
-- its equal keys, so the values of one key keep their insertion order.
--
-- Balance. A full leaf splits in two halves, except when the insertion is
-- at the end of the last leaf: then the left node stays full and the new
-- one starts with the new entry, so keys inserted in order fill their
-- leaves. Removal rebalances a node that falls under a quarter full: it is
-- merged with a sibling when both fit in one node (the emptied block goes
-- back to the BlockFile), else entries are moved over from the sibling.
--
-- Search. Fixed nodes are searched with the tree's two searchers (made
-- once with bf:searcher: one for internal nodes, returning the child, one
-- for leaves, returning the value), through the BlockFile with no view;
-- a descent is one call, which follows the children down (and for a get
-- searches the leaf with the other searcher). Where a leaf's view is
-- wanted it is searched with view:search. add and remove record the path
-- (pp, pi: a call per level) only when a split or a rebalance needs it,
-- descending again to the same leaf. Slotted nodes are searched with
-- view:bsearch_slots when no key of the node overflows (flag clear), else
-- in Lua, comparing overflowed keys through their runs.
--
-- Views. The tree keeps the views of the internal nodes it changes in a
-- weak table, and one view that it moves from leaf to leaf with
-- view:retarget (a large tree has more leaves than the table would keep
-- between two collections). So an operation seldom acquires a view, and
-- the tree holds none of its own between operations: the collector
-- releases them (bf:close() collects garbage first; they may show in
-- bf:live_views() until then). Iterators hold no view between steps.
--
-- Crash safety is the BlockFile's: every store goes through its journal,
-- so a process killed in the middle of an operation (a split, say) leaves
-- the file as its last commit left it (bf:flush(), bf:commit(), close),
-- and bf:begin() ... bf:commit() makes several operations one.
--
-- Search in one call. get, add, put and remove on fixed nodes are each
-- one engine call when no split or rebalance follows: the searcher made
-- with the key size (t._search_key) returns nil for a key of another type
-- or size, and v:descend_insert / v:descend_put / v:descend_remove do the
-- descent, the leaf's change and the count in the meta block at once; the
-- Lua side raises its own error when they return nil.
local fmap = require "fmap"
local kit = require "fmap.kit"
local mark   -- fmap.profile's operation mark while a profile runs, else nil
kit.watch(function (f) mark = f end)
local guard, argcheck = kit.guard, kit.argcheck
local enter, argerror, typeerror = kit.enter, kit.argerror, kit.typeerror

local M = {}
local Tree = {}
Tree.__index = Tree
Tree.__name = "B+tree"   -- what errors and help call it

local pack, unpack = string.pack, string.unpack
local srep, sformat = string.rep, string.format
local type, mtype, setmetatable, getmetatable = type, math.type,
  setmetatable, getmetatable
local error, pcall, tostring = error, pcall, tostring

local VM = kit.view_methods   -- called as plain functions: no lookup
local u8, u32, u64 = VM.u8, VM.u32, VM.u64
local set_u8, set_u32, set_u64 = VM.set_u8, VM.set_u32, VM.set_u64
local vread, vwrite, vcopy = VM.read, VM.write, VM.copy
local vcompare, vbsearch, vunpack = VM.compare, VM.bsearch, VM.unpack
local vpack, vretarget = VM.pack, VM.retarget
local vbsearch_slots = VM.bsearch_slots
local vsearch = VM.search
local vput_key = VM.put_key
local vdescend_insert, vdescend_remove = VM.descend_insert, VM.descend_remove
local vdescend_put = VM.descend_put

-- Constants (<const>: the compiler folds them into the instructions that
-- use them, where a plain local is an upvalue fetched at each use).
local MAGIC <const> = "fmapBPTR"
local VERSION <const> = 1
local FIXED <const>, SLOTTED <const> = 1, 2
local LEAF <const>, INTERNAL <const> = 1, 2
local OVF <const> = 0x80000000  -- a field's length with this bit: overflow
local CTL_PREFIX <const> = "bptree@"

-- Meta block fields (magic, version, layout and sizes are read and written
-- with one pack format at 0).
local META_FMT <const> = "<c8I4I4i8i8"
local M_ROOT <const>, M_HEIGHT <const>, M_SIZE <const> = 32, 40, 48
-- Node header fields.
local N_KIND <const>, N_FLAGS <const>, N_COUNT <const> = 0, 1, 4
local L_PREV <const>, L_NEXT <const> = 8, 16
-- Fixed layout.
local FL_ENT <const> = 24       -- leaf entries
local FI_C0 <const>, FI_ENT <const> = 8, 16   -- internal: C[0], entries
-- Slotted layout.
local SL_LO <const>, SL_DEAD <const>, SL_SLOTS <const> = 24, 28, 32
local SI_LO <const>, SI_DEAD <const>, SI_C0 <const>, SI_SLOTS <const> =
  8, 12, 16, 24

--- The on-disk layout's constants, as the table at the top of this file
-- gives them, for code that reads trees without the tree's own
-- (`fmap.classify.bptree`, `fmap.dot`): `MAGIC`, `VERSION`, `META_FMT`
-- (the pack format of the meta block's first fields: magic, version,
-- node layout, key and value sizes), `FIXED` and `SLOTTED` (node
-- layouts), `LEAF` and `INTERNAL` (node kinds), `OVF` (the overflow bit
-- of a field's length), `CTL_PREFIX` (of the control data); field
-- offsets: `M_` in the meta block, `N_` in every node's header, `L_` in
-- a leaf's, `FL_`/`FI_` in fixed leaves and internal nodes, `SL_`/`SI_`
-- in slotted ones.
M.layout = {
  MAGIC = MAGIC, VERSION = VERSION, META_FMT = META_FMT,
  FIXED = FIXED, SLOTTED = SLOTTED, LEAF = LEAF, INTERNAL = INTERNAL,
  OVF = OVF, CTL_PREFIX = CTL_PREFIX,
  M_ROOT = M_ROOT, M_HEIGHT = M_HEIGHT, M_SIZE = M_SIZE,
  N_KIND = N_KIND, N_FLAGS = N_FLAGS, N_COUNT = N_COUNT,
  L_PREV = L_PREV, L_NEXT = L_NEXT,
  FL_ENT = FL_ENT, FI_C0 = FI_C0, FI_ENT = FI_ENT,
  SL_LO = SL_LO, SL_DEAD = SL_DEAD, SL_SLOTS = SL_SLOTS,
  SI_LO = SI_LO, SI_DEAD = SI_DEAD, SI_C0 = SI_C0, SI_SLOTS = SI_SLOTS,
}

local MODIFIED <const> = "B+tree modified during iteration"

-- What v:put_key did (see node.c): the statuses it returns.
local PUT_INSERTED <const>, PUT_REPLACED <const>, PUT_FULL <const> = 0, 1, 2
local PUT_SEVERAL <const>, PUT_EDGE_FOUND <const>, PUT_EDGE_NEW <const> =
  3, 4, 5

-- registry[bf][meta offset] = the tree: opening a tree twice gives the
-- same object, so its cached state is never stale.
local registry = setmetatable({}, { __mode = "k" })

---------------------------------------------------------------------------
-- Views, blocks and runs
---------------------------------------------------------------------------

-- The view of a node (or of blocks blocks from off): from the weak
-- cache, or acquired and cached.
local function node (t, off, blocks)
  local views = t.views
  local v = views[off]
  if v == nil then
    v = t.bf:get(off, blocks)
    views[off] = v
  end
  return v
end

-- The view of a leaf on a hot path: the tree keeps one view (weakly, as
-- the cache) and moves it from leaf to leaf with retarget, since a large
-- tree has more leaves than the cache keeps between two collections. The
-- view is only good until the next leaf_view call: code that calls back
-- into user code must fetch it again.
local function leaf_view (t, off)
  local sv = t.sv
  local v = sv[1]
  if v == nil then
    v = t.bf:get(off)
    sv[1] = v
  elseif t.sv_off ~= off then
    vretarget(v, off)
  end
  t.sv_off = off
  return v
end

-- Counts one more leaf of a walk along the leaf links and returns the
-- count: raises once a walk has visited more leaves than the file has
-- blocks, for the links of a damaged tree that go round in a circle would
-- make it endless. The file's block count is looked at again only when
-- the count passes t.chain_limit, its value last time (the file may have
-- grown since).
local function walk_step (t, visited)
  visited = visited + 1
  if visited > t.chain_limit then
    local limit = t.bf:size() // t.bs
    t.chain_limit = limit
    if visited > limit then
      error(sformat("B+tree at %d is corrupt: its leaf links go round in a "
                    .. "circle (%d leaves visited, the file has %d blocks)",
                    t.meta, visited, limit), 0)
    end
  end
  return visited
end

-- The entry count of the fixed leaf at off, seen through v: raises if it
-- is more than a leaf holds, for an iterator reads the entries straight
-- from the file, past the leaf's block if the count says so.
local function leaf_count (t, v, off)
  local n = u32(v, N_COUNT)
  if n > t.LCAP then
    error(sformat("B+tree at %d is corrupt: the leaf at %d counts %d "
                  .. "entries, and holds at most %d", t.meta, off, n, t.LCAP),
          0)
  end
  return n
end

-- The view of an overflow run of len bytes.
local function run_view (t, off, len)
  return node(t, off, (len + t.bs - 1) // t.bs)
end

-- Writes s to a new run; returns its offset, or nil, message, errno.
local function write_run (t, s)
  local bs = t.bs
  local off, err, en = t.bf:allocate_blocks((#s + bs - 1) // bs)
  if not off then return nil, err, en end
  vwrite(run_view(t, off, #s), 0, s)
  return off
end

local function free_run (t, off, len)
  local bs = t.bs
  t.views[off] = nil
  t.bf:free(off, (len + bs - 1) // bs)
end

local function free_node (t, off)
  t.views[off] = nil
  -- the free retires the leaf view; so does one of any block while the
  -- view's block is not known (a descent that moved it raised)
  if t.sv_off == off or t.sv_off == nil then
    t.sv[1], t.sv_off = nil, nil
  end
  t.bf:free(off)
end

-- Blocks reserved before a change that may split nodes, so that a full
-- disk fails the operation before anything is changed.
local function reserve (t, need)
  local spare = t.spare
  while #spare < need do
    local off, err, en = t.bf:allocate()
    if not off then return nil, err, en end
    spare[#spare + 1] = off
  end
  return true
end

local function release_spare (t)
  local spare = t.spare
  for i = #spare, 1, -1 do
    t.bf:free(spare[i])
    spare[i] = nil
  end
end

local function alloc (t)
  local spare = t.spare
  local n = #spare
  if n > 0 then
    local off = spare[n]
    spare[n] = nil
    return off
  end
  local off, err = t.bf:allocate()
  if not off then error(err, 0) end
  return off
end

local function init_leaf (t, off)
  local v = node(t, off)
  VM.fill(v, 0, 0, 32)
  set_u8(v, N_KIND, LEAF)
  if not t.fixed then set_u32(v, SL_LO, t.bs) end
  return v
end

local function init_internal (t, off)
  local v = node(t, off)
  VM.fill(v, 0, 0, 24)
  set_u8(v, N_KIND, INTERNAL)
  if t.fixed then VM.fill(v, 0xFF, FI_ENT, t.ICAP * t.IS)
  else set_u32(v, SI_LO, t.bs) end
  return v
end

local function save_root (t)
  local mv = node(t, t.meta)
  set_u64(mv, M_ROOT, t.root)
  set_u64(mv, M_HEIGHT, t.height)
end

---------------------------------------------------------------------------
-- Slotted fields and cells
---------------------------------------------------------------------------

-- Bytes of the field at pos.
local function field_size (v, pos)
  local f = u32(v, pos)
  return f < OVF and 4 + f or 12
end

-- The bytes of the field at pos.
local function field_read (t, v, pos)
  local f = u32(v, pos)
  if f < OVF then return vread(v, pos + 4, f) end
  local len = f - OVF
  return vread(run_view(t, u64(v, pos + 4), len), 0, len)
end

-- Frees the run of the field at pos, if it has one.
local function field_free (t, v, pos)
  local f = u32(v, pos)
  if f >= OVF then free_run(t, u64(v, pos + 4), f - OVF) end
end

-- Compares the key field at pos with key, as memcmp then length.
local function field_cmp (t, v, pos, key)
  local f, kl = u32(v, pos), #key
  local src, at, len = v, pos + 4, f
  if f >= OVF then
    len = f - OVF
    src, at = run_view(t, u64(v, pos + 4), len), 0
  end
  local c = vcompare(src, at, key, 0, len < kl and len or kl)
  if c ~= 0 then return c end
  return len < kl and -1 or (len > kl and 1 or 0)
end

-- Binary search of the cells whose positions are in slots stride bytes
-- apart from base: the first index >= key (> key with upper), and whether
-- one equals key. A node whose flag says no key overflows is searched in
-- one call (flag: the node's flags byte, read here when not given).
local function slot_search (t, v, base, stride, n, key, upper, flag)
  if (flag or u8(v, N_FLAGS)) & 1 == 0 then
    return vbsearch_slots(v, base, n, stride, key, upper)
  end
  local lo, hi, found = 0, n, false
  while lo < hi do
    local mid = (lo + hi) // 2
    local c = field_cmp(t, v, u32(v, base + mid * stride), key)
    if c == 0 then found = true end
    if c < 0 or (upper and c == 0) then lo = mid + 1 else hi = mid end
  end
  return lo, found
end

-- Encodes s as a field: inline, or else in a new run (nil, message,
-- errno if the run cannot be allocated).
local function make_field (t, s, inline)
  if inline then return pack("<s4", s) end
  local run, err, en = write_run(t, s)
  if not run then return nil, err, en end
  return pack("<I4I8", OVF + #s, run)
end

-- Frees the runs of a cell string made by make_cell or sep_token.
local function free_cell_runs (t, cell, leaf)
  local f = unpack("<I4", cell)
  local vpos = 1
  if f >= OVF then
    free_run(t, unpack("<I8", cell, 5), f - OVF)
    vpos = 13
  else
    vpos = 5 + f
  end
  if leaf then
    f = unpack("<I4", cell, vpos)
    if f >= OVF then free_run(t, unpack("<I8", cell, vpos + 4), f - OVF) end
  end
end

-- The leaf cell of a new entry; nil, message, errno if a run cannot be
-- allocated (nothing is left allocated then).
local function make_cell (t, key, value)
  local kl, vl, max = #key, #value, t.lmax
  local kin, vin
  if 8 + kl + vl <= max then kin, vin = true, true
  elseif 16 + kl <= max then kin, vin = true, false
  else kin, vin = false, 16 + vl <= max end
  local kf, err, en = make_field(t, key, kin)
  if not kf then return nil, err, en end
  local vf
  vf, err, en = make_field(t, value, vin)
  if not vf then
    if not kin then free_cell_runs(t, kf, false) end
    return nil, err, en
  end
  return kf .. vf
end

-- Compacts the heap of a slotted node: live cells packed at the end.
local function compact (t, v, n, leaf)
  local slots, stride = SI_SLOTS, 12
  if leaf then slots, stride = SL_SLOTS, 4 end
  local cells = {}
  for i = 0, n - 1 do
    local cell = u32(v, slots + stride * i)
    local size = field_size(v, cell)
    if leaf then size = size + field_size(v, cell + size) end
    cells[i + 1] = vread(v, cell, size)
  end
  local lo, flag = t.bs, 0
  for i = 1, n do
    local c = cells[i]
    lo = lo - #c
    vwrite(v, lo, c)
    set_u32(v, slots + stride * (i - 1), lo)
    if u32(v, lo) >= OVF then flag = 1 end
  end
  if leaf then
    set_u32(v, SL_LO, lo)
    set_u32(v, SL_DEAD, 0)
  else
    set_u32(v, SI_LO, lo)
    set_u32(v, SI_DEAD, 0)
  end
  set_u8(v, N_FLAGS, flag)
end

-- The shortest s with a <= s <= b (a <= b): a separator that keeps
-- internal nodes small when keys are long.
local function shortest_between (a, b)
  local n = #a < #b and #a or #b
  local i = 1
  while i + 63 <= n and a:sub(i, i + 63) == b:sub(i, i + 63) do
    i = i + 64
  end
  while i <= n and a:byte(i) == b:byte(i) do i = i + 1 end
  if i > n then return a end        -- a is a prefix of b
  return b:sub(1, i)
end

---------------------------------------------------------------------------
-- Node operations, for both layouts
---------------------------------------------------------------------------

local function lsearch (t, v, n, key, upper)
  if t.fixed then return vbsearch(v, FL_ENT, n, t.LS, key, upper) end
  return slot_search(t, v, SL_SLOTS, 4, n, key, upper)
end

local function isearch (t, v, n, key, upper)
  if t.fixed then return vbsearch(v, FI_ENT, n, t.IS, key, upper) end
  return slot_search(t, v, SI_SLOTS, 12, n, key, upper)
end

local function ichild (t, v, j)
  if t.fixed then return u64(v, FI_C0 + j * t.IS) end
  return u64(v, SI_C0 + 12 * j)
end

local function iset_child (t, v, j, off)
  if t.fixed then set_u64(v, FI_C0 + j * t.IS, off)
  else set_u64(v, SI_C0 + 12 * j, off) end
end

local function lkey (t, v, i)
  if t.fixed then return vread(v, FL_ENT + i * t.LS, t.ks) end
  return field_read(t, v, u32(v, SL_SLOTS + 4 * i))
end

local function lvalue (t, v, i)
  if t.fixed then return vread(v, FL_ENT + i * t.LS + t.ks, t.vs) end
  local cell = u32(v, SL_SLOTS + 4 * i)
  return field_read(t, v, cell + field_size(v, cell))
end

-- Compares the key of leaf entry i with key.
local function lcmp (t, v, i, key)
  if t.fixed then return vcompare(v, FL_ENT + i * t.LS, key) end
  return field_cmp(t, v, u32(v, SL_SLOTS + 4 * i), key)
end

local function ikey (t, v, i)
  if t.fixed then return vread(v, FI_ENT + i * t.IS, t.ks) end
  return field_read(t, v, u32(v, SI_SLOTS + 12 * i))
end

-- Separator i as a token that can be inserted elsewhere (it carries the
-- separator's run, if any: the token moves, it is not a copy).
local function itoken (t, v, i)
  if t.fixed then return vread(v, FI_ENT + i * t.IS, t.ks) end
  local cell = u32(v, SI_SLOTS + 12 * i)
  return vread(v, cell, field_size(v, cell))
end

local function token_size (t, token)
  return t.fixed and t.IS or 12 + #token
end

-- Bytes entry i of a leaf takes, its slot included.
local function lesize (t, v, i)
  if t.fixed then return t.LS end
  local cell = u32(v, SL_SLOTS + 4 * i)
  local ksz = field_size(v, cell)
  return 4 + ksz + field_size(v, cell + ksz)
end

local function lused (t, v, n)
  if t.fixed then return n * t.LS end
  return 4 * n + t.bs - u32(v, SL_LO) - u32(v, SL_DEAD)
end

local function iesize (t, v, i)
  if t.fixed then return t.IS end
  return 12 + field_size(v, u32(v, SI_SLOTS + 12 * i))
end

local function iused (t, v, n)
  if t.fixed then return n * t.IS end
  return 12 * n + t.bs - u32(v, SI_LO) - u32(v, SI_DEAD)
end

-- Writes cell into the heap of a slotted node of n entries (a leaf, or
-- internal), compacting the heap first if the cell and its slot lack
-- room, and sets the flag if its key overflows. Returns its position;
-- the caller makes its slot.
local function heap_add (t, v, n, leaf, cell)
  local LO, SLOTS, w = SL_LO, SL_SLOTS, 4
  if not leaf then LO, SLOTS, w = SI_LO, SI_SLOTS, 12 end
  local csz = #cell
  local lo = u32(v, LO)
  if lo - (SLOTS + w * n) < w + csz then
    compact(t, v, n, leaf)
    lo = u32(v, LO)
  end
  lo = lo - csz
  vwrite(v, lo, cell)
  set_u32(v, LO, lo)
  if u32(v, lo) >= OVF then set_u8(v, N_FLAGS, 1) end
  return lo
end

-- Inserts an entry at i of a leaf with n entries and room for it: a key
-- and a value (fixed), or a cell (slotted).
local function linsert (t, v, n, i, a, b)
  if t.fixed then
    local LS = t.LS
    local pos = FL_ENT + i * LS
    if i < n then vcopy(v, pos + LS, v, pos, (n - i) * LS) end
    vpack(v, pos, t.entry_fmt, a, b)
  else
    local lo = heap_add(t, v, n, true, a)
    local pos = SL_SLOTS + 4 * i
    if i < n then vcopy(v, pos + 4, v, pos, 4 * (n - i)) end
    set_u32(v, pos, lo)
  end
  set_u32(v, N_COUNT, n + 1)
end

-- Deletes cnt entries from i of a leaf with n entries, freeing their runs
-- unless keep (the cells were read to go back in, or elsewhere).
local function ldelete (t, v, n, i, cnt, keep)
  if t.fixed then
    local LS = t.LS
    local pos = FL_ENT + i * LS
    if i + cnt < n then
      vcopy(v, pos, v, pos + cnt * LS, (n - i - cnt) * LS)
    end
  else
    local dead = u32(v, SL_DEAD)
    for j = i, i + cnt - 1 do
      local cell = u32(v, SL_SLOTS + 4 * j)
      local ksz = field_size(v, cell)
      if not keep then
        field_free(t, v, cell)
        field_free(t, v, cell + ksz)
      end
      dead = dead + ksz + field_size(v, cell + ksz)
    end
    if n == cnt then
      set_u32(v, SL_LO, t.bs)
      dead = 0
    elseif i + cnt < n then
      vcopy(v, SL_SLOTS + 4 * i, v, SL_SLOTS + 4 * (i + cnt),
            4 * (n - i - cnt))
    end
    set_u32(v, SL_DEAD, dead)
  end
  set_u32(v, N_COUNT, n - cnt)
end

-- Moves cnt entries from i of src (sn entries) to position at of dst (dn
-- entries), which has room for them. Runs move with their entries.
local function lmove (t, src, sn, i, cnt, dst, dn, at)
  if cnt == 0 then return end
  if t.fixed then
    local LS = t.LS
    if at < dn then
      vcopy(dst, FL_ENT + (at + cnt) * LS, dst, FL_ENT + at * LS,
            (dn - at) * LS)
    end
    vcopy(dst, FL_ENT + at * LS, src, FL_ENT + i * LS, cnt * LS)
    if i + cnt < sn then
      vcopy(src, FL_ENT + i * LS, src, FL_ENT + (i + cnt) * LS,
            (sn - i - cnt) * LS)
    end
  else
    local need = 0
    for j = i, i + cnt - 1 do need = need + lesize(t, src, j) end
    local lo = u32(dst, SL_LO)
    if lo - (SL_SLOTS + 4 * dn) < need then
      compact(t, dst, dn, true)
      lo = u32(dst, SL_LO)
    end
    if at < dn then
      vcopy(dst, SL_SLOTS + 4 * (at + cnt), dst, SL_SLOTS + 4 * at,
            4 * (dn - at))
    end
    local flag, moved = u8(dst, N_FLAGS), 0
    for j = 0, cnt - 1 do
      local cell = u32(src, SL_SLOTS + 4 * (i + j))
      local ksz = field_size(src, cell)
      local size = ksz + field_size(src, cell + ksz)
      lo = lo - size
      vcopy(dst, lo, src, cell, size)
      set_u32(dst, SL_SLOTS + 4 * (at + j), lo)
      if u32(src, cell) >= OVF then flag = 1 end
      moved = moved + size
    end
    set_u32(dst, SL_LO, lo)
    set_u8(dst, N_FLAGS, flag)
    if sn == cnt then
      set_u32(src, SL_LO, t.bs)
      set_u32(src, SL_DEAD, 0)
    else
      set_u32(src, SL_DEAD, u32(src, SL_DEAD) + moved)
      if i + cnt < sn then
        vcopy(src, SL_SLOTS + 4 * i, src, SL_SLOTS + 4 * (i + cnt),
              4 * (sn - i - cnt))
      end
    end
  end
  set_u32(dst, N_COUNT, dn + cnt)
  set_u32(src, N_COUNT, sn - cnt)
end

-- Inserts separator token at i of an internal node with n separators and
-- room for it, with child as C[i+1].
local function iinsert (t, v, n, i, token, child)
  if t.fixed then
    local IS = t.IS
    local pos = FI_ENT + i * IS
    if i < n then vcopy(v, pos + IS, v, pos, (n - i) * IS) end
    vwrite(v, pos, token)
    set_u64(v, pos + t.ks, child)
  else
    local lo = heap_add(t, v, n, false, token)
    local pos = SI_SLOTS + 12 * i
    if i < n then vcopy(v, pos + 12, v, pos, 12 * (n - i)) end
    set_u32(v, pos, lo)
    set_u64(v, pos + 4, child)
  end
  set_u32(v, N_COUNT, n + 1)
end

-- Deletes separator i and child C[i+1]; frees the separator's run unless
-- keep (its token was taken to go elsewhere).
local function idelete (t, v, n, i, keep)
  if t.fixed then
    local IS = t.IS
    local pos = FI_ENT + i * IS
    if i + 1 < n then vcopy(v, pos, v, pos + IS, (n - i - 1) * IS) end
    VM.fill(v, 0xFF, FI_ENT + (n - 1) * IS, IS)
  else
    local pos = SI_SLOTS + 12 * i
    local cell = u32(v, pos)
    if not keep then field_free(t, v, cell) end
    if n == 1 then
      set_u32(v, SI_LO, t.bs)
      set_u32(v, SI_DEAD, 0)
    else
      set_u32(v, SI_DEAD, u32(v, SI_DEAD) + field_size(v, cell))
      if i + 1 < n then vcopy(v, pos, v, pos + 12, 12 * (n - i - 1)) end
    end
  end
  set_u32(v, N_COUNT, n - 1)
end

-- Appends separators [i, sn) of src with their right children to dst
-- (dn separators), which has room; src keeps i separators.
local function imove (t, src, sn, i, dst, dn)
  local cnt = sn - i
  if cnt > 0 then
    if t.fixed then
      local IS = t.IS
      vcopy(dst, FI_ENT + dn * IS, src, FI_ENT + i * IS, cnt * IS)
      VM.fill(src, 0xFF, FI_ENT + i * IS, cnt * IS)
    else
      local need = 0
      for j = i, sn - 1 do need = need + iesize(t, src, j) end
      local lo = u32(dst, SI_LO)
      if lo - (SI_SLOTS + 12 * dn) < need then
        compact(t, dst, dn, false)
        lo = u32(dst, SI_LO)
      end
      local flag, moved = u8(dst, N_FLAGS), 0
      for j = 0, cnt - 1 do
        local sp = SI_SLOTS + 12 * (i + j)
        local cell = u32(src, sp)
        local size = field_size(src, cell)
        lo = lo - size
        vcopy(dst, lo, src, cell, size)
        local dp = SI_SLOTS + 12 * (dn + j)
        set_u32(dst, dp, lo)
        set_u64(dst, dp + 4, u64(src, sp + 4))
        if u32(src, cell) >= OVF then flag = 1 end
        moved = moved + size
      end
      set_u32(dst, SI_LO, lo)
      set_u8(dst, N_FLAGS, flag)
      if i == 0 then
        set_u32(src, SI_LO, t.bs)
        set_u32(src, SI_DEAD, 0)
      else
        set_u32(src, SI_DEAD, u32(src, SI_DEAD) + moved)
      end
    end
  end
  set_u32(dst, N_COUNT, dn + cnt)
  set_u32(src, N_COUNT, i)
end

---------------------------------------------------------------------------
-- Descents
---------------------------------------------------------------------------

-- The leaf where key's first entry is or would be, its count, that
-- position, the leaf's offset and whether the entry there is key's;
-- records nothing (readers must not disturb a writer's path).
local function lower_leaf (t, key)
  local off = t.root
  local search_child = t._search_child
  if search_child then
    local h = t.height
    if h > 1 then
      local _, _, c = search_child(off, key, false, h - 1)
      off = c
    end
    local v = leaf_view(t, off)
    local i, found, _, n = vsearch(v, N_COUNT, FL_ENT, t.LS, key)
    return v, n, i, off, found
  end
  for _ = t.height, 2, -1 do
    local v = node(t, off)
    local x = u64(v, 0)               -- kind, flags and count at once
    off = u64(v, SI_C0 + 12 * slot_search(t, v, SI_SLOTS, 12, x >> 32, key,
                                          false, x >> 8))
  end
  local v = leaf_view(t, off)
  local x = u64(v, 0)
  local n = x >> 32
  local i, found = slot_search(t, v, SL_SLOTS, 4, n, key, false, x >> 8)
  return v, n, i, off, found
end

-- The leaf after key's last entry (upper) and the position after it.
local function upper_leaf (t, key)
  local off = t.root
  for _ = t.height, 2, -1 do
    local v = node(t, off)
    off = ichild(t, v, isearch(t, v, u32(v, N_COUNT), key, true))
  end
  local v = leaf_view(t, off)
  local n = u32(v, N_COUNT)
  return v, off, n, (lsearch(t, v, n, key, true))
end

-- The first (or last) leaf.
local function edge_leaf (t, last)
  local off = t.root
  for _ = t.height, 2, -1 do
    local v = node(t, off)
    off = ichild(t, v, last and u32(v, N_COUNT) or 0)
  end
  return off
end

-- Descends to key's leaf, recording the path for a change: pp[lvl] is the
-- node at level lvl, pi[lvl] the child taken there. Returns the leaf's
-- view.
local function descend (t, key, upper)
  local pp, pi = t.pp, t.pi
  local off = t.root
  local search_child = t._search_child
  if search_child then
    for lvl = t.height, 2, -1 do
      local i, _, c = search_child(off, key, upper)
      pp[lvl], pi[lvl] = off, i
      off = c
    end
  else
    for lvl = t.height, 2, -1 do
      local v = node(t, off)
      local x = u64(v, 0)
      local n = x >> 32
      local i = slot_search(t, v, SI_SLOTS, 12, n, key, upper, x >> 8)
      pp[lvl], pi[lvl] = off, i
      off = u64(v, SI_C0 + 12 * i)
    end
  end
  pp[1] = off
  return leaf_view(t, off)
end

-- The path to key's leaf again, for a change that wants it: descend()
-- with a check that it reached off, the leaf of the descent just made
-- (only a damaged tree, a leaf that is also a node above it, leads
-- elsewhere, and a rebalance there would spread the damage).
local function path_to (t, key, upper, off)
  descend(t, key, upper)
  if t.pp[1] ~= off then
    error(sformat("B+tree at %d is corrupt: two descents to one key "
                  .. "reached the leaves at %d and %d", t.meta, off,
                  t.pp[1]), 0)
  end
end

-- Moves the recorded path to the next leaf; false at the last one.
local function path_next (t)
  local pp, pi = t.pp, t.pi
  local h, lvl = t.height, 2
  while lvl <= h and pi[lvl] >= u32(node(t, pp[lvl]), N_COUNT) do
    lvl = lvl + 1
  end
  if lvl > h then return false end
  local v = node(t, pp[lvl])
  pi[lvl] = pi[lvl] + 1
  local off = ichild(t, v, pi[lvl])
  for l = lvl - 1, 2, -1 do
    pp[l], pi[l] = off, 0
    off = ichild(t, node(t, off), 0)
  end
  pp[1] = off
  return true
end

-- Whether the node at level lvl of the path is the last of its level.
local function path_edge (t, lvl)
  local pp, pi = t.pp, t.pi
  for l = lvl + 1, t.height do
    if pi[l] ~= u32(node(t, pp[l]), N_COUNT) then return false end
  end
  return true
end

---------------------------------------------------------------------------
-- Growing: splits
---------------------------------------------------------------------------

-- Blocks a change at level lvl may need: one per full node from there up,
-- and a new root if they all are.
local function splits_needed (t, lvl)
  local pp, need = t.pp, 0
  for l = lvl, t.height do
    local v = node(t, pp[l])
    if iused(t, v, u32(v, N_COUNT)) + t.imaxentry <= t.icapb then
      return need
    end
    need = need + 1
  end
  return need + 1
end

-- A separator token for a boundary between keys a (left) and b (right);
-- nil, message, errno if its run cannot be allocated.
local function sep_token (t, a, b)
  if t.fixed then return b end
  local s = shortest_between(a, b)
  return make_field(t, s, 4 + #s <= t.imax)
end

-- Where a full internal node with n separators splits, the new token
-- going in at i: the index in the n + 1 separators of the one going up.
local function internal_split_point (t, v, n, i, tsz, edge)
  if edge and i == n then return n - 1 end
  if t.fixed then return (n + 1) // 2 end
  local total = iused(t, v, n) + tsz
  local half, acc = total // 2, 0
  for j = 0, n do
    local s
    if j < i then s = iesize(t, v, j)
    elseif j == i then s = tsz
    else s = iesize(t, v, j - 1) end
    if acc + s > half then
      if j < 1 then return 1 elseif j > n - 1 then return n - 1 end
      return j
    end
    acc = acc + s
  end
  return n - 1
end

-- Inserts token with its right child at level lvl, at pi[lvl] of the node
-- on the path, splitting upwards as needed (blocks come from reserve).
local function insert_up (t, lvl, token, child)
  local pp, pi = t.pp, t.pi
  while true do
    if lvl > t.height then
      local roff = alloc(t)
      local rv = init_internal(t, roff)
      iset_child(t, rv, 0, t.root)
      iinsert(t, rv, 0, 0, token, child)
      t.root, t.height = roff, lvl
      save_root(t)
      return
    end
    local v = node(t, pp[lvl])
    local n, i = u32(v, N_COUNT), pi[lvl]
    local tsz = token_size(t, token)
    if iused(t, v, n) + tsz <= t.icapb then
      iinsert(t, v, n, i, token, child)
      return
    end
    local m = internal_split_point(t, v, n, i, tsz, i == n and
                                   path_edge(t, lvl))
    local roff = alloc(t)
    local rv = init_internal(t, roff)
    local up
    if i < m then
      up = itoken(t, v, m - 1)
      iset_child(t, rv, 0, ichild(t, v, m))
      imove(t, v, n, m, rv, 0)
      idelete(t, v, m, m - 1, true)
      iinsert(t, v, m - 1, i, token, child)
    elseif i == m then
      up = token
      iset_child(t, rv, 0, child)
      imove(t, v, n, m, rv, 0)
    else
      up = itoken(t, v, m)
      iset_child(t, rv, 0, ichild(t, v, m + 1))
      imove(t, v, n, m + 1, rv, 0)
      idelete(t, v, m + 1, m, true)
      iinsert(t, rv, n - m - 1, i - m - 1, token, child)
    end
    token, child, lvl = up, roff, lvl + 1
  end
end

-- The key of entry j of a leaf's entries with key inserted at i.
local function comb_key (t, v, i, key, j)
  if j < i then return lkey(t, v, j) end
  if j == i then return key end
  return lkey(t, v, j - 1)
end

-- Where a full leaf of n entries splits when an entry of esize bytes goes
-- in at i: how many of the n + 1 entries stay on the left.
local function leaf_split_point (t, v, n, i, esize)
  if i == n and u64(v, L_NEXT) == 0 then return n end
  if t.fixed then return (n + 1) // 2 end
  local total = lused(t, v, n) + esize
  local half, acc = total // 2, 0
  for j = 0, n do
    local s
    if j < i then s = lesize(t, v, j)
    elseif j == i then s = esize
    else s = lesize(t, v, j - 1) end
    if acc + s > half then
      local m = (half - acc < acc + s - half) and j or j + 1
      if m < 1 then return 1 elseif m > n then return n end
      return m
    end
    acc = acc + s
  end
  return n
end

-- Splits the full leaf v (n entries, on the path) to insert an entry at i
-- (a, b: key and value, or a cell). Returns true, or nil, message, errno
-- with nothing changed.
local function split_leaf (t, v, n, i, key, a, b, esize)
  local m = leaf_split_point(t, v, n, i, esize)
  local token, err, en
  if t.fixed then
    token = comb_key(t, v, i, key, m)
  else
    token, err, en = sep_token(t, comb_key(t, v, i, key, m - 1),
                               comb_key(t, v, i, key, m))
    if not token then return nil, err, en end
  end
  local ok
  ok, err, en = reserve(t, 1 + splits_needed(t, 2))
  if not ok then
    release_spare(t)
    if not t.fixed then free_cell_runs(t, token, false) end
    return nil, err, en
  end
  local loff = t.pp[1]
  local roff = alloc(t)
  local rv = init_leaf(t, roff)
  local nx = u64(v, L_NEXT)
  set_u64(rv, L_PREV, loff)
  set_u64(rv, L_NEXT, nx)
  if nx ~= 0 then set_u64(node(t, nx), L_PREV, roff) end
  set_u64(v, L_NEXT, roff)
  if i < m then
    lmove(t, v, n, m - 1, n - m + 1, rv, 0, 0)
    linsert(t, v, m - 1, i, a, b)
  else
    lmove(t, v, n, m, n - m, rv, 0, 0)
    linsert(t, rv, n - m, i - m, a, b)
  end
  insert_up(t, 2, token, roff)
  release_spare(t)
  return true
end

---------------------------------------------------------------------------
-- Shrinking: merges and moves
---------------------------------------------------------------------------

-- Replaces separator k of the node at level lvl (on the path) with token;
-- the old one's run is freed unless keep. May split upwards.
local function replace_sep (t, lvl, k, token, child, keep)
  local v = node(t, t.pp[lvl])
  if t.fixed then
    vwrite(v, FI_ENT + k * t.IS, token)
    return
  end
  idelete(t, v, u32(v, N_COUNT), k, keep)
  t.pi[lvl] = k
  insert_up(t, lvl, token, child)
end

-- Moves entries between leaves lv (left) and rv (right), under a quarter
-- full and too full to merge, to even them out.
local function rebalance_leaves (t, lvl, k, lv, ln, rv, rn, roff)
  local lu, ru = lused(t, lv, ln), lused(t, rv, rn)
  local c, moved = 0, 0
  local a, b
  if lu < ru then
    while c < rn - 1 and lu + moved < ru - moved do
      moved = moved + lesize(t, rv, c)
      c = c + 1
    end
    if c == 0 then return end
    a, b = lkey(t, rv, c - 1), lkey(t, rv, c)
  else
    while c < ln - 1 and ru + moved < lu - moved do
      moved = moved + lesize(t, lv, ln - 1 - c)
      c = c + 1
    end
    if c == 0 then return end
    a, b = lkey(t, lv, ln - c - 1), lkey(t, lv, ln - c)
  end
  local token, err = sep_token(t, a, b)
  if not token then return end              -- no room for a run: stay
  local ok = true
  if not t.fixed then ok, err = reserve(t, splits_needed(t, lvl + 1)) end
  if not ok then
    release_spare(t)
    free_cell_runs(t, token, false)
    return
  end
  if lu < ru then lmove(t, rv, rn, 0, c, lv, ln, ln)
  else lmove(t, lv, ln, ln - c, c, rv, rn, 0) end
  replace_sep(t, lvl + 1, k, token, roff, false)
  release_spare(t)
end

-- Moves separators through the parent between internal nodes lv and rv,
-- under a quarter full and too full to merge, to even them out.
local function rebalance_internal (t, lvl, k, pv, lv, ln, rv, rn, roff)
  if not t.fixed then
    local ok, err = reserve(t, splits_needed(t, lvl + 1))
    if not ok then
      release_spare(t)
      error(err, 0)
    end
  end
  local p = itoken(t, pv, k)
  local cap = t.icapb
  local lu, ru = iused(t, lv, ln), iused(t, rv, rn)
  if lu < ru then
    while rn > 1 and lu < ru and lu + token_size(t, p) <= cap do
      iinsert(t, lv, ln, ln, p, ichild(t, rv, 0))
      ln = ln + 1
      p = itoken(t, rv, 0)
      local c1 = ichild(t, rv, 1)
      idelete(t, rv, rn, 0, true)
      rn = rn - 1
      iset_child(t, rv, 0, c1)
      lu, ru = iused(t, lv, ln), iused(t, rv, rn)
    end
  else
    while ln > 1 and ru < lu and ru + token_size(t, p) <= cap do
      iinsert(t, rv, rn, 0, p, ichild(t, rv, 0))
      rn = rn + 1
      iset_child(t, rv, 0, ichild(t, lv, ln))
      p = itoken(t, lv, ln - 1)
      idelete(t, lv, ln, ln - 1, true)
      ln = ln - 1
      lu, ru = iused(t, lv, ln), iused(t, rv, rn)
    end
  end
  replace_sep(t, lvl + 1, k, p, roff, true)
  release_spare(t)
end

-- Restores the fill of the nodes on the path after entries left the leaf:
-- merges with a sibling, or moves entries over, level by level.
local function fix (t, lvl)
  local pp, pi = t.pp, t.pi
  while true do
    local off = pp[lvl]
    local v = node(t, off)
    local n = u32(v, N_COUNT)
    if lvl == t.height then
      if lvl == 1 or n > 0 then return end
      local c = ichild(t, v, 0)             -- a root with one child
      free_node(t, off)
      t.root, t.height = c, lvl - 1
      save_root(t)
      lvl = lvl - 1
      pp[lvl] = c
    else
      local leaf = lvl == 1
      local used, cap
      if leaf then used, cap = lused(t, v, n), t.lcapb
      else used, cap = iused(t, v, n), t.icapb end
      if n > 0 and 4 * used >= cap then return end
      local pv = node(t, pp[lvl + 1])
      local pn, idx = u32(pv, N_COUNT), pi[lvl + 1]
      local k = idx > 0 and idx - 1 or 0
      local loff, roff = ichild(t, pv, k), ichild(t, pv, k + 1)
      local lv, rv = node(t, loff), node(t, roff)
      local ln, rn = u32(lv, N_COUNT), u32(rv, N_COUNT)
      if leaf then
        if lused(t, lv, ln) + lused(t, rv, rn) > cap then
          rebalance_leaves(t, lvl, k, lv, ln, rv, rn, roff)
          return
        end
        lmove(t, rv, rn, 0, rn, lv, ln, ln)
        local nx = u64(rv, L_NEXT)
        set_u64(lv, L_NEXT, nx)
        if nx ~= 0 then set_u64(node(t, nx), L_PREV, loff) end
        idelete(t, pv, pn, k, false)
      else
        local p = itoken(t, pv, k)
        if iused(t, lv, ln) + iused(t, rv, rn) + token_size(t, p) > cap then
          rebalance_internal(t, lvl, k, pv, lv, ln, rv, rn, roff)
          return
        end
        iinsert(t, lv, ln, ln, p, ichild(t, rv, 0))
        imove(t, rv, rn, 0, lv, ln + 1)
        idelete(t, pv, pn, k, true)
      end
      free_node(t, roff)
      if idx > 0 then pi[lvl + 1] = idx - 1 end
      lvl = lvl + 1
    end
  end
end

---------------------------------------------------------------------------
-- Trees: creation and opening
---------------------------------------------------------------------------

local function is_blockfile (bf)
  local mt = getmetatable(bf)
  return type(mt) == "table" and mt.__name == "fmap.BlockFile"
end

local function check_bf (bf, fname, lvl)
  if not is_blockfile(bf) then
    typeerror(1, fname, "BlockFile", bf, lvl + 1)
  end
  if tostring(bf) == "BlockFile (closed)" then
    error("attempt to use a closed BlockFile", lvl + 1)
  end
end

-- A value as a size check shows it: numbers as they are, a string quoted
-- ("16" is no size), anything else by its type.
local function shown (x)
  if type(x) == "number" then return tostring(x) end
  if type(x) == "string" then return sformat("string %q", x:sub(1, 20)) end
  return type(x)
end

local function check_sizes (fname, ks, vs, arg, lvl)
  if mtype(ks) ~= "integer" or (ks ~= -1 and (ks < 1 or ks >= OVF)) then
    argerror(arg, fname, "key size must be -1 or an integer in 1.."
             .. (OVF - 1) .. ", got " .. shown(ks), lvl + 1)
  end
  if mtype(vs) ~= "integer" or (vs ~= -1 and (vs < 0 or vs >= OVF)) then
    argerror(arg + 1, fname, "value size must be -1 or an integer in 0.."
             .. (OVF - 1) .. ", got " .. shown(vs), lvl + 1)
  end
end

-- The tree object for the meta block at off: layout constants and state.
local function setup (bf, off, ks, vs)
  local bs = bf:block_size()
  local t = setmetatable({
    bf = bf, meta = off, ks = ks, vs = vs, bs = bs,
    views = setmetatable({}, { __mode = "v" }),
    sv = setmetatable({}, { __mode = "v" }),
    pp = {}, pi = {}, spare = {}, fmts = {},
    mods = 0, readonly = bf:readonly(),
    chain_limit = 0,    -- see walk_step
    guard = guard.of(bf, string.format("B+tree at %d", off)),
  }, Tree)
  if ks > 0 and vs >= 0 then
    local LS, IS = ks + vs, ks + 8
    local lcap, icap = (bs - FL_ENT) // LS, (bs - FI_ENT) // IS
    if lcap >= 4 and icap >= 4 then
      t.fixed, t.layout = true, FIXED
      t.LS, t.IS, t.LCAP, t.ICAP = LS, IS, lcap, icap
      t.entry_fmt = "c" .. ks .. "c" .. vs
      t.lcapb, t.icapb = lcap * LS, icap * IS
      t.imaxentry = IS
      -- the descents' searches, with the node layouts fixed in them
      t._search_child = bf:searcher(N_COUNT, FI_ENT, IS, FI_C0)
      -- the same for whole keys only: get, add and remove call it (or
      -- descend with it) before checking their key, as it returns nil
      -- for any other argument
      t._search_key = bf:searcher(N_COUNT, FI_ENT, IS, FI_C0, nil, ks)
      t._search_value = bf:searcher(N_COUNT, FL_ENT, LS, FL_ENT + ks, vs)
      return t
    end
  end
  t.fixed, t.layout = false, SLOTTED
  t.lcapb, t.icapb = bs - SL_SLOTS, bs - SI_SLOTS
  t.lmax = t.lcapb // 4 - 4            -- a leaf cell, its slot aside
  t.imax = t.icapb // 4 - 12           -- an internal cell
  t.imaxentry = 12 + t.imax
  return t
end

-- After a rollback of its BlockFile (bf:on_rollback): the cached views may
-- be dead and the root, height and size stale. They are read again from
-- the meta block; a tree the rollback took away (made in the transaction)
-- is left dead, as a discarded one is.
local function reload (t)
  local views = t.views
  if not views then return end        -- dead already
  for k in pairs(views) do views[k] = nil end
  t.sv[1], t.sv_off = nil, nil
  -- blocks an interrupted split had reserved: the rollback gave them back
  local spare = t.spare
  for i = #spare, 1, -1 do spare[i] = nil end
  local ok, v = pcall(t.bf.get, t.bf, t.meta)
  if ok and vunpack(v, "c" .. #MAGIC, 0) == MAGIC then
    t.root, t.height, t.nent = u64(v, M_ROOT), u64(v, M_HEIGHT),
                               u64(v, M_SIZE)
    v:release()
    return
  end
  if ok then v:release() end
  local reg = registry[t.bf]
  if reg and reg[t.meta] == t then reg[t.meta] = nil end
  for k in pairs(t) do t[k] = nil end
  t.dead = "a B+tree its transaction made, and a rollback took away"
end

local function register (t)
  t.bf:on_rollback(t, reload)
  local reg = registry[t.bf]
  if not reg then
    reg = {}
    registry[t.bf] = reg
  end
  local old = reg[t.meta]
  if old and old ~= t then
    -- A tree was made over this one's meta block: the old object must not
    -- write through its stale state.
    for k in pairs(old) do old[k] = nil end
  end
  reg[t.meta] = t
  return t
end

-- Writes a new tree's meta block at off and its empty root leaf.
local function create (bf, off, ks, vs)
  local root, err, en = bf:allocate()
  if not root then return nil, err, en end
  local t = setup(bf, off, ks, vs)
  local mv = node(t, off)
  VM.fill(mv, 0, 0, 64)
  vpack(mv, 0, META_FMT, MAGIC, VERSION, t.layout, ks, vs)
  t.root, t.height, t.nent = root, 1, 0
  init_leaf(t, root)
  save_root(t)
  set_u64(mv, M_SIZE, 0)
  return register(t)
end

--- Creates an empty tree and records it in the BlockFile's control data,
-- which must be empty (use `new_at` for more trees in one file).
-- @param bf a BlockFile open for writing
-- @param key_size bytes per key, or -1 for keys of any length
-- @param value_size bytes per value (0 allowed), or -1 for any length
-- @return the tree, or nil, message, errno if the file cannot grow
function M.new (bf, key_size, value_size)
  check_bf(bf, "new", 2)
  check_sizes("new", key_size, value_size, 2, 2)
  if bf:readonly() then
    error("attempt to create a B+tree in a read-only BlockFile", 2)
  end
  local cd = bf:control_data()
  if cd ~= "" then
    argerror(1, "new", sformat("its control data is in use (%q); use new_at "
             .. "for another tree in this file", cd:sub(1, 40)))
  end
  local off, err, en = bf:allocate()
  if not off then return nil, err, en end
  local t
  t, err, en = create(bf, off, key_size, value_size)
  if not t then
    bf:free(off)
    return nil, err, en
  end
  local ok
  ok, err, en = bf:set_control_data(CTL_PREFIX .. off)
  if not ok then
    registry[bf][off] = nil
    bf:free(t.root)
    bf:free(off)
    return nil, err, en
  end
  return t
end

--- Creates an empty tree whose meta block is at offset (a block the
-- caller allocated; its content is overwritten, but a block that holds a
-- tree already is refused), or in a new block when offset is nil. Find it
-- again with `open_at(bf, t:offset())`.
-- @param bf a BlockFile open for writing
-- @param offset a block's offset, or nil
-- @param key_size bytes per key, or -1
-- @param value_size bytes per value, or -1
-- @return the tree, or nil, message, errno if the file cannot grow
function M.new_at (bf, offset, key_size, value_size)
  check_bf(bf, "new_at", 2)
  check_sizes("new_at", key_size, value_size, 3, 2)
  if bf:readonly() then
    error("attempt to create a B+tree in a read-only BlockFile", 2)
  end
  local fresh = offset == nil
  if fresh then
    local err, en
    offset, err, en = bf:allocate()
    if not offset then return nil, err, en end
  else
    if mtype(offset) ~= "integer" then
      argerror(2, "new_at", "offset expected, got " .. (mtype(offset)
               and "non-integer number" or type(offset)))
    end
    local ok, v = pcall(bf.get, bf, offset)
    if not ok then argerror(2, "new_at", argcheck.reason(v)) end
    -- a tree there would be wiped, its other blocks leaked: new_at written
    -- for open_at, most likely
    local magic = vread(v, 0, 8)
    v:release()
    if magic == MAGIC then
      argerror(2, "new_at", sformat("offset %d holds a B+tree already: open "
               .. "it with bptree.open_at, or free it and allocate a new "
               .. "block", offset))
    end
  end
  local t, err, en = create(bf, offset, key_size, value_size)
  if not t then
    if fresh then bf:free(offset) end
    return nil, err, en
  end
  return t
end

-- open_at's work, its errors naming fname's argument argn at level lvl
-- (open's are about the control data's offset).
local function open_tree (bf, offset, fname, lvl, argn)
  check_bf(bf, fname, lvl)
  if mtype(offset) ~= "integer" then
    argerror(argn, fname, "offset expected, got " .. (mtype(offset)
             and "non-integer number" or type(offset)), lvl)
  end
  local reg = registry[bf]
  if reg and reg[offset] then return reg[offset] end
  local ok, v = pcall(bf.get, bf, offset)
  if not ok then argerror(argn, fname, argcheck.reason(v), lvl) end
  local magic, version, layout, ks, vs = vunpack(v, META_FMT, 0)
  local root, height, size = u64(v, M_ROOT), u64(v, M_HEIGHT),
                             u64(v, M_SIZE)
  v:release()
  if magic ~= MAGIC then
    argerror(argn, fname, sformat("no B+tree at offset %d (bad magic)",
             offset), lvl)
  end
  if version ~= VERSION then
    argerror(argn, fname, sformat("B+tree at offset %d has format version %d, "
             .. "this is version %d", offset, version, VERSION), lvl)
  end
  local bs = bf:block_size()
  local good = (ks == -1 or (ks >= 1 and ks < OVF)) and
               (vs == -1 or (vs >= 0 and vs < OVF)) and
               height >= 1 and height <= 64 and root > 0 and
               root % bs == 0 and root < bf:size() and
               height + 2 <= bf:size() // bs   -- the nodes, meta, block 0
  local t = good and setup(bf, offset, ks, vs)
  if not t or t.layout ~= layout then
    argerror(argn, fname, sformat("B+tree meta block at offset %d is damaged",
             offset), lvl)
  end
  t.root, t.height, t.nent = root, height, size
  return register(t)
end

--- Opens the tree whose meta block is at offset.
-- Opening a tree that is already open gives the same object.
-- @param bf a BlockFile
-- @param offset the tree's meta block (`t:offset()`)
-- @return the tree
function M.open_at (bf, offset)
  return open_tree(bf, offset, "open_at", 2, 2)
end

-- The meta block's offset that control data cd names: "bptree@4096", and
-- after a space anything the script keeps there; nil if none.
function M._control_offset (cd)
  local off = cd:match("^" .. CTL_PREFIX .. "(%d+)$")
              or cd:match("^" .. CTL_PREFIX .. "(%d+) ")
  return off and math.tointeger(tonumber(off))
end

--- Opens the tree recorded in the BlockFile's control data by `new`
-- (`bptree@OFFSET`, which a space and data of the script's may follow).
-- Raises if the control data is not a tree's.
-- @param bf a BlockFile
-- @return the tree
function M.open (bf)
  check_bf(bf, "open", 2)
  local cd = bf:control_data()
  local off = M._control_offset(cd)
  if not off then
    argerror(1, "open", cd == "" and "no B+tree in this file: its control "
             .. "data is empty" or sformat("control data %q is not a "
             .. "B+tree's", cd:sub(1, 40)))
  end
  return open_tree(bf, off, "open", 2, 1)
end

---------------------------------------------------------------------------
-- Trees: argument checks
---------------------------------------------------------------------------

-- Raises for method fname called on self, no live tree (fmap.guard's
-- words): a method called with '.' for ':', or a discarded tree. level as
-- error's, from the method (1, the default: blames the method's caller).
local function bad_self (fname, self, level)
  level = 3 + (level or 1)
  if getmetatable(self) == Tree then   -- called with ':', on a dead tree
    argerror(0, fname, rawget(self, "dead") or "a discarded B+tree: another "
             .. "tree was made over its meta block", level - 1)
  end
  guard.bad_self("B+tree", fname, self, nil, level)
end

-- Raises unless self is a live tree: the check of the methods that take
-- no key (the ones that do find a wrong self by its missing views).
local function check_self (self, fname)
  if getmetatable(self) ~= Tree or not self.views then
    bad_self(fname, self, 2)
  end
end

local function check_key (t, key, fname, arg, level)
  if type(key) ~= "string" then
    typeerror(arg, fname, "string", key, level or 3)
  end
  local ks = t.ks
  if ks ~= -1 and #key ~= ks then
    argerror(arg, fname, sformat("key of %d byte%s, the tree's keys have %d",
             #key, #key == 1 and "" or "s", ks), level or 3)
  end
end

local function check_value (t, value, fname, arg, level)
  if type(value) ~= "string" then
    typeerror(arg, fname, "string", value, level or 3)
  end
  local vs = t.vs
  if vs ~= -1 and #value ~= vs then
    argerror(arg, fname, sformat("value of %d byte%s, the tree's values "
             .. "have %d", #value, #value == 1 and "" or "s", vs), level or 3)
  end
end

-- Raises unless key (argument 1) and value (2) are strings of the tree's
-- sizes, as check_key and check_value do for the caller of fname (level
-- as check_key's, from check_entry's caller: 3 by default).
local function check_entry (t, key, value, fname, level)
  local ks, vs = t.ks, t.vs
  if type(key) ~= "string" or (#key ~= ks and ks ~= -1) then
    check_key(t, key, fname, 1, (level or 3) + 1)
  end
  if type(value) ~= "string" or (#value ~= vs and vs ~= -1) then
    check_value(t, value, fname, 2, (level or 3) + 1)
  end
end

local function check_writable (t, fname, level)
  if t.readonly then
    error(sformat("attempt to %s in a B+tree of a read-only BlockFile",
          fname), level or 3)
  end
end

---------------------------------------------------------------------------
-- Trees: changes
---------------------------------------------------------------------------

-- Inserts key..value in a slotted tree after key's entries, splitting the
-- leaf if it is full; the caller holds the guard and counts the entry.
-- Returns true, or nil, message, errno with the tree unchanged.
local function slotted_insert (t, key, value)
  local cell, err, en
  local csz = 8 + #key + #value
  if csz > t.lmax then               -- a run for the value, or the key
    cell, err, en = make_cell(t, key, value)
    if not cell then return nil, err, en end
    csz = #cell
  end
  local v = descend(t, key, true)
  local x = u64(v, 0)                -- kind, flags and count
  local n = x >> 32
  local i = slot_search(t, v, SL_SLOTS, 4, n, key, true, x >> 8)
  local y = u64(v, SL_LO)            -- heap start and dead bytes
  local lo = y & 0xFFFFFFFF
  if 4 * n + t.bs - lo - (y >> 32) + 4 + csz <= t.lcapb then
    if lo - (SL_SLOTS + 4 * n) < 4 + csz then
      compact(t, v, n, true)
      lo = u32(v, SL_LO)
    end
    lo = lo - csz
    if cell then
      vwrite(v, lo, cell)
      if u32(v, lo) >= OVF then set_u8(v, N_FLAGS, 1) end
    else
      vpack(v, lo, "<s4s4", key, value)
    end
    set_u32(v, SL_LO, lo)
    local pos = SL_SLOTS + 4 * i
    if i < n then vcopy(v, pos + 4, v, pos, 4 * (n - i)) end
    set_u32(v, pos, lo)
    set_u32(v, N_COUNT, n + 1)
    return true
  end
  cell = cell or pack("<s4s4", key, value)
  local ok
  ok, err, en = split_leaf(t, v, n, i, key, cell, nil, 4 + csz)
  if not ok then
    free_cell_runs(t, cell, true)
    return nil, err, en
  end
  return true
end

--- Adds an entry; a key may have any number of entries.
-- @param key a string (of the tree's key size, if fixed)
-- @param value a string (of the tree's value size, if fixed)
-- @return true, or nil, message, errno if the file cannot grow (the tree
-- is then unchanged)
function Tree:add (key, value)
  if mark then mark("bptree.add", key, value) end
  local views = self.views
  if not views then bad_self("add", self) end
  local fixed = self.fixed
  if not fixed then   -- a fixed tree's descent checks them, in C
    check_entry(self, key, value, "add")
  end
  if self.readonly then check_writable(self, "add") end
  -- The guard (fmap.guard) is held where the tree changes in steps that
  -- allocate, and so may run a finalizer: a split, or a variable-size
  -- leaf. The common insert's writes are one engine call.
  local g = self.guard
  if g.busy then enter(g, "add") end           -- raises
  if fixed then
    -- The descent to key's last leaf and the insert there are one call,
    -- through the tree's leaf view (sv[1]); the path, which only a split
    -- wants, is recorded then.
    -- The call also counts the entry in the meta block.
    local mv = views[self.meta] or node(self, self.meta)
    local sv = self.sv
    local v = sv[1]
    if v == nil then      -- before the descent: a new view may run a
      v = self.bf:get(self.root)  -- finalizer, which may change the tree
      sv[1], self.sv_off = v, self.root
    end
    local LS = self.LS
    self.sv_off = nil     -- until the call returns: it may raise midway
    local i, n, done, off = vdescend_insert(v, self._search_key, self.root,
                                            self.height - 1, self.ks,
                                            N_COUNT, FL_ENT, LS, self.LCAP,
                                            key, value, mv, M_SIZE)
    if i == nil then                 -- not a key and value of the sizes
      check_key(self, key, "add", 1)
      check_value(self, value, "add", 2)
    end
    self.sv_off = off
    if done then
      self.nent, self.mods = self.nent + 1, self.mods + 1
      return true
    else                             -- a full leaf
      local _ <close> = enter(g, "add")
      path_to(self, key, true, off)  -- the same leaf, with its path
      local ok, err, en = split_leaf(self, v, n, i, key, key, value, LS)
      if not ok then return nil, err, en end
    end
  else
    local _ <close> = enter(g, "add")
    local ok, err, en = slotted_insert(self, key, value)
    if not ok then return nil, err, en end
  end
  self.nent, self.mods = self.nent + 1, self.mods + 1
  -- the count is read after node(), which may run a finalizer's add
  set_u64(views[self.meta] or node(self, self.meta), M_SIZE, self.nent)
  return true
end

-- Raises put's error for a key with more than one entry.
local function put_several (lvl)
  argerror(1, "put", "key has more than one entry: put replaces the value "
           .. "of a key's only entry; remove(key) first to replace them "
           .. "all", lvl + 1)
end

-- Whether the entry after entry i of the leaf off (n entries, seen
-- through v, which is left on off) has key: the next one in the leaf, or
-- the first of the next leaf.
local function next_has (t, v, off, i, n, key)
  if i + 1 < n then return lcmp(t, v, i + 1, key) == 0 end
  local nx = u64(v, L_NEXT)
  if nx == 0 then return false end
  local w = leaf_view(t, nx)
  local same = u32(w, N_COUNT) > 0 and lcmp(t, w, 0, key) == 0
  leaf_view(t, off)
  return same
end

-- put in a slotted tree, the guard held: see Tree:put.
local function slotted_put (t, key, value)
  local v, n, i, off, found = lower_leaf(t, key)
  local first = off                  -- the leaf lower descents reach
  if not found and i == n then       -- key may start the next leaf
    local nx = u64(v, L_NEXT)
    if nx ~= 0 then
      local w = leaf_view(t, nx)
      local c = u32(w, N_COUNT)
      if c > 0 and lcmp(t, w, 0, key) == 0 then
        v, n, i, off, found = w, c, 0, nx, true
      else
        v = leaf_view(t, off)
      end
    end
  end
  if not found then
    local ok, err, en = slotted_insert(t, key, value)
    if not ok then return nil, err, en end
    t.nent, t.mods = t.nent + 1, t.mods + 1
    set_u64(node(t, t.meta), M_SIZE, t.nent)
    return nil
  end
  if next_has(t, v, off, i, n, key) then put_several(3) end
  local old = lvalue(t, v, i)
  local cell, err, en = make_cell(t, key, value)
  if not cell then return nil, err, en end
  -- views are fetched again after each string made: a finalizer's read
  -- of the tree may have moved the leaf view
  v = leaf_view(t, off)
  local at = u32(v, SL_SLOTS + 4 * i)
  local ksz = field_size(v, at)
  local osz = ksz + field_size(v, at + ksz)
  if lused(t, v, n) - osz + #cell <= t.lcapb then
    ldelete(t, v, n, i, 1)           -- frees the old value's run
    linsert(t, v, n - 1, i, cell)
    return old
  end
  -- The leaf splits. The old cell comes out with its runs, which are
  -- freed once the split has been made: a split that fails puts it back.
  path_to(t, key, false, first)
  if off ~= first and not (path_next(t) and t.pp[1] == off) then
    error(sformat("B+tree at %d is corrupt: the leaf after %d is not %d",
                  t.meta, first, off), 0)
  end
  v = leaf_view(t, off)
  local oldcell = vread(v, at, osz)
  v = leaf_view(t, off)
  ldelete(t, v, n, i, 1, true)
  local ok
  ok, err, en = split_leaf(t, v, n - 1, i, key, cell, nil, 4 + #cell)
  if not ok then
    linsert(t, leaf_view(t, off), n - 1, i, oldcell)
    free_cell_runs(t, cell, true)
    return nil, err, en
  end
  free_cell_runs(t, oldcell, true)
  t.mods = t.mods + 1
  return old
end

--- Sets key's value: adds the entry if key has none, else replaces the
-- value of its entry. A key with more than one entry (made by add) is
-- refused: remove(key) first. Replacing a value leaves the tree's shape
-- as it is, except when a longer value splits a slotted leaf: an iterator
-- running over the tree goes on, and shows the new value if it reaches
-- the entry later; adding a key makes its next step raise.
-- @param key a string (of the tree's key size, if fixed)
-- @param value a string (of the tree's value size, if fixed)
-- @return the old value, or nil if key was new; nil, message, errno if
-- the file cannot grow (the tree is then unchanged): tell them apart by
-- the second result
function Tree:put (key, value)
  if mark then mark("bptree.put", key, value) end
  local views = self.views
  if not views then bad_self("put", self) end
  local fixed = self.fixed
  if not fixed or self.readonly then   -- else the descent checks them
    check_entry(self, key, value, "put")
    if self.readonly then check_writable(self, "put") end
  end
  local g = self.guard
  if not fixed then
    local _ <close> = enter(g, "put")
    return slotted_put(self, key, value)
  end
  if g.busy then enter(g, "put") end           -- raises
  -- Fixed: the descent to the leaf where key's first entry is or would be
  -- (lower) and the leaf's put in one engine call, through the tree's
  -- leaf view (sv[1]); the call also counts a new entry in the meta block.
  -- (It makes the room for the old value before it descends, with the
  -- collector stopped: no finalizer runs between the descent from the
  -- root read here and the leaf's change.)
  local mv = views[self.meta] or node(self, self.meta)
  local sv = self.sv
  local v = sv[1]
  if v == nil then        -- before the descent: a new view may run a
    v = self.bf:get(self.root)  -- finalizer, which may change the tree
    sv[1], self.sv_off = v, self.root
  end
  local LS, LCAP = self.LS, self.LCAP
  self.sv_off = nil       -- until the call returns: it may raise midway
  local i, n, st, off, old = vdescend_put(v, self._search_key, self.root,
                                          self.height - 1, self.ks, N_COUNT,
                                          FL_ENT, LS, LCAP, key, value,
                                          L_NEXT, mv, M_SIZE)
  if i == nil then                   -- not a key and value of the sizes
    check_key(self, key, "put", 1)
    check_value(self, value, "put", 2)
  end
  self.sv_off = off
  if st == PUT_REPLACED then return old end
  if st == PUT_INSERTED then
    self.nent, self.mods = self.nent + 1, self.mods + 1
    return nil
  end
  if st == PUT_SEVERAL then put_several(2) end
  local _ <close> = enter(g, "put")
  -- At the leaf's end, the next leaf decides: it may start with key.
  while st >= PUT_EDGE_FOUND do
    local nx = u64(v, L_NEXT)
    v = leaf_view(self, nx)
    local there = u32(v, N_COUNT) > 0 and vcompare(v, FL_ENT, key) == 0
    if there and st == PUT_EDGE_NEW then   -- key's entry starts nx
      off = nx
      i, n, st, old = vput_key(v, N_COUNT, FL_ENT, LS, LCAP, key, value,
                               L_NEXT)
    elseif there then                       -- in both leaves
      st = PUT_SEVERAL
    else                                    -- the end is key's place
      v = leaf_view(self, off)
      i, n, st, old = vput_key(v, N_COUNT, FL_ENT, LS, LCAP, key, value)
    end
  end
  if st == PUT_REPLACED then return old end
  if st == PUT_SEVERAL then put_several(2) end
  if st == PUT_FULL then
    path_to(self, key, false, off)   -- the same leaf, with its path
    local ok, err, en = split_leaf(self, v, n, i, key, key, value, LS)
    if not ok then return nil, err, en end
  end
  self.nent, self.mods = self.nent + 1, self.mods + 1
  -- the count is read after node(), which may run a finalizer's add
  set_u64(views[self.meta] or node(self, self.meta), M_SIZE, self.nent)
  return nil
end

--- Removes the entries of key, or those whose value satisfies where.
-- Nodes left under a quarter full are merged with a sibling or refilled
-- from it; emptied blocks go back to the BlockFile.
-- @param key a string
-- @param where optional function(value) → truthy to remove that entry; it
-- must not change the tree
-- @return how many entries were removed
function Tree:remove (key, where)
  if mark then mark("bptree.remove") end
  if not self.views then bad_self("remove", self) end
  if not (self.fixed and where == nil) then  -- else the descent checks
    if type(key) ~= "string" or (#key ~= self.ks and self.ks ~= -1) then
      check_key(self, key, "remove", 1)
    end
  end
  if where ~= nil and type(where) ~= "function" then
    typeerror(2, "remove", "function", where)
  end
  if self.readonly then check_writable(self, "remove") end
  -- The guard as in add: held where the tree changes in steps that
  -- allocate, and while where runs.
  local g = self.guard
  if g.busy then enter(g, "remove") end        -- raises
  local pp, done = self.pp, 0
  if self.fixed and where == nil then
    -- The common case in one call, as in add: every entry of key in one
    -- leaf. The path, which only a rebalance wants, is recorded then.
    local h = self.height
    -- the meta block's view first, as in add: the call counts there
    local mv = self.views[self.meta] or node(self, self.meta)
    local sv = self.sv
    local v = sv[1]
    if v == nil then      -- before the descent, as in add
      v = self.bf:get(self.root)
      sv[1], self.sv_off = v, self.root
    end
    self.sv_off = nil
    local pos, r, left, off = vdescend_remove(v, self._search_key,
                                              self.root, h - 1, self.ks,
                                              N_COUNT, FL_ENT, self.LS, key,
                                              mv, M_SIZE)
    if pos == nil then check_key(self, key, "remove", 1) end
    self.sv_off = off
    if r == 0 then
      if pos < left then return 0 end  -- else key may start the next leaf
    else
      self.nent, self.mods = self.nent - r, self.mods + 1
      if pos < left then               -- every entry of key was here
        if 4 * left * self.LS < self.lcapb and h > 1 then
          local _ <close> = enter(g, "remove")
          path_to(self, key, false, off) -- the same leaf, with its path
          fix(self, 1)
        end
        return r
      end
      -- The entries reached the leaf's end: more may follow in the next
      -- one. Mend this leaf, then remove the rest the long way.
      if left == 0 or h > 1 and 4 * left * self.LS < self.lcapb then
        local _ <close> = enter(g, "remove")
        path_to(self, key, false, off)
        fix(self, 1)
      end
      done = r
    end
  end
  local _ <close> = enter(g, "remove")
  local removed, kept = done, 0
  while true do
    local v = descend(self, key, false)
    local n = u32(v, N_COUNT)
    local pos, known = lsearch(self, v, n, key, false)
    if not known and pos < n then return removed end
    local skip, e = kept, nil
    while true do                 -- skip the entries kept so far
      if pos >= n then
        if not path_next(self) then return removed end
        v = leaf_view(self, pp[1])
        n, pos = u32(v, N_COUNT), 0
      else
        if not known and lcmp(self, v, pos, key) ~= 0 then
          return removed
        end
        known = false
        e = lsearch(self, v, n, key, true)
        if pos + skip < e then
          pos = pos + skip
          break
        end
        skip, pos = skip - (e - pos), e
        if e < n then return removed end
      end
    end
    local r = 0
    if where == nil then
      ldelete(self, v, n, pos, e - pos)
      r = e - pos
    else
      local marks = {}
      for j = pos, e - 1 do
        marks[j - pos + 1] = where(lvalue(self, v, j)) and true or false
      end
      -- the guard refuses an add or remove from where; a tree made over
      -- this one's meta block (new_at) retires this object
      if self.views == nil then
        error("B+tree modified by remove's where function", 2)
      end
      v = leaf_view(self, pp[1])          -- where() may have moved it
      local m = n
      for j = e - 1, pos, -1 do
        if marks[j - pos + 1] then
          ldelete(self, v, m, j, 1)
          m, r = m - 1, r + 1
        end
      end
    end
    kept = kept + (e - pos) - r
    if r > 0 then
      removed = removed + r
      local size = self.nent - r
      self.nent, self.mods = size, self.mods + 1
      set_u64(node(self, self.meta), M_SIZE, size)
      local left = n - r
      if left == 0 or self.height > 1 and
         4 * lused(self, v, left) < self.lcapb then
        fix(self, 1)
      end
    end
    if e < n then return removed end
  end
end

---------------------------------------------------------------------------
-- Trees: lookups
---------------------------------------------------------------------------

--- The value of key's first entry, or nil.
-- @param key a string
function Tree:get (key)
  if mark then mark("bptree.get") end
  local views = self.views
  if not views then bad_self("get", self) end
  local search_key = self._search_key
  if search_key then                          -- fixed: the fast path
    -- the searcher checks the key: nil for anything but one of ks bytes
    local i, found, val, n, off = search_key(self.root, key, false,
                                             self.height - 1,
                                             self._search_value)
    if found then return val end
    if i == nil then check_key(self, key, "get", 1) end
    if i < n then return nil end
    local v = leaf_view(self, off)
    off = u64(v, L_NEXT)                -- key may start the next leaf
    if off == 0 then return nil end
    v = leaf_view(self, off)
    if u32(v, N_COUNT) == 0 or vcompare(v, FL_ENT, key) ~= 0 then
      return nil
    end
    return vread(v, FL_ENT + self.ks, self.vs)
  end
  if type(key) ~= "string" or (#key ~= self.ks and self.ks ~= -1) then
    check_key(self, key, "get", 1)
  end
  local v, n, i, _, found = lower_leaf(self, key)
  if not found then
    if i < n then return nil end
    local nx = u64(v, L_NEXT)
    if nx == 0 then return nil end
    v, i = leaf_view(self, nx), 0
    if u32(v, N_COUNT) == 0 or lcmp(self, v, 0, key) ~= 0 then
      return nil
    end
  end
  return lvalue(self, v, i)
end

--- Whether key has an entry.
-- @param key a string
function Tree:has (key)
  if mark then mark("bptree.has") end
  if not self.views then bad_self("has", self) end
  if type(key) ~= "string" or (#key ~= self.ks and self.ks ~= -1) then
    check_key(self, key, "has", 1)
  end
  local v, n, i, _, found = lower_leaf(self, key)
  if found then return true end
  if i < n then return false end
  local nx = u64(v, L_NEXT)
  if nx == 0 then return false end
  v = leaf_view(self, nx)
  return u32(v, N_COUNT) > 0 and lcmp(self, v, 0, key) == 0
end

--- How many entries key has.
-- @param key a string
function Tree:count (key)
  if mark then mark("bptree.count") end
  if not self.views then bad_self("count", self) end
  check_key(self, key, "count", 1)
  local v, n, pos = lower_leaf(self, key)
  local c, visited = 0, 0
  while true do
    if pos >= n then
      local nx = u64(v, L_NEXT)
      if nx == 0 then return c end
      visited = walk_step(self, visited)
      v = leaf_view(self, nx)
      n, pos = u32(v, N_COUNT), 0
    else
      if lcmp(self, v, pos, key) ~= 0 then return c end
      local e = lsearch(self, v, n, key, true)
      c = c + e - pos
      if e < n then return c end
      pos = n
    end
  end
end

--- Entries in the tree.
function Tree:size ()
  check_self(self, "size")
  return self.nent
end

--- Bytes per key, or -1.
function Tree:key_size ()
  check_self(self, "key_size")
  return self.ks
end

--- Bytes per value, or -1.
function Tree:value_size ()
  check_self(self, "value_size")
  return self.vs
end

-- t:offset() (for `open_at`) and t:blockfile().
kit.accessors(Tree, check_self)

--- Graphviz DOT text of the tree, cut to a depth (fmap.dot.tree, whose
-- second result says which nodes were drawn).
-- @param opts optional: `depth`, `children`, `keys` (fmap.dot.graph's),
-- `key_text` (a function from a key to its label, as codec.decode's values
-- joined, say; where it raises, the key is drawn as without it)
-- @return the DOT text alone, so that `f:write(t:dot())` writes it
function Tree:dot (opts)
  check_self(self, "dot")
  return (require("fmap.dot")._dot(self, opts))
end

function Tree:__tostring ()
  if not self.views then return "B+tree (discarded)" end
  local function sz (s, what)
    if s == -1 then return what .. "s of any length" end
    return s .. "-byte " .. what .. "s"
  end
  if tostring(self.bf):match("^BlockFile %(closed%)") then
    return sformat("B+tree (meta at %d, closed BlockFile)", self.meta)
  end
  return sformat("B+tree (%s, %s, %d entr%s, height %d, meta at %d)",
                 sz(self.ks, "key"), sz(self.vs, "value"), self.nent,
                 self.nent == 1 and "y" or "ies", self.height, self.meta)
end

---------------------------------------------------------------------------
-- Trees: iterators
---------------------------------------------------------------------------

-- The unpack format reading c entries of a fixed leaf.
local function fmt_for (t, c)
  local f = t.fmts[c]
  if not f then
    f = srep("c" .. t.ks .. "c" .. t.vs, c)
    t.fmts[c] = f
  end
  return f
end

-- What an iterator reads of each fixed entry (what: nil for key and
-- value, 1 the key, 2 the value), as parts of an entry_iterator run: the
-- bytes it skips, then the length of the field, and of the second or nil.
local function entry_fields (t, what)
  if what == 1 then return 0, t.ks, nil end
  if what == 2 then return t.ks, t.vs, nil end
  return 0, t.ks, t.vs
end

-- The entries a scan visits in a leaf of n entries, from entry pos (nil:
-- the leaf's first in the scan's direction): the first, how many, and
-- whether the scan ends in this leaf. bound is where the scan's end key
-- falls in the leaf (forward: its upper bound, backward: its lower
-- bound), or nil.
local function leaf_run (n, pos, bound, back)
  if back then
    local lo = bound or 0
    local first = (pos == nil or pos >= n) and n - 1 or pos
    return first, first - lo + 1, lo > 0
  end
  local hi, first = bound or n, pos or 0
  return first, hi - first, hi < n
end

-- An iterator over the entries of the leaves from leaf off on: forward
-- (back false) from entry pos up to the last entry <= to (< to with
-- excl), or backward (back true) from entry pos down to the first entry
-- >= to; pos nil: from the leaf's first in that direction, to nil: to the
-- end or the start. what: nil (key, value), 1 (key), 2 (value). Over
-- fixed entries, its fill runs once per leaf and each step reads one
-- entry from the file (bf:entry_iterator); over slotted ones, each step
-- is a call of a closure.
local function iterator_of (t, back, what, off, pos, to, excl)
  local mods = t.mods
  -- the link to the next leaf, and whether the end key is searched as an
  -- upper bound (forward, to included)
  local link, upper = back and L_PREV or L_NEXT, not back and not excl
  local visited = 0
  if t.fixed then
    local LS = t.LS
    local skip, len, len2 = entry_fields(t, what)
    local stride = back and -LS or LS
    -- Each step is a C call that reads an entry from the file; fill finds
    -- the entries of the next leaf.
    local function fill ()
      while off ~= 0 do
        visited = walk_step(t, visited)
        local v = leaf_view(t, off)
        local n = leaf_count(t, v, off)
        local first, count, last = leaf_run(n, pos,
          to and vbsearch(v, FL_ENT, n, LS, to, upper), back)
        local at = off
        off, pos = last and 0 or u64(v, link), nil
        if count > 0 then
          return at + FL_ENT + first * LS + skip, count, stride, len, len2
        end
      end
      return nil
    end
    return t.bf:entry_iterator(fill, t, "mods", MODIFIED)
  end
  -- Slotted: at is the slot of the next entry of the leaf, stop the slot
  -- past the last one to visit (nil: the leaf is not read yet), d the
  -- way the slots go.
  local d, at, stop, last = back and -4 or 4, 0, nil, false
  return function ()
    if t.mods ~= mods then error(MODIFIED, 2) end
    while off ~= 0 do
      local v = leaf_view(t, off)
      if stop == nil then
        visited = walk_step(t, visited)
        local n = u32(v, N_COUNT)
        local first, count
        first, count, last = leaf_run(n, pos,
          to and slot_search(t, v, SL_SLOTS, 4, n, to, upper), back)
        at, pos = SL_SLOTS + 4 * first, nil
        stop = count > 0 and at + d * count or at
      end
      if at ~= stop then
        local cell = u32(v, at)
        at = at + d
        local vpos = cell + field_size(v, cell)
        if what == 2 then return field_read(t, v, vpos) end
        local k = field_read(t, v, cell)
        if what == 1 then return k end
        return k, field_read(t, v, vpos)
      end
      off = last and 0 or u64(v, link)
      stop = nil
    end
    return nil
  end
end

-- iterator_of's iterator, whose every step is an operation while a
-- profile runs (fmap.opmark).
local function iterator (...)
  if mark then return (kit.steps("bptree.step", iterator_of(...))) end
  return iterator_of(...)
end

-- An iterator over nothing.
local function nothing () return nil end

-- The step over entries read in advance: st is { tree, its modification
-- count then, the index of the last key returned, the index of the last
-- value, key 1, value 1, key 2, ... } (one table, no closure).
local function step_buffer (st)
  if mark then mark("bptree.step") end
  if st[1].mods ~= st[2] then error(MODIFIED, 2) end
  local i = st[3] + 2
  if i > st[4] then return nil end
  st[3] = i
  return st[i], st[i + 1]
end

-- memcmp order of two strings: -1, 0 or 1 (Lua's < follows the locale).
local function bytecmp (a, b)
  if a == b then return 0 end
  local n = #a < #b and #a or #b
  local i = 1
  while i + 31 <= n and a:sub(i, i + 31) == b:sub(i, i + 31) do
    i = i + 32
  end
  while i <= n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y and -1 or 1 end
    i = i + 1
  end
  return #a < #b and -1 or 1
end

-- The iterator from the first entry >= from up to the last <= to (< to
-- with excl), or with back from the last entry <= from down to the first
-- >= to; a bound nil is the open end.
local function scan (t, from, to, back, what, excl)
  local off, pos
  if back then
    if from == nil then off = edge_leaf(t, true)
    else
      local _, o, _, ub = upper_leaf(t, from)
      off, pos = o, ub - 1
    end
  elseif from == nil then off = edge_leaf(t, false)
  else
    local _, _, p, o = lower_leaf(t, from)
    off, pos = o, p
  end
  return iterator(t, back, what, off, pos, to, excl), nil, nil, nil
end

-- The least string greater than every string that starts with p, or nil
-- if there is none (p empty or all 0xFF bytes).
local function successor (p)
  local s = p:gsub("\xff+$", "")
  if s == "" then return nil end
  return s:sub(1, -2) .. string.char(s:byte(-1) + 1)
end

--- Iterates over the entries of key, in insertion order:
-- `for k, v in t:find(key) do ... end`. Iterators hold no view between
-- steps, so `break` leaves nothing behind; changing the tree while one is
-- in use makes its next step raise.
-- @param key a string
-- @return a generic-for iterator yielding key, value
function Tree:find (key)
  if mark then mark("bptree.find") end
  if not self.views then bad_self("find", self) end
  if type(key) ~= "string" or (#key ~= self.ks and self.ks ~= -1) then
    check_key(self, key, "find", 1)
  end
  if self.fixed then
    -- The common case: every entry of key in one leaf, read in one call
    -- into the iterator's state, with no closure to make.
    local v, n, pos, _, found = lower_leaf(self, key)
    if not found then
      if pos < n then return nothing, nil, nil, nil end
    else
      local LS = self.LS
      local e = pos + 1
      if e < n and vcompare(v, FL_ENT + e * LS, key) == 0 then
        e = vbsearch(v, FL_ENT, n, LS, key, true)
      end
      if e < n then
        return step_buffer, { self, self.mods, 3, 4 + 2 * (e - pos),
          vunpack(v, fmt_for(self, e - pos), FL_ENT + pos * LS) }, nil, nil
      end
    end
  end
  return scan(self, key, key, false, nil)
end

--- Iterates over the entries with keys in [from, to], both included, in
-- key order; backward (from the last entry <= from down to the first >=
-- to) when from > to. A bound nil is an open end: range(nil, to) from
-- the first entry, range(from, nil) to the last; with an open end,
-- backward walks the other way: range(nil, to, true) from the last entry
-- down to to, range(from, nil, true) from from down to the first.
-- @param from a string, or nil
-- @param to a string, or nil
-- @param backward optional, with an open end only: walk backward
-- @return a generic-for iterator yielding key, value
function Tree:range (from, to, backward)
  if mark then mark("bptree.range") end
  if not self.views then bad_self("range", self) end
  if from ~= nil then check_key(self, from, "range", 1) end
  if to ~= nil then check_key(self, to, "range", 2) end
  if backward ~= nil then
    if type(backward) ~= "boolean" then
      typeerror(3, "range", "boolean", backward)
    end
    if from ~= nil and to ~= nil then
      argerror(3, "range", "backward is for a range with an open end; "
               .. "with both ends, from > to walks backward")
    end
  end
  if from ~= nil and to ~= nil then backward = bytecmp(from, to) > 0 end
  return scan(self, from, to, backward, nil)
end

--- Iterates from key on to the end: forward from the first entry >= key,
-- or backward from the last entry <= key.
-- @param key a string
-- @param backward optional: walk backward
-- @return a generic-for iterator yielding key, value
function Tree:seek (key, backward)
  if mark then mark("bptree.seek") end
  if not self.views then bad_self("seek", self) end
  if type(key) ~= "string" or (#key ~= self.ks and self.ks ~= -1) then
    check_key(self, key, "seek", 1)
  end
  if backward ~= nil and type(backward) ~= "boolean" then
    typeerror(2, "seek", "boolean", backward)
  end
  return scan(self, key, nil, backward, nil)
end

--- Iterates in key order over the entries whose keys start with the
-- bytes p (every entry when p is empty).
-- @param p a string, at most the key size of a tree of fixed keys
-- @return a generic-for iterator yielding key, value
function Tree:prefix (p)
  if mark then mark("bptree.prefix") end
  if not self.views then bad_self("prefix", self) end
  if type(p) ~= "string" then typeerror(1, "prefix", "string", p) end
  local ks = self.ks
  if ks ~= -1 and #p > ks then
    argerror(1, "prefix", sformat("prefix of %d bytes, the tree's keys "
             .. "have %d", #p, ks))
  end
  if p == "" then return scan(self, nil, nil, false, nil) end
  -- A fixed node compares the first #p bytes of its keys with p, so the
  -- descent needs no full key.
  return scan(self, p, successor(p), false, nil, true)
end

-- The entry at i of the leaf off: its key and value.
local function entry_at (t, off, i)
  local v = leaf_view(t, off)
  if t.fixed then
    local k, val = vunpack(v, t.entry_fmt, FL_ENT + i * t.LS)
    return k, val
  end
  local k = lkey(t, v, i)
  return k, lvalue(t, leaf_view(t, off), i)   -- k may have moved the view
end

--- The first entry in key order (the first added of the least key).
-- @return its key and value, or nil if the tree is empty
function Tree:first ()
  if mark then mark("bptree.first") end
  check_self(self, "first")
  local off = edge_leaf(self, false)
  local v = leaf_view(self, off)
  local n = self.fixed and leaf_count(self, v, off) or u32(v, N_COUNT)
  if n == 0 then return nil end
  return entry_at(self, off, 0)
end

--- The last entry in key order (the last added of the greatest key), the
-- first that `backward` yields.
-- @return its key and value, or nil if the tree is empty
function Tree:last ()
  if mark then mark("bptree.last") end
  check_self(self, "last")
  local off = edge_leaf(self, true)
  local v = leaf_view(self, off)
  local n = self.fixed and leaf_count(self, v, off) or u32(v, N_COUNT)
  if n == 0 then return nil end
  return entry_at(self, off, n - 1)
end

--- Iterates over every entry in key order.
-- @return a generic-for iterator yielding key, value
function Tree:iterate ()
  if mark then mark("bptree.iterate") end
  check_self(self, "iterate")
  return iterator(self, false, nil, edge_leaf(self, false)), nil, nil, nil
end

--- Iterates over every entry in reverse key order (equal keys last
-- inserted first).
-- @return a generic-for iterator yielding key, value
function Tree:backward ()
  if mark then mark("bptree.backward") end
  check_self(self, "backward")
  return iterator(self, true, nil, edge_leaf(self, true)), nil, nil, nil
end

--- Iterates over every key in order, once per entry.
-- @return a generic-for iterator yielding keys
function Tree:keys ()
  if mark then mark("bptree.keys") end
  check_self(self, "keys")
  return iterator(self, false, 1, edge_leaf(self, false)), nil, nil, nil
end

--- Iterates over every value, in the order of their keys.
-- @return a generic-for iterator yielding values
function Tree:values ()
  if mark then mark("bptree.values") end
  check_self(self, "values")
  return iterator(self, false, 2, edge_leaf(self, false)), nil, nil, nil
end

---------------------------------------------------------------------------
-- Trees: checks and figures
---------------------------------------------------------------------------

-- Walks the whole tree checking every invariant; returns figures, or nil
-- and a message at the first broken one.
local function walk (t)
  local bf, bs = t.bf, t.bs
  local seen = {}
  local leaves, entries = {}, 0
  local st = { internals = 0, leaves = 0, runs = 0, run_blocks = 0,
               leaf_used = 0, internal_used = 0 }
  local function fail (off, lvl, fmt, ...)
    local what = off and sformat("node %d (%s, level %d): ", off,
                                 lvl == 1 and "leaf" or "internal", lvl)
                 or ""
    return nil, what .. sformat(fmt, ...)
  end
  local function claim (off, blocks, owner_off, lvl, what)
    if off <= 0 or off % bs ~= 0 or off + blocks * bs > bf:size() then
      return fail(owner_off, lvl, "%s at offset %d is outside the file",
                  what, off)
    end
    for b = 0, blocks - 1 do
      local o = off + b * bs
      if seen[o] then
        return fail(owner_off, lvl, "%s at offset %d uses block %d, "
                    .. "already used by %s", what, off, o, seen[o])
      end
      if bf:is_free(o) then
        return fail(owner_off, lvl, "%s at offset %d uses block %d, "
                    .. "which is free", what, off, o)
      end
      seen[o] = what .. " " .. off
    end
    return true
  end
  -- Checks a slotted node's heap; returns the key field positions.
  local function heap (off, v, n, lvl)
    local leaf = lvl == 1
    local slots, stride, lo_at, dead_at = SI_SLOTS, 12, SI_LO, SI_DEAD
    if leaf then slots, stride, lo_at, dead_at = SL_SLOTS, 4, SL_LO, SL_DEAD end
    local lo, dead = u32(v, lo_at), u32(v, dead_at)
    if slots + stride * n > lo or lo > bs then
      return fail(off, lvl, "slots end at %d, past the heap start %d",
                  slots + stride * n, lo)
    end
    local spans, live, flag = {}, 0, 0
    for i = 0, n - 1 do
      local cell = u32(v, slots + stride * i)
      if cell < lo or cell + 4 > bs then
        return fail(off, lvl, "cell %d at %d is outside the heap [%d, %d)",
                    i, cell, lo, bs)
      end
      local size = field_size(v, cell)
      local fields = { cell }
      if leaf then
        if cell + size + 4 > bs then
          return fail(off, lvl, "cell %d at %d passes the block", i, cell)
        end
        fields[2] = cell + size
        size = size + field_size(v, cell + size)
      end
      if cell + size > bs then
        return fail(off, lvl, "cell %d at %d passes the block", i, cell)
      end
      for fi, pos in ipairs(fields) do
        local f = u32(v, pos)
        if f >= OVF then
          local len = f - OVF
          if fi == 1 then flag = 1 end
          local ok, err = claim(u64(v, pos + 4), (len + bs - 1) // bs, off,
                                lvl, "overflow run")
          if not ok then return nil, err end
          st.runs = st.runs + 1
          st.run_blocks = st.run_blocks + (len + bs - 1) // bs
        end
      end
      spans[#spans + 1] = { cell, cell + size, i }
      live = live + size
    end
    table.sort(spans, function (a, b) return a[1] < b[1] end)
    for i = 2, #spans do
      if spans[i][1] < spans[i - 1][2] then
        return fail(off, lvl, "cells %d and %d overlap", spans[i - 1][3],
                    spans[i][3])
      end
    end
    if live + dead ~= bs - lo then
      return fail(off, lvl, "heap of %d bytes holds %d live and %d dead",
                  bs - lo, live, dead)
    end
    if flag == 1 and u8(v, N_FLAGS) & 1 == 0 then
      return fail(off, lvl, "a key overflows but the node's flag is clear")
    end
    return true
  end
  -- Compares key j of a node with key string s.
  local function kcmp (v, lvl, j, s)
    if lvl == 1 then return lcmp(t, v, j, s) end
    if t.fixed then return vcompare(v, FI_ENT + j * t.IS, s) end
    return field_cmp(t, v, u32(v, SI_SLOTS + 12 * j), s)
  end
  local function key_at (v, lvl, j)
    if lvl == 1 then return lkey(t, v, j) end
    return ikey(t, v, j)
  end
  local function visit (off, lvl, lo, hi, is_root)
    local ok, err = claim(off, 1, off, lvl, lvl == 1 and "leaf" or
                          "internal node")
    if not ok then return nil, err end
    local v = node(t, off)
    local kind, n = u8(v, N_KIND), u32(v, N_COUNT)
    if kind ~= (lvl == 1 and LEAF or INTERNAL) then
      return fail(off, lvl, "kind is %d, expected %d", kind,
                  lvl == 1 and LEAF or INTERNAL)
    end
    if n == 0 and not (is_root and lvl == 1) then
      return fail(off, lvl, "is empty")
    end
    local used, cap
    if not t.fixed then
      ok, err = heap(off, v, n, lvl)
      if not ok then return nil, err end
    end
    if lvl == 1 then used, cap = lused(t, v, n), t.lcapb
    else used, cap = iused(t, v, n), t.icapb end
    if used > cap then
      return fail(off, lvl, "holds %d bytes, more than its %d", used, cap)
    end
    if lvl > 1 and t.fixed and n < t.ICAP then
      local pad = vread(v, FI_ENT + n * t.IS, (t.ICAP - n) * t.IS)
      if pad ~= srep("\255", #pad) then
        return fail(off, lvl, "slots after entry %d are not 0xFF", n - 1)
      end
    end
    for j = 1, n - 1 do
      local prev = key_at(v, lvl, j - 1)
      if kcmp(v, lvl, j, prev) < 0 then
        return fail(off, lvl, "keys %d and %d are out of order", j - 1, j)
      end
    end
    if n > 0 then
      if lo and kcmp(v, lvl, 0, lo) < 0 then
        return fail(off, lvl, "key 0 is below the parent's separator")
      end
      if hi and kcmp(v, lvl, n - 1, hi) > 0 then
        return fail(off, lvl, "key %d is above the parent's separator",
                    n - 1)
      end
    end
    if lvl == 1 then
      leaves[#leaves + 1] = off
      entries = entries + n
      st.leaves = st.leaves + 1
      st.leaf_used = st.leaf_used + used
      return true
    end
    st.internals = st.internals + 1
    st.internal_used = st.internal_used + used
    for j = 0, n do
      local clo, chi = lo, hi
      if j > 0 then clo = ikey(t, v, j - 1) end
      if j < n then chi = ikey(t, v, j) end
      ok, err = visit(ichild(t, v, j), lvl - 1, clo, chi, false)
      if not ok then return nil, err end
    end
    return true
  end
  -- The meta block.
  local ok, err = claim(t.meta, 1, nil, 0, "meta block")
  if not ok then return nil, err end
  local mv = node(t, t.meta)
  local magic, version, layout, ks, vs = vunpack(mv, META_FMT, 0)
  if magic ~= MAGIC or version ~= VERSION or layout ~= t.layout or
     ks ~= t.ks or vs ~= t.vs then
    return nil, sformat("meta block %d: header does not match the tree",
                        t.meta)
  end
  if u64(mv, M_ROOT) ~= t.root or u64(mv, M_HEIGHT) ~= t.height or
     u64(mv, M_SIZE) ~= t.nent then
    return nil, sformat("meta block %d: root %d, height %d, size %d; the "
                        .. "tree has %d, %d, %d", t.meta, u64(mv, M_ROOT),
                        u64(mv, M_HEIGHT), u64(mv, M_SIZE), t.root,
                        t.height, t.nent)
  end
  local vok, r1, r2 = pcall(visit, t.root, t.height, nil, nil, true)
  if not vok then return nil, "cannot walk the tree: " .. tostring(r1) end
  if not r1 then return nil, r2 end
  for j, off in ipairs(leaves) do
    local v = node(t, off)
    local want_prev, want_next = leaves[j - 1] or 0, leaves[j + 1] or 0
    if u64(v, L_PREV) ~= want_prev then
      return fail(off, 1, "previous leaf is %d, should be %d",
                  u64(v, L_PREV), want_prev)
    end
    if u64(v, L_NEXT) ~= want_next then
      return fail(off, 1, "next leaf is %d, should be %d", u64(v, L_NEXT),
                  want_next)
    end
  end
  if entries ~= t.nent then
    return nil, sformat("the leaves hold %d entries, the size is %d",
                        entries, t.nent)
  end
  st.entries = entries
  return st
end

--- Checks every invariant of the tree (see the top of fmap/bptree.lua).
-- @return true, or nil and a message naming the first broken invariant
-- and the node's offset
function Tree:verify ()
  check_self(self, "verify")
  local st, err = walk(self)
  if not st then return nil, err end
  return true
end

--- Figures about the tree, from a walk over all of it.
-- @return a table: size, height, leaves, internals, overflow_runs,
-- overflow_blocks, blocks (all the tree's, meta included), leaf_fill and
-- internal_fill (used bytes over capacity, 0..1), layout ("fixed" or
-- "slotted"); or nil and a message if the tree is damaged
function Tree:stats ()
  check_self(self, "stats")
  local st, err = walk(self)
  if not st then return nil, err end
  return {
    size = self.nent, height = self.height, leaves = st.leaves,
    internals = st.internals, overflow_runs = st.runs,
    overflow_blocks = st.run_blocks,
    blocks = 1 + st.leaves + st.internals + st.run_blocks,
    leaf_fill = st.leaves > 0 and st.leaf_used / (st.leaves * self.lcapb)
                or 0,
    internal_fill = st.internals > 0 and
                    st.internal_used / (st.internals * self.icapb) or 0,
    layout = self.fixed and "fixed" or "slotted",
  }
end

-- The methods, for help "t:add" and help(obj).
M._methods = Tree

return M
