--- bench/bench_readers.lua: readers beside a writer, side by side with
-- each alone.
--   build/bin/fmap bench/bench_readers.lua [--n N] [--rounds R]
--       [--commits C] [--readers K] [--dir DIR]
-- Two measures, each taken alone and beside the others, in child
-- processes (the same fmap executable), the rounds interleaved; each
-- keeps its best round and prints the ratio of alone to beside:
--   - a reader's get: the standard workload's get phase
--     (lua/fmap/workload.lua: N lookups, each value checked) over a
--     read-only open of a tree of N records, alone and while a writer
--     process commits small durable transactions (10 records each, into
--     the same tree) as fast as it can;
--   - the writer's commit rate: C such transactions alone, and while K
--     reader processes open the file, look up 1,000 keys and close it, in
--     a loop.
-- The targets: each ratio within 1.5x. The file is in DIR (default $TMPDIR
-- or /tmp) and removed afterwards. The exit status is 0 when every get
-- found its value.
local fmap = require "fmap"
local bptree = require "fmap.bptree"
local W = require "fmap.workload"
local cli = require "fmap.cli"

local sformat = string.format
local clock = fmap.clock

local HELP = [[
usage: fmap bench/bench_readers.lua [--n N] [--rounds R] [--commits C]
                                   [--readers K] [--dir DIR]

Measures readers beside a writer, each side alone and beside the other,
in child processes, the rounds interleaved, and prints each measure's
best round and the ratio of alone to beside, against a target of 1.5x:

  reader get/s   the standard workload's get phase (N lookups, values
                 checked) on a read-only open, alone and while a writer
                 process commits small durable transactions (10 records
                 each) into the same tree as fast as it can
  commits/s      the writer's rate over C such transactions, alone and
                 while K reader processes open the file, look up 1,000
                 keys and close it, in a loop

Options:
  --n N          records in the tree (default 1,000,000)
  --rounds R     rounds of each measure, the best kept (default 3)
  --commits C    transactions the writer times (default 1,000)
  --readers K    reader processes beside the writer (default 4)
  --dir DIR      where the file goes (default $TMPDIR or /tmp); a tmpfs
                 (/dev/shm) makes a durable commit cost no disk wait
  -h, --help     print this help

Example:
  fmap bench/bench_readers.lua --rounds 5
  fmap bench/bench_readers.lua --n 100000 --dir /dev/shm

Exit status: 0 when every get found its value, 1 otherwise or when a
child failed, 2 on a usage error.]]

local cmd = cli.benchmark("bench_readers", HELP, {
  "n", "rounds",
  ["--commits"] = { key = "commits", kind = "integer", min = 1 },
  ["--readers"] = { key = "readers", kind = "integer", min = 1 },
  ["--dir"] = { key = "dir", value = "a directory" },
  -- internal: what a child process does, on which file
  "file",
  ["--role"] = "role",
  ["--stop"] = "stop",
})
local opts = cmd:parse(arg)
local N = opts.n or 1000000
local ROUNDS = opts.rounds or 3
local COMMITS = opts.commits or 1000
local READERS = opts.readers or 4
local KEYS = 10      -- records a writer's transaction adds
local LOOKUPS = 1000 -- keys a looping reader looks up per open

local exists = cli.exists

local function say (...)
  io.write(table.concat({ ... }, " "), "\n")
  io.flush()
end

-- The key of the writer's n-th record: 16 bytes, as the workload's, but
-- none of them (the workload's second half is below N).
local function wkey (n)
  return string.pack(">I8I8", n * W.MUL, 1 << 62 | n)
end

---------------------------------------------------------------------------
-- The children
---------------------------------------------------------------------------

-- A reader: one get phase on a read-only open.
local function role_get (path)
  local bf = assert(fmap.open(path, { readonly = true }))
  local writer = bf:stats().writer
  local store = W.bptree_store(bptree.open(bf))
  local c0 = os.clock()
  local r = W.get(store, N)
  local cpu = os.clock() - c0
  say(sformat("get secs=%.6f cpu=%.6f mismatches=%d writer=%s", r.secs,
              cpu, r.mismatches, tostring(writer)))
  collectgarbage()
  assert(bf:close())
end

-- The writer: transactions of KEYS records, each committed durably;
-- COMMITS of them timed, or (with a stop file) as many as fit until the
-- stop file is there.
local function role_writer (path, stop)
  local bf = assert(fmap.open(path))
  local t = bptree.open(bf)
  local n = t:size()   -- a count, so the writer's keys are new each run
  say("START")
  local commits, readers = 0, 0
  local function one ()
    assert(bf:transaction(function ()
      for _ = 1, KEYS do
        n = n + 1
        t:add(wkey(n), W.value(n % 1000000))
      end
      return true
    end))
    commits = commits + 1
    if commits % 16 == 0 and bf:stats().readers then readers = readers + 1 end
  end
  local t0, c0 = clock(), os.clock()
  if stop then
    while not exists(stop) do one() end
  else
    for _ = 1, COMMITS do one() end
  end
  local secs, cpu = clock() - t0, os.clock() - c0
  local st = bf:stats()
  say(sformat("writer secs=%.6f cpu=%.6f commits=%d checkpoints=%d "
              .. "deferred=%d journal=%d readers_seen=%d", secs, cpu,
              commits, st.checkpoints, st.checkpoints_deferred,
              st.journal_bytes, readers))
  t = nil
  collectgarbage()
  assert(bf:close())
end

-- A reader in a loop: open, LOOKUPS gets, close, until the stop file.
local function role_loop (path, stop)
  local opens, bad, gets = 0, 0, 0
  local j = 0
  local first = true
  while not exists(stop) do
    local bf = assert(fmap.open(path, { readonly = true }))
    if first then say("START"); first = false end
    local t = bptree.open(bf)
    for _ = 1, LOOKUPS do
      local i = (j * 7919) % N
      j = j + 1
      if t:get(W.key(i)) ~= W.value(i) then bad = bad + 1 end
    end
    gets = gets + LOOKUPS
    opens = opens + 1
    t = nil
    collectgarbage()
    assert(bf:close())
  end
  say(sformat("loop opens=%d gets=%d mismatches=%d", opens, gets, bad))
end

if opts.role then
  if opts.role == "get" then role_get(opts.file)
  elseif opts.role == "writer" then role_writer(opts.file, opts.stop)
  elseif opts.role == "loop" then role_loop(opts.file, opts.stop)
  else cmd:usage_error("no role named '" .. opts.role .. "'") end
  os.exit(0)
end

---------------------------------------------------------------------------
-- The parent
---------------------------------------------------------------------------

-- The machine's load average over the last minute, as /proc says it.
local function loadavg ()
  local f = io.open("/proc/loadavg", "r")
  local s = f and f:read("l")
  if f then f:close() end
  return s and s:match("^(%S+)") or "?"
end

local function nproc ()
  local p = io.popen("nproc 2>/dev/null")
  local n = p:read("l")
  p:close()
  return n or "?"
end

local load_before = loadavg()
local exe = arg[-1] or "build/bin/fmap"
local script = arg[0]
local dir = opts.dir or os.getenv("TMPDIR") or "/tmp"
local path = sformat("%s/fmap-bench-readers-%d.fmap", dir,
                     math.random(1 << 30))
local other = path:gsub("%.fmap$", "-other.fmap")
local stop = path .. ".stop"

-- A child on file (path, or the other file) in role.
local function child (role, file, extra)
  return assert(io.popen(sformat("%q %q --role %s --file %q --n %d "
                                 .. "--commits %d %s 2>&1", exe, script,
                                 role, file, N, COMMITS, extra or "")))
end

local function cleanup ()
  os.remove(stop)
  for _, f in ipairs({ path, other }) do
    local bf = fmap.open(f)
    if bf then bf:remove() end
  end
end

-- The figures of a child's last line: name=value pairs; fails the run
-- when the child did not print its line.
local function finish (p, word)
  local out = p:read("a")
  p:close()
  local line = out:match(word .. " ([^\n]*)")
  if not line then
    io.stderr:write("bench_readers.lua: a child failed:\n", out)
    cleanup()
    os.exit(1)
  end
  local r = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
  return r
end

local function started (p)
  local line = p:read("l")
  if line ~= "START" then
    io.stderr:write("bench_readers.lua: a child failed:\n", line or "",
                    "\n", p:read("a"))
    cleanup()
    os.exit(1)
  end
end

local STOP = "--stop " .. sformat("%q", stop)

-- The tree of N records of the workload, and a copy: the other file,
-- which the control runs' writer or readers use, so that the machine is
-- as busy as beside this file's, with no reader of the writer's file.
do
  local bf = assert(fmap.create(path))
  local t = assert(bptree.new(bf, 16, 16))
  W.insert(W.bptree_store(t), N)
  t = nil
  assert(bf:close())
  assert(os.execute(sformat("cp %q %q", path, other)))
end

-- A read-only open, timed: seconds, and the journal bytes it laid over.
local function timed_open ()
  local t0 = clock()
  local bf = assert(fmap.open(path, { readonly = true }))
  local secs = clock() - t0
  local st = bf:stats()
  assert(bf:close())
  return secs, st.journal_replayed * (st.block_size + 32)
end
local open_plain = timed_open()

-- Each measure by condition: rates (ops/s), and CPU seconds per
-- operation (what the process itself spent, whatever share of a core
-- the machine gave it).
local get = { alone = {}, beside = {}, control = {} }
local get_cpu = { alone = {}, beside = {}, control = {} }
local rate = { alone = {}, with = {}, control = {} }
local rate_cpu = { alone = {}, with = {}, control = {} }
local busy_rate, loops_done, last_with, open_over = 0, { opens = 0,
  gets = 0 }, nil, nil
local mismatches = 0

local function push (t, k, v) t[k][#t[k] + 1] = v end

-- A reader's get, beside a writer of file (or of none).
local function measure_get (cond, file)
  local w
  if file then
    os.remove(stop)
    w = child("writer", file, STOP)
    started(w)
  end
  local r = finish(child("get", path), "get")
  if w then
    assert(io.open(stop, "w")):close()
    local wr = finish(w, "writer")
    busy_rate = math.max(busy_rate, wr.commits / wr.secs)
  end
  if (r.writer == "true") ~= (file == path) then
    io.stderr:write("bench_readers.lua: the reader ", r.writer == "true"
                    and "found a writer" or "found no writer", "\n")
    cleanup()
    os.exit(1)
  end
  mismatches = mismatches + r.mismatches
  push(get, cond, N / r.secs)
  push(get_cpu, cond, r.cpu / N)
end

-- The writer's commits, beside READERS looping readers of file (or none).
local function measure_commits (cond, file)
  os.remove(stop)
  local loops = {}
  if file then
    for k = 1, READERS do
      loops[k] = child("loop", file, STOP)
      started(loops[k])
    end
  end
  local wr = finish(child("writer", path), "writer")
  assert(io.open(stop, "w")):close()
  for k = 1, #loops do
    local x = finish(loops[k], "loop")
    mismatches = mismatches + x.mismatches
    if file == path then
      loops_done.opens = loops_done.opens + x.opens
      loops_done.gets = loops_done.gets + x.gets
    end
  end
  os.remove(stop)
  push(rate, cond, wr.commits / wr.secs)
  push(rate_cpu, cond, wr.cpu / wr.commits)
  if file == path then
    -- the writer closed beside the readers: its journal stayed
    last_with = wr
    open_over = { timed_open() }
  end
end

for _ = 1, ROUNDS do
  measure_get("alone", nil)
  measure_get("beside", path)
  measure_get("control", other)
  measure_commits("alone", nil)
  measure_commits("with", path)
  measure_commits("control", other)
end
cleanup()

local function best (t)
  local b = t[1]
  for _, x in ipairs(t) do b = math.max(b, x) end
  return b
end

local function least (t)
  local b = t[1]
  for _, x in ipairs(t) do b = math.min(b, x) end
  return b
end

local function ratios (a, b)
  local out = {}
  for i = 1, #a do out[i] = sformat("%.2fx", a[i] / b[i]) end
  return table.concat(out, " ")
end

local function mark (ratio)
  return ratio <= 1.5 and "met" or "MISSED"
end

-- The closing lines of a measure t, whose rounds are t.alone, t[near]
-- (beside this file's other side) and t.control (beside another file's):
-- the ratio of alone to near against the target, and of control to near.
local function compare (t, near, label, control_label)
  local x = best(t.alone) / best(t[near])
  print(sformat("  alone / %s: %.2fx (rounds: %s)   target <= 1.5x   %s",
                label, x, ratios(t.alone, t[near]), mark(x)))
  print(sformat("  %s: %.2fx (rounds: %s)", control_label,
                best(t.control) / best(t[near]), ratios(t.control, t[near])))
end

local function commas (x)
  local s, k = sformat("%d", math.floor(x + 0.5)), 0
  repeat s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2") until k == 0
  return s
end

print(sformat("readers beside a writer: N = %s records of the standard "
              .. "workload, %d round%s (best kept), files in %s", commas(N),
              ROUNDS, ROUNDS == 1 and "" or "s", dir))
print(sformat("machine: %s cores, load average %s before the run, %s "
              .. "after (other processes share the cores)", nproc(),
              load_before, loadavg()))
local row = "%-44s %10s   %s"
print(sformat(row, "reader get/s, alone", commas(best(get.alone)),
              sformat("CPU %.0f ns a get", least(get_cpu.alone) * 1e9)))
print(sformat(row, "reader get/s, beside a writer of the file",
              commas(best(get.beside)),
              sformat("CPU %.0f ns a get", least(get_cpu.beside) * 1e9)))
print(sformat(row, "reader get/s, beside a writer of another",
              commas(best(get.control)),
              sformat("CPU %.0f ns a get", least(get_cpu.control) * 1e9)))
print(sformat("  (the writers: up to %s commits/s of %d records, durable)",
              commas(busy_rate), KEYS))
compare(get, "beside", "beside a writer",
        "beside another file's writer / beside this file's")
print(sformat(row, "writer commits/s, alone", commas(best(rate.alone)),
              sformat("CPU %.0f us a commit", least(rate_cpu.alone) * 1e6)))
print(sformat(row, sformat("writer commits/s, %d readers of the file",
                           READERS), commas(best(rate.with)),
              sformat("CPU %.0f us a commit", least(rate_cpu.with) * 1e6)))
print(sformat(row, sformat("writer commits/s, %d readers of another",
                           READERS), commas(best(rate.control)),
              sformat("CPU %.0f us a commit",
                      least(rate_cpu.control) * 1e6)))
print(sformat("  (the readers of the file: %s opens, %s gets in all)",
              commas(loops_done.opens), commas(loops_done.gets)))
compare(rate, "with", "with readers",
        "with another file's readers / with this file's")
print(sformat("beside its readers the writer put off %d checkpoints and "
              .. "made %d; its journal ended at %.1f MiB",
              last_with.deferred, last_with.checkpoints,
              last_with.journal / 2^20))
print(sformat("a read-only open: %.1f ms with no journal, %.1f ms over that "
              .. "journal's %.1f MiB of commits (%.2f ms a MiB)",
              open_plain * 1e3, open_over[1] * 1e3, open_over[2] / 2^20,
              open_over[2] > 0 and (open_over[1] - open_plain) * 1e3
              / (open_over[2] / 2^20) or 0))
print(sformat("checks: %d mismatches", mismatches))
os.exit(mismatches == 0 and 0 or 1)
