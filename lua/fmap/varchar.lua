--- fmap.varchar: a store of variable-size byte strings (blobs) over the
-- blocks of a BlockFile, reference-counted: fs2's Varchar in Lua's idiom.
--
-- A blob is named by the 0-based file offset of its first byte, which a
-- caller may keep in its own structures. Small blobs share blocks carved
-- into size classes; a large one has a contiguous run of blocks of its own.
--[[
Layout, little-endian unless marked BE. bs is the block size.

Meta block (varchar.new allocates it; vc:offset() names it):
  OFFSET  SIZE  FIELD
       0     8  magic "fmapVCHR"
       8     4  format version (1)
      12     4  C, the number of size classes (a function of bs)
      16     8  block size
      24     8  the meta block's own offset
      32     8  live blobs
      40     8  slab blocks
      48     8  blocks held by large blobs
      56     8  first large blob's block (0 = none)
      64     8  blocks in the reserve
      72     8  runs in the reserve, R
      80    48  zero
     128   16C  per class c = 1..C: first partial slab block, first full one
  RS=128+16C  16*RMAX  reserve by start: (start BE, blocks BE), sorted
  RS+16*RMAX  16*RMAX  reserve by size: (blocks BE, start BE), sorted
  RMAX = (bs - RS) // 32 - 1 (112 for 4096-byte blocks); the arrays have
  room for RMAX + 1 entries, for the moment between insert and trim.

Slab block: slots of one class, slot size S (a multiple of 16; the classes
are 16, 32, ... 128, then steps of about 1.25 up to (bs - 56) / 2).
       0     4  "VCsb"
       4     4  class (1..C)
       8     8  owner: the meta block's offset
      16     8  the block's own offset
      24     8  next block in its class list (0 = none)
      32     8  previous block in its class list (0 = none)
      40     4  used slots
      44     4  first free slot + 1 (0 = none)
      48     4  carved: slots at or past it have never been used
      52     4  zero
      56        slots, slot k at 56 + k*S:
                  0  4  length (live) or next free slot + 1 (free)
                  4  4  references (0 = free)
                  8     the blob's bytes: its offset is block + 64 + k*S
Large blob: a run of n = ceil((64 + length) / bs) blocks.
       0     4  "VClg"
       4     4  references
       8     8  owner
      16     8  the run's own offset
      24     8  next large blob (0 = none)
      32     8  previous large blob (0 = none)
      40     8  length
      48     8  n
      56     8  zero
      64        the blob's bytes: its offset is run + 64
A run in the reserve starts with "VCfr", owner and own offset in the place
of the header it had, so a stale offset reads as freed. Every block the
store reaches through its own links (class lists, the large list, the
reserve) is checked for its magic, owner and own offset before it is
written or handed out, so a damaged store raises "varchar at M is
corrupt: ..." rather than writing over another structure's block.

Space. A blob of up to S_max - 8 bytes takes a slot of the smallest class
that holds it, in the first block of that class's partial list; a block
that fills moves to the full list, and back when a slot frees; a block
whose last slot frees leaves the class. Larger blobs take a run of their
own. Freed blocks and runs go to the reserve, a best-fit index of free runs
kept in the meta block, where adjacent runs coalesce; new slab blocks and
large runs come from the reserve first (the smallest run that fits, taken
from its start), else from the BlockFile. The reserve holds at most RMAX
runs and at most max(RESERVE_MIN, blocks held by live blobs) blocks;
beyond that, runs go back to the BlockFile (bf:free), the largest first
(the smallest first when there are too many runs). So the file does not
grow under churn at a steady live size, and space freed for good returns
to the BlockFile. The reserve exists because the BlockFile's own free list
serves single blocks well but merges a freed run only with the run before
it and the head run, and takes the first fit among its first 512 runs for
a multi-block request, not the best.

Invariants (vc:verify checks them):
  - every block of a class list is a slab block of this varchar and of that
    class, linked both ways; the partial lists hold blocks with 0 < used <
    slots, the full lists blocks with used = slots; the free slots are the
    slots below carved not in use, each once, with 0 references; a live
    slot has references >= 1 and a length that fits its slot
  - every large blob is on the large list, linked both ways, with
    references >= 1 and n = ceil((64 + length) / bs)
  - the reserve's two arrays hold the same R runs, sorted, with no two
    runs overlapping or adjacent; its counts match; the first block of
    each run carries the "VCfr" stamp, which allocation checks
  - slab blocks, large runs, reserve runs and the meta block never overlap,
    and none of their blocks is free in the BlockFile
  - the meta counts (live blobs, slab blocks, large blocks) match the walk
]]

local M = {}

local Varchar = {}
Varchar.__index = Varchar
Varchar.__name = "varchar"   -- what errors and help call it

-- Constants are <const>: the compiler folds them into the instructions
-- that use them, where a plain local is an upvalue fetched at each use.
local MAGIC <const> = "fmapVCHR"
local VERSION <const> = 1
local SLAB <const> = 0x62734356     -- "VCsb" as a little-endian u32
local LARGE <const> = 0x676c4356    -- "VClg"
local FREED <const> = 0x72664356    -- "VCfr"
local U32 <const> = 0xffffffff
local REF1 <const> = 1 << 32  -- one reference, in a slot or large header word
--- Blocks the reserve may hold whatever the live size.
M.RESERVE_MIN = 16

-- Meta block fields.
local M_VERSION <const>, M_CLASSES <const>, M_BS <const> = 8, 12, 16
local M_SELF <const>, M_BLOBS <const>, M_SLABS <const> = 24, 32, 40
local M_LBLOCKS <const>, M_LHEAD <const>, M_RBLOCKS <const> = 48, 56, 64
local M_RRUNS <const>, M_CLASS <const> = 72, 128
-- Slab and large headers (shared fields first).
local H_OWNER <const>, H_SELF <const>, H_NEXT <const>, H_PREV <const> =
  8, 16, 24, 32
local S_USED <const>, S_FREE <const>, S_CARVED <const>, SLAB_HDR <const> =
  40, 44, 48, 56
local L_LEN <const>, L_BLOCKS <const>, LHDR <const> = 40, 48, 64

local math_type, spack = math.type, string.pack

local kit = require "fmap.kit"
local mark   -- fmap.profile's operation mark while a profile runs, else nil
kit.watch(function (f) mark = f end)
local VM = kit.view_methods   -- called as plain functions: no lookup
local u32, u64, set_u32, set_u64 = VM.u32, VM.u64, VM.set_u32, VM.set_u64
local vread, vwrite, vretarget, vlive = VM.read, VM.write, VM.retarget,
  VM.live
local vtry_retarget = VM.try_retarget
local pcall, type, error, tostring = pcall, type, error, tostring
local setmetatable = setmetatable
local guard, argcheck, accessors = kit.guard, kit.argcheck, kit.accessors
local enter, argerror, typeerror = kit.enter, kit.argerror, kit.typeerror
local checkinteger, bad_self = kit.checkinteger, kit.bad_self
local getmetatable = getmetatable
local WEAK = { __mode = "v" }

-- The blocks of a large blob of len bytes: its header and its bytes,
-- rounded up to whole blocks (without overflow, whatever len).
local function large_blocks (bs, len)
  return len // bs + (len % bs + LHDR + bs - 1) // bs
end

-- The size classes of a block size: slot sizes (multiples of 16) and, for
-- quick lookup, the class of each (length + 8 + 15) // 16.
local geometry_cache = {}
local function geometry (bs)
  local g = geometry_cache[bs]
  if g then return g end
  local area = bs - SLAB_HDR
  local top = area // 2 // 16 * 16
  local sizes, s = {}, 16
  while s < top do
    sizes[#sizes + 1] = s
    if s < 128 then s = s + 16 else s = (s * 5 // 4) // 16 * 16 end
  end
  sizes[#sizes + 1] = top
  local slots, lookup = {}, {}
  for c, size in ipairs(sizes) do slots[c] = area // size end
  local c = 1
  for units = 1, math.min(top // 16, 65536) do
    while sizes[c] < units * 16 do c = c + 1 end
    lookup[units] = c
  end
  local nc = #sizes
  local rs = M_CLASS + 16 * nc
  local cap = (bs - rs) // 32    -- one more than RMAX: room to insert
  g = { sizes = sizes, slots = slots, lookup = lookup, classes = nc,
        small_max = top - 8, rs = rs, rz = rs + 16 * cap, rmax = cap - 1 }
  geometry_cache[bs] = g
  return g
end

--- The on-disk layout's constants, as the comment at the top of this file
-- gives them, for code that reads stores without the store's own
-- (`fmap.classify.varchar`): `MAGIC`, `VERSION`, the tags `SLAB`, `LARGE`
-- and `FREED` (the low u32 of a slab block, large blob or reserve run);
-- field offsets: `M_` in the meta block, `H_` in the header that slab
-- blocks and large blobs share, `S_` in a slab block's (`SLAB_HDR`, where
-- its slots start), `L_` in a large blob's (`LHDR`, where its bytes
-- start); and `geometry(bs)`, the size classes of a block size: `{sizes,
-- slots, classes, small_max, rs, rmax}` (slot sizes and slots per block
-- by class, their count, the largest small blob, where the reserve's
-- arrays start and the runs they hold).
M.layout = {
  MAGIC = MAGIC, VERSION = VERSION, SLAB = SLAB, LARGE = LARGE,
  FREED = FREED,
  M_VERSION = M_VERSION, M_CLASSES = M_CLASSES, M_BS = M_BS,
  M_SELF = M_SELF, M_BLOBS = M_BLOBS, M_SLABS = M_SLABS,
  M_LBLOCKS = M_LBLOCKS, M_LHEAD = M_LHEAD, M_RBLOCKS = M_RBLOCKS,
  M_RRUNS = M_RRUNS, M_CLASS = M_CLASS,
  H_OWNER = H_OWNER, H_SELF = H_SELF, H_NEXT = H_NEXT, H_PREV = H_PREV,
  S_USED = S_USED, S_FREE = S_FREE, S_CARVED = S_CARVED,
  SLAB_HDR = SLAB_HDR, L_LEN = L_LEN, L_BLOCKS = L_BLOCKS, LHDR = LHDR,
  geometry = geometry,
}

-- The class (1..C) of a small blob of len bytes, or 0 for a large one.
local function class_of (self, len)
  if len > self.small_max then return 0 end
  local units = (len + 23) // 16
  local c = self.lookup[units]
  if c then return c end
  local sizes = self.sizes
  c = self.lookup[#self.lookup]
  while sizes[c] < len + 8 do c = c + 1 end
  return c
end

-- Raises unless bf is an open BlockFile (level as argcheck's).
local function check_bf (bf, fname, level)
  if type(bf) ~= "userdata"
     or not pcall(function () return bf:block_size() end) then
    local ok = type(bf) == "userdata" and tostring(bf):match("closed")
    argerror(1, fname, ok and "the BlockFile is closed" or
             ("BlockFile expected, got " .. type(bf)), (level or 2) + 1)
  end
end

-- After a rollback of its BlockFile: a cached view may be dead.
local function forget_views (self)
  for k in pairs(self.views) do self.views[k] = nil end
end

local function new_handle (bf, meta)
  local bs = bf:block_size()
  local g = geometry(bs)
  local self = setmetatable({
    bf = bf, meta = meta, bs = bs, ro = bf:readonly(),
    sizes = g.sizes, slots = g.slots, lookup = g.lookup,
    classes = g.classes, small_max = g.small_max,
    rs = g.rs, rz = g.rz, rmax = g.rmax,
    guard = guard.of(bf, string.format("varchar at %d", meta)),
    views = setmetatable({}, WEAK),   -- [1]: meta_view's
  }, Varchar)
  bf:on_rollback(self, forget_views)
  return self
end

--- A new view of the meta block of the structure self, for an operation
-- called by the user's code: a closed BlockFile (or a meta block that is
-- not allocated) raises at the user's line, not at this one (level as
-- error's, seen from own_view's caller: 2, that caller's caller).
local function own_view (self, level)
  local ok, v = pcall(self.bf.get, self.bf, self.meta)
  if not ok then
    error((tostring(v):gsub("^[^\n:]+:%d+: ", "")), (level or 2) + 1)
  end
  return v
end

--- The view an operation of the structure self works through, pointed at
-- its meta block (self.meta). It is kept between operations in
-- self.views, a weak table (so a collection takes it, and bf:close is not
-- refused for it), rather than acquired per operation (a tracked userdata
-- with a finalizer; bench/instructions.lua counts the list's operations
-- either way within 2%). Only one
-- operation of a structure runs at a time (its guard), so one view serves;
-- a view that a free killed is replaced. with and mmlist's size, which run
-- user code or run unguarded, take views of their own.
local function meta_view (self)
  local views = self.views
  local v = views[1]
  if v ~= nil and v:live() then
    v:retarget(self.meta)
    return v
  end
  v = own_view(self, 3)
  views[1] = v
  return v
end

--- Creates an empty blob store: allocates its meta block.
-- @param bf a BlockFile
-- @return the store, or nil, message, errno when the BlockFile cannot grow
function M.new (bf)
  check_bf(bf, "new")
  if bf:readonly() then
    argerror(1, "new", "the BlockFile is read-only")
  end
  local meta, msg, errno = bf:allocate()
  if not meta then return nil, msg, errno end
  local self = new_handle(bf, meta)
  local v <close> = bf:get(meta)
  v:write(0, MAGIC)
  v:set_u32(M_VERSION, VERSION)
  v:set_u32(M_CLASSES, self.classes)
  v:set_u64(M_BS, self.bs)
  v:set_u64(M_SELF, meta)
  return self
end

--- Opens the blob store whose meta block is at offset.
-- @param bf a BlockFile
-- @param offset what vc:offset() returned
-- @return the store, or nil and a message when no store is there
function M.open (bf, offset)
  check_bf(bf, "open")
  offset = checkinteger(offset, 2, "open")
  local ok, v = pcall(bf.get, bf, offset)
  if not ok then argerror(2, "open", argcheck.reason(v)) end
  local bs = bf:block_size()
  local magic, version = v:read(0, 8), v:u32(M_VERSION)
  local classes, vbs, vself = v:u32(M_CLASSES), v:u64(M_BS), v:u64(M_SELF)
  v:release()
  if magic ~= MAGIC then
    return nil, string.format("offset %d does not hold a varchar (no magic)",
                              offset)
  elseif version ~= VERSION then
    return nil, string.format("the varchar at %d has format version %d, "
                              .. "not %d", offset, version, VERSION)
  elseif vbs ~= bs or vself ~= offset or classes ~= geometry(bs).classes then
    return nil, string.format("the varchar at %d is corrupt (its meta "
                              .. "block disagrees with the file)", offset)
  end
  return new_handle(bf, offset)
end

-- Raises unless self is a store, for method fname: a method called with
-- '.' for ':' is passed something else. Raises at the method's caller.
local function check_self (self, fname)
  if getmetatable(self) ~= Varchar then
    bad_self("varchar", fname, self, nil, 4)
  end
end

-- The offset x (argument 1 of method fname) as an integer, else raises
-- at the method's caller. (The methods test for an integer first: the
-- call is for the others.)
local function toint (x, fname)
  local i = checkinteger(x, 1, fname, 3)
  return i
end

-- vc:offset() (for varchar.open) and vc:blockfile().
accessors(Varchar, check_self)

function Varchar:__tostring ()
  return string.format("varchar (meta at %d)", self.meta)
end

local function check_writable (self, fname)
  if self.ro then
    error(string.format("cannot %s: the BlockFile is read-only", fname), 3)
  end
end

-- Raises "varchar at M is corrupt: ..." (a damaged file, not a misuse).
-- A store whose file was cut short under its map reads zeros, which look
-- like damage or a dead blob: before saying either, ask the BlockFile.
-- sync raises if the map was lost (or the file closed), and finds a cut
-- that no access has met yet, as a read of the zeros past the end of a
-- file cut in the middle of a page is.
local function lostmap (bf)
  bf:sync()
end
M._lostmap = lostmap

local function corrupt (self, fmt, ...)
  lostmap(self.bf)
  error(string.format("varchar at %d is corrupt: " .. fmt, self.meta, ...),
        0)
end

-- Raises "offset x is not a live blob (why)" for method fname.
local function notblob (self, fname, x, why)
  lostmap(self.bf)
  argerror(1, fname, string.format("offset %d is not a live blob (%s)", x,
                                   why), 4)
end

-- What locate finds out when find has found no live blob: why, raised in
-- the caller's words (x is an integer).
local function locate_slow (self, v, x, fname)
  local bs = self.bs
  local r = x % bs
  local block = x - r
  if not pcall(v.retarget, v, block) then   -- find out why
    if x < 0 or x >= self.bf:size() then
      notblob(self, fname, x, "outside the file")
    elseif block == 0 then
      notblob(self, fname, x, "in the control block")
    end
    notblob(self, fname, x, string.format("block %d is not allocated", block))
  end
  local w = v:u64(0)
  local magic = w & U32
  if (magic ~= SLAB and magic ~= LARGE and magic ~= FREED)
     or v:u64(H_SELF) ~= block then
    notblob(self, fname, x, string.format("block %d is not a varchar block",
                                          block))
  elseif v:u64(H_OWNER) ~= self.meta then
    notblob(self, fname, x, string.format("block %d belongs to another "
                                          .. "varchar", block))
  elseif magic == SLAB then
    local c = w >> 32
    local size = self.sizes[c]
    if not size then
      notblob(self, fname, x, string.format("block %d has a bad class %d",
                                            block, c))
    end
    local k = (r - SLAB_HDR - 8) // size
    if r < SLAB_HDR + 8 or (r - SLAB_HDR - 8) % size ~= 0
       or k >= v:u32(S_CARVED) then
      notblob(self, fname, x, "not the start of a blob")
    end
    local h = v:u64(r - 8)
    local refs = h >> 32
    if refs == 0 then notblob(self, fname, x, "freed already") end
    local len = h & U32
    if len > size - 8 then
      corrupt(self, "the blob at %d has a length of %d bytes, past its "
              .. "slot of %d", x, len, size - 8)
    end
    return r, len, refs, c, 1
  elseif magic == LARGE then
    if r ~= LHDR then notblob(self, fname, x, "not the start of a blob") end
    local refs = w >> 32
    if refs == 0 then notblob(self, fname, x, "freed already") end
    local len, n = v:u64(L_LEN), v:u64(L_BLOCKS)
    -- n is how many blocks free gives back: a wrong one would give away
    -- another structure's
    if len <= self.small_max or len > self.bf:size()
       or n ~= large_blocks(self.bs, len)
       or n > 1 and not pcall(v.retarget, v, block, n) then
      corrupt(self, "the large blob at %d says %d bytes in %d blocks", x,
              len, n)
    end
    return LHDR, len, refs, 0, n
  end
  notblob(self, fname, x, "freed already")
end

-- Points the view v at the block(s) of blob x (an integer) and returns
-- what locate returns for a live blob, or nil, with v anywhere, for
-- anything else: it raises nothing (but for a lost map) and writes
-- nothing, and checks all that locate checks (and that the slot lies in
-- its block), in fewer calls. The fast path of every operation.
local function find_blob (self, v, x)
  local bs = self.bs
  local r = x % bs
  local block = x - r
  -- the line of the slot's header comes with the check of the block
  if not vtry_retarget(v, block, 1, r >= 8 and r - 8 or 0) then
    return nil
  end
  local w = u64(v, 0)
  if u64(v, H_SELF) ~= block or u64(v, H_OWNER) ~= self.meta then
    return nil
  end
  local magic = w & U32
  if magic == SLAB then
    local size = self.sizes[w >> 32]
    if not size or r < SLAB_HDR + 8 or r + size - 8 > bs
       or (r - SLAB_HDR - 8) % size ~= 0
       or (r - SLAB_HDR - 8) // size >= u32(v, S_CARVED) then
      return nil
    end
    local h = u64(v, r - 8)
    local len = h & U32
    if h >> 32 == 0 or len > size - 8 then return nil end
    return r, len, h >> 32, w >> 32, 1
  elseif magic == LARGE then
    local refs = w >> 32
    if r ~= LHDR or refs == 0 then return nil end
    local len, n = u64(v, L_LEN), u64(v, L_BLOCKS)
    if len <= self.small_max or len > self.bf:size()
       or n ~= large_blocks(bs, len)
       or n > 1 and not vtry_retarget(v, block, n) then
      return nil
    end
    return LHDR, len, refs, 0, n
  end
  return nil
end

-- Points the view v at the block(s) of blob x and validates the blob.
-- Returns its data position in v, its length, its references, its class
-- (0 for a large blob) and, for a large blob, its blocks; raises, at the
-- caller of the method that called it, when x is no live blob. (The
-- methods pass x as an integer; locate_slow is a tail call, so that its
-- errors are one level below the method, as locate's.)
local function locate (self, v, x, fname)
  local pos, len, refs, c, n = find_blob(self, v, x)
  if pos then return pos, len, refs, c, n end
  return locate_slow(self, v, x, fname)
end

-- Points v at block b, which the store's own links name, after checking
-- that it is a block of this store with the given magic.
local function follow (self, v, b, magic, what)
  if not pcall(v.retarget, v, b) or v:u64(0) & U32 ~= magic
     or v:u64(H_SELF) ~= b or v:u64(H_OWNER) ~= self.meta then
    corrupt(self, "%s names block %d, which is not one of its %s", what, b,
            magic == SLAB and "slab blocks" or magic == LARGE
            and "large blobs" or "free runs")
  end
end

-------------------------------------------------------------------------
-- The reserve: free runs, in two sorted arrays of the meta block. The
-- first block of each run carries the "VCfr" stamp.
-------------------------------------------------------------------------

-- The reserve's run count, from the meta block v points at: checked, as
-- it sizes the searches of the reserve's arrays.
local function runs (self, v)
  local count = v:u64(M_RRUNS)
  if count < 0 or count > self.rmax then
    corrupt(self, "the reserve counts %d runs; it holds at most %d", count,
            self.rmax)
  end
  return count
end

-- Raises unless (start, blocks), a run the reserve's arrays name, may be
-- the reserve's: within its block count (rblocks) and aligned. A run
-- grown by damage would hand out, or give back, another structure's
-- blocks.
local function check_run (self, start, blocks, rblocks)
  if blocks < 1 or blocks > rblocks or start % self.bs ~= 0 then
    corrupt(self, "the reserve names a run of %d blocks at %d, but holds "
            .. "%d blocks", blocks, start, rblocks)
  end
end

-- Removes entry i (0-based) of the array at pos holding count entries.
local function remove_at (v, pos, i, count)
  local at = pos + 16 * i
  if i < count - 1 then v:copy(at, v, at + 16, 16 * (count - 1 - i)) end
  v:fill(0, pos + 16 * (count - 1), 16)
end

-- Inserts (a, b) as entry i of the array at pos holding count entries.
local function insert_at (v, pos, i, count, a, b)
  local at = pos + 16 * i
  if i < count then v:copy(at + 16, v, at, 16 * (count - i)) end
  v:pack(at, ">I8I8", a, b)
end

-- Index of (a, b) in the array at pos, which must hold it.
local function find (self, v, pos, count, a, b)
  local i, found = v:bsearch(pos, count, 16, spack(">I8I8", a, b))
  if not found then
    corrupt(self, "the reserve's arrays disagree on (%d, %d)", a, b)
  end
  return i
end

-- Stamps the block at start as the first of a free run; v ends there.
local function stamp (self, v, start)
  v:retarget(start)
  v:set_u32(0, FREED)
  v:set_u64(H_OWNER, self.meta)
  v:set_u64(H_SELF, start)
end

local function reserve_remove (self, v, start, blocks, i_start, count)
  remove_at(v, self.rs, i_start, count)
  remove_at(v, self.rz, find(self, v, self.rz, count, blocks, start), count)
end

local function reserve_insert (self, v, start, blocks, count)
  local rs = self.rs
  local i = v:bsearch(rs, count, 16, spack(">I8", start))
  insert_at(v, rs, i, count, start, blocks)
  local zs = self.rz
  i = v:bsearch(zs, count, 16, spack(">I8I8", blocks, start))
  insert_at(v, zs, i, count, blocks, start)
end

-- Takes n blocks for the store; v must point at the meta block, and does
-- after. Returns the offset and whether the blocks are zeroed, or nil,
-- message, errno.
local function palloc (self, v, n)
  local count = runs(self, v)
  if count > 0 then
    local i = v:bsearch(self.rz, count, 16, spack(">I8", n))
    if i < count then
      local blocks, start = v:unpack(">I8I8", self.rz + 16 * i)
      check_run(self, start, blocks, v:u64(M_RBLOCKS))
      follow(self, v, start, FREED, "the reserve")
      if not pcall(v.retarget, v, start, blocks) then
        corrupt(self, "reserve run at %d of %d blocks is not all allocated",
                start, blocks)
      end
      v:retarget(self.meta)
      remove_at(v, self.rz, i, count)
      local j = find(self, v, self.rs, count, start, blocks)
      remove_at(v, self.rs, j, count)
      count = count - 1
      if blocks > n then
        reserve_insert(self, v, start + n * self.bs, blocks - n, count)
        count = count + 1
        stamp(self, v, start + n * self.bs)
        v:retarget(self.meta)
      end
      v:set_u64(M_RRUNS, count)
      v:set_u64(M_RBLOCKS, v:u64(M_RBLOCKS) - n)
      return start, false
    end
  end
  local off, msg, errno
  if n == 1 then off, msg, errno = self.bf:allocate()
  else off, msg, errno = self.bf:allocate_blocks(n) end
  if not off then return nil, msg, errno end
  return off, true
end

-- Gives n blocks at start back to the store's reserve, merging them with
-- neighbouring runs, then returns runs beyond the reserve's limits to the
-- BlockFile. v must point at the meta block, and does after.
local function pfree (self, v, start, n)
  local bs, rs = self.bs, self.rs
  v:retarget(self.meta)
  local count = runs(self, v)
  stamp(self, v, start)     -- also makes stale offsets read as freed
  v:retarget(self.meta)
  local rblocks = v:u64(M_RBLOCKS) + n
  local i = v:bsearch(rs, count, 16, spack(">I8", start))
  local a, b = start, n
  if i > 0 then      -- the run before
    local ps, pb = v:unpack(">I8I8", rs + 16 * (i - 1))
    check_run(self, ps, pb, rblocks)
    if ps + pb * bs > start then
      corrupt(self, "reserve run at %d overlaps freed blocks at %d", ps,
              start)
    elseif ps + pb * bs == start then
      reserve_remove(self, v, ps, pb, i - 1, count)
      count, i = count - 1, i - 1
      a, b = ps, pb + b
    end
  end
  if i < count then  -- the run after
    local ns, nb = v:unpack(">I8I8", rs + 16 * i)
    check_run(self, ns, nb, rblocks)
    if ns < start + n * bs then
      corrupt(self, "reserve run at %d overlaps freed blocks at %d", ns,
              start)
    elseif ns == start + n * bs then
      reserve_remove(self, v, ns, nb, i, count)
      count = count - 1
      b = b + nb
    end
  end
  reserve_insert(self, v, a, b, count)
  count = count + 1
  local budget = v:u64(M_SLABS) + v:u64(M_LBLOCKS)
  if budget < M.RESERVE_MIN then budget = M.RESERVE_MIN end
  while count > self.rmax or (rblocks > budget and count > 0) do
    local z = count > self.rmax and 0 or count - 1
    local blocks, rstart = v:unpack(">I8I8", self.rz + 16 * z)
    check_run(self, rstart, blocks, rblocks)
    follow(self, v, rstart, FREED, "the reserve")
    v:retarget(self.meta)
    remove_at(v, self.rz, z, count)
    remove_at(v, rs, find(self, v, rs, count, rstart, blocks), count)
    count = count - 1
    rblocks = rblocks - blocks
    v:set_u64(M_RRUNS, count)
    v:set_u64(M_RBLOCKS, rblocks)
    local ok, msg = self.bf:free(rstart, blocks)
    if ok == nil and msg then error(msg, 3) end
  end
  v:set_u64(M_RRUNS, count)
  v:set_u64(M_RBLOCKS, rblocks)
end

-------------------------------------------------------------------------
-- Lists of blocks (class lists, the large list), linked through H_NEXT
-- and H_PREV; heads in the meta block at hp. v ends anywhere.
-------------------------------------------------------------------------

-- Every block a link names is checked (magic, owner, own offset) before
-- it is written.
local function unlink (self, v, hp, next, prev, magic)
  if prev == 0 then v:retarget(self.meta); v:set_u64(hp, next)
  else
    follow(self, v, prev, magic, "a list")
    v:set_u64(H_NEXT, next)
  end
  if next ~= 0 then
    follow(self, v, next, magic, "a list")
    v:set_u64(H_PREV, prev)
  end
end

local function push (self, v, hp, b, magic)
  v:retarget(self.meta)
  local head = v:u64(hp)
  if head ~= 0 then
    follow(self, v, head, magic, "a list head")
    v:set_u64(H_PREV, b)
    v:retarget(self.meta)
  end
  v:set_u64(hp, b)
  v:retarget(b)
  v:set_u64(H_NEXT, head)
  v:set_u64(H_PREV, 0)
end

-------------------------------------------------------------------------
-- Allocation and release, on one view v (pointing anywhere on entry).
-------------------------------------------------------------------------

-- Stores s (or len zero bytes when s is nil) as a new blob.
-- Returns its offset, or nil, message, errno.
local function store (self, v, s, len)
  local c = class_of(self, len)
  local meta = self.meta
  vretarget(v, meta, 1, false)   -- the meta block: in the cache
  if c ~= 0 then
    local hp = M_CLASS + 16 * (c - 1)
    local block = u64(v, hp)
    local size, slots = self.sizes[c], self.slots[c]
    local fresh = true
    if block == 0 then
      local off, msg, errno = palloc(self, v, 1)
      if not off then return nil, msg, errno end
      block = off
      v:set_u64(hp, block)
      v:set_u64(M_SLABS, v:u64(M_SLABS) + 1)
      v:set_u64(M_BLOBS, v:u64(M_BLOBS) + 1)
      v:retarget(block)
      v:set_u64(0, SLAB | c << 32)
      v:set_u64(H_OWNER, meta)
      v:set_u64(H_SELF, block)
      v:set_u64(H_NEXT, 0)
      v:set_u64(H_PREV, 0)
      v:set_u64(S_USED, 0)
      v:set_u64(S_CARVED, 0)
    else     -- checked before anything is written (follow's checks)
      local w = vtry_retarget(v, block, 1, false) and u64(v, 0)
      if not w or w & U32 ~= SLAB or u64(v, H_SELF) ~= block
         or u64(v, H_OWNER) ~= meta then
        follow(self, v, block, SLAB, "a class list head")   -- raises
      end
      if w >> 32 ~= c then
        corrupt(self, "the class %d list names block %d, of class %d", c,
                block, w >> 32)
      end
      fresh = false
    end
    local uf = u64(v, S_USED)          -- used slots | first free << 32
    local used, k = (uf & U32) + 1, uf >> 32
    if k ~= 0 then
      k = k - 1
      set_u64(v, S_USED, used | u32(v, SLAB_HDR + k * size) << 32)
    else
      k = u32(v, S_CARVED)
      set_u32(v, S_CARVED, k + 1)
      set_u32(v, S_USED, used)
    end
    local sp = SLAB_HDR + k * size
    set_u64(v, sp, len | REF1)
    if s then vwrite(v, sp + 8, s) else v:fill(0, sp + 8, len) end
    if used == slots then   -- full: from the partial list to the full one
      unlink(self, v, hp, u64(v, H_NEXT), 0, SLAB)
      push(self, v, hp + 8, block, SLAB)
    end
    if not fresh then
      vretarget(v, meta, 1, false)
      set_u64(v, M_BLOBS, u64(v, M_BLOBS) + 1)
    end
    return block + sp + 8
  end
  local n = large_blocks(self.bs, len)
  local head = v:u64(M_LHEAD)
  if head ~= 0 then   -- checked before anything is taken
    follow(self, v, head, LARGE, "the large list head")
    v:retarget(meta)
  end
  local run, zeroed, errno = palloc(self, v, n)
  if not run then return nil, zeroed, errno end
  v:set_u64(M_BLOBS, v:u64(M_BLOBS) + 1)
  v:set_u64(M_LBLOCKS, v:u64(M_LBLOCKS) + n)
  push(self, v, M_LHEAD, run, LARGE)
  v:set_u64(0, LARGE | REF1)
  v:set_u64(H_OWNER, meta)
  v:set_u64(H_SELF, run)
  v:set_u64(L_LEN, len)
  v:set_u64(L_BLOCKS, n)
  v:set_u64(56, 0)
  if s then
    v:retarget(run, n)
    v:write(LHDR, s)
  elseif not zeroed then
    v:retarget(run, n)
    v:fill(0, LHDR, len)
  end
  return run + LHDR
end

-- Releases the blob located in v (pos, class c, blocks n): its space
-- goes back to its slab block or to the reserve.
local function release (self, v, x, pos, c, n)
  local block = x - pos
  if c ~= 0 then
    local sp = pos - 8
    local k = (sp - SLAB_HDR) // self.sizes[c]
    local uf = u64(v, S_USED)          -- used slots | first free << 32
    local used = (uf & U32) - 1
    set_u64(v, sp, uf >> 32)
    set_u64(v, S_USED, used | (k + 1) << 32)
    local slots = self.slots[c]
    local hp = M_CLASS + 16 * (c - 1)
    if used == 0 or used == slots - 1 then
      local next, prev = u64(v, H_NEXT), u64(v, H_PREV)
      unlink(self, v, used == slots - 1 and hp + 8 or hp, next, prev, SLAB)
      if used == 0 then
        vretarget(v, self.meta, 1, false)
        set_u64(v, M_SLABS, u64(v, M_SLABS) - 1)
        set_u64(v, M_BLOBS, u64(v, M_BLOBS) - 1)
        pfree(self, v, block, 1)
        return
      end
      push(self, v, hp, block, SLAB)
    end
    vretarget(v, self.meta, 1, false)
    set_u64(v, M_BLOBS, u64(v, M_BLOBS) - 1)
    return
  end
  v:retarget(block)
  local next, prev = v:u64(H_NEXT), v:u64(H_PREV)
  v:set_u64(0, LARGE)          -- no references: freed
  unlink(self, v, M_LHEAD, next, prev, LARGE)
  v:retarget(self.meta)
  v:set_u64(M_BLOBS, v:u64(M_BLOBS) - 1)
  v:set_u64(M_LBLOCKS, v:u64(M_LBLOCKS) - n)
  pfree(self, v, block, n)
end

-- replace of the blob x, which locate found at pos (refs, class c, n
-- blocks), on the view v, the guard entered.
local function replace_on (self, v, x, s, fname, pos, refs, c, n)
  local len = #s
  if refs == 1 then
    if c ~= 0 and class_of(self, len) == c then
      set_u32(v, pos - 8, len)
      vwrite(v, pos, s)
      return x
    elseif c == 0 and len > self.small_max
           and large_blocks(self.bs, len) == n then
      v:set_u64(L_LEN, len)
      v:write(pos, s)
      return x
    end
  end
  local y, msg, errno = store(self, v, s, len)
  if not y then return nil, msg, errno end
  pos, _, refs, c, n = locate(self, v, x, fname or "replace")
  if refs == 1 then release(self, v, x, pos, c, n)
  else v:set_u32(c ~= 0 and pos - 4 or 4, refs - 1) end
  return y
end

-------------------------------------------------------------------------
-- Public methods
-------------------------------------------------------------------------

-- len as an integer, not negative (else raises for fname's argument 1).
local function check_length (len, fname)
  if math_type(len) ~= "integer" then
    len = checkinteger(len, 1, fname, 3)
  end
  if len < 0 then
    argerror(1, fname, string.format("length %d is negative", len), 3)
  end
  return len
end

--- Allocates a blob of length zero bytes.
-- @param length bytes, >= 0
-- @return its offset, or nil, message, errno when the BlockFile cannot grow
function Varchar:alloc (length)
  if mark then mark("varchar.alloc") end
  check_self(self, "alloc")
  length = check_length(length, "alloc")
  check_writable(self, "alloc")
  local _ <close> = enter(self.guard, "alloc")
  local v = meta_view(self)
  return store(self, v, nil, length)
end

--- Stores a copy of the string data as a new blob with one reference.
-- @return its offset, or nil, message, errno when the BlockFile cannot grow
function Varchar:put (data)
  if mark then mark("varchar.put", data) end
  -- check_self, check_writable, enter and meta_view, inline
  if getmetatable(self) ~= Varchar then
    bad_self("varchar", "put", self, nil, 3)
  end
  if type(data) ~= "string" then typeerror(1, "put", "string", data) end
  if self.ro then error("cannot put: the BlockFile is read-only", 2) end
  local g = self.guard
  if g.busy then enter(g, "put") end
  g.busy = "put"
  local _ <close> = g
  local v = self.views[1]
  if v == nil or not vlive(v) then v = meta_view(self) end
  return store(self, v, data, #data)    -- store points v at the meta block
end

--- The bytes of the blob at offset, as a string.
function Varchar:get (offset)
  if mark then mark("varchar.get") end
  -- check_self, enter and meta_view, inline; find points the view at the
  -- blob, wherever it was
  if getmetatable(self) ~= Varchar then
    bad_self("varchar", "get", self, nil, 3)
  end
  if math_type(offset) ~= "integer" then offset = toint(offset, "get") end
  local g = self.guard
  if g.busy then enter(g, "get") end
  g.busy = "get"
  local _ <close> = g
  local v = self.views[1]
  if v == nil or not vlive(v) then v = meta_view(self) end
  local pos, len = find_blob(self, v, offset)
  if not pos then pos, len = locate_slow(self, v, offset, "get") end
  return vread(v, pos, len)
end

-- The start of size, refs, free, ref and deref: checks self, offset
-- (argument 1) and, for a method that writes, that the file is writable,
-- as check_self, toint and check_writable do; then, unless another
-- operation runs (which raises before the store's view is touched),
-- makes the store's view if it has none and enters the guard for fname.
-- Returns the guard, for the method's to-be-closed variable, offset as an
-- integer and the view, which the method points at the meta block once
-- the guard is held; raises at the method's caller.
local function begin (self, offset, fname, writes)
  if getmetatable(self) ~= Varchar then
    bad_self("varchar", fname, self, nil, 4)
  end
  if math_type(offset) ~= "integer" then
    offset = checkinteger(offset, 1, fname, 3)
  end
  if writes and self.ro then
    error(string.format("cannot %s: the BlockFile is read-only", fname), 3)
  end
  local g = self.guard
  if g.busy then enter(g, fname, 4) end
  local v = self.views[1]
  if v == nil or not vlive(v) then v = own_view(self, 3); self.views[1] = v end
  g.busy = fname
  return g, offset, v
end

--- The length in bytes of the blob at offset.
function Varchar:size (offset)
  if mark then mark("varchar.size") end
  local _ <close>, offset, v = begin(self, offset, "size")
  vretarget(v, self.meta, 1, false)
  local _, len = locate(self, v, offset, "size")
  return len
end

--- The references to the blob at offset (1 after put or alloc).
function Varchar:refs (offset)
  if mark then mark("varchar.refs") end
  local _ <close>, offset, v = begin(self, offset, "refs")
  vretarget(v, self.meta, 1, false)
  local _, _, refs = locate(self, v, offset, "refs")
  return refs
end

--- Calls fn(view, pos, len) with a view holding the blob at offset: its
-- bytes are view[pos, pos + len). The view covers the blob's block(s),
-- which it may share with other blobs: read and write only inside the
-- blob. The view is released when fn returns or raises. fn may use the
-- store (the guard is left before fn runs).
-- @return fn's results
function Varchar:with (offset, fn)
  if mark then mark("varchar.with") end
  check_self(self, "with")
  if math_type(offset) ~= "integer" then offset = toint(offset, "with") end
  if type(fn) ~= "function" then typeerror(2, "with", "function", fn) end
  -- a view of its own: fn holds it while it may use the store
  local v <close> = own_view(self)
  local pos, len
  do
    local _ <close> = enter(self.guard, "with")
    pos, len = locate(self, v, offset, "with")
  end
  return fn(v, pos, len)
end

--- Frees the blob at offset, whatever its references.
function Varchar:free (offset)
  if mark then mark("varchar.free") end
  local _ <close>, offset, v = begin(self, offset, "free", true)
  vretarget(v, self.meta, 1, false)
  runs(self, v)                 -- the reserve is sound before any write
  local pos, _, _, c, n = locate(self, v, offset, "free")
  release(self, v, offset, pos, c, n)
end

--- Adds a reference to the blob at offset.
-- @return the references it has now
function Varchar:ref (offset)
  if mark then mark("varchar.ref") end
  local _ <close>, offset, v = begin(self, offset, "ref", true)
  vretarget(v, self.meta, 1, false)
  local pos, _, refs, c = locate(self, v, offset, "ref")
  if refs >= U32 then
    argerror(1, "ref", string.format("offset %d has the most references a "
                                     .. "blob can have (%d)", offset, U32))
  end
  v:set_u32(c ~= 0 and pos - 4 or 4, refs + 1)
  return refs + 1
end

--- Drops a reference to the blob at offset; frees it at zero.
-- @return the references it has now (0: freed)
function Varchar:deref (offset)
  if mark then mark("varchar.deref") end
  local _ <close>, offset, v = begin(self, offset, "deref", true)
  vretarget(v, self.meta, 1, false)
  runs(self, v)                 -- the reserve is sound before any write
  local pos, _, refs, c, n = locate(self, v, offset, "deref")
  if refs == 1 then
    release(self, v, offset, pos, c, n)
    return 0
  end
  v:set_u32(c ~= 0 and pos - 4 or 4, refs - 1)
  return refs - 1
end

--- Stores s in place of the blob at offset: `put(s)` then `deref(offset)`,
-- except that when the blob has one reference and s fits its slot (or its
-- run, to the block) the bytes are overwritten where they are.
-- @return the offset of s (maybe offset itself), or nil, message, errno
function Varchar:replace (offset, s)
  if mark then mark("varchar.replace", s) end
  check_self(self, "replace")
  if math_type(offset) ~= "integer" then offset = toint(offset, "replace") end
  if type(s) ~= "string" then typeerror(2, "replace", "string", s) end
  check_writable(self, "replace")
  local _ <close> = enter(self.guard, "replace")
  local v = meta_view(self)
  runs(self, v)                 -- the reserve is sound before any write
  local pos, _, refs, c, n = locate(self, v, offset, "replace")
  return replace_on(self, v, offset, s, "replace", pos, refs, c, n)
end

--- The number of live blobs.
function Varchar:count ()
  check_self(self, "count")
  local _ <close> = enter(self.guard, "count")
  local v = meta_view(self)
  return v:u64(M_BLOBS)
end

--- A summary of the store's space, from its meta block: blobs,
-- slab_blocks, large_blocks, reserve_blocks, reserve_runs.
function Varchar:stats ()
  check_self(self, "stats")
  local _ <close> = enter(self.guard, "stats")
  local v = meta_view(self)
  local st = {
    blobs = v:u64(M_BLOBS), slab_blocks = v:u64(M_SLABS),
    large_blocks = v:u64(M_LBLOCKS), reserve_blocks = v:u64(M_RBLOCKS),
    reserve_runs = v:u64(M_RRUNS),
  }
  return st
end

-------------------------------------------------------------------------
-- One-view primitives for structures built on a varchar (fmap.mmlist):
-- v is a live view of the caller's, left pointing anywhere.
-------------------------------------------------------------------------

-- Each has a fast form, which returns false having done nothing (no
-- write, no error) where the checked form (the same name with
-- "_checked") would raise or meet the guard of an operation that runs:
-- the caller then calls the checked form, which raises as the method
-- would. A fast form enters the store's guard before it writes, as the
-- checked one does; _take and _replace leave it when they return, and
-- are called in pcall, whose caller leaves it when they raise (the
-- guard is theirs then: they raise only after they entered it).

--- Internal: get on the caller's view v; false when x is no live blob.
function Varchar:_get (v, x)
  if self.guard.busy then return false end
  local pos, len = find_blob(self, v, x)
  if pos then return vread(v, pos, len) end
  return false
end

--- Internal: get on the caller's view v, checked.
function Varchar:_get_checked (v, x, fname)
  local _ <close> = enter(self.guard, fname or "get")
  local pos, len = locate(self, v, x, fname or "get")
  return v:read(pos, len)
end

--- Internal: put on the caller's view v; false when the guard is held.
function Varchar:_put (v, s)
  local g = self.guard
  if g.busy then return false end
  g.busy = "put"
  local _ <close> = g
  return store(self, v, s, #s)
end

--- Internal: put on the caller's view v, checked.
function Varchar:_put_checked (v, s)
  local _ <close> = enter(self.guard, "put")
  return store(self, v, s, #s)
end

--- Internal: free on the caller's view v.
function Varchar:_free (v, x, fname)
  local _ <close> = enter(self.guard, fname or "free")
  local pos, _, _, c, n = locate(self, v, x, fname or "free")
  release(self, v, x, pos, c, n)
end

--- Internal: the blob's string, then the blob freed, on the caller's v;
-- false when x is no live blob.
function Varchar:_take (v, x, fname)
  local g = self.guard
  if g.busy then return false end
  local pos, len, _, c, n = find_blob(self, v, x)
  if not pos then return false end
  g.busy = fname or "free"
  local s = vread(v, pos, len)
  release(self, v, x, pos, c, n)
  g.busy = false
  return s
end

--- Internal: _take, checked.
function Varchar:_take_checked (v, x, fname)
  local _ <close> = enter(self.guard, fname or "free")
  local pos, len, _, c, n = locate(self, v, x, fname or "free")
  local s = v:read(pos, len)
  release(self, v, x, pos, c, n)
  return s
end

--- Internal: replace on the caller's view v; false when x is no live
-- blob.
function Varchar:_replace (v, x, s, fname)
  local g = self.guard
  if g.busy then return false end
  local pos, _, refs, c, n = find_blob(self, v, x)
  if not pos then return false end
  g.busy = fname or "replace"
  local y, msg, errno = replace_on(self, v, x, s, fname, pos, refs, c, n)
  g.busy = false
  return y, msg, errno
end

--- Internal: replace on the caller's view v, checked.
function Varchar:_replace_checked (v, x, s, fname)
  local _ <close> = enter(self.guard, fname or "replace")
  local pos, _, refs, c, n = locate(self, v, x, fname or "replace")
  return replace_on(self, v, x, s, fname, pos, refs, c, n)
end

-------------------------------------------------------------------------
-- verify
-------------------------------------------------------------------------

-- The problems a verify finds: problem(fmt, ...) records one (the first
-- 50 only), list holds them, and result() is what verify returns: true,
-- or nil and the problems, one a line. mmlist's verify uses it too.
local function problems ()
  local list = {}
  local function problem (fmt, ...)
    if #list < 50 then list[#list + 1] = fmt:format(...) end
  end
  local function result ()
    if #list > 0 then return nil, table.concat(list, "\n") end
    return true
  end
  return problem, list, result
end
M._problems = problems

--- Checks every invariant in the comment at the top of this file.
-- @return true, or nil and a message listing the problems, one per line
function Varchar:verify ()
  check_self(self, "verify")
  local _ <close> = enter(self.guard, "verify")
  local bf, bs, meta = self.bf, self.bs, self.meta
  local problem, _, result = problems()
  local extents = {}   -- {start, blocks, what}
  local v <close> = bf:get(meta)
  if v:read(0, 8) ~= MAGIC then problem("meta block: bad magic") end
  if v:u32(M_VERSION) ~= VERSION then problem("meta block: bad version") end
  if v:u64(M_SELF) ~= meta then problem("meta block: bad own offset") end
  if v:u32(M_CLASSES) ~= self.classes then
    problem("meta block: %d classes, expected %d", v:u32(M_CLASSES),
            self.classes)
  end
  extents[1] = { meta, 1, "the meta block" }
  local want_blobs, want_slabs = v:u64(M_BLOBS), v:u64(M_SLABS)
  local want_lblocks, want_rblocks = v:u64(M_LBLOCKS), v:u64(M_RBLOCKS)
  local nruns = v:u64(M_RRUNS)
  local heads = {}
  for c = 1, self.classes do
    heads[c] = { v:u64(M_CLASS + 16 * (c - 1)), v:u64(M_CLASS + 16 * c - 8) }
  end
  local lhead = v:u64(M_LHEAD)
  local blobs, slabs, lblocks = 0, 0, 0
  local limit = bf:size() // bs

  -- Walks a list from head; calls visit(block) with v on it.
  local function walk (head, what, visit)
    local prev, b, steps = 0, head, 0
    while b ~= 0 do
      steps = steps + 1
      if steps > limit then problem("%s: a cycle", what); return end
      if b % bs ~= 0 or not pcall(v.retarget, v, b) then
        problem("%s: block %d is not an allocated block", what, b)
        return
      end
      if v:u64(H_PREV) ~= prev then
        problem("%s: block %d links back to %d, not %d", what, b,
                v:u64(H_PREV), prev)
      end
      if v:u64(H_OWNER) ~= meta or v:u64(H_SELF) ~= b then
        problem("%s: block %d has a bad owner or own offset", what, b)
      end
      local next = v:u64(H_NEXT)
      visit(b)
      prev, b = b, next
    end
  end

  for c = 1, self.classes do
    local size, slots = self.sizes[c], self.slots[c]
    for list = 1, 2 do
      local what = string.format("class %d (%d bytes) %s list", c, size,
                                 list == 1 and "partial" or "full")
      walk(heads[c][list], what, function (b)
        slabs = slabs + 1
        extents[#extents + 1] = { b, 1, "slab block" }
        local w = v:u64(0)
        if w & U32 ~= SLAB or w >> 32 ~= c then
          problem("%s: block %d is not a slab block of class %d", what, b, c)
          return
        end
        local used, carved = v:u32(S_USED), v:u32(S_CARVED)
        if carved > slots or used > carved then
          problem("%s: block %d has %d used, %d carved of %d slots", what,
                  b, used, carved, slots)
          return
        end
        if list == 1 and (used == 0 or used == slots) then
          problem("%s: block %d has %d of %d slots used", what, b, used,
                  slots)
        elseif list == 2 and used ~= slots then
          problem("%s: block %d has %d of %d slots used", what, b, used,
                  slots)
        end
        local free, seen, f = 0, {}, v:u32(S_FREE)
        while f ~= 0 do
          local k = f - 1
          if k >= carved or seen[k] then
            problem("%s: block %d: bad free slot %d", what, b, k)
            break
          end
          seen[k] = true
          free = free + 1
          local h = v:u64(SLAB_HDR + k * size)
          if h >> 32 ~= 0 then
            problem("%s: block %d: free slot %d has references", what, b, k)
          end
          f = h & U32
        end
        if free + used ~= carved then
          problem("%s: block %d: %d free + %d used slots, %d carved", what,
                  b, free, used, carved)
        end
        for k = 0, carved - 1 do
          if not seen[k] then
            local h = v:u64(SLAB_HDR + k * size)
            if h >> 32 == 0 then
              problem("%s: block %d: slot %d is neither free nor live",
                      what, b, k)
            elseif h & U32 > size - 8 then
              problem("%s: block %d: slot %d says %d bytes", what, b, k,
                      h & U32)
            end
          end
        end
        blobs = blobs + used
      end)
    end
  end

  walk(lhead, "large list", function (b)
    local w = v:u64(0)
    local len, n = v:u64(L_LEN), v:u64(L_BLOCKS)
    if w & U32 ~= LARGE or w >> 32 == 0 then
      problem("large list: block %d is not a live large blob", b)
    end
    if n ~= large_blocks(bs, len) or len <= self.small_max then
      problem("large list: blob at %d: %d bytes in %d blocks", b, len, n)
    end
    blobs = blobs + 1
    lblocks = lblocks + n
    extents[#extents + 1] = { b, n, "large blob" }
  end)

  v:retarget(meta)
  if nruns > self.rmax then
    problem("reserve: %d runs, at most %d", nruns, self.rmax)
    nruns = self.rmax
  end
  local rblocks, last = 0, nil
  local by_size = {}
  for i = 0, nruns - 1 do
    local s, n = v:unpack(">I8I8", self.rs + 16 * i)
    local zn, zs = v:unpack(">I8I8", self.rz + 16 * i)
    by_size[#by_size + 1] = { zn, zs }
    if n == 0 or s % bs ~= 0 or s < bs then
      problem("reserve: bad run (%d, %d blocks)", s, n)
    elseif last and last >= s then
      problem("reserve: run at %d is out of order or adjacent to the one "
              .. "before", s)
    end
    last = s + n * bs
    rblocks = rblocks + n
    extents[#extents + 1] = { s, n, "reserve run" }
    if s >= bs and s % bs == 0 and pcall(v.retarget, v, s) then
      if v:u64(0) & U32 ~= FREED or v:u64(H_OWNER) ~= meta
         or v:u64(H_SELF) ~= s then
        problem("reserve: run at %d has no free-run stamp", s)
      end
      v:retarget(meta)
    end
  end
  for i = 2, #by_size do
    local a, b = by_size[i - 1], by_size[i]
    if a[1] > b[1] or (a[1] == b[1] and a[2] >= b[2]) then
      problem("reserve: the by-size array is out of order at %d", i - 1)
    end
  end
  for _, r in ipairs(by_size) do
    local i, found = v:bsearch(self.rs, nruns, 16, spack(">I8I8", r[2], r[1]))
    if not found or i >= nruns then
      problem("reserve: run (%d, %d blocks) is by size, not by start", r[2],
              r[1])
    end
  end

  if blobs ~= want_blobs then
    problem("meta block says %d live blobs, found %d", want_blobs, blobs)
  end
  if slabs ~= want_slabs then
    problem("meta block says %d slab blocks, found %d", want_slabs, slabs)
  end
  if lblocks ~= want_lblocks then
    problem("meta block says %d large blocks, found %d", want_lblocks,
            lblocks)
  end
  if rblocks ~= want_rblocks then
    problem("meta block says %d reserve blocks, found %d", want_rblocks,
            rblocks)
  end

  table.sort(extents, function (a, b) return a[1] < b[1] end)
  for i, e in ipairs(extents) do
    if i > 1 then
      local p = extents[i - 1]
      if p[1] + p[2] * bs > e[1] then
        problem("%s at %d overlaps %s at %d", e[3], e[1], p[3], p[1])
      end
    end
    for k = 0, e[2] - 1 do
      local b = e[1] + k * bs
      if b >= bf:size() or bf:is_free(b) then
        problem("%s at %d: block %d is free in the BlockFile", e[3], e[1], b)
        break
      end
    end
  end

  return result()
end

M._check_bf = check_bf
M._meta_view = meta_view
M._own_view = own_view

-- The methods, for help "s:put" and help(obj).
M._methods = Varchar

return M
