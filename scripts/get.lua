--- scripts/get.lua: the value of one key of a B+tree in an fmap file.
-- Run it as: fmap scripts/get.lua FILE KEY   (--help says more)
local dump = require "fmap.dump"
local varchar = require "fmap.varchar"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/get.lua FILE KEY [--hex] [--all] [--blob] [--tree OFFSET]

Prints the value of KEY in a B+tree, as bbolt get does: its bytes and a
newline, or in hex with --hex (KEY is then read as hex too). A key with
several entries prints the first one's, or with --all each one's, a line
each, in insertion order. With --blob the value is the 8-byte offset of a
blob (a store of key -> blob built with fmap.varchar) and the blob's
bytes are printed. The tree is the one --tree names, else the one the
control data names (bptree@OFFSET), else the only one in the file. FILE
is opened read-only. A KEY that starts with - goes after --.

Options:
  --hex          print the value in hex, and read KEY as hex
  --all          print the value of every entry of KEY
  --blob         print the blob each value names
  --tree OFFSET  the tree whose meta block is at OFFSET (decimal or 0x
                 hex)
  -h, --help     print this help

Example:
  fmap scripts/get.lua store.fmap user:42
  fmap scripts/get.lua ids.fmap --hex 000000000000002a
  fmap scripts/get.lua store.fmap --blob -- -odd-key

Exit status: 0 when KEY is found and printed, 1 when it is not found (the
message says so on stderr), FILE cannot be opened or holds no such tree,
or with --blob a value names no blob, 2 on a usage error.]]

local cmd = cli.new("get", HELP, {
  ["--hex"] = { key = "hex", kind = "flag" },
  ["--all"] = { key = "all", kind = "flag" },
  ["--blob"] = { key = "blob", kind = "flag" },
  ["--tree"] = { key = "tree", kind = "offset", value = "an OFFSET" },
}, { operands = { "FILE", "KEY" } })

local opts = cmd:parse(arg)
local key = opts.args[2]
if opts.hex then
  if #key % 2 ~= 0 or key:find("%X") then
    cmd:usage_error(string.format("KEY %q is not hex (pairs of hex digits)",
                                  key))
  end
  key = key:gsub("%x%x", function (h) return string.char(tonumber(h, 16)) end)
end

local bf = cmd:open(opts.path)
local t, err = dump.open_tree(bf, opts.tree)
if not t then bf:close(); cmd:fail(err) end
local ks = t:key_size()
if ks > 0 and #key ~= ks then
  bf:close()
  cmd:fail(string.format("the tree's keys have %d bytes; KEY has %d", ks,
                         #key))
end

-- The blob a value names: the store is the one that owns its block.
local function blob (v)
  local bad = string.format("the value %s names no blob",
                            require("fmap.dump").quote(v))
  if #v ~= 8 then cmd:fail(bad .. " (a blob's offset takes 8 bytes)") end
  local x = string.unpack("<i8", v)
  local bs = bf:block_size()
  local ok, owner = pcall(bf.with, bf, x - x % bs, 1, function (view)
    return view:u64(varchar.layout.H_OWNER)
  end)
  local vc = ok and varchar.open(bf, owner)
  local got
  if vc then ok, got = pcall(vc.get, vc, x) end
  if not (vc and ok) then cmd:fail(bad) end
  return got
end

local values = {}
for _, v in t:find(key) do
  values[#values + 1] = v
  if not opts.all then break end
end
if #values == 0 then
  bf:close()
  cmd:fail(string.format("key %s not found", require("fmap.dump").quote(key)))
end
for _, v in ipairs(values) do
  if opts.blob then v = blob(v) end
  if opts.hex then
    v = v:gsub(".", function (c) return string.format("%02x", c:byte()) end)
  end
  io.stdout:write(v, "\n")
end
bf:close()
