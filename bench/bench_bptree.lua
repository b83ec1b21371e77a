--- bench/bench_bptree.lua: fmap's B+tree beside a plain Lua table on the
-- standard workload (lua/fmap/workload.lua), in one run.
--   build/bin/fmap bench/bench_bptree.lua [--n N] [--runs R] [--dir DIR]
-- N records (default 1,000,000). Each store runs in a child process of its
-- own (the same fmap executable), so its peak RSS is its own; the table
-- prints ops/s per phase and the ratio of the tree to the table. With R
-- runs (default 1), the stores take turns R times and each phase keeps its
-- best time: on a shared machine, the run least disturbed by others. The
-- tree's file is in DIR (default $TMPDIR or /tmp) and removed afterwards.
-- The exit status is 0 when both verified every phase.
local fmap = require "fmap"
local W = require "fmap.workload"
local cli = require "fmap.cli"

local sformat = string.format

local cmd = cli.benchmark("bench_bptree",
  "usage: fmap bench/bench_bptree.lua [--n N] [--runs R] [--dir DIR]", {
    "n",
    ["--runs"] = { key = "runs", kind = "integer", min = 1 },
    ["--dir"] = { key = "dir", value = "a directory" },
    ["--store"] = "store",     -- internal: the store this process runs
  })
local opts = cmd:parse(arg)
opts.runs = opts.runs or 1
opts.dir = opts.dir or os.getenv("TMPDIR") or "/tmp"
local N = opts.n or 1000000

local file_size = W.file_size

-- Child mode: run one store, print one line of key=value figures.
if opts.store then
  local store, path, bf, t
  if opts.store == "bptree" then
    local bptree = require "fmap.bptree"
    path = sformat("%s/fmap-bench-bptree-%d.fmap", opts.dir,
                   math.random(1 << 30))
    bf = assert(fmap.create(path))
    t = assert(bptree.new(bf, 16, 16))
    store = W.bptree_store(t)
  elseif opts.store == "table" then
    store = W.table_store()
  else
    cmd:usage_error("no store named '" .. opts.store .. "'")
  end
  local extra = {}
  local r = W.run(store, N, function (phase)
    if phase == "insert" and bf then
      extra.file_bytes = file_size(path)
      extra.used_bytes = bf:stats().used_blocks * bf:block_size()
      local st = assert(t:stats())
      extra.height, extra.leaf_fill = st.height, st.leaf_fill
    end
  end)
  if bf then
    extra.end_file_bytes = file_size(path)
    t = nil
    bf:close()
    os.remove(path)
  end
  local out = { "store=" .. opts.store, "ok=" .. tostring(r.ok) }
  for _, p in ipairs(W.PHASES) do
    out[#out + 1] = sformat("%s=%.6f", p, r[p].secs)
  end
  out[#out + 1] = "mismatches=" .. r.get.mismatches
  out[#out + 1] = "scanned=" .. r.scan.count
  out[#out + 1] = "unsorted=" .. r.scan.unsorted
  out[#out + 1] = "removed=" .. r.delete.removed
  out[#out + 1] = "remaining=" .. tostring(r.delete.remaining)
  for k, v in pairs(extra) do out[#out + 1] = k .. "=" .. tostring(v) end
  out[#out + 1] = "rss_kb=" .. tostring(W.peak_rss_kb())
  print(table.concat(out, " "))
  os.exit(r.ok and 0 or 1)
end

-- Parent: run each store in a child, then print the table.
local exe = arg[-1] or "build/bin/fmap"
local script = arg[0]
local results = {}
for _ = 1, opts.runs do
  for _, name in ipairs({ "bptree", "table" }) do
    local cmd = sformat("%q %q --store %s --n %d --dir %q", exe, script,
                        name, N, opts.dir)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    p:close()
    local r = {}
    for k, v in out:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
    if not r.store then
      io.stderr:write("bench_bptree.lua: the ", name, " run failed:\n", out)
      os.exit(1)
    end
    local best = results[name]
    if not best then
      results[name] = r
    else
      for _, phase in ipairs(W.PHASES) do
        best[phase] = math.min(best[phase], r[phase])
      end
      if r.ok ~= "true" then best.ok = r.ok end
      best.rss_kb = math.max(best.rss_kb, r.rss_kb)
    end
  end
end

local b, tb = results.bptree, results.table
local function ops (r, phase)
  local count = phase == "delete" and (N + 1) // 2 or N
  return count / r[phase]
end
print(sformat("standard workload, N = %d (16-byte keys and values), %s%s",
              N, fmap.VERSION, opts.runs > 1 and sformat(", best of %d runs",
              opts.runs) or ""))
print(sformat("%-8s %14s %14s %8s", "phase", "bptree ops/s", "table ops/s",
              "ratio"))
for _, phase in ipairs(W.PHASES) do
  local x, y = ops(b, phase), ops(tb, phase)
  print(sformat("%-8s %14.0f %14.0f %8.2f", phase, x, y, x / y))
end
local MB = 1024 * 1024
print(sformat("file after insert: %.1f MiB (%.2fx the %.1f MiB of raw data; "
              .. "%.1f MiB in used blocks), tree height %d, leaves %.0f%% "
              .. "full", b.file_bytes / MB, b.file_bytes / (32 * N),
              32 * N / MB, b.used_bytes / MB, b.height, b.leaf_fill * 100))
print(sformat("peak RSS: bptree %.1f MiB, table %.1f MiB", b.rss_kb / 1024,
              tb.rss_kb / 1024))
local ok = b.ok == "true" and tb.ok == "true"
print(sformat("checks: bptree %s (mismatches %d, scanned %d, unsorted %d, "
              .. "removed %d, remaining %d), table %s", b.ok, b.mismatches,
              b.scanned, b.unsorted, b.removed, b.remaining, tb.ok))
os.exit(ok and 0 or 1)
