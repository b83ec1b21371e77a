--- spec/tmux.lua: a program in a terminal, for the specs that drive the
-- REPL as a user does. Each terminal is a pane of 100 x 40 of a tmux
-- server of its own; the spec reads the screen and types keys.
--
--   local term = tmux.start("HOME=/tmp/x build/bin/fmap")
--   term:wait_for("\n>\n")            -- the prompt is on the screen
--   term:type_line("1 + 1")
--   term:wait_for("\n2\n>\n")
--   term:close()
--
-- A key goes only once the screen shows what it answers (wait_for first):
-- keys typed ahead may reach readline before it reads them, and Ctrl-C is
-- a signal, sent at once, not a key queued behind the typed ones.
-- capture-pane prints every row of the pane, trailing spaces trimmed: an
-- empty prompt reads "\n>\n".
local h = require "helpers"

local M = {}

local function q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Whether tmux is installed: without it the specs that need it are
-- pending.
M.available = os.execute("command -v tmux >/dev/null 2>&1") == true

local Term = {}
Term.__index = Term

--- Runs a tmux command on this terminal's server; returns its output.
-- @param args the command and its arguments, quoted for the shell
function Term:tmux (args)
  return (h.run("tmux -S " .. q(self.sock) .. " " .. args .. " 2>&1"))
end

--- The screen, a line per row.
function Term:screen ()
  return self:tmux("capture-pane -p -t fmap")
end

--- Waits until the screen shows text (plain, or a Lua pattern when
-- pattern is true); returns the screen. Fails with the screen if it does
-- not within 20 seconds (the sanitizer build starts slowly).
function Term:wait_for (text, pattern)
  local s
  for _ = 1, 400 do
    s = self:screen()
    if s:find(text, 1, not pattern) then return s end
    os.execute("sleep 0.05")
  end
  error("the screen never showed " .. string.format("%q", text) .. ":\n"
        .. s, 2)
end

--- Sends keys by tmux's names ("Enter", "Tab", "C-c").
function Term:keys (...)
  self:tmux("send-keys -t fmap " .. table.concat({ ... }, " "))
end

--- Types text as it is.
function Term:type_text (text)
  self:tmux("send-keys -t fmap -l " .. q(text))
end

--- Types text and Enter.
function Term:type_line (text)
  self:type_text(text)
  self:keys("Enter")
end

--- Waits until the program has ended; returns its exit status.
function Term:wait_exit ()
  local dead
  for _ = 1, 400 do
    dead = self:tmux("display-message -p -t fmap "
                     .. q("#{pane_dead} #{pane_dead_status} "
                          .. "#{pane_dead_signal}"))
    -- dead as soon as the terminal closes; the status comes after
    local status = dead:match("^1 (%d+)")
    if status then return tonumber(status) end
    if dead:match("^1") then
      -- tmux 3.3 can miss the SIGCHLD of a pane that exits while it
      -- updates utmp (tmux issue #311): remind its server, which this
      -- terminal started, to reap it
      local pid = self:tmux("display-message -p " .. q("#{pid}")):match("%d+")
      if pid then os.execute("kill -CHLD " .. pid) end
    end
    os.execute("sleep 0.05")
  end
  error("the program did not end: " .. dead .. "\n" .. self:screen(), 2)
end

--- Ends the terminal and its server.
function Term:close ()
  self:tmux("kill-server")
  os.remove(self.sock)
end

--- Starts a shell command in a new terminal, of a tmux server of its own.
-- @param cmd the command, as sh reads it
-- @return the terminal
function M.start (cmd)
  local path = os.tmpname()   -- unique among processes, unlike h.tmpname
  os.remove(path)
  local term = setmetatable({ sock = path .. ".sock" }, Term)
  term:tmux("new-session -d -s fmap -x 100 -y 40 " .. q(cmd))
  term:tmux("set-option -t fmap remain-on-exit on")
  return term
end

return M
