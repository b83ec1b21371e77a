local audit = require "fmap.audit"
local classify = require "fmap.classify"
local toy = require "toychain"

local BS = 4096

describe("fmap.audit", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)
  toy.each_test()

  it("is callable as require 'fmap.audit'(bf) and as .audit(bf)", function()
    toy.push(bf, 1)
    local rep, summary = require "fmap.audit"(bf)
    assert.is_true(rep.ok)
    assert.equal(0, rep.problems)
    assert.matches("ok: no problem found$", summary)
    assert.is_true(audit.audit(bf).ok)
  end)

  it("rejects what is not a BlockFile", function()
    assert.equal("bad argument #1 to 'audit' (BlockFile expected, got "
                 .. "nil)", h.errmsg(function() audit.audit() end))
  end)

  it("passes a sound structure with free blocks and a tail", function()
    for _ = 1, 5 do toy.push(bf, 2) end
    toy.pop(bf)
    toy.pop(bf)
    local rep, summary = audit(bf)
    assert.is_true(rep.ok, summary)
    assert.same({}, rep.leaked)
    assert.equal(6, rep.counts.free)
    assert.matches("toy@%d+: 9 blocks %(3 toy_node, 6 toy_payload%)",
                   summary)
  end)

  it("catches a leaky structure and names the leaked offsets", function()
    toy.push(bf, 3)
    local _, p2 = toy.push(bf, 1)
    toy.push(bf, 2)
    local _, lost1 = toy.pop(bf, true)  -- forgets its 2-block payload
    toy.pop(bf)                         -- frees everything
    local rep, summary = audit(bf)
    assert.is_false(rep.ok)
    assert.same({ lost1, lost1 + BS }, rep.leaked)
    assert.same({ { lost1, 2 } }, rep.leaked_runs)
    assert.equal(2, rep.problems)
    assert.matches("leaked: 2 blocks allocated, not free, owned by no "
                   .. "structure, at offsets " .. lost1 .. " %(2 blocks%)",
                   summary)
    assert.matches("2 problems found$", summary)
    -- p2 was freed by the sound pop: free, not leaked
    assert.is_true(bf:is_free(p2))
  end)

  it("catches a block owned twice", function()
    local a, pa = toy.push(bf, 1)
    local b = toy.push(bf)
    toy.set(bf, b, 8, pa)
    toy.set(bf, b, 16, 1)
    local rep, summary = audit(bf)
    assert.is_false(rep.ok)
    assert.equal(1, #rep.doubles)
    assert.equal(pa, rep.doubles[1].offset)
    assert.matches("owned twice: block at offset " .. pa .. ", by toy@" .. b
                   .. " and toy@" .. b, summary, 1, true)
    assert.is_truthy(a)
  end)

  it("catches a free block still referenced", function()
    local a, pa = toy.push(bf, 1)
    toy.push(bf)
    bf:free(pa)  -- a still points at it
    local rep, summary = audit(bf)
    assert.is_false(rep.ok)
    assert.same({}, rep.leaked)
    assert.equal(1, #rep.free_referenced)
    assert.equal(pa, rep.free_referenced[1].offset)
    assert.equal(a, rep.free_referenced[1].from)
    assert.matches("free but referenced: block at offset " .. pa
                   .. ", referenced by toy@%d+ from offset " .. a, summary)
  end)

  it("reports a classifier's error", function()
    toy.push(bf)
    classify.register("toy", {
      detect = toy.classifier.detect,
      walk = function () error("damaged node", 0) end,
    })
    local rep, summary = audit(bf)
    assert.is_false(rep.ok)
    assert.equal("damaged node", rep.errors[1].message)
    assert.matches("error in toy@%d+: damaged node", summary)
  end)

  it("says when no structure was found", function()
    bf:allocate()
    classify.unregister("toy")
    local rep, summary = audit(bf)
    assert.same({ BS }, rep.leaked)
    assert.matches("no registered structure found", summary, 1, true)
  end)

  it("audits a file opened read-only", function()
    toy.push(bf, 1)
    bf:allocate()
    bf:close()
    bf = assert(fmap.open(path, { readonly = true }))
    local rep = audit(bf)
    assert.same({ 3 * BS }, rep.leaked)
  end)

  it("lists at most LIMIT runs of leaked blocks in the summary", function()
    for _ = 1, 30 do
      bf:allocate()
      toy.push(bf)
    end
    local rep, summary = audit(bf)
    assert.equal(30, #rep.leaked)
    assert.matches("%(10 more runs%)", summary)
  end)
end)

describe("fmap.classify.stats()", function()
  local path, bf
  h.fixture(function (p, b) if p then path, bf = p, b end return bf end)
  toy.each_test()

  it("gives blocks by kind, the free list and each structure's figures",
     function()
    toy.push(bf, 2)
    toy.push(bf, 1)
    local a = bf:allocate_blocks(3)
    bf:free(a)
    bf:free(a + 2 * BS)
    local text, r = classify.stats(bf)
    local st = bf:stats()
    assert.matches("^blocks by kind %(" .. st.blocks .. " blocks of 4096 "
                   .. "bytes%):\n", text)
    assert.matches("\n  toy node %s+2 %s+[%d.]+%%\n", text)
    assert.matches("\n  toy payload %s+3 ", text)
    assert.matches("\n  unknown %(no owner%) %s+1 ", text)
    assert.matches("\nfree list: 2 blocks in 2 runs, largest 1; free share "
                   .. string.format("%.1f", 200 / st.blocks)
                   .. "%%, fragmentation 0.50\n", text)
    assert.matches("\n  toy@" .. r.structures[1].root .. ": 5 blocks, "
                   .. "nodes 2\n$", text)
  end)

  it("prints fill factors as percentages", function()
    classify.register("toy", {
      detect = toy.classifier.detect,
      walk = function (b, root, emit)
        toy.classifier.walk(b, root, emit)
        return { leaf_fill = 0.5, height = 3, zeta = 1.25 }
      end,
    })
    toy.push(bf)
    assert.matches(": 1 blocks, height 3, leaf_fill 50.0%, zeta 1.25\n",
                   classify.stats(bf), 1, true)
  end)

  it("says when no structure is found", function()
    assert.matches("\nstructures: none found\n$", classify.stats(bf))
  end)

  it("rejects what is not a BlockFile", function()
    assert.equal("bad argument #1 to 'stats' (BlockFile expected, got "
                 .. "string)", h.errmsg(function() classify.stats("x") end))
  end)
end)

describe("scripts/inspect.lua --audit and --stats", function()
  local path
  before_each(function() path = h.tmpname() end)
  after_each(function() os.remove(path) end)
  local function run (args)
    return h.run("LUA_PATH='spec/?.lua;;' " .. h.bin() .. " " .. args
                 .. " 2>&1")
  end

  -- A file with a toy chain and a leak: returns the leaked offsets.
  local function leaky ()
    local bf = assert(fmap.create(path))
    toy.push(bf, 1)
    toy.push(bf, 2)
    local _, lost = toy.pop(bf, true)
    bf:close()
    return lost
  end

  it("audits with a user's classifier and exits 1 on a leak", function()
    local lost = leaky()
    local text, status = run("-l toychain scripts/inspect.lua --audit "
                             .. path)
    assert.equal(1, status, text)
    assert.matches("\n  check          ok\n", text, 1, true)
    assert.matches("\nleaked: 2 blocks allocated, not free, owned by no "
                   .. "structure, at offsets " .. lost .. " %(2 blocks%)\n"
                   .. "2 problems found\n$", text)
  end)

  it("exits 0 when the audit finds nothing", function()
    local bf = assert(fmap.create(path))
    toy.push(bf, 1)
    bf:close()
    local text, status = run("-l toychain scripts/inspect.lua --audit "
                             .. path)
    assert.equal(0, status, text)
    assert.matches("\nok: no problem found\n$", text)
  end)

  it("loads the classifier with -r as with fmap -l", function()
    leaky()
    for _, flag in ipairs({ "-r toychain", "--require=toychain" }) do
      local text, status = run("scripts/inspect.lua " .. flag .. " --audit "
                               .. path)
      assert.equal(1, status, text)
      assert.matches("\nleaked: 2 blocks allocated, not free", text)
    end
    local text, status = run("scripts/inspect.lua -r spec/toychain.lua "
                             .. path)
    assert.equal(2, status, text)
    assert.matches("inspect: -r spec/toychain.lua: a module name, as "
                   .. "require takes it", text, 1, true)
    text, status = run("scripts/inspect.lua -r no_such_module " .. path)
    assert.equal(1, status, text)
    assert.matches("inspect: cannot load no_such_module: module "
                   .. "'no_such_module' not found", text, 1, true)
  end)

  it("prints the stats", function()
    leaky()
    local text, status = run("-l toychain scripts/inspect.lua --stats "
                             .. path)
    assert.equal(0, status, text)
    assert.matches("\nblocks by kind %(%d+ blocks of 4096 bytes%):\n", text)
    assert.matches("\n  toy@%d+: 2 blocks, nodes 1\n$", text)
  end)
end)
