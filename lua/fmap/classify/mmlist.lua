--- fmap.classify.mmlist: the block classifier of fmap.mmlist, the
-- persistent list. Loaded by `fmap.classify` (see `BUILTIN`); it reads the
-- layout documented at the top of lua/fmap/mmlist.lua:
--   - detect: every allocated block with the meta magic "fmapMLST" at 0
--     and its own offset at 24;
--   - walk: the meta block (`meta`), the index leaves, leaf k a run of 2^k
--     blocks (`list`), then the list's own varchar, walked as part of the
--     list (so its blocks are the list's and it is not reported as a store
--     of its own); every live entry's blob is checked with `ref`, so an
--     entry pointing at a freed block is reported.
local classify = require "fmap.classify"
local mmlist = require "fmap.mmlist"

local M = { name = "mmlist" }

-- The offsets are the list's own (`mmlist.layout`).
local L = mmlist.layout
local MAGIC, MAXLEAF = L.MAGIC, L.MAXLEAF
local M_SELF, M_COUNT, M_VC, M_LEAVES, M_LEAF =
  L.M_SELF, L.M_COUNT, L.M_VC, L.M_LEAVES, L.M_LEAF

--- The offsets of the mmlist meta blocks in bf.
M.detect = classify._stamped(MAGIC, M_SELF)

--- Claims the blocks of the list whose meta block is at root.
-- @return figures: `items`, `leaves`, `index_blocks`, `index_fill` (items
--   / entries the leaves hold), and the varchar's (`blobs`,
--   `slab_blocks`, `large_blocks`, `reserve_blocks`, `slot_fill`)
function M.walk (bf, root, emit, ref)
  local bs = bf:block_size()
  local B = bs // 8
  if not emit(root, 1, "meta") then return nil end
  local v <close> = bf:get(root)
  if v:read(0, 8) ~= MAGIC or v:u64(M_SELF) ~= root then
    error(string.format("no mmlist meta block at offset %d", root), 0)
  end
  local n, L, vc = v:u64(M_COUNT), v:u64(M_LEAVES), v:u64(M_VC)
  if L > MAXLEAF or n > B * ((1 << L) - 1) then
    error(string.format("mmlist at %d: %d items in %d leaves", root, n, L), 0)
  end
  local leaves = {}
  for k = 0, L - 1 do leaves[k] = v:u64(M_LEAF + 8 * k) end
  local figures = {}
  if vc ~= 0 then
    figures = classify.walk("varchar", bf, vc, emit, ref) or {}
  end
  local index_blocks, left = 0, n
  for k = 0, L - 1 do
    local blocks = 1 << k
    if emit(leaves[k], blocks, "list", nil, root) then
      index_blocks = index_blocks + blocks
      -- the live entries of this leaf: each names a blob of the varchar
      local entries = math.min(left, B * blocks)
      for b = 0, (entries + B - 1) // B - 1 do
        v:retarget(leaves[k] + b * bs)
        for i = 0, math.min(B, entries - b * B) - 1 do
          local x = v:u64(8 * i)
          ref(x - x % bs, leaves[k] + b * bs)
        end
      end
      left = left - entries
    else
      left = math.max(0, left - B * blocks)
    end
  end
  figures.items = n
  figures.leaves = L
  figures.index_blocks = index_blocks
  figures.index_fill = L > 0 and n / (B * ((1 << L) - 1)) or nil
  return figures
end

return M
