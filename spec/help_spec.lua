--- spec/help_spec.lua: help() reads the reference in doc/, and the
-- reference has an entry for every public function. (What help prints is
-- pinned in host_spec.lua, "fmap.help".)
local h = require "helpers"
local fmap = require "fmap"
local help = require "fmap.help"

local function q (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The names the reference must describe, as its headings write them:
-- whatever is public at run time, so a function added to the API without
-- an entry fails here.
local function public_names ()
  local names = {}
  local function add (t, prefix, functions_only)
    for k, x in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_"
         and (type(x) == "function"
              or (not functions_only and type(x) ~= "table")) then
        names[#names + 1] = prefix .. k
      end
    end
  end
  add(fmap, "fmap.")                          -- functions and constants
  local bf <close> = fmap.anonymous()
  local v <close> = bf:get(bf:allocate())
  -- getmetatable answers a read-only proxy whose __index is the methods
  add(getmetatable(bf).__index, "bf:", true)
  add(getmetatable(v).__index, "v:", true)
  local objects = {
    { "fmap.bptree", "t", function (m) return m.new_at(bf, nil, 8, 8) end },
    { "fmap.varchar", "vc", function (m) return m.new(bf) end },
    { "fmap.mmlist", "l", function (m) return m.new(bf) end },
  }
  for _, o in ipairs(objects) do
    local mod = require(o[1])
    add(mod, o[1] .. ".", true)
    add(getmetatable(o[3](mod)).__index, o[2] .. ":", true)
  end
  for _, m in ipairs({ "fmap.codec", "fmap.audit", "fmap.blockmap",
                       "fmap.dot", "fmap.classify", "fmap.dump",
                       "fmap.progress", "fmap.profile", "fmap.opmark" }) do
    add(require(m), m .. ".", true)
  end
  table.sort(names)
  return names
end

-- The parameter names of a heading's signature: "(a, b [, c])" -> a, b, c.
local function heading_params (sig)
  local inside = sig:match("^%((.-)%)%s*%->") or sig:match("^%((.*)%)%s*$")
  if inside == nil then return nil end
  local params = {}
  for p in inside:gsub("[%[%]]", ""):gmatch("[^,]+") do
    p = p:match("^%s*(.-)%s*$")
    if p ~= "" then params[#params + 1] = p end
  end
  return params
end

-- The parameter names of a Lua function, without self and internal ones.
local function lua_params (f, method)
  local info = debug.getinfo(f, "u")
  local params = {}
  for i = method and 2 or 1, info.nparams do
    local name = debug.getlocal(f, i)
    if name:sub(1, 1) ~= "_" then params[#params + 1] = name end
  end
  if info.isvararg then params[#params + 1] = "..." end
  return params
end

describe("fmap.help", function()
  local saved
  before_each(function() saved = help.DOC_DIR end)
  after_each(function() help.DOC_DIR = saved end)

  describe("the reference", function()
    it("is read from doc/ beside the lua/ folder help was loaded from",
       function()
      assert.matches("/doc$", help.doc_dir())
      local entries, missing = help.entries()
      assert.same({}, missing)
      assert.is_true(#entries > 100, #entries .. " entries")
      local f = assert(io.open(help.doc_dir() .. "/blocks.md"))
      f:close()
    end)

    it("has an entry for every public function", function()
      local missing = {}
      for _, name in ipairs(public_names()) do
        if help.entry(name) == nil then missing[#missing + 1] = name end
      end
      assert.same({}, missing)
    end)

    it("describes nothing that does not exist", function()
      local ghosts = {}
      for _, e in ipairs(help.entries()) do
        for _, n in ipairs(e.names) do
          local name = n.name
          local ok
          if name == "#v" or name == "#l" or name == "help"
             or name == "show" or name == "more" then
            ok = true
          elseif n.sig == "" and name:match("^fmap%.[%l_]+$") then
            ok = (pcall(require, name))              -- a module
          else
            ok = help.resolve(name) ~= nil
          end
          if not ok then ghosts[#ghosts + 1] = name end
        end
      end
      assert.same({}, ghosts)
    end)

    it("names the parameters of a Lua function as the function does",
       function()
      local wrong = {}
      for _, e in ipairs(help.entries()) do
        for _, n in ipairs(e.names) do
          local f = help.resolve(n.name)
          if type(f) == "function" and debug.getinfo(f, "S").what == "Lua"
          then
            local doc = heading_params(n.sig)
            local code = lua_params(f, n.name:find(":", 1, true) ~= nil)
            if doc == nil or table.concat(doc, ", ")
                             ~= table.concat(code, ", ") then
              wrong[#wrong + 1] = string.format("%s%s: the function takes "
                                  .. "(%s)", n.name, n.sig,
                                  table.concat(code, ", "))
            end
          end
        end
      end
      assert.same({}, wrong)
    end)

    it("gives every entry a summary of one sentence", function()
      local bad = {}
      for _, e in ipairs(help.entries()) do
        local s = e.summary
        if s == "" or not s:match("%.$") or s:match("%.%s") then
          bad[#bad + 1] = e.names[1].name .. ": " .. s
        end
      end
      assert.same({}, bad)
    end)

    it("is read from every page of doc/ that has entries", function()
      local dir = help.doc_dir()
      local p = assert(io.popen("ls " .. q(dir)))
      local unread = {}
      local read = {}
      for _, page in ipairs(help.PAGES) do read[page] = true end
      for page in p:lines() do
        if page:match("%.md$") and not read[page] then
          local f = assert(io.open(dir .. "/" .. page))
          local text = f:read("a")
          f:close()
          if text:match("\n### `") then unread[#unread + 1] = page end
        end
      end
      p:close()
      assert.same({}, unread)
    end)
  end)

  describe(".text()", function()
    local dir
    before_each(function()
      dir = h.tmpname()
      assert(os.execute("mkdir " .. q(dir)))
    end)
    after_each(function()
      os.execute("rm -rf " .. q(dir))
    end)

    it("prints what the pages say when it runs", function()
      local f = assert(io.open(dir .. "/blocks.md", "w"))
      f:write("# Blocks\n\nProse.\n\n## BlockFile methods\n\n",
              "### `bf:free(offset [, n])`\n\nGives blocks back.\n\n",
              "Details of `free`,\nover two lines.\n\n",
              "```lua\nbf:free(off)\n```\n\n## More prose\n\nNot free's.\n")
      f:close()
      help.DOC_DIR = dir
      assert.equal("bf:free(offset [, n])\n  gives blocks back\n"
                   .. "  Details of free,\n  over two lines.\n\n"
                   .. "    bf:free(off)", help.text("bf:free"))
      assert.matches("\nBlockFile  %-%- an open block file %(bf%)\n"
                     .. "  bf:free%(offset %[, n%]%) +gives blocks back\n",
                     help.text())
      local bf <close> = fmap.anonymous()
      assert.equal(help.text("bf:free"), help.text(bf.free))
    end)

    it("says where it looked when the pages are missing", function()
      help.DOC_DIR = dir
      local text = help.text()
      assert.matches("%(the reference was not found: "
                     .. dir:gsub("%p", "%%%0") .. "/blocks%.md, ", text)
      assert.matches("^no help for \"bf:get\"; help%(%) lists what there "
                     .. "is\n%(the reference was not found",
                     help.text("bf:get"))
      -- a function written in Lua still has its comment
      assert.matches("^fmap%.bptree%.new%(bf, key_size, value_size%)\n",
                     help.text(require("fmap.bptree").new))
    end)
  end)
end)
