--- fmap.classify.bptree: the block classifier of fmap.bptree, and the
-- node reader that `fmap.dot` draws trees with. Loaded by `fmap.classify`
-- (see `BUILTIN`); it reads the layout documented at the top of
-- lua/fmap/bptree.lua, with the constants of `bptree.layout` but without
-- the tree's code:
--   - detect: the tree named by the control data ("bptree@OFFSET"), and
--     every other allocated block that starts with the meta magic
--     "fmapBPTR" and whose header is sound (trees made with new_at);
--   - walk: the meta block (`meta`), every node level by level from the
--     root (`internal`, `leaf`), and the overflow runs of slotted nodes'
--     keys and values (`overflow`); a leaf's links are checked with `ref`.
--     A node whose kind does not match its level stops the walk with an
--     error naming it.
local bptree = require "fmap.bptree"
local argcheck = require "fmap.argcheck"

local M = { name = "bptree" }

local L = bptree.layout
local MAGIC, VERSION, META_FMT = L.MAGIC, L.VERSION, L.META_FMT
local FIXED, SLOTTED = L.FIXED, L.SLOTTED
local LEAF, INTERNAL = L.LEAF, L.INTERNAL
local OVF = L.OVF
local M_ROOT, M_HEIGHT, M_SIZE = L.M_ROOT, L.M_HEIGHT, L.M_SIZE
local N_KIND, N_FLAGS, N_COUNT = L.N_KIND, L.N_FLAGS, L.N_COUNT
local L_PREV, L_NEXT = L.L_PREV, L.L_NEXT
local FL_ENT, FI_C0, FI_ENT = L.FL_ENT, L.FI_C0, L.FI_ENT
local SL_LO, SL_DEAD, SL_SLOTS = L.SL_LO, L.SL_DEAD, L.SL_SLOTS
local SI_LO, SI_DEAD, SI_C0, SI_SLOTS = L.SI_LO, L.SI_DEAD, L.SI_C0,
  L.SI_SLOTS

--- Reads and checks a tree's meta block.
-- @param bf the BlockFile
-- @param off the meta block's offset
-- @return `{layout, ks, vs, root, height, size}`, or nil and why not
function M.read_meta (bf, off)
  local bs = bf:block_size()
  local ok, v = pcall(bf.get, bf, off)
  if not ok then
    return nil, string.format("no B+tree at offset %s (%s)", tostring(off),
                              argcheck.reason(v))
  end
  local magic, version, layout, ks, vs = v:unpack(META_FMT, 0)
  local m = { layout = layout, ks = ks, vs = vs, root = v:u64(M_ROOT),
              height = v:u64(M_HEIGHT), size = v:u64(M_SIZE) }
  v:release()
  if magic ~= MAGIC then
    return nil, string.format("no B+tree at offset %d (bad magic)", off)
  elseif version ~= VERSION or (layout ~= FIXED and layout ~= SLOTTED)
         or not (ks == -1 or (ks >= 1 and ks < OVF))
         or not (vs == -1 or (vs >= 0 and vs < OVF))
         or m.height < 1 or m.height > 64 or m.root <= 0
         or m.root % bs ~= 0 or m.root >= bf:size() then
    return nil, string.format("B+tree meta block at offset %d is damaged",
                              off)
  end
  if layout == FIXED then
    m.lcap = (bs - FL_ENT) // (ks + vs)
    m.icap = (bs - FI_ENT) // (ks + 8)
  end
  return m
end

--- The trees in bf: the control data's, then any other sound meta block.
function M.detect (bf, ctx)
  local roots, seen = {}, {}
  local off = bptree._control_offset(bf:control_data())
  if off then
    roots[1], seen[off] = off, true
  end
  for _, o in ipairs(ctx.find(MAGIC, 0)) do
    if not seen[o] and M.read_meta(bf, o) then roots[#roots + 1] = o end
  end
  return #roots > 0 and roots or nil
end

-- A slotted node's field at pos: its length, the overflow run's offset
-- (or nil when inline), and the position after the field.
local function field (v, pos)
  local len = v:u32(pos)
  if len >= OVF then
    return len - OVF, v:u64(pos + 4), pos + 12
  end
  return len, nil, pos + 4 + len
end

-- The bytes of a field (up to `max` of them), reading an overflow run.
local function field_bytes (bf, v, pos, max)
  local len, run = field(v, pos)
  local n = math.min(len, max)
  if not run then return v:read(pos + 4, n) end
  local bs = bf:block_size()
  return bf:with(run, (n + bs - 1) // bs, function (rv)
    return rv:read(0, n)
  end)
end

--- Reads one node.
-- @param bf the BlockFile
-- @param v a live view, pointed at the node (left there)
-- @param m the tree's meta (`read_meta`)
-- @param want_keys whether to read the keys (up to `key_max` bytes each)
-- @return `{kind = "leaf"|"internal", count, children = {offsets},
--   next, prev, runs = {{offset, bytes}}, used, usable, keys}`
function M.read_node (bf, v, m, want_keys, key_max)
  local bs = bf:block_size()
  local kind, count = v:u8(N_KIND), v:u32(N_COUNT)
  local n = { count = count, children = {}, runs = {} }
  key_max = key_max or 64
  if kind == LEAF then
    n.kind, n.prev, n.next = "leaf", v:u64(L_PREV), v:u64(L_NEXT)
  elseif kind == INTERNAL then
    n.kind = "internal"
  else
    error(string.format("block at offset %d is not a B+tree node (kind %d)",
                        v:offset(), kind), 0)
  end
  local keys = want_keys and {} or nil
  n.keys = keys
  if m.layout == FIXED then
    local K = m.ks
    if n.kind == "leaf" then
      if count > m.lcap then
        error(string.format("leaf at offset %d holds %d entries, at most %d",
                            v:offset(), count, m.lcap), 0)
      end
      local LS = K + m.vs
      n.used, n.usable = count * LS, m.lcap * LS
      if keys then
        for i = 0, count - 1 do
          keys[i + 1] = v:read(FL_ENT + i * LS, math.min(K, key_max))
        end
      end
    else
      if count > m.icap then
        error(string.format("internal node at offset %d holds %d "
                            .. "separators, at most %d", v:offset(), count,
                            m.icap), 0)
      end
      local IS = K + 8
      n.used, n.usable = count * IS, m.icap * IS
      n.children[1] = v:u64(FI_C0)
      for j = 0, count - 1 do
        n.children[j + 2] = v:u64(FI_ENT + j * IS + K)
        if keys then
          keys[j + 1] = v:read(FI_ENT + j * IS, math.min(K, key_max))
        end
      end
    end
  else
    local leaf = n.kind == "leaf"
    local slots, stride = leaf and SL_SLOTS or SI_SLOTS, leaf and 4 or 12
    if slots + count * stride > bs then
      error(string.format("node at offset %d: %d slots do not fit",
                          v:offset(), count), 0)
    end
    local lo = v:u32(leaf and SL_LO or SI_LO)
    local dead = v:u32(leaf and SL_DEAD or SI_DEAD)
    n.used = count * stride + (bs - lo - dead)
    n.usable = bs - slots
    if not leaf then n.children[1] = v:u64(SI_C0) end
    local overflow_keys = leaf or v:u8(N_FLAGS) & 1 ~= 0
    for i = 0, count - 1 do
      local cell = v:u32(slots + i * stride)
      if not leaf then n.children[i + 2] = v:u64(slots + i * stride + 4) end
      if cell < slots or cell + 4 > bs then
        error(string.format("node at offset %d: slot %d points outside "
                            .. "the heap (%d)", v:offset(), i, cell), 0)
      end
      if overflow_keys or keys then
        local len, run, after = field(v, cell)
        if run then n.runs[#n.runs + 1] = { run, len } end
        if keys then keys[i + 1] = field_bytes(bf, v, cell, key_max) end
        if leaf and after + 4 <= bs then
          local vlen, vrun = field(v, after)
          if vrun then n.runs[#n.runs + 1] = { vrun, vlen } end
        end
      end
    end
  end
  return n
end

--- Claims the blocks of the tree whose meta block is at root.
-- @return figures: `height`, `entries`, `leaves`, `internal_nodes`,
--   `overflow_blocks`, `leaf_fill` and `internal_fill` (bytes in use over
--   the nodes' capacity, as `t:stats()` says), `key_size`, `value_size`,
--   `layout`
function M.walk (bf, root, emit, ref)
  local bs = bf:block_size()
  local m, why = M.read_meta(bf, root)
  if not m then error(why, 0) end
  if not emit(root, 1, "meta") then return nil end
  local v <close> = bf:get(root)
  local f = { height = m.height, entries = m.size, leaves = 0,
              internal_nodes = 0, overflow_blocks = 0,
              key_size = m.ks, value_size = m.vs,
              layout = m.layout == FIXED and "fixed" or "slotted" }
  local lused, lusable, iused, iusable = 0, 0, 0, 0
  local level, lvl = { m.root }, m.height
  while #level > 0 and lvl >= 1 do
    local want = lvl > 1 and "internal" or "leaf"
    local below = {}
    for _, off in ipairs(level) do
      if emit(off, 1, want, nil, root) then
        v:retarget(off)
        local n = M.read_node(bf, v, m)
        if n.kind ~= want then
          error(string.format("B+tree at %d: node at offset %d is a %s at "
                              .. "level %d of %d", root, off, n.kind, lvl,
                              m.height), 0)
        end
        if want == "leaf" then
          f.leaves = f.leaves + 1
          lused, lusable = lused + n.used, lusable + n.usable
          if n.prev ~= 0 then ref(n.prev, off) end
          if n.next ~= 0 then ref(n.next, off) end
        else
          f.internal_nodes = f.internal_nodes + 1
          iused, iusable = iused + n.used, iusable + n.usable
          for _, c in ipairs(n.children) do below[#below + 1] = c end
        end
        for _, run in ipairs(n.runs) do
          local blocks = (run[2] + bs - 1) // bs
          if blocks > 0 and emit(run[1], blocks, "overflow", nil, off) then
            f.overflow_blocks = f.overflow_blocks + blocks
          end
        end
      end
    end
    level, lvl = below, lvl - 1
  end
  f.leaf_fill = lusable > 0 and lused / lusable or nil
  f.internal_fill = iusable > 0 and iused / iusable or nil
  return f
end

--- What `fmap.dot.graph` needs to draw a tree: its root and a node
-- reader giving each node's keys, children and next leaf.
-- @param bf the BlockFile
-- @param meta the tree's meta block (`t:offset()`)
-- @return the spec for `dot.graph`; raises if no sound tree is there
function M.dot_spec (bf, meta)
  local m, why = M.read_meta(bf, meta)
  if not m then error(why, 0) end
  return {
    root = m.root,
    name = string.format("B+tree @%d: %d entries, height %d, %s keys of "
                         .. "%s bytes", meta, m.size, m.height,
                         m.layout == FIXED and "fixed" or "slotted",
                         m.ks == -1 and "any" or tostring(m.ks)),
    node = function (off)
      return bf:with(off, 1, function (v)
        local n = M.read_node(bf, v, m, true, 32)
        return { leaf = n.kind == "leaf", keys = n.keys,
                 children = n.children, next = n.next }
      end)
    end,
  }
end

return M
