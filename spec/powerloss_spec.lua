--- spec/powerloss_spec.lua: power loss at any instant, simulated. A child
-- runs transactions on a B+tree, a list and the guide's hash table under
-- testing/iorecord.c, which records every write, truncation and sync the
-- engine makes to the file and its journal. The parent then builds the
-- states a power loss could leave at each point of that record, in the
-- spirit of ALICE and CrashMonkey: what was synced is kept, and of what
-- was written since, any subset of its 4 KiB pages (truncations too) is
-- kept or lost. Each state is opened (recovery included), checked, and
-- must hold exactly the state of a commit: at least the last one made
-- durable before that point, at most the last one written.
-- FMAP_SEED=n replays a run; FMAP_FUZZ_SCALE=x multiplies the states.

local fmap = require "fmap"

local SEED = tonumber(os.getenv("FMAP_SEED")) or os.time()
local SCALE = tonumber(os.getenv("FMAP_FUZZ_SCALE")) or 1
local SHIM = os.getenv("FMAP_IORECORD") or "build/lib/libiorecord.so"
local PAGE = 4096

local tally = { runs = 0, states = 0, points = 0, readonly = 0,
                commits = 0, recovered = 0 }

-- The logical state of the three structures, as one string: what a
-- state must equal. Shared by the child (after each commit) and the
-- parent (on each rebuilt state).
local DIGEST = [[
local function digest (t, l, ht)
  local parts = {}
  for k, v in t:iterate() do parts[#parts + 1] = k .. "=" .. v end
  parts[#parts + 1] = "|"
  for i = 1, l:size() do parts[#parts + 1] = l:get(i) end
  parts[#parts + 1] = "|"
  local hs = {}
  for k, v in ht:pairs() do hs[#hs + 1] = k .. "=" .. v end
  table.sort(hs)
  for _, s in ipairs(hs) do parts[#parts + 1] = s end
  local s, x = table.concat(parts, ";"), 0xcbf29ce484222325
  for i = 1, #s do x = (x ~ s:byte(i)) * 0x100000001b3 end
  return string.format("%016x:%d", x, #s)
end
local function open_all (bf)
  local bptree = require "fmap.bptree"
  local mmlist = require "fmap.mmlist"
  local ht = require "fmap.examples.hashtable"
  local t, l, h = bf:control_data():match("^(%d+) (%d+) (%d+)$")
  return assert(bptree.open_at(bf, tonumber(t))),
         assert(mmlist.open(bf, tonumber(l))),
         assert(ht.open(bf, tonumber(h)))
end
]]

-- The child: txns transactions of random operations; after each commit,
-- "COMMIT digest". Some are rolled back; some commit without sync.
local CHILD = [[
package.path = arg[4]
local fmap = require "fmap"
]] .. DIGEST .. [[
local path, seed, txns = arg[1], tonumber(arg[2]), tonumber(arg[3])
-- "big", "bigsync": one transaction grows the file by 1.25 MiB, and
-- commits without waiting for the disk, or durably
local big = arg[5]:match("^big") and arg[5]
math.randomseed(seed)
local bf = assert(fmap.open(path))
if big then bf:spill(256 * 1024) end   -- and writes some of it ahead
local t, l, h = open_all(bf)
local keys, next_key = {}, 0
local function reload_keys ()
  keys = {}
  for k in t:iterate() do keys[#keys + 1] = k end
  next_key = 0
  for _, k in ipairs(keys) do
    next_key = math.max(next_key, string.unpack(">I8", k) + 1)
  end
end
reload_keys()
local function value () return string.rep(string.char(math.random(97, 122)),
                                          math.random(0, 300)) end
for txn = 1, txns do
  bf:begin()
  local bulk = big and txn == txns // 2
  if bulk then   -- the second allocation spills the first's blocks; a
    for _ = 1, 2 do  -- durable commit writes what is left straight in
      l:append(string.rep(string.char(math.random(97, 122)), 640 * 1024))
    end
  end
  for _ = 1, math.random(1, 10) do
    local r = math.random()
    if r < 0.3 or #keys == 0 then
      local k = string.pack(">I8", next_key)
      next_key = next_key + 1
      t:add(k, value())
      keys[#keys + 1] = k
    elseif r < 0.45 then
      local i = math.random(#keys)
      t:remove(keys[i])
      keys[i] = keys[#keys]
      keys[#keys] = nil
    elseif r < 0.6 then
      l:append(value())
    elseif r < 0.7 then
      if l:size() > 0 then l:pop() end
    elseif r < 0.75 then
      if l:size() > 0 then l:set(math.random(l:size()), value()) end
    elseif r < 0.92 then
      h:put("h" .. math.random(60), value())
    else
      h:remove("h" .. math.random(60))
    end
  end
  t:add(string.pack(">I8", next_key), "every transaction changes")
  keys[#keys + 1] = string.pack(">I8", next_key)
  next_key = next_key + 1
  if not bulk and math.random() < 0.1 then
    bf:rollback()
    reload_keys()
  else
    local sync = math.random() < 0.8
    if bulk then sync = big == "bigsync" end
    assert(bf:commit({ sync = sync }))
    print("COMMIT " .. digest(t, l, h))
  end
end
print("DIRECT " .. bf:stats().direct_blocks)
assert(bf:close())
]]

-- The base file: the three structures with a few entries, closed.
local function make_base (path)
  local bptree = require "fmap.bptree"
  local mmlist = require "fmap.mmlist"
  local ht = require "fmap.examples.hashtable"
  local bf = assert(fmap.create(path))
  local t = assert(bptree.new_at(bf, bf:allocate(), 8, -1))
  local l = assert(mmlist.new(bf))
  local h = assert(ht.create(bf, 4))
  for i = 0, 39 do t:add(string.pack(">I8", i), ("base"):rep(i % 7)) end
  for i = 1, 20 do l:append("item" .. i) end
  for i = 1, 20 do h:put("h" .. i, "v" .. i) end
  bf:set_control_data(string.format("%d %d %d", t:offset(), l:offset(),
                                    h:offset()))
  assert(bf:close())
end

local digest, open_all = load(DIGEST .. " return digest, open_all")()

-- A file as pages: { size = n, [i] = the page at i * PAGE, or nil: 0s }.
local function from_bytes (s)
  local f = { size = #s }
  for i = 0, (#s - 1) // PAGE do f[i] = s:sub(i * PAGE + 1, (i + 1) * PAGE) end
  return f
end

local function copy (f)
  if f == nil then return nil end
  local c = {}
  for k, v in pairs(f) do c[k] = v end
  return c
end

local ZERO = string.rep("\0", PAGE)

local function to_bytes (f)
  local parts = {}
  for i = 0, (f.size - 1) // PAGE do parts[#parts + 1] = f[i] or ZERO end
  return table.concat(parts):sub(1, f.size)
end

-- Applies a piece of a write: data at off, inside one page.
local function write_piece (f, off, data)
  local i, at = off // PAGE, off % PAGE
  local p = f[i] or ZERO
  if #p < PAGE then p = p .. ZERO:sub(1, PAGE - #p) end
  f[i] = p:sub(1, at) .. data .. p:sub(at + #data + 1)
  if off + #data > f.size then f.size = off + #data end
end

local function truncate (f, len)
  for i in pairs(f) do
    if i ~= "size" and i * PAGE >= len then f[i] = nil end
  end
  local last = len // PAGE
  if f[last] and len % PAGE ~= 0 then
    f[last] = f[last]:sub(1, len % PAGE) .. ZERO:sub(1, PAGE - len % PAGE)
  end
  f.size = len
end

-- The pieces of a write: page-aligned parts, each kept or lost alone.
local function pieces (off, data)
  local r, pos = {}, 1
  while pos <= #data do
    local o = off + pos - 1
    local n = math.min(PAGE - o % PAGE, #data - pos + 1)
    r[#r + 1] = { off = o, data = data:sub(pos, pos + n - 1) }
    pos = pos + n
  end
  return r
end

-- Reads the record the shim wrote: a list of { kind, path, off, len, data }.
local function read_log (s)
  local recs, pos = {}, 1
  while pos <= #s do
    local e = s:find("\n", pos, true)
    local ln = s:sub(pos, e - 1)
    pos = e + 1
    local kind, path, a, b = ln:match("^(%u) (%S+) ?(%d*) ?(%d*)$")
    local r = { kind = kind, path = path }
    if kind == "W" then
      r.off, r.len = tonumber(a), tonumber(b)
      r.data = s:sub(pos, pos + r.len - 1)
      pos = pos + r.len
    elseif kind == "T" then
      r.len = tonumber(a)
    end
    recs[#recs + 1] = r
  end
  return recs
end

-- Whether a write to the journal holds a commit frame: frames of 32 bytes
-- and a block follow the 32-byte header; a commit's header has the file
-- size at 16. Returns how many.
local function commit_frames (r, bs)
  local n, fsz = 0, 32 + bs
  local first = r.off <= 32 and 0 or (r.off - 32 + fsz - 1) // fsz
  local j = first
  while true do
    local at = 32 + j * fsz - r.off       -- the frame header, in r.data
    if at + 32 > #r.data then break end
    if at >= 0 and string.unpack("<I8", r.data, at + 17) ~= 0 then
      n = n + 1
    end
    j = j + 1
  end
  return n
end

describe("power loss at any point of a run of transactions", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end)
  after_each(function()
    os.execute("rm -rf " .. dir)
  end)

  it("leaves a state that opens as a commit between the last durable and "
     .. "the last written", function()
    local f = io.open(SHIM, "rb")
    assert(f, SHIM .. " is missing: build it (make -C build config=release "
           .. "iorecord)")
    f:close()
    math.randomseed(SEED)
    local budget = math.max(200, math.floor(1200 * SCALE))
    local run = 0
    while tally.states < budget do
      run = run + 1
      local seed = math.random(1 << 30)
      local path = dir .. "/run" .. run .. ".fmap"
      local log = dir .. "/run" .. run .. ".log"
      make_base(path)
      local base = h.readfile(path)
      local bs = fmap.BLOCKSIZE
      -- the digest of the base
      local b = assert(fmap.open(path, { readonly = true }))
      local digests = { [0] = digest(open_all(b)) }
      b:close()
      local script = dir .. "/child.lua"
      h.writefile(script, CHILD)
      local out, status = h.run(string.format(
        "env LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0:"
        .. "detect_leaks=0 FMAP_RECORD=%s %s %s %s %d %d %q %s 2>&1", SHIM,
        log, h.bin(), script, path, seed, run % 3 == 0 and 150 or 50,
        package.path, run % 6 == 1 and "big" or run % 6 == 4 and "bigsync"
        or "small"))
      assert.equal(0, status, out)
      -- a run with a bulk transaction writes blocks past the journal
      local direct = tonumber(out:match("DIRECT (%d+)"))
      if run % 3 == 1 then assert.is_true(direct > 0, out)
      else assert.equal(0, direct) end
      for d in out:gmatch("COMMIT (%S+)") do digests[#digests + 1] = d end
      tally.runs = tally.runs + 1
      tally.commits = tally.commits + #digests
      local recs = read_log(h.readfile(log))
      local wal = path .. "-wal"
      -- the durable files, and the writes since each one's last sync
      local durable = { [path] = from_bytes(base) }
      local pending = { [path] = {}, [wal] = {} }
      local written, synced = 0, 0   -- commit frames written, made durable
      local wal_commits_unsynced = 0
      local image = dir .. "/image.fmap"
      local function check_point (label)
        tally.points = tally.points + 1
        local tries = 3
        for try = 1, tries do
          -- try 1 keeps everything pending, 2 a random subset, 3 the
          -- journal's whole and a random subset of the file's (a kernel
          -- that wrote the journal back first)
          local files = {}
          for p, base_f in pairs(durable) do files[p] = copy(base_f) end
          for _, p in ipairs({ path, wal }) do
            for _, op in ipairs(pending[p]) do
              if try == 1 or (try == 3 and p == wal)
                 or math.random() < 0.5 then
                if files[p] == nil then files[p] = { size = 0 } end
                if op.kind == "T" then truncate(files[p], op.len)
                else write_piece(files[p], op.off, op.data) end
              end
            end
          end
          os.remove(image)
          os.remove(image .. "-wal")
          h.writefile(image, to_bytes(files[path]))
          if files[wal] then h.writefile(image .. "-wal", to_bytes(files[wal])) end
          local ro_digest
          if tally.states % 10 == 0 and files[wal] then
            local r = fmap.open(image, { readonly = true })
            if r then
              ro_digest = digest(open_all(r))
              r:close()
              tally.readonly = tally.readonly + 1
            end
          end
          if files[wal] then tally.recovered = tally.recovered + 1 end
          local bf, msg = fmap.open(image)
          local where = string.format("seed %d (run seed %d), %s, %s",
                                      SEED, seed, label,
                                      try == 1 and "all pending kept"
                                      or try == 2 and "a subset kept"
                                      or "the journal and a subset of the "
                                         .. "file kept")
          assert(bf, where .. ": " .. tostring(msg))
          local ok, problems = bf:check()
          assert(ok, where .. ": " .. table.concat(problems or {}, "; "))
          local t, l, ht = open_all(bf)
          assert(t:verify() and l:verify() and ht:verify(), where)
          local d = digest(t, l, ht)
          bf:close()
          local found
          for k = synced, written do
            if digests[k] == d then found = k end
          end
          if not found then
            for k = 0, #digests do if digests[k] == d then found = -k end end
          end
          assert(found and found >= 0, string.format("%s: the state is no "
                 .. "commit from %d to %d (it is commit %s)", where, synced,
                 written, found and -found or "none"))
          if ro_digest then
            assert.equal(d, ro_digest, where .. ": the read-only open")
          end
          tally.states = tally.states + 1
        end
      end
      for i, r in ipairs(recs) do
        if r.kind == "W" then
          for _, p in ipairs(pieces(r.off, r.data)) do
            local pp = pending[r.path]
            pp[#pp + 1] = p
          end
          if r.path == wal then
            local n = commit_frames(r, bs)
            written = written + n
            wal_commits_unsynced = wal_commits_unsynced + n
          end
        elseif r.kind == "T" then
          local pp = pending[r.path]
          pp[#pp + 1] = { kind = "T", len = r.len }
        elseif r.kind == "S" then
          local f = durable[r.path] or { size = 0 }
          for _, op in ipairs(pending[r.path]) do
            if op.kind == "T" then truncate(f, op.len)
            else write_piece(f, op.off, op.data) end
          end
          durable[r.path] = f
          pending[r.path] = {}
          if r.path == wal then
            synced = synced + wal_commits_unsynced
            wal_commits_unsynced = 0
          end
        elseif r.kind == "C" then
          durable[r.path] = { size = 0 }
          pending[r.path] = {}
        elseif r.kind == "U" then
          durable[r.path] = nil
          pending[r.path] = {}
        end
        if r.kind ~= "S" or i == #recs then
          check_point(string.format("after record %d of %d (%s %s)", i,
                                    #recs, r.kind, r.path:match("[^/]*$")))
        end
      end
      assert.equal(#digests, written)
      os.remove(path)
      os.remove(log)
    end
  end)

  -- fmap.create syncs nothing: until its first commit, the new file's
  -- header and size may not be on disk. A power loss right after that
  -- commit keeps of each file only what was synced, and the commit, made
  -- durable, must open from it.
  it("keeps a new file's first durable commit when nothing else of it "
     .. "reached the disk", function()
    local path, log = dir .. "/new.fmap", dir .. "/new.log"
    local script = dir .. "/new.lua"
    h.writefile(script, [[
package.path = arg[2]
local fmap = require "fmap"
local bf = assert(fmap.create(arg[1]))
bf:begin()
local off = bf:allocate()
bf:with(off, function (v) v:write(0, "hello") end)
bf:set_control_data(tostring(off))
assert(bf:commit())
os.exit(0, false)          -- no close: the process ends here
]])
    local out, status = h.run(string.format(
      "env LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0:"
      .. "detect_leaks=0 FMAP_RECORD=%s %s %s %s %q 2>&1", SHIM, log,
      h.bin(), script, path, package.path))
    assert.equal(0, status, out)
    -- each file as its last sync left it: the writes and truncations
    -- recorded before it, and none after (a file is new, and empty, when
    -- it first shows)
    local files, synced = {}, {}
    for _, r in ipairs(read_log(h.readfile(log))) do
      local f = files[r.path] or { size = 0 }
      files[r.path] = f
      if r.kind == "C" then
        files[r.path] = { size = 0 }
      elseif r.kind == "W" then
        for _, p in ipairs(pieces(r.off, r.data)) do
          write_piece(f, p.off, p.data)
        end
      elseif r.kind == "T" then
        truncate(f, r.len)
      elseif r.kind == "S" then
        synced[r.path] = copy(f)
      end
    end
    assert.is_not_nil(synced[path .. "-wal"], "the journal was never synced")
    for _, name in ipairs { path, path .. "-wal" } do
      h.writefile(name, to_bytes(synced[name] or { size = 0 }))
    end
    local bf, msg = fmap.open(path)
    assert(bf, msg)
    local off = tonumber(bf:control_data())
    assert.equal("hello", bf:with(off, function (v) return v:read(0, 5) end))
    assert.is_true(bf:check())
    bf:close()
  end)
end)

io.stderr:write(string.format("\npowerloss_spec (seed %d)", SEED))
setmetatable(tally, { __gc = function (t)
  io.stderr:write(string.format("\npowerloss_spec: %d runs, %d commits, "
    .. "%d crash states at %d points (%d with a journal to recover, %d "
    .. "also opened read-only)\n", t.runs, t.commits, t.states, t.points,
    t.recovered, t.readonly))
end })
