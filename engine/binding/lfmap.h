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

LUAMOD_API int luaopen_fmap (lua_State *L);

#endif
