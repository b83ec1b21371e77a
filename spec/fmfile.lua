--- spec/fmfile.lua: the on-disk format of engine/core/fm.c, rebuilt in Lua for
-- the robustness specs, which forge files: header slots and free marks
-- with valid checksums, so that damage reaches the checks behind them.
-- Works on whole-file strings; offsets are 0-based, as in fm.c.
local M = {}

M.SLOT = 128
M.HDR_MAGIC = "\x89fmap\r\n\x1a"
M.FREE_MAGIC = "fmapFREE"

--- fm.c's checksum of the string s with a seed.
function M.checksum (s, seed)
  local n = #s
  local h = seed ~ (n * 0x9E3779B97F4A7C15)
  local i = 1
  while i + 7 <= n do
    h = h ~ string.unpack("<i8", s, i)
    h = h * 0xBF58476D1CE4E5B9
    h = h ~ (h >> 31)
    i = i + 8
  end
  while i <= n do
    h = h ~ s:byte(i)
    h = h * 0x94D049BB133111EB
    i = i + 1
  end
  h = h ~ (h >> 29)
  h = h * 0xBF58476D1CE4E5B9
  h = h ~ (h >> 32)
  return h
end

--- Replaces the bytes of s at the 0-based offset off with r.
function M.splice (s, off, r)
  return s:sub(1, off) .. r .. s:sub(off + #r + 1)
end

local FIELDS = {   -- name, offset in the slot, pack format
  { "version", 8, "<I4" }, { "block_size", 12, "<I4" }, { "seq", 16, "<i8" },
  { "top", 24, "<i8" }, { "free_head", 32, "<i8" },
  { "free_blocks", 40, "<i8" }, { "free_runs", 48, "<i8" },
  { "ctl_len", 56, "<I4" }, { "ctl_area", 60, "<I4" },
  { "ctl_sum", 64, "<i8" }, { "pend_off", 72, "<i8" },
  { "pend_next", 80, "<i8" }, { "pend_blocks", 88, "<i8" },
}
M.FIELDS = FIELDS

--- The fields of header slot i (0 or 1) of the file image s, as a table
-- (valid = whether its checksum holds).
function M.slot (s, i)
  local base = i * M.SLOT
  local t = { magic = s:sub(base + 1, base + 8) }
  for _, f in ipairs(FIELDS) do
    t[f[1]] = string.unpack(f[3], s, base + f[2] + 1)
  end
  t.valid = string.unpack("<i8", s, base + 121)
        == M.checksum(s:sub(base + 1, base + 120), 0)
  return t
end

--- The slot that fm_open picks: the valid one with the higher sequence.
function M.newest (s)
  local a, b = M.slot(s, 0), M.slot(s, 1)
  if a.valid and (not b.valid or a.seq >= b.seq) then return a, 0 end
  return b, 1
end

--- Seals slot i of s again: recomputes its checksum after changes.
function M.seal_slot (s, i)
  local base = i * M.SLOT
  local sum = M.checksum(s:sub(base + 1, base + 120), 0)
  return M.splice(s, base + 120, string.pack("<i8", sum))
end

--- Sets fields of slot i ({name = value}) and seals it.
function M.set_slot (s, i, fields)
  for _, f in ipairs(FIELDS) do
    local v = fields[f[1]]
    if v ~= nil then
      s = M.splice(s, i * M.SLOT + f[2], string.pack(f[3], v))
    end
  end
  return M.seal_slot(s, i)
end

--- The free mark at off: { ok = valid, magic, self, next, blocks }.
function M.mark (s, off)
  local magic, self, nxt, blocks, sum =
    string.unpack("<c8i8i8i8i8", s, off + 1)
  return { ok = magic == M.FREE_MAGIC and self == off
                and sum == M.checksum(s:sub(off + 1, off + 32), 1),
           magic = magic, self = self, next = nxt, blocks = blocks }
end

--- Writes a valid free mark at off.
function M.put_mark (s, off, nxt, blocks)
  local body = M.FREE_MAGIC .. string.pack("<i8i8i8", off, nxt, blocks)
  return M.splice(s, off, body .. string.pack("<i8", M.checksum(body, 1)))
end

return M
