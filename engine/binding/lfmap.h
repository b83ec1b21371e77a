/*
** lfmap.h: the Lua binding of the fmap engine. The host preloads it; the
** module build/lib/fmap.so exports it for a plain lua5.4.
*/
#ifndef LFMAP_H
#define LFMAP_H

#include "lua.h"

#define FMAP_VERSION   "fmap 0.1"
#define FMAP_BF        "fmap.BlockFile"   /* metatable names */
#define FMAP_VIEW      "fmap.View"

/* The registry field that lists the structures written in Lua, a table
** that luaopen_fmap makes: each key is the source of a structure's chunk
** (as lua_Debug's source, "@path"), its value the name to show for it.
** fmap.guard fills it (guard.of, guard.structure); the host's Ctrl-C
** waits while a function of one of them runs, so that it stops between
** two operations of a structure, never half-way through one. */
#define FMAP_STRUCTURES  "fmap.structures"

LUAMOD_API int luaopen_fmap (lua_State *L);

#endif
