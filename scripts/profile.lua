--- scripts/profile.lua: runs a script under fmap.profile and prints what
-- each of its operations cost in blocks, per phase.
-- Run it as: fmap scripts/profile.lua [OPTIONS] SCRIPT [ARGS]
-- Options (before SCRIPT; what follows SCRIPT is the script's):
--   -o, --output PATH   also draw the miss curves, as SVG: misses per
--                       operation against the LRU cache's size as a
--                       fraction of the file (log scale), a line per phase
--                       (and per file, when several were profiled)
--   --file PATH         profile only the BlockFiles opened at PATH (the
--                       path as the script spells it); by default, every
--                       BlockFile the script makes or opens
--   --phase NAME        the first phase's name (default "main")
-- The script runs as `fmap SCRIPT ARGS` would run it, with arg set the
-- same way; it names its phases with require("fmap.profile").phase "NAME"
-- (or fmap.profile.phase), and its structures' operations are counted
-- (profile.op counts its own). A call of os.exit ends the script, not the
-- profile. Exits with the script's status (1 if it raised, after the
-- report), 1 when the picture cannot be written, 2 on a usage error.
local profile = require "fmap.profile"
local cli = require "fmap.cli"

local HELP = [[
usage: fmap scripts/profile.lua [-o CURVES.svg] [--file PATH] [--phase NAME] SCRIPT [ARGS]

Runs SCRIPT under fmap.profile and prints, per phase and operation, the
distinct blocks read and written per operation (mean and p99), the write
amplification, and the misses per operation of an LRU cache of 1 block,
1%, 10%, 50% and all of the file.

Options, before SCRIPT (what follows SCRIPT is the script's):
  -o, --output PATH  also draw the miss curves as SVG: misses per operation
                     against the cache's size as a fraction of the file (log
                     scale), one line per phase (and per file)
  --file PATH        profile only the BlockFiles opened at PATH (as the
                     script spells it); default: every one it opens
  --phase NAME       the first phase's name (default "main")

In the script, require("fmap.profile").phase "NAME" starts a phase, and
profile.op(name, fn, ...) counts a call of the script's own as one
operation. The structures of fmap mark their operations themselves.

Example:
  fmap scripts/profile.lua -o curves.svg myscript.lua 10000

Exits with the script's status (1 if it raised, after the report), 1 when
the picture cannot be written, 2 on a usage error.]]

local cmd = cli.new("profile", HELP, { "output",
  ["--file"] = "file",
  ["--phase"] = "phase",
}, { operands = { "SCRIPT" } })

-- The options are those before SCRIPT: split the arguments there.
local TAKES_VALUE = { ["-o"] = true, ["--output"] = true, ["--file"] = true,
                      ["--phase"] = true }
local head, script_at = {}, nil
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--" then
      script_at = i + 1
      break
    elseif a:sub(1, 1) ~= "-" or a == "-" then
      script_at = i
      break
    end
    head[#head + 1] = a
    if TAKES_VALUE[a] and arg[i + 1] then
      head[#head + 1] = arg[i + 1]
      i = i + 1
    end
    i = i + 1
  end
end
if script_at and arg[script_at] then head[#head + 1] = arg[script_at] end
local opts = cmd:parse(head)
local script = opts.path
if script == "-" then cmd:usage_error("SCRIPT must be a file, not -") end

local chunk, msg = loadfile(script)
if not chunk then cmd:fail(msg) end

-- The script's arg, as the host sets it: arg[0] the script, then its
-- arguments; the interpreter and this script before it.
local sarg = { [0] = script }
for i = script_at + 1, #arg do sarg[#sarg + 1] = arg[i] end
sarg[-1] = arg[0]
for i = -1, -8, -1 do
  if arg[i] == nil then break end
  sarg[i - 1] = arg[i]
end

-- os.exit inside the script ends the script, not the profile: it raises
-- this, which the run below catches.
local EXIT = {}
local real_exit = os.exit
local status, err = 0, nil

local only = nil
if opts.file then
  only = function (bf) return bf:path() == opts.file end
end

local report, rmsg = profile.run(nil, function ()
  _G.arg = sarg
  os.exit = function (code)
    if code == true or code == nil then code = 0
    elseif code == false then code = 1 end
    error(setmetatable({ code = code }, EXIT), 0)
  end
  local ok, e = xpcall(chunk, function (m)
    if getmetatable(m) == EXIT then return m end
    return debug.traceback(tostring(m), 2)
  end, table.unpack(sarg, 1, #sarg))
  os.exit = real_exit
  if not ok then
    if getmetatable(e) == EXIT then status = e.code
    else status, err = 1, e end
  end
end, { all = only or true, phase = opts.phase })
if not report then cmd:fail(rmsg) end

if #report.files == 0 then
  print("fmap.profile: the script opened no BlockFile"
        .. (opts.file and " at " .. opts.file or ""))
else
  print(report:format())
end
if opts.output and #report.files > 0 then
  local ok, wmsg = report:write_svg(opts.output, {
    title = "LRU misses per operation: " .. script,
  })
  if not ok then cmd:fail(wmsg) end
  print("wrote " .. opts.output)
end
if err then
  io.stderr:write("fmap: ", tostring(err), "\n")
end
real_exit(status, true)
