--- fmap.classify.varchar: the block classifier of fmap.varchar, the blob
-- store. Loaded by `fmap.classify` (see `BUILTIN`); it reads the layout
-- documented at the top of lua/fmap/varchar.lua:
--   - detect: every allocated block with the meta magic "fmapVCHR" at 0
--     and its own offset at 24 (a varchar keeps no pointer in the control
--     data, so the blocks are searched);
--   - walk: the meta block (`meta`), the slab blocks of every class list,
--     partial and full (`varchar`), the large blobs' runs (`varchar`), and
--     the runs of the reserve, free inside the store but not in the
--     BlockFile (`reserve`).
-- A structure that keeps its blobs in a varchar may walk the store as
-- part of itself: `classify.walk("varchar", bf, vc:offset(), emit, ref)`.
local classify = require "fmap.classify"
local varchar = require "fmap.varchar"

local M = { name = "varchar" }

M.kinds = {
  varchar = { label = "varchar run", color = "#ff7f0e" },
  reserve = { label = "varchar reserve", color = "#ffd8a8" },
}

-- The offsets and tags are the store's own (`varchar.layout`).
local L = varchar.layout
local MAGIC, SLAB, LARGE = L.MAGIC, L.SLAB, L.LARGE
local M_CLASSES, M_SELF, M_BLOBS, M_LHEAD, M_RRUNS, M_CLASS =
  L.M_CLASSES, L.M_SELF, L.M_BLOBS, L.M_LHEAD, L.M_RRUNS, L.M_CLASS
local H_OWNER, H_SELF, H_NEXT = L.H_OWNER, L.H_SELF, L.H_NEXT
local S_USED, L_LEN, L_BLOCKS, LHDR = L.S_USED, L.L_LEN, L.L_BLOCKS, L.LHDR

--- The offsets of the varchar meta blocks in bf.
M.detect = classify._stamped(MAGIC, M_SELF)

--- Claims the blocks of the varchar whose meta block is at root.
-- @return figures: `blobs`, `slab_blocks`, `large_blocks`,
--   `reserve_blocks`, `slot_fill` (used slots / slots of the slab blocks)
function M.walk (bf, root, emit, ref)
  local bs = bf:block_size()
  if not emit(root, 1, "meta") then return nil end
  local v <close> = bf:get(root)
  if v:read(0, 8) ~= MAGIC or v:u64(M_SELF) ~= root then
    error(string.format("no varchar meta block at offset %d", root), 0)
  end
  local nclasses, blobs = v:u32(M_CLASSES), v:u64(M_BLOBS)
  local g = L.geometry(bs)
  local slots = g.slots
  if nclasses ~= g.classes then
    error(string.format("varchar at %d: %d size classes, expected %d",
                        root, nclasses, g.classes), 0)
  end
  local heads = {}
  for i = 0, 2 * nclasses - 1 do heads[i + 1] = v:u64(M_CLASS + 8 * i) end
  local lhead, nruns = v:u64(M_LHEAD), v:u64(M_RRUNS)
  local reserve = {}
  for i = 0, math.min(nruns, g.rmax) - 1 do
    local s, n = v:unpack(">I8I8", g.rs + 16 * i)
    reserve[#reserve + 1] = { s, n }
  end
  local w <close> = bf:get(root)
  local slab_blocks, used, total = 0, 0, 0
  for i, head in ipairs(heads) do
    local c = (i + 1) // 2
    local b = head
    while b ~= 0 and emit(b, 1, "varchar", nil, root) do
      w:retarget(b)
      local tag = w:u64(0)
      if tag & 0xffffffff ~= SLAB or tag >> 32 ~= c
         or w:u64(H_OWNER) ~= root or w:u64(H_SELF) ~= b then
        error(string.format("varchar at %d: block %d on the class %d list "
                            .. "is not its slab block", root, b, c), 0)
      end
      slab_blocks = slab_blocks + 1
      used = used + w:u32(S_USED)
      total = total + slots[c]
      b = w:u64(H_NEXT)
    end
  end
  local large_blocks = 0
  local b = lhead
  while b ~= 0 and ref(b, root) do
    w:retarget(b)
    local tag, n = w:u64(0), w:u64(L_BLOCKS)
    if tag & 0xffffffff ~= LARGE or w:u64(H_OWNER) ~= root
       or w:u64(H_SELF) ~= b or n < 1
       or n ~= (LHDR + w:u64(L_LEN) + bs - 1) // bs then
      error(string.format("varchar at %d: block %d on the large list is "
                          .. "not its large blob", root, b), 0)
    end
    local nxt = w:u64(H_NEXT)
    if not emit(b, n, "varchar", nil, root) then break end
    large_blocks = large_blocks + n
    b = nxt
  end
  local reserve_blocks = 0
  for _, run in ipairs(reserve) do
    if emit(run[1], run[2], "reserve", nil, root) then
      reserve_blocks = reserve_blocks + run[2]
    end
  end
  return { blobs = blobs, slab_blocks = slab_blocks,
           large_blocks = large_blocks, reserve_blocks = reserve_blocks,
           slot_fill = total > 0 and used / total or nil }
end

return M
