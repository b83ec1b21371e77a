--- scripts/crashtest.lua: runs the crash test a module exports, and says
-- whether every state a crash could leave passes its check.
-- Run it as: fmap scripts/crashtest.lua [--mode MODE] [--limit N]
--                                       [--seed S] [--replay PATH] MODULE
-- (--help says more.)
local crashtest = require "fmap.crashtest"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/crashtest.lua [--mode process|power] [--limit N] [--seed S]
                                  [--replay PATH] MODULE

Runs the crash test of a structure (fmap.crashtest, doc/crashtest.md)
and prints its report: how many states a crash could leave were tried,
how many failed the check or failed to open, and for the first failure
the change that led to it, with its Lua traceback, and the check's
message.

MODULE is a module name as require takes it (fmap.examples.hashtable,
or mods.tree for mods/tree.lua on LUA_PATH), or the path of a Lua file.
It returns the test, a table with setup(bf), run(bf) and check(bf), or
a table whose field crashtest is one. setup builds the state before on
a new file, run makes the changes under test, check(bf) returns true
for a sound state (false or nil and a message, or raises, for one that
is not). The test's own mode, limit and seed are the defaults of the
options.

Options:
  --mode MODE     process: a crash after each change run makes, as if
                  each reached the file at once, but a transaction's at
                  its commit (the default); power: a power loss at each
                  flush, commit or sync, keeping any subset of the 4 KiB
                  pages written since the one before
  --limit N       the most states to try: in all (process, default
                  every one), at each durability point (power, default
                  256); a sample, drawn from the seed, past it
  --seed S        the seed of the random draws (printed in the report)
  --replay PATH   write the state of the first failure to PATH, a file
                  for scripts/inspect.lua and scripts/blockmap.lua
  -h, --help      print this help

Example:
  fmap scripts/crashtest.lua fmap.examples.hashtable
  fmap scripts/crashtest.lua --mode power --seed 7 mods/tree.lua

Exit status: 0 when every state passed, 1 when some failed (or the test
could not run: the module, a file), 2 on a usage error.]]

local cmd = cli.new("crashtest", HELP, {
  ["--mode"] = { key = "mode", value = "a MODE" },
  ["--limit"] = { key = "limit", kind = "integer", min = 1, value = "an N" },
  ["--seed"] = { key = "seed", kind = "integer", value = "an S" },
  ["--replay"] = { key = "replay", value = "a PATH" },
}, { operands = { "MODULE" } })

local opts = cmd:parse(arg)
if opts.mode and opts.mode ~= "process" and opts.mode ~= "power" then
  cmd:usage_error(string.format("--mode: %q is not process or power",
                                opts.mode))
end

-- The test the module gives: the table it returns, or its crashtest.
local name = opts.path
local ok, mod
if name:match("/") or name:match("%.lua$") then
  ok, mod = pcall(dofile, name)
else
  ok, mod = pcall(require, name)
end
if not ok then cmd:fail(string.format("cannot load %s: %s", name, mod)) end
local test = type(mod) == "table" and type(mod.crashtest) == "table"
             and mod.crashtest or mod
if type(test) ~= "table" or type(test.run) ~= "function"
   or type(test.check) ~= "function" then
  cmd:fail(string.format("%s gives no crash test: it returns %s, not a "
                         .. "table with run and check functions (or one "
                         .. "whose field crashtest is)", name, type(mod)))
end

local t = {}
for k, v in pairs(test) do t[k] = v end
t.mode = opts.mode or t.mode
t.limit = opts.limit or t.limit
t.seed = opts.seed or t.seed

local report, err
ok, report, err = pcall(crashtest.run, t)
if not ok then cmd:fail((tostring(report):gsub("^[^:\n]+:%d+: ", ""))) end
if not report then cmd:fail(err) end
print(report:summary())
if opts.replay then
  if report.failures[1] then
    local done, msg = report:replay(opts.replay)
    if not done then cmd:fail(msg) end
    print(string.format("the state of the first failure is in %s",
                        opts.replay))
  else
    print("no failure to replay")
  end
end
os.exit(report.ok and 0 or 1)
