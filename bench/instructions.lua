--- bench/instructions.lua: instructions per operation of the standard
-- workload (lua/fmap/workload.lua) on fmap's B+tree, counted by valgrind's
-- callgrind, which a shared machine's noise does not move.
--   build/bin/fmap bench/instructions.lua [--n N]
-- Each phase runs in a process of its own under callgrind: an empty tree
-- alone, an insert of N records, then the insert and one more phase; a
-- phase's count is the difference over its operations (N, or N/2 for
-- delete). The
-- workload's own key and value building is included, as it is in the
-- timed benchmark; the row "get: workload" is that part of a get alone
-- (the get phase over a store that does nothing). Three rows count the
-- list (fmap.mmlist) the same way: N appends of 16-byte items, then N
-- gets or N pops. Two last rows count one call from Lua into C: type(x)
-- and a view's u32, against an empty loop, each over at least 100,000
-- calls.
local cli = require "fmap.cli"
local cmd = cli.benchmark("instructions",
  "usage: fmap bench/instructions.lua [--n N]", {
    ["--n"] = { key = "n", kind = "integer", min = 100 },
    ["--phase"] = "phase",     -- internal: what this process runs
  })
local opts = cmd:parse(arg)
local N = opts.n or 50000

local fmap = require "fmap"

-- Child mode: the work callgrind counts.
if opts.phase then
  local phase = opts.phase
  if phase == "empty" or phase == "type" or phase == "u32" then
    local bf = assert(fmap.anonymous())
    local v = bf:get(bf:allocate())
    local u32, type_ = v.u32, type
    if phase == "type" then for _ = 1, N do local _ = type_(v) end
    elseif phase == "u32" then for _ = 1, N do local _ = u32(v, 4) end
    else for _ = 1, N do local _ = v end end
    v:release()
    bf:close()
    os.exit(0)
  end
  if phase:match("^list") then
    -- the list: made, N appends, then N gets or N pops
    local bf = assert(fmap.anonymous())
    local l = assert(require("fmap.mmlist").new(bf))
    local item = string.rep("x", 16)
    if phase ~= "list_start" then
      for _ = 1, N do assert(l:append(item)) end
    end
    if phase == "list_get" then for i = 1, N do l:get(i) end end
    if phase == "list_pop" then for _ = 1, N do l:pop() end end
    local want = (phase == "list" or phase == "list_get") and N or 0
    os.exit(l:size() == want and 0 or 1)
  end
  local W = require "fmap.workload"
  local path = cli.tmppath("-instructions.fmap")
  local bf = assert(fmap.create(path))
  local store = W.bptree_store(fmap.bptree.new(bf, 16, 16))
  if phase == "workload" then
    -- the get phase's own work: keys, values, the loop and a store's call
    W.get({ get = function (k) return k end }, N)
    bf:close()
    os.remove(path)
    os.exit(0)
  end
  local ok = true
  if phase ~= "start" then ok = W.insert(store, N).ok end
  if phase ~= "start" and phase ~= "insert" then
    ok = ok and W[phase](store, N).ok
  end
  bf:close()
  os.remove(path)
  os.exit(ok and 0 or 1)
end

local HOST = arg[-1] or "build/bin/fmap"
local function q (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Instructions callgrind counted in a child running phase over n (N)
-- records or calls.
local function count (phase, n)
  local p = io.popen(string.format(
    "valgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s "
    .. "--n %d --phase %s 2>&1", q(HOST), q(arg[0]), n or N, phase))
  local out = p:read("a")
  local ok = p:close()
  local c = out:match("Collected%s*:%s*(%d+)")
  if not ok or not c then
    cmd:fail("callgrind did not count the " .. phase .. " phase:\n" .. out)
  end
  return tonumber(c)
end

if os.execute("command -v valgrind >/dev/null 2>&1") ~= true then
  cmd:fail("valgrind is not installed (apt-get install valgrind)")
end

print(string.format("instructions per operation, N = %d (%s; callgrind, "
                    .. "workload included)", N, fmap.VERSION))
local base = count("insert")
print(string.format("%-16s %10.0f", "insert", (base - count("start")) / N))
for _, phase in ipairs({ "get", "scan", "delete" }) do
  local ops = phase == "delete" and (N + 1) // 2 or N
  print(string.format("%-16s %10.0f", phase == "scan" and "scanned record"
                      or phase, (count(phase) - base) / ops))
end
print(string.format("%-16s %10.0f", "get: workload",
                    (count("workload") - count("start")) / N))
local lists = count("list")
print(string.format("%-16s %10.0f", "list append",
                    (lists - count("list_start")) / N))
print(string.format("%-16s %10.0f", "list get", (count("list_get") - lists) / N))
print(string.format("%-16s %10.0f", "list pop", (count("list_pop") - lists) / N))
-- A call costs a few hundred instructions, and a process's start varies
-- by tens of thousands from one run to the next (the string hash seed is
-- random): the calls are counted over at least 100,000 of them.
local CALLS = math.max(N, 100000)
local empty = count("empty", CALLS)
print(string.format("%-16s %10.0f", "call: type(x)",
                    (count("type", CALLS) - empty) / CALLS))
print(string.format("%-16s %10.0f", "call: v:u32(4)",
                    (count("u32", CALLS) - empty) / CALLS))
