--- scripts/dot.lua: a picture of a B+tree in an fmap file, through
-- Graphviz.
-- Run it as: fmap scripts/dot.lua FILE -o tree.svg   (.png, .pdf, ...;
--                                                     .dot for the text)
-- Options:
--   -o, --output PATH   the picture; its extension names the format
--                       (required)
--   --at OFFSET         the tree whose meta block is at OFFSET (default:
--                       the tree in the control data, else the first found)
--   --depth N           levels drawn below the root (default 3)
--   --children N        children drawn per node (default 8)
--   --keys N            keys shown per node (default 6)
-- Opens FILE read-only. Prints which tree it drew and the other trees in
-- the file. Exits 0 when the picture is written, 1 when FILE cannot be
-- opened, holds no tree, or Graphviz fails or is missing, 2 on a usage
-- error.
local fmap = require "fmap"
local classify = require "fmap.classify"
local dot = require "fmap.dot"

local USAGE = "usage: fmap scripts/dot.lua FILE -o OUT.svg|OUT.dot "
              .. "[--at OFFSET] [--depth N] [--children N] [--keys N]"

local function usage_error (msg)
  io.stderr:write("dot: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local function fail (msg)
  io.stderr:write("dot: ", msg, "\n")
  os.exit(1)
end

local function parse (args)
  local opts = {}
  local i = 1
  local function value (name)
    i = i + 1
    local v = args[i]
    if v == nil then usage_error(name .. " needs a value") end
    return v
  end
  local function count (name, min)
    local s = value(name)
    local n = math.tointeger(tonumber(s))
    if not n or n < min then
      usage_error(string.format("%s: %q is not an integer >= %d", name, s,
                                min))
    end
    return n
  end
  while i <= #args do
    local a = args[i]
    if a == "-o" or a == "--output" then
      opts.output = value(a)
    elseif a == "--at" then
      opts.at = count(a, 1)
    elseif a == "--depth" then
      opts.depth = count(a, 0)
    elseif a == "--children" then
      opts.children = count(a, 2)
    elseif a == "--keys" then
      opts.keys = count(a, 0)
    elseif a == "-h" or a == "--help" then
      print(USAGE)
      os.exit(0)
    elseif a:sub(1, 1) == "-" then
      usage_error(string.format("unknown option %q", a))
    elseif opts.path then
      usage_error("one FILE only")
    else
      opts.path = a
    end
    i = i + 1
  end
  if not opts.path then usage_error("no FILE") end
  if not opts.output then usage_error("no -o OUT.svg") end
  if not opts.output:match("%.%w+$") then
    usage_error(string.format("%q: the output needs an extension naming "
                              .. "the format (.svg, .png, .dot)",
                              opts.output))
  end
  return opts
end

local opts = parse(arg)
local bf, msg = fmap.open(opts.path, { readonly = true })
if not bf then fail(msg) end

-- The trees in the file, as the bptree classifier detects them.
local r = classify.scan(bf, { only = { bptree = true } })
local trees = {}
for _, s in ipairs(r.structures) do trees[#trees + 1] = s.root end
local at = opts.at or trees[1]
if not at then
  bf:close()
  fail(opts.path .. ": no B+tree found")
end
local ok, text, info = pcall(dot.at, bf, at, opts)
bf:close()
if not ok then fail(tostring(text)) end
local done, err = dot.render(text, opts.output)
if not done then fail(err) end
print(string.format("wrote %s: the B+tree at offset %d, %d nodes drawn, %d "
                    .. "not drawn", opts.output, at, #info.nodes,
                    info.summarised))
local others = {}
for _, t in ipairs(trees) do
  if t ~= at then others[#others + 1] = tostring(t) end
end
if #others > 0 then
  print("other trees in the file (--at OFFSET): " .. table.concat(others, ", "))
end
