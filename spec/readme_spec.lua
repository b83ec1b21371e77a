--- spec/readme_spec.lua: the README's Lua examples, run as a reader runs
-- them: each block a script of its own in a child fmap, its /tmp/ paths
-- moved into a folder of the spec's. Each must end with status 0 and
-- print what its "--> " comments say, blanks squeezed.
local h = require "helpers"

-- The README's ```lua blocks, in order: { code = text, line = where }.
local function blocks ()
  local t, cur, n = {}, nil, 0
  for line in io.lines("README.md") do
    n = n + 1
    if cur then
      if line:match("^```") then
        t[#t + 1] = cur
        cur = nil
      else
        cur.code = cur.code .. line .. "\n"
      end
    elseif line:match("^```lua%s*$") then
      cur = { code = "", line = n }
    end
  end
  assert(cur == nil, "a ```lua block of the README is not closed")
  return t
end

local function squeeze (s) return (s:gsub("%s+", " ")) end

-- The lines the block's "--> " comments promise.
local function promised (code)
  local t = {}
  for out in code:gmatch("%-%-> ([^\n]*)") do t[#t + 1] = squeeze(out) end
  return t
end

describe("README.md", function()
  local list = blocks()

  it("has its Lua examples", function()
    assert.is_true(#list >= 2)
  end)

  for _, b in ipairs(list) do
    it("runs the example at line " .. b.line .. " as it says", function()
      local dir = h.tmpname("-readme") .. ".d"
      assert(os.execute("mkdir -p '" .. dir .. "'"))
      local out, status = h.run_lua((b.code:gsub("/tmp/", dir .. "/")))
      os.execute("rm -rf '" .. dir .. "'")
      assert.equal(0, status, out)
      local got = {}
      for l in out:gmatch("[^\n]+") do got[#got + 1] = squeeze(l) end
      assert.same(promised(b.code), got)
    end)
  end
end)
