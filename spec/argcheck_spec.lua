local argcheck = require "fmap.argcheck"

local HERE = debug.getinfo(1, "S").short_src

-- The error f raises, whole (its position included).
local function raised (f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return tostring(err)
end

describe("fmap.argcheck", function()
  describe(".argerror()", function()
    it("raises in luaL_argerror's words", function()
      assert.equal("bad argument #2 to 'get' (offset 5 is not aligned)",
                   h.errmsg(function ()
                     argcheck.argerror(2, "get", "offset 5 is not aligned", 1)
                   end))
    end)

    it("blames the caller's caller by default, as error's level 2", function()
      local function get () argcheck.argerror(1, "get", "why") end
      local line = h.line() + 1
      local err = raised(function () get() end)
      assert.equal(HERE .. ":" .. line .. ": bad argument #1 to 'get' (why)",
                   err)
    end)

    it("counts its level from its caller", function()
      local function inner () argcheck.argerror(1, "f", "why", 3) end
      local function outer () inner() end
      local line = h.line() + 1
      local err = raised(function () outer() end)
      assert.equal(HERE .. ":" .. line .. ": bad argument #1 to 'f' (why)",
                   err)
    end)
  end)

  describe(".typeerror()", function()
    it("names what was expected and the type it got", function()
      assert.equal("bad argument #3 to 'f' (non-empty string expected, got "
                   .. "nil)", h.errmsg(function ()
                     argcheck.typeerror(3, "f", "non-empty string", nil)
                   end))
    end)
  end)

  describe(".checktype()", function()
    it("returns a value of the type", function()
      local t = {}
      assert.equal(t, argcheck.checktype(t, 1, "f", "table"))
    end)

    it("refuses a value of another type, at the caller's caller", function()
      local function f (x) argcheck.checktype(x, 1, "f", "table") end
      local line = h.line() + 1
      local err = raised(function () f("x") end)
      assert.equal(HERE .. ":" .. line .. ": bad argument #1 to 'f' (table "
                   .. "expected, got string)", err)
    end)
  end)

  describe(".checkinteger()", function()
    it("takes an integer, or a float of integral value", function()
      assert.equal(7, argcheck.checkinteger(7, 1, "f"))
      local i = argcheck.checkinteger(2^10, 1, "f")
      assert.equal("integer", math.type(i))
      assert.equal(1024, i)
    end)

    it("refuses other values in luaL_checkinteger's words", function()
      local function f (x) argcheck.checkinteger(x, 2, "f") end
      assert.equal("bad argument #2 to 'f' (number has no integer "
                   .. "representation)", h.errmsg(function () f(1.5) end))
      assert.equal("bad argument #2 to 'f' (integer expected, got string)",
                   h.errmsg(function () f("1") end))
    end)
  end)

  describe(".reason()", function()
    it("is the parenthesis of an argument error, or the message", function()
      assert.equal("offset 4097 is not block-aligned", argcheck.reason(
        "x.lua:3: bad argument #1 to 'get' (offset 4097 is not "
        .. "block-aligned)"))
      assert.equal("attempt to use a closed BlockFile",
                   argcheck.reason("attempt to use a closed BlockFile"))
    end)
  end)
end)
