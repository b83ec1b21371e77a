--- fmap.help: the REPL's `help()`.
-- `help()` lists the fmap API one line each; `help(x)` describes x: a
-- function, a module, a BlockFile, a view, or a name such as
-- `"bf:allocate"`. The text is the reference in doc/*.md, read when help
-- runs, so that the pages and help never differ; a function the reference
-- does not describe is described by the LDoc comment above it in its
-- source.
--
-- An entry of the reference is a heading line of level 3 whose code spans
-- name what it describes, each with its signature:
--
--   ### `bf:get(offset [, blocks]) -> view`
--   ### `v:u8(pos) -> n`, `v:u16(pos) -> n`, `v:u32(pos) -> n`
--
-- then its text, up to the next heading: a first paragraph of one
-- sentence (the summary: what help() lists, first word in lower case and
-- without its full stop), then any paragraphs, lists and code blocks.
-- Names are the module's field (`fmap.open`, `fmap.bptree.new`), a method
-- of an object help names `bf`, `v`, `t`, `vc` or `l` (`bf:free`,
-- `t:add`), `#v`, or one of the REPL's globals (`help`, `show`); a name
-- with no signature and a module's name (`fmap.bptree`) is the module.
-- Other headings (levels 1, 2 and 4) are prose and end an entry.
local argcheck = require "fmap.argcheck"

local M = {}

local BF, VIEW = "fmap.BlockFile", "fmap.View"

--- The pages help reads, in the order help() lists their entries.
M.PAGES = { "blocks.md", "transactions.md", "bptree.md", "varchar.md",
            "mmlist.md", "codec.md", "crashtest.md",
            "seeing-inside.md", "tools.md", "profiling.md",
            "executable.md" }

--- The folder of the reference; nil (the default) to look for it where
-- a checkout or an installation keeps it (see `doc_dir`).
M.DOC_DIR = nil

-- The overview's sections: the entries of each, and a line about it.
local SECTIONS = {
  { "fmap", "the block engine: files of fixed-size blocks" },
  { "BlockFile", "an open block file (bf)" },
  { "View", "a window on blocks (v); 0-based positions" },
  { "Structures", "in Lua, on blocks; help \"NAME\" lists one's API" },
  { "REPL", "what the fmap REPL adds" },
}

-- The structures written in Lua, by module; the name help gives an object
-- of each in a method's name ("t:add"), what it calls one in a sentence,
-- and other names it takes for it.
local STRUCTURES = {
  { "fmap.bptree", "t", kind = "a B+tree", tree = true, bptree = true },
  { "fmap.varchar", "vc", kind = "a blob store", s = true, varchar = true,
    store = true },
  { "fmap.mmlist", "l", kind = "a list", list = true, mmlist = true },
}

-- ---------------------------------------------------------------------
-- The reference, read from doc/

-- Whether dir holds the reference (its first page, at least).
local function has_reference (dir)
  local f = io.open(dir .. "/" .. M.PAGES[1], "r")
  if f == nil then return false end
  f:close()
  return true
end

--- The folder help reads the reference from.
-- @return its path: `M.DOC_DIR` if set, else the first of these that
-- holds the reference, where DIR is the folder that holds `fmap/` (this
-- module's own folder's parent): `ROOT/doc` for DIR = `ROOT/lua` (a
-- checkout), `PREFIX/share/doc/fmap` for DIR = `PREFIX/share/lua/5.4`
-- (scripts/install.sh), `DIR/fmap/doc` (a luarocks installation); if
-- none does, the first of them
function M.doc_dir ()
  if M.DOC_DIR then return M.DOC_DIR end
  local source = debug.getinfo(1, "S").source
  local lua_dir = source:match("^@(.-)/?fmap/help%.lua$")
  if lua_dir == nil then return "doc" end
  if lua_dir == "" then lua_dir = "." end      -- loaded as fmap/help.lua
  local places = {}
  local root = lua_dir:match("^(.*)/[^/]+/*$")
  if root == nil then                    -- "lua": relative to the cwd
    root = lua_dir == "." and ".." or "."
  elseif root == "" then                 -- "/lua"
    root = "/"
  end
  places[#places + 1] = root .. "/doc"
  local prefix = lua_dir:match("^(.*)/share/lua/%d+%.%d+/*$")
  if prefix then
    places[#places + 1] = prefix .. "/share/doc/fmap"
  end
  places[#places + 1] = lua_dir .. "/fmap/doc"
  for _, dir in ipairs(places) do
    if has_reference(dir) then return dir end
  end
  return places[1]
end

local function strip_markdown (s)
  s = s:gsub("%[([^%]]*)%]%([^)]*%)", "%1")    -- [text](link) -> text
  s = s:gsub("%*%*", ""):gsub("`", "")
  return s
end

-- The summary as help() lists it: one line, no markup, the first word in
-- lower case when it is an ordinary word, no full stop.
local function fragment (summary)
  local s = strip_markdown(summary)
  local first, rest = s:match("^(%u%l*)([%s,:;].*)$")
  if first then s = first:lower() .. rest end
  return (s:gsub("%.$", ""))
end

-- The entry's text after its summary, as lines to print under it.
local function body_lines (lines)
  local out, fence, blank = {}, false, false
  for _, l in ipairs(lines) do
    if l:match("^%s*```") then
      fence = not fence
    elseif l:match("^%s*$") then
      blank = #out > 0
    else
      if blank then out[#out + 1] = "" end
      blank = false
      out[#out + 1] = fence and ("  " .. l) or strip_markdown(l)
    end
  end
  return out
end

-- Makes an entry of the lines after its heading.
local function finish (e)
  local lines = e.lines
  local i = 1
  while lines[i] and lines[i]:match("^%s*$") do i = i + 1 end
  local summary = {}
  while lines[i] and not lines[i]:match("^%s*$") do
    summary[#summary + 1] = lines[i]:match("^%s*(.-)%s*$")
    i = i + 1
  end
  e.summary = table.concat(summary, " ")
  e.body = body_lines(table.move(lines, i, #lines, 1, {}))
  e.lines = nil
end

local function parse_page (path, page, entries)
  local f = io.open(path, "r")
  if f == nil then return false end
  local cur, fence = nil, false
  for line in f:lines() do
    if line:match("^%s*```") then
      fence = not fence
      if cur then cur.lines[#cur.lines + 1] = line end
    elseif not fence and line:match("^#") then
      if cur then finish(cur) end
      cur = nil
      if line:match("^### ") then
        local names = {}
        for span in line:gmatch("`([^`]+)`") do
          local name, sig = span:match("^(#?[%w_.:]+)(.*)$")
          if name then names[#names + 1] = { name = name, sig = sig } end
        end
        if #names > 0 then
          cur = { names = names, lines = {}, page = page }
          entries[#entries + 1] = cur
        end
      end
    elseif cur then
      cur.lines[#cur.lines + 1] = line
    end
  end
  f:close()
  if cur then finish(cur) end
  return true
end

local cache = {}   -- by folder: { entries = {...}, by_name = {...} }

-- The reference read from dir: its entries in order, and by name (each
-- name to its entry and the name's index in it).
local function reference ()
  local dir = M.doc_dir()
  local ref = cache[dir]
  if ref then return ref end
  ref = { entries = {}, by_name = {}, missing = {} }
  for _, page in ipairs(M.PAGES) do
    if not parse_page(dir .. "/" .. page, page, ref.entries) then
      ref.missing[#ref.missing + 1] = dir .. "/" .. page
    end
  end
  for _, e in ipairs(ref.entries) do
    for i, n in ipairs(e.names) do
      if ref.by_name[n.name] == nil then ref.by_name[n.name] = { e, i } end
    end
  end
  cache[dir] = ref
  return ref
end

--- The entries of the reference, as help reads them.
-- @return a list, in the pages' order, of `{names = {{name =, sig =},
-- ...}, summary = first paragraph, body = lines, page = file name}`; and
-- a list of the pages that could not be read
function M.entries ()
  local ref = reference()
  return ref.entries, ref.missing
end

--- The entry of the reference that describes a name.
-- @param name as a heading writes it: `"bf:get"`, `"fmap.bptree.new"`
-- @return the entry (see `entries`) and the name's index in it, or nil
function M.entry (name)
  local hit = reference().by_name[name]
  if hit then return hit[1], hit[2] end
  return nil
end

local function is_module (e)
  local n = e.names[1]
  return #e.names == 1 and n.sig == "" and n.name:match("^fmap%.[%l_]+$")
         ~= nil
end

-- The section of the overview an entry goes in, or nil for none.
local function section_of (e)
  local name = e.names[1].name
  if is_module(e) then return "Structures" end
  if name:match("^fmap%.[%w_]+$") then return "fmap" end
  if name:match("^bf:") then return "BlockFile" end
  if name:match("^v:") or name == "#v" then return "View" end
  if name == "help" or name == "show" or name == "more" then
    return "REPL"
  end
  return nil
end

-- The owner of the method table a name's prefix stands for.
local function structure_by_prefix (prefix)
  for _, st in ipairs(STRUCTURES) do
    if st[2] == prefix then return st end
  end
  return nil
end

--- The value a name of the reference names.
-- @param name as a heading writes it: `"fmap.open"`, `"bf:get"`,
-- `"t:add"`, `"fmap.codec.encode"`
-- @return a field of the fmap table or of a module, or a method of a
-- BlockFile, a view or a structure; nil when there is none (`#v`,
-- `help`, a name of nothing)
function M.resolve (name)
  local owner, sep, field = name:match("^(.-)([.:])([%w_]+)$")
  if owner == nil then return nil end
  local where
  if sep == ":" then
    if owner == "bf" or owner == "v" then
      local mt = debug.getregistry()[owner == "bf" and BF or VIEW]
      where = type(mt) == "table" and rawget(mt, "__index")
    else
      local st = structure_by_prefix(owner)
      local ok, mod = pcall(require, st and st[1] or "")
      where = st and ok and type(mod) == "table" and rawget(mod, "_methods")
    end
  elseif owner == "fmap" then
    local ok, fmap = pcall(require, "fmap")
    where = ok and fmap
  else
    local ok, mod = pcall(require, owner)
    where = ok and mod
  end
  if type(where) ~= "table" then return nil end
  return rawget(where, field)
end
local resolve = M.resolve

-- The functions the reference describes, by value: each to its entry and
-- the index of its name there.
local function described_functions ()
  local found = {}
  for _, e in ipairs(reference().entries) do
    for i, n in ipairs(e.names) do
      local f = resolve(n.name)
      if type(f) == "function" and found[f] == nil then found[f] = { e, i } end
    end
  end
  return found
end

local function not_found_note ()
  local missing = reference().missing
  if #missing == 0 then return nil end
  return "(the reference was not found: " .. table.concat(missing, ", ")
         .. ")"
end

-- ---------------------------------------------------------------------
-- Printing

local COLUMN = 40  -- where one-line descriptions start
local WIDTH = 78   -- and where they wrap

-- "  head   description": the description wrapped at WIDTH under itself,
-- and starting on a line of its own when the head leaves no room.
local function two_columns (head, text)
  head = "  " .. head
  if text == "" then return head end
  local lines, line = {}, nil
  for word in text:gmatch("%S+") do
    if line and #line + 1 + #word > WIDTH - COLUMN then
      lines[#lines + 1] = line
      line = word
    else
      line = line and (line .. " " .. word) or word
    end
  end
  lines[#lines + 1] = line
  local indent = string.rep(" ", COLUMN)
  local body = table.concat(lines, "\n" .. indent)
  if #head > COLUMN - 2 then return head .. "\n" .. indent .. body end
  return head .. string.rep(" ", COLUMN - #head) .. body
end

-- The head of an entry: the name at index i and its signature, or for
-- the whole entry its names ("v:u8 .. v:u64(pos) -> n" for several).
local function head_of (e, i)
  local names = e.names
  if i then return names[i].name .. names[i].sig end
  if #names == 1 then return names[1].name .. names[1].sig end
  local last = names[#names]
  return names[1].name .. " .. " .. last.name .. last.sig
end

local function line_of (e, i)
  return two_columns(head_of(e, i), fragment(e.summary))
end

local function describe_entry (e, i, suffix)
  local out = { head_of(e, i) .. (suffix or ""), "  " .. fragment(e.summary) }
  for _, l in ipairs(e.body) do
    out[#out + 1] = l == "" and "" or ("  " .. l)
  end
  return table.concat(out, "\n")
end

-- Source files, read once, for the comments above functions.
local sources = {}

local function source_lines (path)
  if sources[path] == nil then
    local lines = {}
    local f = io.open(path, "r")
    if f then
      for l in f:lines() do lines[#lines + 1] = l end
      f:close()
    end
    sources[path] = lines
  end
  return sources[path]
end

--- The LDoc comment above a Lua function, without its comment marks.
-- @param f a function
-- @return the comment, or nil if f is not Lua code from a file or has
-- none
function M.ldoc (f)
  local info = debug.getinfo(f, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
  local lines = source_lines(info.source:sub(2))
  local first = info.linedefined - 1
  local out = {}
  for i = first, 1, -1 do
    local l = lines[i]
    if l == nil or not l:match("^%s*%-%-") then break end
    table.insert(out, 1, (l:gsub("^%s*%-%-%-?%s?", "")))
    if l:match("^%s*%-%-%-") then
      return table.concat(out, "\n")
    end
  end
  return nil
end

--- How a Lua function is called: its parameter names.
-- @param f a function
-- @param method true to leave out the first parameter (self)
-- @return "(a, b, ...)", or "(...)" for a C function
function M.signature (f, method)
  local info = debug.getinfo(f, "Su")
  if info.what ~= "Lua" then return "(...)" end
  -- a parameter its comment calls optional ("@param where optional ...")
  -- is shown in brackets, as the engine's are; one whose name starts
  -- with "_" is internal, and left out
  local doc = M.ldoc(f) or ""
  local params, optional = {}, 0
  for i = method and 2 or 1, info.nparams do
    local name = debug.getlocal(f, i)
    if name:sub(1, 1) == "_" then        -- internal: left out
    elseif doc:match("@param " .. name .. " optional") then
      params[#params + 1] = (#params > 0 and " [, " or "[") .. name
      optional = optional + 1
    else
      params[#params + 1] = (#params > 0 and ", " or "") .. name
    end
  end
  if info.isvararg then
    params[#params + 1] = (#params > 0 and ", " or "") .. "..."
  end
  return "(" .. table.concat(params) .. string.rep("]", optional) .. ")"
end

local function index_of (v)
  local mt = debug.getmetatable(v)
  local index = mt and rawget(mt, "__index")
  return type(index) == "table" and index or nil
end

-- The name a value goes by: a global ("print"), a field of a loaded
-- module ("string.format", "fmap.bptree.new"), or a method of a global
-- object ("t:add", and then true); nil if none.
local function find_name (v)
  for k, x in next, _G do
    if x == v and type(k) == "string" then return k end
  end
  local best
  for modname, mod in pairs(package.loaded) do
    if mod == v then return modname end
    if type(mod) == "table" and modname ~= "_G" then
      for k, x in next, mod do
        if x == v and type(k) == "string" then
          local name = modname .. "." .. k
          if best == nil or #name < #best then best = name end
        end
      end
    end
  end
  if best then return best end
  for k, x in next, _G do
    local index = type(k) == "string" and index_of(x)
    if index then
      for m, f in next, index do
        if f == v and type(m) == "string" then return k .. ":" .. m, true end
      end
    end
  end
  return nil
end

-- The first sentence of a comment, cut to fit in room columns.
local function summary (doc, room)
  local text = doc:match("^(.-)\n%s*@") or doc
  text = text:gsub("%s*\n%s*", " ")
  text = text:match("^(.-%.)%s") or text:match("^(.-%.)$") or text
  if #text > room then
    text = text:sub(1, room - 3):match("^(.*%S)%s") or text:sub(1, room - 3)
    text = text:gsub("[%s%p]+$", "") .. "..."
  end
  return text
end

local function methods_of (mt)
  local index = mt and rawget(mt, "__index")
  local names = {}
  if type(index) == "table" then
    for k, f in next, index do
      if type(k) == "string" and type(f) == "function" then
        names[#names + 1] = k
      end
    end
  end
  table.sort(names)
  return names
end

-- " -- a method of fmap.bptree" for a structure's method, else "".
local function method_suffix (e, i)
  local prefix = e.names[i or 1].name:match("^(%w+):")
  local st = prefix and structure_by_prefix(prefix)
  return st and ("  -- a method of " .. st[1]) or ""
end

-- One line per public function of a module or class table: its
-- signature and its summary. Names that start with '_' (private ones,
-- metamethods) are left out.
local function list_functions (t, prefix, sep)
  local names = {}
  for k, f in next, t do
    if type(k) == "string" and type(f) == "function" and k:sub(1, 1) ~= "_"
    then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  local out = {}
  local described = described_functions()
  for _, k in ipairs(names) do
    local f = t[k]
    local hit = described[f]
    if hit then
      out[#out + 1] = line_of(hit[1], hit[2])
    else
      local doc = M.ldoc(f)
      out[#out + 1] = two_columns(prefix .. sep .. k
                                  .. M.signature(f, sep == ":"),
                                  doc and summary(doc, WIDTH - COLUMN) or "")
    end
  end
  return table.concat(out, "\n")
end

local function overview ()
  local out = { "The fmap API (help(x) for more on x; x may be a name, "
                .. "e.g. help \"bf:get\"):" }
  local by_section = {}
  for _, e in ipairs(reference().entries) do
    local s = section_of(e)
    if s then
      by_section[s] = by_section[s] or {}
      table.insert(by_section[s], e)
    end
  end
  for _, s in ipairs(SECTIONS) do
    out[#out + 1] = ""
    out[#out + 1] = string.format("%s  -- %s", s[1], s[2])
    for _, e in ipairs(by_section[s[1]] or {}) do
      out[#out + 1] = line_of(e)
    end
  end
  local note = not_found_note()
  if note then out[#out + 1] = "\n" .. note end
  return table.concat(out, "\n")
end

local function describe_function (f)
  local hit = described_functions()[f]
  if hit then
    return describe_entry(hit[1], hit[2], method_suffix(hit[1], hit[2]))
  end
  local name, method = find_name(f)
  -- a global the reference describes by name (the REPL's show, a wrapper)
  if name and not method and M.entry(name) then
    return describe_entry(M.entry(name))
  end
  name = name or "function"
  local doc = M.ldoc(f)
  if doc then
    return name .. M.signature(f, method) .. "\n  " .. doc:gsub("\n", "\n  ")
  end
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    if name == "function" then
      local note = not_found_note()
      return "a C function, not described" .. (note and ("\n" .. note) or "")
    end
    return name .. ": a built-in function; see "
           .. "https://www.lua.org/manual/5.4/manual.html#pdf-" .. name
  end
  return string.format("%s%s: a Lua function defined at %s:%d (no comment)",
                       name, M.signature(f, method), info.short_src,
                       info.linedefined)
end

local function section_line (name)
  for _, s in ipairs(SECTIONS) do
    if s[1] == name then return s[2] end
  end
  return ""
end

local function describe_typed (v, typename, section)
  local out = { tostring(v), "  " .. section_line(section) }
  local mt = debug.getregistry()[typename]
  local names = methods_of(mt)
  if #names > 0 then
    out[#out + 1] = "Methods:"
    local prefix = typename == BF and "bf:" or "v:"
    for _, k in ipairs(names) do
      local e, i = M.entry(prefix .. k)
      out[#out + 1] = e and line_of(e, i)
                      or two_columns(prefix .. k .. "(...)", "(not described)")
    end
  end
  return table.concat(out, "\n")
end

-- The methods of structure st (its module's _methods), or nil.
local function structure_methods (st)
  local ok, mod = pcall(require, st[1])
  local methods = ok and type(mod) == "table" and rawget(mod, "_methods")
  return type(methods) == "table" and methods or nil
end

-- The name an object of the structure whose methods are index goes by.
local function object_name (index)
  for _, st in ipairs(STRUCTURES) do
    if structure_methods(st) == index then return st[2] end
  end
  return "obj"
end

-- The description of method field of a structure, the one that prefix
-- names ("t") or, without a prefix, the first that has it; nil if none.
local function describe_method (prefix, field)
  for _, st in ipairs(STRUCTURES) do
    local methods = (prefix == nil or prefix == st[2] or st[prefix])
                    and structure_methods(st)
    local f = methods and rawget(methods, field)
    if type(f) == "function" and field:sub(1, 1) ~= "_" then
      local e, i = M.entry(st[2] .. ":" .. field)
      if e then return describe_entry(e, i, method_suffix(e, i)) end
      local doc = M.ldoc(f) or "(no comment)"
      return string.format("%s:%s%s  -- a method of %s\n  %s", st[2], field,
                           M.signature(f, true), st[1],
                           (doc:gsub("\n", "\n  ")))
    end
  end
  return nil
end

-- The kind of object x is, when help knows it: the name the reference
-- gives one in a method's name ("bf", "t") and what a sentence calls it
-- ("a BlockFile", "a B+tree"); nil for any other value.
local function kind_of (x)
  local mt = debug.getmetatable(x)
  if mt == nil then return nil end
  local typename = rawget(mt, "__name")
  if typename == BF then return "bf", "a BlockFile" end
  if typename == VIEW then return "v", "a view" end
  for _, st in ipairs(STRUCTURES) do
    local mod = rawget(package.loaded, st[1])
    if type(mod) == "table" and rawget(mod, "_methods") == mt then
      return st[2], st.kind
    end
  end
  return nil
end

-- The description of method field of the object x, by x's kind: a B+tree's
-- "get" is t:get whatever x is called. label is what the user called x (a
-- variable's name), or nil.
local function describe_method_of (x, field, label)
  local prefix, kind = kind_of(x)
  local f = field:sub(1, 1) ~= "_" and require("fmap.repl").lookup(x, field)
            or nil
  local callable = type(f) == "function"
    or (debug.getmetatable(f) ~= nil
        and rawget(debug.getmetatable(f), "__call") ~= nil)
  if not callable then
    if kind == nil and label then
      return string.format("%s is a %s, with no method '%s'", label,
                           type(x), field)
    end
    return string.format("%s has no method '%s'%s", kind or ("a " .. type(x)),
                         field, (kind and label)
                         and ("; help(" .. label .. ") lists its methods")
                         or "")
  end
  if prefix then
    local e, i = M.entry(prefix .. ":" .. field)
    if e then return describe_entry(e, i, method_suffix(e, i)) end
  end
  if type(f) == "function" then return describe_function(f) end
  return M.text(f)
end

local function describe_table (t)
  local name = find_name(t)
  if name == "fmap" then
    local out = { "fmap", "  " .. section_line("fmap") }
    for _, e in ipairs(reference().entries) do
      if section_of(e) == "fmap" then out[#out + 1] = line_of(e) end
    end
    return table.concat(out, "\n")
  end
  local out = {}
  local entry = name and M.entry(name)
  local mt = debug.getmetatable(t)
  if mt and rawget(mt, "__tostring") then  -- an object that says what it is
    out[1] = (name and (name .. ": ") or "") .. tostring(t)
  else
    out[1] = (name or "a table")
             .. (entry and ("  -- " .. fragment(entry.summary)) or "")
    for _, l in ipairs(entry and entry.body or {}) do
      out[#out + 1] = l == "" and "" or ("  " .. l)
    end
  end
  local funcs = list_functions(t, name or "t", ".")
  if funcs ~= "" then
    if #out > 1 then out[#out + 1] = "Functions:" end  -- after a module's text
    out[#out + 1] = funcs
  end
  local index = index_of(t)
  if index and index ~= t then
    local methods = list_functions(index, name or object_name(index), ":")
    if methods ~= "" then
      out[#out + 1] = "Methods:"
      out[#out + 1] = methods
    end
  end
  if #out == 1 then
    out[1] = out[1] .. ": no functions; it prints as:\n"
             .. require("fmap.repl").format(t)
  end
  return table.concat(out, "\n")
end

local function describe_name (name)
  local e, i = M.entry(name)
  local prefix, method = name:match("^([%w_]+):([%w_]+)$")
  -- "t:put" where t is a variable: by what t is, not by its name
  local var = prefix and rawget(_G, prefix)
  if var ~= nil then return describe_method_of(var, method, prefix) end
  if e == nil and prefix then
    -- "tree:add", "s:put": a structure's method by another name of its
    -- object, before the engine's "bf:get"
    for _, st in ipairs(STRUCTURES) do
      if st[2] == prefix or st[prefix] then
        local text = describe_method(prefix, method)
        if text then return text end
      end
    end
  end
  if e == nil then
    -- "allocate", "view:read", "BlockFile.get": try the engine's names
    local field = name:match("[.:]([%w_]+)$") or name
    for _, p in ipairs({ "bf:", "v:", "fmap." }) do
      e, i = M.entry(p .. field)
      if e then break end
    end
  end
  if e and not is_module(e) then
    return describe_entry(e, i, method_suffix(e, i))
  end
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" then return describe_table(mod) end
  if e then return describe_entry(e, i) end
  -- "add": a method of one of the structures
  if prefix == nil then
    local text = describe_method(nil, name)
    if text then return text end
  end
  local note = not_found_note()
  return string.format("no help for %q; help() lists what there is", name)
         .. (note and ("\n" .. note) or "")
end

--- Describes x, or lists the whole API when x is absent; with a method
-- name, describes x's method of that name, by x's kind (a B+tree's, a
-- BlockFile's), or says that x has none.
-- @param x a function, module, BlockFile, view or other value; or a name
-- ("bf:get", "fmap.open", "fmap.bptree"; "t:put", where t is a global,
-- describes the method of what t is)
-- @param method optional: the name of a method of x
-- @return the description
function M.text (...)
  local n, x, method = select("#", ...), ...
  if n == 0 then return overview() end
  if n > 1 then
    argcheck.checktype(method, 2, "text", "string")
    return describe_method_of(x, method, nil)
  end
  local mt = debug.getmetatable(x)
  local typename = mt and rawget(mt, "__name")
  if typename == BF then return describe_typed(x, BF, "BlockFile") end
  if typename == VIEW then return describe_typed(x, VIEW, "View") end
  local tx = type(x)
  if tx == "string" then return describe_name(x) end
  if tx == "function" then return describe_function(x) end
  if tx == "table" then return describe_table(x) end
  return string.format("%s: a %s value", tostring(x), tx)
end

--- Prints help: the API, or a description of x (see text); through the
-- REPL's pager when it runs on a terminal (fmap.repl.page).
-- @param ... nothing, or the value or name to describe, and optionally
-- the name of a method of it
function M.help (...)
  if select("#", ...) > 1 then
    argcheck.checktype(select(2, ...), 2, "help", "string")
  end
  require("fmap.repl").page(M.text(...) .. "\n")
end

return M
