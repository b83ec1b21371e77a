--- fmap.cli: the command line of fmap's scripts, one FILE and options.
-- A script describes its options once and gets them parsed, with the same
-- messages and exit statuses everywhere: 2 and the usage on a usage error,
-- 1 on a failure, 0 after printing the usage for -h or --help.
--
--   local cli = require "fmap.cli"
--   local cmd = cli.new("blockmap", HELP, { "output", "modules",
--     ["--cols"] = { key = "cols", kind = "integer", min = 1 },
--     ["--free"] = { key = "free", kind = "flag" },
--   })
--   local opts = cmd:parse(arg)      -- opts.path is FILE
--   cmd:require_all(opts.modules)
--   local bf = cmd:open(opts.path)
local M = {}

local Command = {}
Command.__index = Command

-- The options scripts share, by the key they set.
local SHARED = {
  output = { ["-o"] = "output", ["--output"] = "output" },
  modules = {
    ["-r"] = { key = "modules", many = true, value = "a MODULE" },
    ["--require"] = { key = "modules", many = true, value = "a MODULE" },
  },
  -- a benchmark's: how many operations, how many timed rounds, its file
  n = { ["--n"] = { key = "n", kind = "integer", min = 1 } },
  rounds = { ["--rounds"] = { key = "rounds", kind = "integer", min = 1 } },
  file = { ["--file"] = "file" },
}

--- A command: its name (the prefix of its messages), its help, and its
-- options. help is what -h and --help print: the usage (a line, or lines
-- that continue it), then, after a blank line, what a script's help says:
-- what it does, each option, an example and its exit statuses. The usage
-- alone is what a usage error prints; a benchmark's help may be no more.
-- An option maps to a key (a string) or to a table: key; kind "string"
-- (the default), "integer" (with min), "offset" (a non-negative integer,
-- decimal or 0x hex) or "flag"; many = true to collect every occurrence
-- in a list; value = what the message calls its value ("a value" by
-- default). The options' list part names options that scripts share:
-- "output" (-o, --output PATH), "modules" (-r, --require MODULE,
-- repeatable: see `require_all`), and a benchmark's "n" (--n N) and
-- "rounds" (--rounds R), positive integers, and "file" (--file PATH); a
-- flag the options give as well is theirs instead (--n with another min,
-- say). settings, optional: operands, the names of the arguments other
-- than options, in order ({"FILE"} by default; {"DUMP", "NEWFILE"}, say),
-- of which the first `required` (all by default) must be there; file =
-- false for a command of options alone (a benchmark's: see `benchmark`).
function M.new (name, help, options, settings)
  local all = {}
  for _, key in ipairs(options) do
    for flag, o in pairs(assert(SHARED[key], key)) do all[flag] = o end
  end
  for flag, o in pairs(options) do
    if type(flag) == "string" then all[flag] = o end
  end
  local opts = {}
  for flag, o in pairs(all) do
    if type(o) == "string" then o = { key = o } end
    opts[flag] = {
      key = o.key, kind = o.kind or "string", min = o.min, many = o.many,
      value = o.value or "a value",
    }
  end
  settings = settings or {}
  local operands = settings.operands or { "FILE" }
  if settings.file == false then operands = {} end
  return setmetatable({ name = name, usage = help:match("^(.-)\n\n") or help,
                        options = opts, help = help,
                        operands = operands,
                        required = settings.required or #operands },
                      Command)
end

--- A command of options alone, a benchmark's: `new` with file = false.
function M.benchmark (name, help, options)
  return M.new(name, help, options, { file = false })
end

--- Prints msg and the usage on stderr and exits with status 2.
function Command:usage_error (msg)
  io.stderr:write(self.name, ": ", msg, "\n", self.usage, "\n")
  os.exit(2)
end

--- Prints msg on stderr and exits with status 1.
function Command:fail (msg)
  io.stderr:write(self.name, ": ", msg, "\n")
  os.exit(1)
end

local function convert (self, flag, o, s)
  if o.kind == "integer" then
    local n = math.tointeger(tonumber(s))
    if not n or n < (o.min or math.mininteger) then
      if o.min == 1 then
        self:usage_error(string.format("%s: %q is not a positive integer",
                                       flag, s))
      end
      self:usage_error(string.format("%s: %q is not an integer >= %d", flag,
                                     s, o.min))
    end
    return n
  elseif o.kind == "offset" then
    local n = math.tointeger(tonumber(s))
    if n == nil or n < 0 then
      self:usage_error(string.format("%s: %q is not an offset", flag, s))
    end
    return n
  end
  return s
end

--- Parses args: options (also as --name=value) before, between or after
-- the operands (one FILE, which may be "-", unless the command names
-- others); after "--" every argument is an operand. Returns the options
-- by key, the first operand as path and all of them as args.
function Command:parse (args)
  local r = { args = {} }
  for _, o in pairs(self.options) do
    if o.many then r[o.key] = {} end
  end
  local ops, only_operands = self.operands, false
  local i = 1
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[^=]+)=(.*)$")
    flag = flag or a
    local o = not only_operands and self.options[flag]
    if only_operands or a == "-" or a:sub(1, 1) ~= "-" then
      if #r.args == #ops then
        if #ops == 1 then self:usage_error("one " .. ops[1] .. " only") end
        self:usage_error(string.format("unexpected argument %q", a))
      end
      r.args[#r.args + 1] = a
    elseif a == "--" then
      only_operands = true
    elseif flag == "-h" or flag == "--help" then
      print(self.help)
      os.exit(0)
    elseif o then
      local v = true
      if o.kind ~= "flag" then
        v = inline
        if v == nil then
          i = i + 1
          v = args[i]
          if v == nil then
            self:usage_error(flag .. " needs " .. o.value)
          end
        end
        v = convert(self, flag, o, v)
      end
      if o.many then table.insert(r[o.key], v) else r[o.key] = v end
    else
      self:usage_error(string.format("unknown option %q", a))
    end
    i = i + 1
  end
  if #r.args < self.required then
    self:usage_error("no " .. ops[#r.args + 1])
  end
  r.path = r.args[1]
  return r
end

--- Loads the modules of -r MODULE options (a classifier's registration,
-- say): a path instead of a module name is a usage error, a module that
-- fails to load a failure.
function Command:require_all (modules)
  for _, m in ipairs(modules) do
    if m:match("/") or m:match("%.lua$") then
      self:usage_error(string.format("-r %s: a module name, as require "
                       .. "takes it (mods.chain for mods/chain.lua on "
                       .. "LUA_PATH)", m))
    end
    local ok, err = pcall(require, m)
    if not ok then self:fail(string.format("cannot load %s: %s", m, err)) end
  end
end

--- Opens FILE read-only (the scripts only read), or fails the command
-- with the engine's message.
-- @return the BlockFile
function Command:open (path)
  local bf, msg = require("fmap").open(path, { readonly = true })
  if not bf then self:fail(msg) end
  return bf
end

--- What a tool says of a file a writer has open: its read-only open sees
-- the writer's last commit as of the open, not what the writer commits
-- while the tool runs.
-- @param bf a BlockFile open read-only
-- @return the sentence, or nil when no writer has the file
function M.writer_note (bf)
  if bf:stats().writer then
    return "another BlockFile has it open: this is its last commit as of "
           .. "this open"
  end
end

--- Whether a file is at path: one that opens for reading.
function M.exists (path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Writes data to the file at path, made or replaced.
-- @return true, or nil, a message and an errno when the file cannot be
--   opened or written
function M.writefile (path, data)
  local f, msg, code = io.open(path, "wb")
  if not f then return nil, msg, code end
  local ok, wmsg, wcode = f:write(data)
  f:close()
  if not ok then return nil, wmsg, wcode end
  return true
end

--- A fresh temporary path ending in suffix, not created: os.tmpname()
-- makes a file of a unique name, which goes; the path is that name plus
-- the suffix, so no placeholder is left behind.
function M.tmppath (suffix)
  local base = os.tmpname()
  os.remove(base)
  return base .. (suffix or "")
end

return M
