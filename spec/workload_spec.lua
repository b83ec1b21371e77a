local W = require "fmap.workload"
local bptree = require "fmap.bptree"

describe("fmap.workload", function()
  it("makes the standard keys and values", function()
    assert.equal(string.pack(">I8I8", 0, 0), W.key(0))
    assert.equal(string.pack(">I8I8", 0x9E3779B97F4A7C15, 1), W.key(1))
    assert.equal(string.pack(">I8I8", 3 * 0x9E3779B97F4A7C15, 3), W.key(3))
    assert.equal(16, #W.key(123456789))
    assert.equal("val:000000000042", W.value(42))
    assert.equal(16, #W.value(999999999999))
  end)

  it("runs and checks every phase on a Lua table", function()
    local r = W.run(W.table_store(), 1000)
    assert.is_true(r.ok)
    assert.equal(0, r.get.mismatches)
    assert.equal(1000, r.scan.count)
    assert.equal(0, r.scan.unsorted)
    assert.equal(500, r.delete.removed)
    assert.equal(500, r.delete.remaining)
    for _, p in ipairs(W.PHASES) do
      assert.is_true(r[p].secs >= 0 and r[p].ops > 0)
    end
  end)

  it("runs and checks every phase on a B+tree", function()
    local bf = assert(fmap.anonymous())
    local t = bptree.new(bf, 16, 16)
    local sizes = {}
    local r = W.run(W.bptree_store(t), 3001, function (phase)
      sizes[phase] = t:size()
    end)
    assert.is_true(r.ok)
    assert.same({ insert = 3001, get = 3001, scan = 3001, delete = 1500 },
                sizes)
    -- a rate is the phase's own operations over its time: the delete
    -- phase makes 1501 (every even i), not N
    assert.same({ 3001, 3001, 3001, 1501 },
                { r.insert.ops, r.get.ops, r.scan.ops, r.delete.ops })
    for _, phase in ipairs(W.PHASES) do
      assert.equal(r[phase].ops / r[phase].secs, r[phase].ops_s)
    end
    assert.is_true(t:verify())
    t = nil
    h.no_live_views(bf)
    bf:close()
  end)

  it("reports a store that loses records", function()
    local store = W.table_store()
    local insert = store.insert
    store.insert = function (k, v) if k ~= W.key(7) then insert(k, v) end end
    local r = W.run(store, 100)
    assert.is_false(r.ok)
    assert.equal(1, r.get.mismatches)
    assert.equal(99, r.scan.count)
    assert.is_false(r.scan.ok)
  end)
end)

describe("scripts using fmap.bptree", function()
  it("bench_bptree.lua runs both stores and prints every row", function()
    local out, status = h.run(h.bin() .. " bench/bench_bptree.lua --n 3000"
                              .. " 2>&1")
    assert.equal(0, status, out)
    for _, phase in ipairs({ "insert", "get", "scan", "delete" }) do
      assert.matches("\n" .. phase .. " +%d+ +%d+ +[%d.]+\n", out)
    end
    assert.matches("checks: bptree true %(mismatches 0, scanned 3000, "
                   .. "unsorted 0, removed 1500, remaining 1500%), table "
                   .. "true", out)
    assert.matches("file after insert: [%d.]+ MiB", out)
  end)

  it("bench_bptree.lua rejects bad arguments", function()
    local out, status = h.run(h.bin() .. " bench/bench_bptree.lua --n x"
                              .. " 2>&1")
    assert.equal(2, status)
    assert.matches('^bench_bptree: %-%-n: "x" is not a positive integer\n'
                   .. "usage: ", out)
  end)

  it("demo.lua builds, walks, shrinks, reopens and verifies a tree",
     function()
    local path = h.tmpname()
    local out, status = h.run(h.bin() .. " scripts/demo.lua " .. path
                              .. " --n 3000 2>&1")
    assert.equal(0, status, out)
    assert.matches("added 3000 records", out)
    assert.matches("looked up 1000 records in [%d.]+ s %(%d+/s%), 1000 "
                   .. "found", out)
    assert.matches("range %[1500, 2499%]: 1000 records", out)
    assert.matches("the same range backward starts 2499, 2498, 2497", out)
    assert.matches("removed 2250 records", out)
    assert.matches("verify%(%) passed", out)
    assert.matches("check: true", out)
    assert.is_nil(io.open(path))
  end)

  it("demo.lua refuses a file that exists, and options it does not know",
     function()
    local path = h.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("precious")
    f:close()
    local out, status = h.run(h.bin() .. " scripts/demo.lua " .. path
                              .. " --n 100 2>&1")
    assert.equal(2, status, out)
    assert.matches("exists; the demo makes its file and removes it after",
                   out)
    f = assert(io.open(path, "rb"))
    assert.equal("precious", f:read("a"))
    f:close()
    os.remove(path)
    out, status = h.run(h.bin() .. " scripts/demo.lua --bogus 2>&1")
    assert.equal(2, status, out)
    assert.matches('^demo: unknown option "%-%-bogus"\nusage: fmap '
                   .. "scripts/demo.lua %[FILE%] %[%-%-n N%]", out)
    assert.is_nil(io.open("--bogus"))
  end)
end)
