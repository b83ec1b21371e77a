--- scripts/keys.lua: the keys of a B+tree in an fmap file, one a line.
-- Run it as: fmap scripts/keys.lua FILE [--prefix P]   (--help says more)
local dump = require "fmap.dump"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/keys.lua FILE [--prefix P] [--from K] [--to K]
                            [--hex] [--tree OFFSET]

Prints the keys of a B+tree in key order (bytes compared as memcmp
does), one a line, a key once per entry it has: those that start with P,
or lie between --from and --to (both included), or both. Keys are
printed as their bytes, as bbolt keys does; with --hex as hex, and P and
the bounds are read as hex too: the way for keys that are not text. The
tree is the one --tree names, else the one the control data names
(bptree@OFFSET), else the only one in the file. FILE is opened
read-only.

Options:
  --prefix P     only the keys that start with P
  --from K       only the keys >= K
  --to K         only the keys <= K
  --hex          print keys in hex, and read P and K as hex
  --tree OFFSET  the tree whose meta block is at OFFSET (decimal or 0x
                 hex)
  -h, --help     print this help

Example:
  fmap scripts/keys.lua store.fmap --prefix user:
  fmap scripts/keys.lua ids.fmap --hex --from 00000100 --to 000001ff

Exit status: 0 when the keys are printed (none may match), 1 when FILE
cannot be opened or holds no such tree, 2 on a usage error (a bad hex
string included).]]

local cmd = cli.new("keys", HELP, {
  ["--prefix"] = { key = "prefix", value = "a prefix" },
  ["--from"] = { key = "from", value = "a key" },
  ["--to"] = { key = "to", value = "a key" },
  ["--hex"] = { key = "hex", kind = "flag" },
  ["--tree"] = { key = "tree", kind = "offset", value = "an OFFSET" },
})

local opts = cmd:parse(arg)
local function unhex (s, flag)
  if #s % 2 ~= 0 or s:find("%X") then
    cmd:usage_error(string.format("%s: %q is not hex (pairs of hex "
                                  .. "digits)", flag, s))
  end
  return (s:gsub("%x%x", function (h) return string.char(tonumber(h, 16)) end))
end
local prefix, from, to = opts.prefix, opts.from, opts.to
if opts.hex then
  prefix = prefix and unhex(prefix, "--prefix")
  from = from and unhex(from, "--from")
  to = to and unhex(to, "--to")
end

local bf = cmd:open(opts.path)
local t, err = dump.open_tree(bf, opts.tree)
if not t then bf:close(); cmd:fail(err) end

-- The bounds of the walk: [lo, hi] holds every key wanted; each key is
-- still checked against from, to and the prefix.
local ks = t:key_size()
local lo, hi
if ks > 0 then
  local function low (s) return #s >= ks and s:sub(1, ks)
                                or s .. ("\0"):rep(ks - #s) end
  local function high (s) return #s >= ks and s:sub(1, ks)
                                 or s .. ("\255"):rep(ks - #s) end
  lo, hi = low(from or ""), high(to or "")
  if prefix then
    if lo < low(prefix) then lo = low(prefix) end
    if hi > high(prefix) then hi = high(prefix) end
  end
else
  for k in t:backward() do hi = k break end
  lo = from or ""
  if hi and to and to < hi then hi = to end
  if hi and prefix then
    if lo < prefix then lo = prefix end
    -- the first string after every key that starts with the prefix
    local stem = prefix:gsub("\255+$", "")
    if stem ~= "" then
      local up = stem:sub(1, -2) .. string.char(stem:byte(-1) + 1)
      if up < hi then hi = up end
    end
  end
end

local out = io.stdout
if hi and lo <= hi then
  for k in t:range(lo, hi) do
    if (not from or k >= from) and (not to or k <= to)
       and (not prefix or k:sub(1, #prefix) == prefix) then
      if opts.hex then
        out:write((k:gsub(".", function (c)
          return string.format("%02x", c:byte()) end)), "\n")
      else
        out:write(k, "\n")
      end
    end
  end
end
bf:close()
