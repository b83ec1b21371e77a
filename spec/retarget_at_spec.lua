-- v:retarget's third argument, at: which cache lines to ask for while the
-- blocks are checked. It is a hint: the view lands on the same blocks and
-- reads the same bytes whatever it is, and only its type is checked.
local BS = 4096

describe("fmap.View :retarget(offset, blocks, at)", function()
  local bf, a, b, v
  before_each(function()
    bf = assert(fmap.anonymous())
    a = bf:allocate()
    b = bf:allocate_blocks(2)
    bf:with(a, 1, function (w) w:set_u64(8, 111) end)
    bf:with(b, 2, function (w) w:set_u64(BS + 16, 222) end)
    v = bf:get(a)
  end)
  after_each(function()
    if v:live() then v:release() end
    h.no_live_views(bf)
    bf:close()
  end)

  it("lands on the same blocks whatever at is", function()
    for _, at in ipairs({ true, false, 0, 8, 16, BS + 16, 2 * BS - 1 }) do
      assert.equal(v, v:retarget(b, 2, at))
      assert.equal(b, v:offset())
      assert.equal(2, v:blocks())
      assert.equal(222, v:u64(BS + 16))
      assert.equal(v, v:retarget(a, 1, at))
      assert.equal(a, v:offset())
      assert.equal(1, v:blocks())
      assert.equal(111, v:u64(8))
    end
    -- nil is the default, blocks may be nil too
    assert.equal(v, v:retarget(b, nil, nil))
    assert.equal(1, v:blocks())
    assert.equal(v, v:retarget(a, nil, 8))
    assert.equal(111, v:u64(8))
  end)

  it("takes a position outside the view, or past the file, as no hint",
     function()
    for _, at in ipairs({ -1, BS, 10 * BS, math.maxinteger,
                          math.mininteger, 8.0 }) do
      assert.equal(v, v:retarget(a, 1, at))
      assert.equal(111, v:u64(8))
    end
  end)

  it("raises for anything but a boolean or an integer, and checks the "
     .. "offset and the count first", function()
    assert.equal("bad argument #3 to 'retarget' (boolean or integer "
                 .. "expected, got string)",
                 h.errmsg(function () v:retarget(a, 1, "8") end))
    assert.equal("bad argument #3 to 'retarget' (boolean or integer "
                 .. "expected, got table)",
                 h.errmsg(function () v:retarget(a, 1, {}) end))
    assert.equal("bad argument #3 to 'retarget' (number has no integer "
                 .. "representation)",
                 h.errmsg(function () v:retarget(a, 1, 1.5) end))
    assert.equal("bad argument #2 to 'retarget' (block count 0 is not "
                 .. "positive)", h.errmsg(function () v:retarget(a, 0, 8) end))
    bf:free(b, 2)
    assert.equal("bad argument #1 to 'retarget' (block at offset " .. b
                 .. " is free)", h.errmsg(function () v:retarget(b, 1, 8) end))
    -- a refused retarget leaves the view where it was
    assert.equal(a, v:offset())
    assert.equal(111, v:u64(8))
  end)

  it("try_retarget returns nil and why where retarget raises, and leaves "
     .. "the view where it was", function()
    assert.equal(v, v:try_retarget(b, 2, 8))
    assert.equal(b, v:offset())
    assert.equal(222, v:u64(BS + 16))
    assert.equal(v, v:try_retarget(a))
    bf:free(b, 2)
    local top = bf:size()
    for _, case in ipairs({
      { b, "block at offset " .. b .. " is free" },
      { -BS, "offset " .. -BS .. " is negative" },
      { a + 1, "offset " .. (a + 1) .. " is not block-aligned" },
      { 0, "offset 0 is the control block" },
      { 1 << 40, "passes the allocated area" },
    }) do
      local r, msg = v:try_retarget(case[1], 1, false)
      assert.is_nil(r)
      assert.matches(case[2], msg, 1, true)
      assert.equal(a, v:offset())
      assert.equal(111, v:u64(8))
    end
    assert.equal(top, bf:size())
    -- misuse still raises
    assert.matches("block count 0 is not positive",
                   h.errmsg(function () v:try_retarget(a, 0) end))
    assert.matches("boolean or integer expected",
                   h.errmsg(function () v:try_retarget(a, 1, "8") end))
    assert.matches("number has no integer representation",
                   h.errmsg(function () v:try_retarget(1.5) end))
    v:release()
    assert.matches("released", h.errmsg(function () v:try_retarget(a) end))
  end)

  it("is what help says", function()
    local help = require "fmap.help"
    assert.matches("^v:retarget%(offset %[, blocks %[, at%]%]%) %-> v",
                   help.text("v:retarget"))
  end)
end)
