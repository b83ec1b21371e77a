-- fmap-0.1-1.rockspec: fmap for luarocks users, from a checkout:
--   luarocks make rockspec/fmap-0.1-1.rockspec
-- builds the engine as the C module fmap.so (rockspec/Makefile) and
-- installs it with the Lua modules (fmap.bptree, fmap.varchar, ...) and
-- the reference help() reads. The fmap executable is not built here:
-- scripts/install.sh installs it.
rockspec_format = "3.0"
package = "fmap"
version = "0.1-1"
source = {
  -- the checkout this file is in: luarocks make builds from it
  url = "git+file://.",
}
description = {
  summary = "Files of fixed-size blocks, mapped into memory, for Lua 5.4",
  detailed = [[
A C engine that maps a file of fixed-size blocks into memory and hands
the blocks to Lua as bounds-checked, tracked views, with transactions;
and structures written in Lua on top of it: a B+tree, a blob store, a
persistent list, and tools that draw and audit a file.]],
  license = "unspecified",
  labels = { "storage", "mmap", "btree" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "make",
  makefile = "rockspec/Makefile",
  build_variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_variables = {
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
  copy_directories = {},
}
