--- bench/bench_blockmap.lua: how long seeing inside a file takes.
--   build/bin/fmap bench/bench_blockmap.lua [--blocks N]
-- Builds three files in memory (fmap.anonymous): empty, small (a list of
-- 2,000 items and a varchar of large blobs, about 200 blocks) and large (a
-- list of 200,000 items and a varchar of large blobs grown until N blocks
-- are in use, default 100,000; then a third of the blobs freed). For each it
-- times, on fmap.clock:
--   read     the floor: one 8-byte read from every allocated block that
--            is not free, through one view
--   scan     classify.scan (every classifier: detect and walk)
--   audit    fmap.audit (a scan, bf:check and the report)
--   png/svg  blockmap.png / blockmap.svg of the scan, bytes written
-- and prints each as a ratio to `read`. Then the PNG encoder beside zlib
-- (Python's, level 9, when python3 is installed) on the same pixels: our
-- fixed-Huffman size and time against zlib's.
local fmap = require "fmap"
-- fmap loads these on first use: here, before any timing
local classify, audit, blockmap = fmap.classify, fmap.audit, fmap.blockmap

local clock = fmap.clock
local N = 100000
do
  local i = 1
  while arg[i] do
    if arg[i] == "--blocks" then
      N = math.tointeger(tonumber(arg[i + 1] or ""))
      if not N or N < 1000 then
        io.stderr:write("bench_blockmap: --blocks wants an integer >= 1000\n")
        os.exit(2)
      end
      i = i + 2
    else
      io.stderr:write("usage: fmap bench/bench_blockmap.lua [--blocks N]\n")
      os.exit(2)
    end
  end
end

local function build (kind)
  local bf = assert(fmap.anonymous())
  if kind == "empty" then return bf end
  local items = kind == "small" and 2000 or 200000
  local l = fmap.mmlist.new(bf)
  for i = 1, items do l:append(string.rep("i", i % 40)) end
  local vc = fmap.varchar.new(bf)
  local xs = {}
  local want = kind == "small" and 200 or N
  local i = 0
  while bf:stats().used_blocks < want - 1 do
    i = i + 1
    xs[i] = vc:put(string.rep("b", 5000 + i % 9000))
  end
  for j = 1, i, 3 do vc:free(xs[j]) end
  return bf
end

local function time (f)
  local t0 = clock()
  local a, b = f()
  return clock() - t0, a, b
end

print(string.format("%-6s %8s %9s %9s %9s %9s %9s %10s %10s", "file",
                    "blocks", "read s", "scan", "audit", "png", "svg",
                    "png bytes", "svg bytes"))
local last_png
for _, kind in ipairs { "empty", "small", "large" } do
  local bf = build(kind)
  local bs, st = bf:block_size(), bf:stats()
  local blocks, top = st.blocks, st.blocks - st.tail_blocks
  local free = {}
  for _, run in ipairs(bf:free_list()) do
    for b = run.offset // bs, run.offset // bs + run.blocks - 1 do
      free[b] = true
    end
  end
  local t_read = time(function ()
    if top < 2 then return 0 end
    local v <close> = bf:get(bs)
    local x = 0
    for b = 1, top - 1 do
      if not free[b] then
        v:retarget(b * bs)
        x = x ~ v:u64(0)
      end
    end
    return x
  end)
  local t_scan, r = time(function () return classify.scan(bf) end)
  local t_audit, rep = time(function () return audit(bf) end)
  local t_png, bytes = time(function () return blockmap.png(r) end)
  local t_svg, svg = time(function () return blockmap.svg(r) end)
  assert(blocks == r.blocks and rep.ok, "the file should audit clean")
  local function ratio (t)
    return top < 2 and "       -" or string.format("%7.1fx", t / t_read)
  end
  print(string.format("%-6s %8d %9.4f %9s %9s %9s %9s %10d %10d", kind,
                      blocks, t_read, ratio(t_scan), ratio(t_audit),
                      ratio(t_png), ratio(t_svg), #bytes, #svg))
  print(string.format("%-6s %8s %9s %8.3fs %8.3fs %8.3fs %8.3fs", "", "",
                      "", t_scan, t_audit, t_png, t_svg))
  last_png = { bytes = bytes, r = r, t = t_png }
  bf:close()
end

-- The encoder beside zlib on the large map's pixels.
local has_python = io.popen("command -v python3 2>/dev/null"):read("a") ~= ""
if not has_python then
  print("zlib peer: skipped (python3 not installed)")
  return
end
local geo_bytes = last_png.bytes
local w, hgt = string.unpack(">I4I4", geo_bytes, 17)
-- Python inflates the picture's IDAT and compresses the raw scanlines
-- again with zlib -9.
local tmp = os.tmpname()
local f = assert(io.open(tmp, "wb"))
f:write(geo_bytes)
f:close()
local p = io.popen("python3 -c '" .. [[
import sys, struct, zlib, time
d = open(sys.argv[1], "rb").read()
i, idat = 8, b""
while i < len(d):
    n, = struct.unpack(">I", d[i:i+4])
    if d[i+4:i+8] == b"IDAT": idat += d[i+8:i+8+n]
    i += 12 + n
raw = zlib.decompress(idat)
t = time.perf_counter(); z = zlib.compress(raw, 9); t = time.perf_counter() - t
print(len(raw), len(z), t)
]] .. "' " .. tmp)
local out = p:read("a")
p:close()
os.remove(tmp)
local raw, zsize, ztime = out:match("(%d+) (%d+) ([%d.e-]+)")
if not raw then
  print("zlib peer: failed: " .. out)
  return
end
-- Our IDAT size: total minus signature, IHDR, PLTE, IEND and chunk framing.
local ours = 0
do
  local i = 9
  while i <= #geo_bytes do
    local n, t = string.unpack(">I4c4", geo_bytes, i)
    if t == "IDAT" then ours = ours + n end
    i = i + 12 + n
  end
end
print(string.format("png encoder vs zlib -9 on the large map's %d raw bytes"
                    .. " (%dx%d): ours %d bytes in %.3f s (the whole map), "
                    .. "zlib %d bytes in %.3f s (compression alone); size "
                    .. "ratio ours/zlib %.2f", tonumber(raw), w, hgt, ours,
                    last_png.t, tonumber(zsize), tonumber(ztime),
                    ours / tonumber(zsize)))
