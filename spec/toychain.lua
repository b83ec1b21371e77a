--- spec/toychain.lua: a toy structure for the specs of fmap.classify,
-- fmap.blockmap and fmap.audit, with a classifier and a deliberate leak.
--
-- A chain of node blocks, the newest first, its head in the control data
-- as "toy=<offset>". A node block:
--   OFFSET  SIZE  FIELD
--        0     8  next node, 0 for the last
--        8     8  payload: offset of a run of blocks, 0 if none
--       16     8  payload: blocks in the run
local classify = require "fmap.classify"

local M = {}

M.classifier = {
  kinds = {
    toy_node = { label = "toy node", color = "#aa5500" },
    toy_payload = { label = "toy payload", color = "#5500aa" },
  },
  detect = function (bf)
    local head = tonumber(bf:control_data():match("^toy=(%d+)$"))
    return head and head ~= 0 and { head } or nil
  end,
  walk = function (bf, root, emit)
    local off, nodes = root, 0
    while off ~= 0 and emit(off, 1, "toy_node") do
      local nxt, p, pn = bf:with(off, 1, function (v)
        return v:u64(0), v:u64(8), v:u64(16)
      end)
      if p ~= 0 then emit(p, pn, "toy_payload", nil, off) end
      nodes = nodes + 1
      off = nxt
    end
    return { nodes = nodes }
  end,
}

--- Registers the classifier before each test of the describe block that
-- calls it, and unregisters it after.
function M.each_test ()
  local busted = require "busted"
  busted.before_each(M.register)
  busted.after_each(function () classify.unregister("toy") end)
end

--- Registers the classifier as "toy" (done when the module is loaded,
-- so `fmap scripts/blockmap.lua FILE -r toychain` sees toy blocks).
function M.register ()
  classify.register("toy", M.classifier)
end
M.register()

local function head (bf)
  return tonumber(bf:control_data():match("^toy=(%d+)$")) or 0
end

--- Pushes a node with a payload of n blocks (none if n is 0 or nil).
-- @return the node's offset, the payload's
function M.push (bf, n)
  local node = bf:allocate()
  local p = (n and n > 0) and bf:allocate_blocks(n) or 0
  bf:with(node, 1, function (v)
    v:set_u64(0, head(bf))
    v:set_u64(8, p)
    v:set_u64(16, n or 0)
  end)
  bf:set_control_data("toy=" .. node)
  return node, p
end

--- Pops the head node. The leaky version forgets to free the payload:
-- the bug the audit must catch.
-- @return the node's offset and its payload's
function M.pop (bf, leaky)
  local node = head(bf)
  local nxt, p, pn = bf:with(node, 1, function (v)
    return v:u64(0), v:u64(8), v:u64(16)
  end)
  bf:set_control_data("toy=" .. nxt)
  bf:free(node)
  if p ~= 0 and not leaky then bf:free(p, pn) end
  return node, p
end

--- Sets a field of a node: 0 next, 8 payload, 16 payload blocks.
function M.set (bf, node, field, value)
  bf:with(node, 1, function (v) v:set_u64(field, value) end)
end

return M
