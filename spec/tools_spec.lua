-- Specs of the tools users run from the shell: scripts/dump.lua,
-- load.lua, compact.lua, keys.lua and get.lua (fmap.dump under them), and
-- the --help and usage errors of every script.
local dump = require "fmap.dump"
local bptree = require "fmap.bptree"
local varchar = require "fmap.varchar"
local mmlist = require "fmap.mmlist"

local function q (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs scripts/NAME.lua with args (strings, quoted here): its stdout, its
-- stderr and its exit status.
local function tool (name, ...)
  local parts = { h.bin(), "scripts/" .. name .. ".lua" }
  for _, a in ipairs({ ... }) do parts[#parts + 1] = q(a) end
  local err = h.tmpname(".err")
  local out, status = h.run(table.concat(parts, " ") .. " 2>" .. err)
  local e = h.readfile(err)
  os.remove(err)
  return out, e, status
end

-- Removes a file and the journal beside it.
local function remove (path)
  os.remove(path)
  os.remove(path .. "-wal")
end

local exists = require("fmap.cli").exists

-- A file with the three structures and what makes a dump hard: binary
-- keys and values, empty values, duplicate keys, large blobs, shared
-- blobs, empty list items, and control data naming two structures. Its
-- store holds the blobs a key -> blob tree names, and one blob no tree
-- names. Returns what it put in, to compare with.
local function build (path)
  local bf = assert(fmap.create(path))
  local vc = assert(varchar.new(bf))
  local t = assert(bptree.new(bf, -1, 8))     -- key -> blob
  bf:set_control_data(bf:control_data() .. " vc@" .. vc:offset())
  local want = { blobs = {}, raw = {}, items = {} }
  for i = 1, 120 do
    local s = ("blob %d "):format(i) .. ("\0\1\255"):rep(i % 5)
    if i % 40 == 0 then s = s .. ("L"):rep(9000 + i) end   -- large blobs
    local x = vc:put(s)
    local key = ("key\0%03d"):format(i)
    t:add(key, string.pack("<i8", x))
    want.blobs[key] = { s }
    if i % 12 == 0 then                   -- a second entry, a shared blob
      vc:ref(x)
      t:add(key, string.pack("<i8", x))
      want.blobs[key][2] = s
    end
  end
  vc:put("nobody names me")
  local raw = assert(bptree.new_at(bf, nil, 4, -1))  -- fixed keys, any value
  for i = 1, 90 do
    local k = string.pack(">I4", i % 25)
    local v = i % 3 == 0 and "" or string.char(i % 256):rep(i * 3)
    raw:add(k, v)
    want.raw[#want.raw + 1] = { k, v }
  end
  local l = assert(mmlist.new(bf))
  for i = 1, 40 do
    local s = i % 4 == 0 and "" or ("item %d \0"):format(i)
    l:append(s)
    want.items[i] = s
  end
  want.raw_offset, want.list_offset = raw:offset(), l:offset()
  bf:close()
  return want
end

-- The roots the classifiers find, by kind, in scan order.
local function classify_roots (bf)
  local r = require("fmap.classify").scan(bf)
  local roots = { bptree = {}, varchar = {}, mmlist = {} }
  for _, s in ipairs(r.structures) do
    roots[s.name] = roots[s.name] or {}
    table.insert(roots[s.name], s.root)
  end
  return roots
end

-- The structures of the file at path hold what build put in, and verify.
local function same_content (path, want)
  local bf <close> = assert(fmap.open(path, { readonly = true }))
  local t = bptree.open(bf)
  assert(t:verify())
  local vcoff = tonumber(bf:control_data():match("vc@(%d+)"))
  local vc = varchar.open(bf, vcoff)
  assert(vc:verify())
  local n = 0
  for key, values in pairs(want.blobs) do
    local got = {}
    for _, v in t:find(key) do
      got[#got + 1] = vc:get((string.unpack("<i8", v)))
    end
    assert.same(values, got)
    n = n + #values
  end
  assert.equal(n, t:size())
  local r = classify_roots(bf)
  local raw = bptree.open_at(bf, r.bptree[2])
  assert(raw:verify())
  local i = 0
  for k, v in raw:iterate() do
    i = i + 1
    -- keys sort, and a key's values keep their insertion order
    local found = false
    for _, e in ipairs(want.raw) do
      if e[1] == k and e[2] == v then found = true end
    end
    assert.is_true(found)
  end
  assert.equal(#want.raw, i)
  local l = mmlist.open(bf, r.mmlist[1])
  assert(l:verify())
  local items = {}
  for _, s in l:iterate() do items[#items + 1] = s end
  assert.same(want.items, items)
end

describe("fmap.dump", function()
  describe(".quote() and .unquote()", function()
    it("keep every byte, printable ones readable", function()
      local all = {}
      for b = 0, 255 do all[#all + 1] = string.char(b) end
      all = table.concat(all)
      for _, s in ipairs({ "", "plain text", 'a "quote" and a \\', all,
                           "\0\0\0\1", "text with one \n",
                           ("\255"):rep(9) }) do
        local text = dump.quote(s)
        assert.is_nil(text:find("[%z\1-\31\127-\255]"))
        assert.equal(s, (dump.unquote(text)))
      end
      assert.equal('"plain text"', dump.quote("plain text"))
      assert.equal('"a \\x22q\\x22 \\x5c"', dump.quote('a "q" \\'))
      assert.equal('x"000001"', dump.quote("\0\0\1"))
      assert.equal('"ab\\x0a"', dump.quote("ab\n"))
    end)

    it("refuse what a dump never writes", function()
      assert.same({ nil, "a string holds a \\ that starts no \\xHH" },
                  { dump.unquote('"a\\nb"') })
      assert.same({ nil, "a string with no closing quote" },
                  { dump.unquote('"abc') })
      assert.same({ nil, "a hex string of other than pairs of hex digits" },
                  { dump.unquote('x"abc"') })
      assert.same({ nil, "a string holds a byte a dump writes as \\xHH" },
                  { dump.unquote('"a\tb"') })
      assert.same({ nil, "text after the string" },
                  { dump.unquote('"a" ') })
      assert.equal("bad argument #1 to 'unquote' (string expected, got nil)",
                   h.errmsg(function() dump.unquote() end))
    end)
  end)
end)

describe("scripts/dump.lua and scripts/load.lua", function()
  local path, copy, text, want
  before_each(function()
    path, copy, text = h.tmpname(), h.tmpname(), h.tmpname(".dump")
    want = build(path)
  end)
  after_each(function()
    remove(path)
    remove(copy)
    os.remove(text)
  end)

  it("round-trip: dump -> load -> dump gives the same text", function()
    local out, err, status = tool("dump", path, "-o", text)
    assert.equal(0, status, err)
    assert.equal("", err)
    assert.matches("^wrote " .. text:gsub("%p", "%%%0") .. ": 4 structures, ",
                   out)
    out, err, status = tool("load", text, copy)
    assert.equal(0, status, err)
    assert.equal("", err)
    assert.matches("^loaded .* into .*: %d+ bytes, %d+ blocks of 4096 bytes, "
                   .. "4 structures\n  varchar@%d+: 121 blobs\n  mmlist@%d+: "
                   .. "40 items\n  bptree@%d+: 130 records\n  bptree@%d+: 90 "
                   .. "records\n$", out)
    local again = tool("dump", copy)
    assert.equal(h.readfile(text), again)
    same_content(copy, want)
    -- the offsets moved, and the control data follows them
    local bf <close> = assert(fmap.open(copy, { readonly = true }))
    local t = bptree.open(bf)
    assert.matches("^bptree@" .. t:offset() .. " vc@%d+$", bf:control_data())
  end)

  it("writes a header, a section per structure and an end marker",
     function()
    local out = tool("dump", path)
    local lines = {}
    for line in out:gmatch("[^\n]*") do lines[#lines + 1] = line end
    assert.equal("fmap-dump 1", lines[1])
    assert.equal("block-size 4096", lines[2])
    assert.equal("structures 4", lines[3])
    assert.equal('control "bptree@" #3 " vc@" #1', lines[4])
    assert.matches("\nbegin 1 varchar blobs=121\nblob 1 refs=1 \"blob 1 "
                   .. "\\x00\\x01\\xff\"\n", out)
    assert.matches('\nbegin 3 bptree key%-size=%-1 value%-size=8 records=130 '
                   .. 'values=blobs#1\nrecord "key\\x00001" @1\n', out)
    assert.matches('\nbegin 4 bptree key%-size=4 value%-size=%-1 records=90\n'
                   .. 'record x"00000000" x"1919', out)
    assert.matches('\nbegin 2 mmlist items=40\nitem "item 1 \\x00"\n', out)
    assert.matches('\nitem ""\n', out)
    -- a shared blob: two references, both entries name it
    assert.matches('\nblob 12 refs=2 ', out)
    assert.matches('\nrecord "key\\x00012" @12\nrecord "key\\x00012" @12\n',
                   out)
    assert.matches("\nend 4\nend%-of%-dump checksum=%x+\n$", out)
  end)

  it("loads into another block size, keeping the content", function()
    local _, err, status = tool("dump", path, "-o", text)
    assert.equal(0, status, err)
    _, err, status = tool("load", text, copy, "--block-size", "8192")
    assert.equal(0, status, err)
    same_content(copy, want)
    local bf <close> = assert(fmap.open(copy, { readonly = true }))
    assert.equal(8192, bf:block_size())
    local again = tool("dump", copy)
    local a, b = h.readfile(text), again
    -- the same text but for the block size and the checksum
    assert.equal(a:gsub("block%-size 4096", "block-size 8192")
                   :gsub("checksum=%x+", ""),
                 (b:gsub("checksum=%x+", "")))
  end)

  it("reads the dump from standard input with -", function()
    tool("dump", path, "-o", text)
    local out, status = h.run(h.bin() .. " scripts/load.lua - " .. q(copy)
                              .. " < " .. q(text) .. " 2>&1")
    assert.equal(0, status, out)
    assert.matches("^loaded stdin into ", out)
    same_content(copy, want)
  end)

  it("dumps one structure with --structure, and the store it names",
     function()
    local bf = assert(fmap.open(path, { readonly = true }))
    local t = bptree.open(bf)
    local toff = t:offset()
    bf:close()
    local out, err, status = tool("dump", path, "--structure",
                                  tostring(want.list_offset))
    assert.equal(0, status, err)
    assert.matches("\nstructures 1\ncontrol \"\"\nbegin 1 mmlist items=40\n",
                   out)
    assert.matches('^dump: the control data "bptree@' .. toff .. ' vc@%d+" '
                   .. "names the structure at " .. toff .. ", which this "
                   .. "dump leaves out: the dump's control data is empty\n$",
                   err)
    out, err, status = tool("dump", path, "--structure", tostring(toff))
    assert.equal(0, status, err)
    assert.equal("", err)
    assert.matches("\nstructures 2\ncontrol \"bptree@\" #2 \" vc@\" #1\n"
                   .. "begin 1 varchar blobs=121\n", out)
    out, err, status = tool("dump", path, "--structure", "12345")
    assert.equal(1, status)
    assert.matches("^dump: no structure at offset 12345 %(the file holds "
                   .. "varchar@%d+, mmlist@%d+, bptree@%d+, bptree@%d+%)\n$",
                   err)
  end)

  it("warns of blocks no structure owns, and leaves them out", function()
    local bf = assert(fmap.open(path))
    bf:with(bf:allocate(), function (v) v:write(0, "mine") end)
    bf:close()
    local out, err, status = tool("dump", path)
    assert.equal(0, status)
    assert.equal("dump: 1 block no structure owns (a structure with no "
                 .. "classifier, or leaked blocks): left out\n", err)
    assert.matches("end%-of%-dump", out)
  end)

  it("dumps the hash table example with -r, and loads it", function()
    local ht = require "fmap.examples.hashtable"
    local file = h.tmpname()
    local bf = assert(fmap.create(file))
    local tbl = assert(ht.create(bf, 8))
    for i = 1, 60 do tbl:put("k" .. i, ("\0v"):rep(i % 4)) end
    bf:close()
    local out, err, status = tool("dump", file, "-r",
                                  "fmap.examples.hashtable")
    assert.equal(0, status, err)
    assert.matches("\ncontrol \"hashtable@\" #1\nbegin 1 hashtable "
                   .. "buckets=8 records=60\nrecord \"k1\" \"\\x00v\"\n"
                   .. "record \"k10\" \"\\x00v\\x00v\"\n", out)
    h.writefile(text, out)
    local _, lerr, lstatus = tool("load", text, copy)
    assert.equal(0, lstatus, lerr)
    assert.equal(out, (tool("dump", copy, "-r", "fmap.examples.hashtable")))
    bf = assert(fmap.open(copy, { readonly = true }))
    local t2 = assert(ht.open(bf))
    assert(t2:verify())
    assert.equal("\0v\0v", t2:get("k2"))
    bf:close()
    -- without its classifier, its blocks are no structure's
    out, err, status = tool("dump", file)
    assert.equal(0, status)
    assert.matches("^dump: 9 blocks no structure owns", err)
    assert.matches("\nstructures 0\ncontrol \"hashtable@" .. tbl:offset()
                   .. "\"\n", out)
    remove(file)
  end)

  it("refuses an existing NEWFILE, and replaces it with --force",
     function()
    tool("dump", path, "-o", text)
    h.writefile(copy, "precious")
    local out, err, status = tool("load", text, copy)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("load: " .. copy .. " exists; --force replaces it\n", err)
    assert.equal("precious", h.readfile(copy))
    out, err, status = tool("load", text, copy, "--force")
    assert.equal(0, status, err)
    same_content(copy, want)
    assert.is_false(exists(copy .. ".load-tmp"))
  end)

  describe("a dump that is cut short or damaged", function()
    local good
    before_each(function()
      tool("dump", path, "-o", text)
      good = h.readfile(text)
    end)

    -- Loads s as a dump: the error, the exit status; no file is left.
    local function refused (s, ...)
      h.writefile(text, s)
      local out, err, status = tool("load", text, copy, ...)
      assert.equal("", out)
      assert.is_false(exists(copy))
      assert.is_false(exists(copy .. ".load-tmp"))
      assert.is_false(exists(copy .. ".load-tmp-wal"))
      return err, status
    end

    it("is refused when cut short, wherever the cut", function()
      local cuts = { 10, #good // 3, #good // 2, #good - 30, #good - 5 }
      for _, at in ipairs(cuts) do
        local err, status = refused(good:sub(1, at))
        assert.equal(1, status, err)
        assert.matches("^load: " .. text:gsub("%p", "%%%0") .. ":", err)
      end
      local err = refused((good:sub(1, #good // 2):gsub("[^\n]*$", "")))
      assert.matches(": the dump ends at line %d+, before its end%-of%-dump "
                     .. "line: it was cut short\n$", err)
    end)

    it("is refused when a byte changed: its checksum says so", function()
      local bad = good:gsub('"blob 5 "', '"blob 9 "', 1)
      assert.are_not.equal(good, bad)
      local err, status = refused(bad)
      assert.equal(1, status)
      assert.matches("^load: .*: checksum mismatch: the dump was changed or "
                     .. "damaged after it was written %(its lines hash to "
                     .. "%x+, its end%-of%-dump line says %x+%)\n$", err)
    end)

    it("is refused with the line when it does not parse", function()
      local cases = {
        { good:gsub("\nrecord \"key\\x00001\" @1\n", "\nrecord \"key\\x00001"
                    .. "\" @999\n", 1), ":%d+: @999: section 1 holds no blob "
                    .. "999\n$" },
        { good:gsub("\nend 3\n", "\n", 1), ":%d+: 'end 3' expected, or "
                    .. "another record line, got \"begin 4 bptree " },
        { good:gsub("items=40", "items=41", 1), ":%d+: section 2 %(mmlist%) "
                    .. "ends after 40 items; its begin line says 41\n$" },
        { good:gsub("items=40", "items=39", 1), ":%d+: section 2 %(mmlist%) "
                    .. "holds more than the 39 items its begin line says\n$" },
        { good:gsub("\nitem \"item 1 \\x00\"", "\nitem \"item 1 \\q\"", 1),
          ":%d+: a string holds a \\ that starts no \\xHH\n$" },
        { good:gsub("begin 2 mmlist", "begin 2 btree", 1), ":%d+: section "
                    .. "2: unknown kind \"btree\"" },
        { good:gsub("key%-size=4", "key-size=0", 1), ":%d+: section 4: bad "
                    .. "argument #3 to 'new_at'" },
        { good .. "more\n", ":%d+: text after the end%-of%-dump line\n$" },
        { "fmap-dump 2\n", ": a dump in format version 2; this fmap reads "
                    .. "version 1\n$" },
        { "hello\n", ": not an fmap dump %(its first line is not "
                    .. "\"fmap%-dump 1\"%)\n$" },
        { good:gsub("block%-size 4096", "block-size 5000", 1), ":2: "
                    .. "block%-size 5000 is not a multiple of 4096 up to "
                    .. "2%^30\n$" },
      }
      for i, c in ipairs(cases) do
        assert.are_not.equal(good, c[1], i)
        local err, status = refused(c[1], "--ignore-checksum")
        assert.equal(1, status, i)
        assert.matches("^load: " .. text:gsub("%p", "%%%0") .. c[2], err)
      end
    end)

    it("loads a dump edited by hand with --ignore-checksum", function()
      local edited = good:gsub('\nitem "item 1 \\x00"\n',
                               '\nitem "edited"\n', 1)
      local err, status = refused(edited)
      assert.equal(1, status)
      assert.matches("checksum mismatch", err)
      h.writefile(text, edited)
      local _, err2, st2 = tool("load", text, copy, "--ignore-checksum")
      assert.equal(0, st2, err2)
      local bf <close> = assert(fmap.open(copy, { readonly = true }))
      local l = mmlist.open(bf, classify_roots(bf).mmlist[1])
      assert.equal("edited", l:get(1))
    end)
  end)
end)

describe("scripts/compact.lua", function()
  local path, other, text
  before_each(function()
    path, other, text = h.tmpname(), h.tmpname(), h.tmpname(".dump")
  end)
  after_each(function()
    remove(path)
    remove(other)
    os.remove(text)
    os.remove(path .. ".compact-tmp")
  end)

  -- A file whose structures left most of its blocks free.
  local function sparse ()
    local want = build(path)
    local bf = assert(fmap.open(path))
    local t = bptree.open_at(bf, want.raw_offset)
    for i = 1, 4000 do t:add(string.pack(">I4", 1000 + i), ("x"):rep(300)) end
    for i = 1, 4000 do t:remove(string.pack(">I4", 1000 + i)) end
    local vc = varchar.new(bf)
    local xs = {}
    for i = 1, 50 do xs[i] = vc:put(("big"):rep(5000)) end
    for i = 1, 50 do vc:free(xs[i]) end
    bf:close()
    return want
  end

  -- compact's own function, as a script calls it: no options at all
  it("copies through fmap.dump.copy with no options", function()
    local want = sparse()
    local bf = assert(fmap.open(path, { readonly = true }))
    local res = assert(require("fmap.dump").copy(bf, other))
    bf:close()
    assert.equal(5, #res.structures)
    same_content(other, want)
    local nbf = assert(fmap.open(other, { readonly = true }))
    assert.equal(0, nbf:stats().free_blocks)
    nbf:close()
  end)

  it("shrinks a file with many free blocks, keeping its content",
     function()
    local want = sparse()
    local before = assert(fmap.open(path, { readonly = true }))
    local st = before:stats()
    before:close()
    assert.is_true(st.free_blocks > 300, st.free_blocks)
    local dumped = tool("dump", path)
    local out, err, status = tool("compact", path)
    assert.equal(0, status, err)
    assert.equal("", err)
    local bf = assert(fmap.open(path, { readonly = true }))
    local after = bf:stats()
    bf:close()
    assert.equal(0, after.free_blocks)
    assert.equal(0, after.tail_blocks)
    assert.is_true(after.size < st.size / 4, after.size .. " " .. st.size)
    assert.matches("^compacted " .. path:gsub("%p", "%%%0") .. ": 5 "
                   .. "structures, %d+ items\n  before  " .. st.size
                   .. " bytes %(" .. st.blocks .. " blocks: %d+ used, "
                   .. st.free_blocks .. " free, %d+ tail%)\n  after   "
                   .. after.size .. " bytes %(" .. after.blocks
                   .. " blocks: %d+ used, 0 free, 0 tail%)\n$", out)
    same_content(path, want)
    assert.equal(dumped, (tool("dump", path)))
    assert.is_false(exists(path .. ".compact-tmp"))
    assert.is_false(exists(path .. "-wal"))
  end)

  it("writes the copy to --out and leaves FILE as it was", function()
    sparse()
    local original = h.readfile(path)
    local out, err, status = tool("compact", path, "--out", other)
    assert.equal(0, status, err)
    assert.matches(" into " .. other:gsub("%p", "%%%0") .. ": ", out)
    assert.equal(original, h.readfile(path))
    assert.equal(tool("dump", path), (tool("dump", other)))
    _, err, status = tool("compact", path, "--out", other)
    assert.equal(1, status)
    assert.equal("compact: " .. other .. " exists; --force replaces it\n",
                 err)
    _, err, status = tool("compact", path, "--out", other, "--force")
    assert.equal(0, status, err)
  end)

  it("refuses to drop blocks no structure owns, unless told", function()
    build(path)
    local bf = assert(fmap.open(path))
    bf:allocate()
    bf:close()
    local original = h.readfile(path)
    local out, err, status = tool("compact", path)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("compact: 1 block no structure owns (a structure with no "
                 .. "classifier, or leaked blocks): left out; --drop-unknown "
                 .. "drops them\n", err)
    assert.equal(original, h.readfile(path))
    out, err, status = tool("compact", path, "--drop-unknown")
    assert.equal(0, status, err)
    assert.matches("^compact: 1 block no structure owns", err)
  end)

  it("refuses a FILE whose journal readers keep, until they close it",
     function()
    local want = build(path)
    local reader = assert(fmap.open(path, { readonly = true }))
    local bf = assert(fmap.open(path))
    local t = bptree.open(bf)
    local vc = varchar.open(bf, tonumber(bf:control_data():match("vc@(%d+)")))
    t:add("key\0" .. "999", string.pack("<i8", vc:put("new")))
    bf:close()                       -- the reader keeps the commit out
    assert.is_true(exists(path .. "-wal"))
    local original = h.readfile(path)
    local out, err, status = tool("compact", path)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("compact: " .. path .. ": its journal holds commits not "
                 .. "yet in the file, kept there by a process that has it "
                 .. "open read-only; a journal left beside the new file "
                 .. "would replay over it: run again once no process has "
                 .. "the file open\n", err)
    assert.equal(original, h.readfile(path))
    reader:close()
    _, err, status = tool("compact", path)
    assert.equal(0, status, err)
    assert.is_false(exists(path .. "-wal"))
    want.blobs["key\0" .. "999"] = { "new" }
    same_content(path, want)
  end)

  it("fails, and leaves FILE alone, when another process has it open",
     function()
    build(path)
    local bf = assert(fmap.open(path))
    local _, err, status = tool("compact", path)
    bf:close()
    assert.equal(1, status)
    assert.equal("compact: " .. path .. ": file is locked: another "
                 .. "BlockFile has it open\n", err)
    assert.is_false(exists(path .. ".compact-tmp"))
  end)
end)

describe("scripts/keys.lua and scripts/get.lua", function()
  local path
  before_each(function()
    path = h.tmpname()
    local bf = assert(fmap.create(path))
    local vc = assert(varchar.new(bf))
    local t = assert(bptree.new(bf, -1, 8))
    for _, k in ipairs({ "apple", "apricot", "banana", "cherry", "ap" }) do
      t:add(k, string.pack("<i8", vc:put(k:upper())))
    end
    t:add("banana", string.pack("<i8", vc:put("BANANA 2")))
    t:add("\0\255bin", string.pack("<i8", vc:put("\0")))
    local fixed = assert(bptree.new_at(bf, nil, 2, 1))
    for i = 0, 20 do fixed:add(string.pack(">I2", i * 300), "v") end
    bf:close()
  end)
  after_each(function() remove(path) end)

  it("keys prints the keys in order, once an entry", function()
    local out, err, status = tool("keys", path)
    assert.equal(0, status, err)
    assert.equal("\0\255bin\nap\napple\napricot\nbanana\nbanana\ncherry\n",
                 out)
  end)

  it("keys takes a prefix, bounds, both, and hex", function()
    assert.equal("ap\napple\napricot\n", (tool("keys", path, "--prefix",
                                               "ap")))
    assert.equal("apricot\nbanana\nbanana\n",
                 (tool("keys", path, "--from", "apr", "--to", "banana")))
    assert.equal("apple\n", (tool("keys", path, "--prefix", "ap", "--from",
                                  "apa", "--to", "apq")))
    assert.equal("", (tool("keys", path, "--prefix", "zz")))
    assert.equal("", (tool("keys", path, "--from", "z", "--to", "a")))
    assert.equal("00ff62696e\n", (tool("keys", path, "--hex", "--prefix",
                                       "00")))
  end)

  it("keys reads a tree of fixed-size keys named by --tree", function()
    local bf = assert(fmap.open(path, { readonly = true }))
    local other = classify_roots(bf).bptree[2]
    bf:close()
    local out, err, status = tool("keys", path, "--tree", tostring(other),
                                  "--hex", "--from", "0a", "--to", "0c")
    assert.equal(0, status, err)
    assert.equal("0a8c\n0bb8\n", out)
    assert.equal("012c\n", (tool("keys", path, "--tree", tostring(other),
                                 "--hex", "--prefix", "01")))
  end)

  it("get prints a value, every one with --all, a blob with --blob",
     function()
    local out, err, status = tool("get", path, "banana", "--blob")
    assert.equal(0, status, err)
    assert.equal("BANANA\n", out)
    assert.equal("BANANA\nBANANA 2\n", (tool("get", path, "banana",
                                             "--blob", "--all")))
    assert.equal(8 + 1, #(tool("get", path, "cherry")))
    assert.equal("00\n", (tool("get", path, "--hex", "--blob",
                               "00ff62696e")))
  end)

  it("get exits 1 when the key is not found", function()
    local out, err, status = tool("get", path, "durian")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal('get: key "durian" not found\n', err)
    _, err, status = tool("get", path, "--", "-dash")
    assert.equal(1, status)
    assert.equal('get: key "-dash" not found\n', err)
  end)

  it("get --blob exits 1 when a value names no blob", function()
    local bf = assert(fmap.open(path, { readonly = true }))
    local other = classify_roots(bf).bptree[2]
    bf:close()
    local _, err, status = tool("get", path, "--tree", tostring(other),
                                "--hex", "012c", "--blob")
    assert.equal(1, status)
    assert.equal('get: the value "v" names no blob (a blob\'s offset takes 8 '
                 .. "bytes)\n", err)
    _, err, status = tool("get", path, "--tree", tostring(other), "abc")
    assert.equal(1, status)
    assert.equal("get: the tree's keys have 2 bytes; KEY has 3\n", err)
  end)

  it("both fail when the file holds no tree, or several and none named",
     function()
    local empty = h.tmpname()
    assert(fmap.create(empty)):close()
    local _, err, status = tool("keys", empty)
    assert.equal(1, status)
    assert.equal("keys: no B+tree in the file\n", err)
    local bf = assert(fmap.create(empty))
    local a = bptree.new_at(bf, nil, -1, -1)
    local b = bptree.new_at(bf, nil, -1, -1)
    bf:close()
    _, err, status = tool("get", empty, "x")
    assert.equal(1, status)
    assert.equal("get: no B+tree in the control data, and 2 in the file, at "
                 .. a:offset() .. ", " .. b:offset()
                 .. ": name one with --tree OFFSET\n", err)
    _, err, status = tool("keys", empty, "--tree", "4097")
    assert.equal(1, status)
    assert.equal("keys: offset 4097 is not block-aligned\n", err)
    remove(empty)
  end)
end)

describe("scripts/inspect.lua --verify", function()
  local path
  before_each(function() path = h.tmpname() end)
  after_each(function() remove(path) end)

  it("runs the verify of every structure, a line each", function()
    build(path)
    local out, err, status = tool("inspect", "--verify", path)
    assert.equal(0, status, err)
    assert.matches("\n  check          ok\nverify bptree@%d+: ok\nverify "
                   .. "bptree@%d+: ok\nverify mmlist@%d+: ok\nverify "
                   .. "varchar@%d+: ok\n$", out)
  end)

  it("exits 1 when one fails, saying why", function()
    build(path)
    local bf = assert(fmap.open(path, { readonly = true }))
    local meta = bptree.open(bf):offset()
    bf:close()
    local f = assert(io.open(path, "r+b"))
    f:seek("set", meta + 48)            -- the meta block's entry count
    f:write(string.pack("<I8", 7))
    f:close()
    local out, _, status = tool("inspect", "--verify", path)
    assert.equal(1, status)
    assert.matches("\nverify bptree@" .. meta .. ": FAILED: [^\n]+\n", out)
    assert.matches("\nverify mmlist@%d+: ok\n", out)
  end)

  it("says which structures it has no verify for", function()
    local bf = assert(fmap.create(path))
    local off = bf:allocate()
    bf:set_control_data("toy=" .. off)
    bf:close()
    local out, status = h.run("LUA_PATH='spec/?.lua;;' " .. h.bin()
                              .. " scripts/inspect.lua --verify -r toychain "
                              .. q(path) .. " 2>&1")
    assert.equal(0, status, out)
    assert.matches("\nverify toy@" .. off .. ": not verified %(no verify "
                   .. "known for toy%)\n$", out)
  end)
end)

describe("every script", function()
  -- Each script, and the options its help must name.
  local SCRIPTS = {
    dump = { "--structure", "--all", "-o", "--output", "-r", "--require",
             "--raw-values", "-h", "--help" },
    load = { "--block-size", "--force", "--ignore-checksum", "-h",
             "--help" },
    compact = { "--out", "--force", "--drop-unknown", "-r", "--require",
                "--raw-values", "-h", "--help" },
    keys = { "--prefix", "--from", "--to", "--hex", "--tree", "-h",
             "--help" },
    get = { "--hex", "--all", "--blob", "--tree", "-h", "--help" },
    inspect = { "--free", "--block", "--stats", "--audit", "--verify", "-r",
                "--require", "-h", "--help" },
    blockmap = { "-o", "--output", "-r", "--require", "--cols", "--cell",
                 "-h", "--help" },
    dot = { "-o", "--output", "--at", "--depth", "--children", "--keys",
            "-h", "--help" },
    demo = { "--n", "-h", "--help" },
  }

  it("has scripts/build.sh say how it is used", function()
    for _, opt in ipairs { "--help", "-h" } do
      local out, status = h.run("bash scripts/build.sh " .. opt .. " 2>&1")
      assert.equal(0, status, out)
      assert.matches("^usage: bash scripts/build%.sh demo|test|build\n", out)
      assert.matches("\nExample:\n  bash scripts/build%.sh test\n", out)
    end
    local out, status = h.run("bash scripts/build.sh nonsense 2>&1")
    assert.equal(2, status)
    assert.equal("usage: bash scripts/build.sh demo|test|build\n", out)
  end)

  it("prints a help text for --help and -h, and exits 0", function()
    for name, options in pairs(SCRIPTS) do
      local out, err, status = tool(name, "--help")
      assert.equal(0, status, name)
      assert.equal("", err, name)
      assert.matches("^usage: fmap scripts/" .. name .. "%.lua ", out)
      for _, o in ipairs(options) do
        assert.matches("\n  [^\n]-" .. o:gsub("%-", "%%-") .. "[ ,]", out,
                       nil, name .. " " .. o)
      end
      assert.matches("\nExample:\n  fmap scripts/" .. name .. "%.lua[ \n]",
                     out)
      assert.matches("\nExit status: 0 ", out, nil, name)
      for line in out:gmatch("[^\n]+") do
        assert.is_true(#line < 80, name .. ": " .. line)
      end
      assert.equal(out, (tool(name, "-h")))
    end
  end)

  it("exits 2 with its usage on an unknown option", function()
    for name in pairs(SCRIPTS) do
      local out, err, status = tool(name, "--bogus")
      assert.equal(2, status, name)
      assert.equal("", out, name)
      assert.matches("^" .. name .. ': unknown option "%-%-bogus"\nusage: '
                     .. "fmap scripts/" .. name .. "%.lua ", err)
    end
  end)

  it("exits 2 with its usage on a bad value or a missing operand",
     function()
    local cases = {
      { "dump", { "F", "--structure", "x" }, '%-%-structure: "x" is not an '
        .. "offset" },
      { "dump", { "F", "--structure", "0", "--all" }, "%-%-structure and "
        .. "%-%-all: one or the other" },
      { "dump", { "F", "-o", "F" }, "OUT is FILE" },
      { "load", { "D" }, "no NEWFILE" },
      { "load", { "D", "N", "--block-size", "1000" }, "%-%-block%-size: 1000 "
        .. "is not a multiple of 4096 up to 2%^30" },
      { "load", { "D", "N", "X" }, 'unexpected argument "X"' },
      { "compact", { "F", "--force" }, "%-%-force replaces a NEWFILE: it "
        .. "goes with %-%-out" },
      { "keys", { "F", "--hex", "--prefix", "0g" }, '%-%-prefix: "0g" is not '
        .. "hex" },
      { "keys", { "F", "--tree", "-1" }, '%-%-tree: "%-1" is not an offset' },
      { "get", { "F" }, "no KEY" },
      { "get", { "F", "K", "--hex" }, 'KEY "K" is not hex' },
      { "demo", { "--n", "5" }, '%-%-n: "5" is not an integer >= 10' },
    }
    for _, c in ipairs(cases) do
      local _, err, status = tool(c[1], table.unpack(c[2]))
      assert.equal(2, status, c[1] .. " " .. table.concat(c[2], " "))
      assert.matches("^" .. c[1] .. ": " .. c[3] .. ".*\nusage: fmap "
                     .. "scripts/" .. c[1] .. "%.lua ", err)
    end
  end)

  it("draws no progress bar when stderr is no terminal", function()
    local path, text = h.tmpname(), h.tmpname(".dump")
    build(path)
    local _, err = tool("dump", path, "-o", text)
    assert.equal("", err)
    local copy = h.tmpname()
    _, err = tool("load", text, copy)
    assert.equal("", err)
    _, err = tool("compact", copy)
    assert.equal("", err)
    remove(path)
    remove(copy)
    os.remove(text)
  end)
end)
