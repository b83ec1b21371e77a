/*
** lfmap.c: the Lua binding of the fmap core, its module: luaopen_fmap,
** the metatables and their proxies, the fmap.* functions and the
** BlockFile methods. The binding's other files hold views (view.c), node
** primitives and iterators (node.c), pack and unpack (pack.c) and map
** faults (fault.c); binding.h is what they share. It only translates:
** file formats and allocation live in fm.c.
**
** Errors: a failure of the environment returns nil, "path: reason", errno
** (as luaL_fileresult does); misuse raises, naming the function and values.
**
** Views: a View holds its BlockFile as a user value (so the BlockFile lives
** as long as any view of it) and stores an offset and a length, never a
** pointer into the map, so growth that moves the map cannot strand it. The
** BlockFile links its live views in a list, so that close can refuse while
** views live, free can retire the views of freed blocks, and live_views
** can say where each was acquired.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "fm.h"
#include "lfmap.h"
#include "binding.h"

LUAI_DDEF const char VIEW_TAG[] = "fmap view";
LUAI_DDEF const char BF_TAG[] = "fmap BlockFile";


/* ---------------------------------------------------------------------- */
/* Failures                                                                */
/* ---------------------------------------------------------------------- */

/* nil, "path: reason", errno; the reason is the core's sentence when it
** has one, else strerror. */
int pushfail (lua_State *L, BlockFile *bf, int rc, const char *path) {
  int en = rc > 0 ? rc : rc == FM_ELOST ? EIO : EINVAL;
  const char *why = bf->f.msg[0] ? bf->f.msg : strerror(en);
  luaL_pushfail(L);
  if (path != NULL) lua_pushfstring(L, "%s: %s", path, why);
  else lua_pushstring(L, why);
  lua_pushinteger(L, en);
  return 3;
}

/* The value at i is no tname: luaL_typeerror's message, with a hint when
** the running function is a method of mtname's called with '.' for ':'
** ("bf.get(off)" passes off as self). Only misuse comes here, so the
** lookup costs a correct call nothing. */
int typefail (lua_State *L, int i, const char *tname, const char *mtname) {
  lua_Debug ar;
  int top = lua_gettop(L);
  if (i == 1 && lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) &&
      ar.name != NULL && strcmp(ar.namewhat, "method") != 0) {
    int method = 0;
    const char *got = luaL_typename(L, 1);   /* before the stack grows */
    if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
      got = lua_tostring(L, -1);
    luaL_getmetatable(L, mtname);
    if (lua_getfield(L, -1, "__index") == LUA_TTABLE)
      method = lua_getfield(L, -1, ar.name) == LUA_TFUNCTION;
    if (method)
      return luaL_argerror(L, 1, lua_pushfstring(L, "%s expected, got %s; "
                           "call it with ':'", tname, got));
    lua_settop(L, top);   /* typeerror reads the argument at i again */
  }
  return luaL_typeerror(L, i, tname);
}

/* Pushes where an error about the file itself (closed, or its map lost)
** happened, as luaL_where does, but seen from the script: a structure
** (any chunk in the engine's list, FMAP_STRUCTURES, which fmap.guard
** fills) meets a closed file deep inside an operation, and the line to
** name is the one that called the operation. So when the running C
** function's caller is a structure's function, the walk goes on past the
** structures' functions and C functions (an iterator's step, say) and
** names the first other Lua function. When there is none, it names
** nothing if a structure's function was tail-called (its caller is gone,
** as for the REPL's calls: Lua's own errors then name no line either),
** and otherwise falls back to luaL_where's level 1 (a script that is a
** structure itself), as for any other error of the binding's. */
void pushcallerwhere (lua_State *L) {
  lua_Debug ar;
  int level, list, passed = 0, tail = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, FMAP_STRUCTURES);
  list = lua_gettop(L);
  for (level = 1; lua_istable(L, list) && lua_getstack(L, level, &ar);
       level++) {
    int mine;
    if (!lua_getinfo(L, "Slt", &ar)) break;
    if (ar.currentline <= 0) {   /* a C function */
      if (level == 1) break;
      continue;
    }
    mine = ar.source[0] == '@' &&
           lua_getfield(L, list, ar.source) != LUA_TNIL;
    if (ar.source[0] == '@') lua_pop(L, 1);
    if (mine) {
      passed = 1;
      tail |= ar.istailcall;
      continue;
    }
    if (level == 1) break;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    lua_remove(L, list);
    return;
  }
  lua_pop(L, 1);
  if (passed && tail && !lua_getstack(L, level, &ar)) lua_pushliteral(L, "");
  else luaL_where(L, 1);
}

/* Raises for a BlockFile that is not BF_OPEN, at the script's line
** (pushcallerwhere). */
int notopen (lua_State *L, BlockFile *bf) {
  pushcallerwhere(L);
  if (bf->open == BF_LOST)
    lua_pushfstring(L, "attempt to use a BlockFile that lost its map "
                    "(%s): close it", fm_fault_reason(&bf->f));
  else
    lua_pushliteral(L, "attempt to use a closed BlockFile");
  lua_concat(L, 2);
  return lua_error(L);
}

/* Raises the core's misuse or corruption message against argument arg
** (0: no argument, a plain error). */
int corefail (lua_State *L, BlockFile *bf, int arg) {
  if (LOSTMAP(bf)) notopen(L, bf);   /* the core read zeros, not the file */
  if (arg > 0) return luaL_argerror(L, arg, bf->f.msg);
  return luaL_error(L, "%s", bf->f.msg);
}

/* The misuse of a call that writes: on a read-only BlockFile the core
** refuses before it looks at the arguments, so the fault is self's
** ("calling 'free' on bad self (the BlockFile is read-only)"). */
static int writefail (lua_State *L, BlockFile *bf, int arg) {
  return corefail(L, bf, bf->f.readonly ? 1 : arg);
}

/* Only debug.setupvalue can put anything but the metatables there; what
** it does with a table is outside the engine's promise, but nothing it
** puts there may reach lua_setmetatable as a non-table. */
int mtfail (lua_State *L) {
  return luaL_error(L, "the engine's metatable is gone (an upvalue was "
                    "replaced)");
}


/* ---------------------------------------------------------------------- */
/* BlockFile                                                               */
/* ---------------------------------------------------------------------- */

/* Numbers the BlockFiles a process makes, for isbf. */
static uint64_t bfserials;

/* The userdata first, closed, so a failure leaves nothing to clean up. */
static BlockFile *newbf (lua_State *L) {
  /* user values: the path (nil when anonymous), on_rollback's hooks */
  BlockFile *bf = (BlockFile *)lua_newuserdatauv(L, sizeof(BlockFile), 2);
  memset(bf, 0, sizeof *bf);
  bf->tag = BF_TAG;
  bf->serial = ++bfserials;
  bf->f.fd = -1;
  if (lua_type(L, UV_BFMT) != LUA_TTABLE) mtfail(L);
  lua_pushvalue(L, UV_BFMT);
  lua_setmetatable(L, -2);
  return bf;
}

/* Retires every live view: the file is going away. */
static void kill_views (BlockFile *bf) {
  while (bf->views != NULL) unlink_view(bf->views, CLOSED);
}

/* What live_views and close's message say of a view. They copy the list
** first: building Lua values may run finalizers that release views, and
** a view unlinked (and collected) under the walk would be a dangling
** pointer. */
typedef struct ViewInfo {
  uint64_t off, len;
  int line;
  char src[LUA_IDSIZE];
} ViewInfo;

/* Copies at most max of bf's live views into a new userdata, left on the
** stack; *n says how many. */
static ViewInfo *snapviews (lua_State *L, BlockFile *bf, lua_Integer max,
                            lua_Integer *n) {
  lua_Integer want = bf->nviews < max ? bf->nviews : max, k = 0;
  ViewInfo *vi = (ViewInfo *)lua_newuserdatauv(L, (size_t)want * sizeof *vi,
                                               0);
  View *v;
  for (v = bf->views; v != NULL && k < want; v = v->next, k++) {
    vi[k].off = v->off;
    vi[k].len = v->len;
    vi[k].line = v->line;
    memcpy(vi[k].src, v->src, sizeof vi[k].src);
  }
  *n = k;
  return vi;
}

static int listviews (lua_State *L, BlockFile *bf) {
  lua_Integer n, i;
  ViewInfo *vi = snapviews(L, bf, bf->nviews, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    setint(L, "offset", vi[i].off);
    setint(L, "blocks", vi[i].len / bf->f.h.block_size);
    setint(L, "bytes", vi[i].len);
    if (vi[i].line >= 0) lua_pushfstring(L, "%s:%d", vi[i].src, vi[i].line);
    else lua_pushstring(L, vi[i].src[0] ? vi[i].src : "?");
    lua_setfield(L, -2, "where");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Pushes "N live view(s): offset O (B bytes) acquired at S:L; ...", the
** first ten of the views live on bf, and returns how many it lists: 0
** when a finalizer that the snapshot's allocation ran released them. */
static lua_Integer pushliveviews (lua_State *L, BlockFile *bf) {
  lua_Integer n, k, total;
  ViewInfo *vi = snapviews(L, bf, 10, &n);
  luaL_Buffer b;
  total = bf->nviews;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "%I live view%s:", total, total == 1 ? "" : "s");
  luaL_addvalue(&b);
  for (k = 0; k < n; k++) {
    lua_pushfstring(L, "%s offset %I (%I bytes) acquired at %s:%d",
                    k ? ";" : "", (lua_Integer)vi[k].off,
                    (lua_Integer)vi[k].len, vi[k].src, vi[k].line);
    luaL_addvalue(&b);
  }
  if (total > n) luaL_addstring(&b, "; ...");
  luaL_pushresult(&b);
  lua_remove(L, -2);   /* snapviews' userdata */
  return n;
}

/* What every close ends with, once the core closed the file: the
** profile lets go, the views die, the fault handler forgets the map. */
static void closed (BlockFile *bf) {
  if (bf->prof != NULL) profclosed(bf);
  kill_views(bf);
  unmapped(bf);
  bf->open = BF_CLOSED;
}

/* Closes; strict refuses while views are live after a GC; discard drops
** what changed since the last commit rather than commit it (remove).
** Returns true, or nil, message, errno: still open when the commit
** failed and nothing was lost (the core says so by keeping its map),
** closed otherwise. */
static int doclose (lua_State *L, BlockFile *bf, int strict, int discard) {
  int rc = 0;
  if (strict && bf->nviews > 0) {
    lua_gc(L, LUA_GCCOLLECT);   /* views only unreachable are released */
    if (bf->open == BF_CLOSED) {   /* a finalizer closed it */
      lua_pushboolean(L, 1);
      return 1;
    }
    if (bf->nviews > 0) {
      luaL_where(L, 1);   /* the script's line, as luaL_error gives */
      lua_pushliteral(L, "cannot close a BlockFile with ");
      if (pushliveviews(L, bf) > 0) {
        lua_concat(L, 3);
        return lua_error(L);
      }
      lua_pop(L, 3);
      if (bf->open == BF_CLOSED) {
        lua_pushboolean(L, 1);
        return 1;
      }
    }
  }
  if (bf->f.path != NULL) lua_pushstring(L, bf->f.path);   /* close frees it */
  else lua_pushnil(L);
  if (discard) fm_discard(&bf->f);
  else rc = fm_close(&bf->f);
  if (bf->f.map == NULL) closed(bf);
  if (rc != 0) return pushfail(L, bf, rc, lua_tostring(L, -1));
  lua_pushboolean(L, 1);
  return 1;
}

/* The finalizer: a close that fails has no one to tell, and no later
** chance, so it drops what the failed commit kept (the file holds the
** last commit). */
static int bf_gc (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf != NULL && bf->open != BF_CLOSED) {
    fm_close_final(&bf->f);
    closed(bf);
  }
  return 0;
}

/* __close: closes on any exit, retiring the views still live rather than
** refusing as close() does. A normal exit cannot refuse either: Lua runs
** __close while the collector still marks every register of the function
** that declared the variable, dead ones too, so a view the script has
** dropped (a structure's cached view, a view left to the collector) can
** survive any collection there. A view the script did keep raises at its
** next use, naming where it was acquired. A close that fails raises on a
** normal exit; on an error exit that error is the one reported, and the
** failure is a warning. A failed commit keeps nothing open here: the
** scope is over, so what it kept is dropped, and the message says so
** when there was anything (the core's says so when it closed). */
static int bf_tbclose (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  int dropped = 0;
  if (bf == NULL || bf->open == BF_CLOSED) return 0;
  if (doclose(L, bf, 0, 0) == 1) return 0;
  if (bf->open != BF_CLOSED) {   /* the commit failed; the scope is over */
    dropped = bf->f.ndirty > 0;   /* else only a sync of commits made */
    fm_discard(&bf->f);
    closed(bf);
  }
  lua_pushfstring(L, "the close of a <close> BlockFile failed: %s%s",
                  lua_tostring(L, -2), dropped ? " (what changed since the "
                  "last commit is lost; bf:close() before the scope ends "
                  "keeps the file open on such a failure, to retry)" : "");
  if (lua_isnil(L, 2)) {   /* a normal exit: the failure is the error */
    luaL_where(L, 1);      /* the line that ended the scope */
    lua_insert(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
  }
  lua_pushliteral(L, "fmap: ");
  lua_insert(L, -2);
  lua_concat(L, 2);
  lua_warning(L, lua_tostring(L, -1), 0);
  return 0;
}

/* close(): a BlockFile that lost its map closes too (that is what the
** error of every other use asks for). One whose commit failed stays
** open, and the message says so. */
static int bf_close (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf == NULL || bf->open != BF_LOST) bf = checkbf(L, 1);
  if (doclose(L, bf, 1, 0) == 1) return 1;
  if (bf->open != BF_CLOSED) {   /* the commit failed, and lost nothing */
    lua_pushfstring(L, "%s (the BlockFile stays open, nothing lost: close "
                    "it again to retry)", lua_tostring(L, -2));
    lua_replace(L, -3);
  }
  return 3;
}

static int bf_tostring (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  fm_stats st;
  if (bf == NULL) return luaL_typeerror(L, 1, "BlockFile");
  if (bf->open == BF_CLOSED) {
    lua_pushstring(L, "BlockFile (closed)");
    return 1;
  }
  if (bf->open == BF_LOST) {
    lua_pushfstring(L, "BlockFile (%s, lost its map: %s; close it)",
                    bf->f.path ? bf->f.path : "anonymous",
                    fm_fault_reason(&bf->f));
    return 1;
  }
  fm_get_stats(&bf->f, &st);
  lua_pushfstring(L, "BlockFile (%s%s, %I bytes, %I block%s of %I: the "
                  "header, %I used, %I free, %I never used; %I live view%s)",
                  bf->f.path ? bf->f.path : "anonymous",
                  bf->f.readonly ? ", read-only" : "", (lua_Integer)st.size,
                  (lua_Integer)st.blocks, plural(st.blocks),
                  (lua_Integer)st.block_size, (lua_Integer)st.used_blocks,
                  (lua_Integer)st.free_blocks, (lua_Integer)st.tail_blocks,
                  bf->nviews, bf->nviews == 1 ? "" : "s");
  return 1;
}

static uint32_t checkblocksize (lua_State *L, int i) {
  lua_Integer bs = luaL_optinteger(L, i, FM_BLOCKSIZE);
  luaL_argcheck(L, bs >= FM_BLOCKSIZE && bs % FM_BLOCKSIZE == 0 &&
                bs <= FM_MAX_BLOCKSIZE, i,
                lua_pushfstring(L, "block size %I is not a multiple of 4096 "
                                "up to 2^30", bs));
  return (uint32_t)bs;
}

/* fmap.create(path [, block_size]) */
static int mod_create (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uint32_t bs = checkblocksize(L, 2);
  BlockFile *bf = newbf(L);
  int rc;
  mapped(bf, BF_OPENING);    /* a fault while it is made is onbus's */
  rc = fm_create(path, bs, &bf->f);
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, path);
  lua_pushvalue(L, 1);       /* the path outlives close, for remove */
  lua_setiuservalue(L, -2, 1);
  profopened(L);
  return 1;
}

/* fmap.open(path [, {readonly = true, repair = true, create = true,
** block_size = n}]) */
static int mod_open (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int flags = 0, create = 0, sized = 0, tries, rc;
  lua_Integer bs = FM_BLOCKSIZE;
  BlockFile *bf;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ?
                      lua_tostring(L, -2) : NULL;
      int flag = k == NULL ? 0 : strcmp(k, "readonly") == 0 ? FM_READONLY
                 : strcmp(k, "repair") == 0 ? FM_REPAIR : 0;
      if (k != NULL && strcmp(k, "block_size") == 0) {
        int isint;
        bs = lua_tointegerx(L, -1, &isint);
        if (!isint || lua_type(L, -1) != LUA_TNUMBER)
          return luaL_argerror(L, 2, lua_pushfstring(L, "option block_size "
                               "must be an integer, not %s",
                               luaL_typename(L, -1)));
        luaL_argcheck(L, bs >= FM_BLOCKSIZE && bs % FM_BLOCKSIZE == 0 &&
                      bs <= FM_MAX_BLOCKSIZE, 2,
                      lua_pushfstring(L, "block size %I is not a multiple "
                                      "of 4096 up to 2^30", bs));
        sized = 1;
        lua_pop(L, 1);
        continue;
      }
      if (k != NULL && strcmp(k, "create") == 0) flag = -1;
      if (flag == 0)
        return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option %s",
                             k ? k : luaL_typename(L, -2)));
      if (!lua_isboolean(L, -1))
        return luaL_argerror(L, 2, lua_pushfstring(L, "option %s must be "
                             "true or false, not %s", k,
                             luaL_typename(L, -1)));
      if (lua_toboolean(L, -1)) {
        if (flag < 0) create = 1;
        else flags |= flag;
      }
      lua_pop(L, 1);
    }
    luaL_argcheck(L, (flags & (FM_READONLY | FM_REPAIR)) !=
                  (FM_READONLY | FM_REPAIR), 2,
                  "a read-only open cannot repair");
    luaL_argcheck(L, !(create && (flags & FM_READONLY)), 2,
                  "a read-only open cannot create");
    luaL_argcheck(L, create || !sized, 2,
                  "option block_size is for a new file: add create = true");
  }
  bf = newbf(L);
  mapped(bf, BF_OPENING);    /* a fault while it is read is onbus's */
  /* With create, a file that is there is opened: fm_create_new makes
  ** one only where none is, and fm_open opens what it found. A file
  ** removed in between is made again, a few times at most. */
  for (tries = 0; ; tries++) {
    if (create) {
      rc = fm_create_new(path, (uint32_t)bs, &bf->f);
      if (rc != EEXIST) break;
    }
    rc = fm_open(path, flags, &bf->f);
    if (!create || rc != ENOENT || tries == 3) break;
  }
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, path);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  profopened(L);
  return 1;
}

/* fmap.anonymous([block_size]) */
static int mod_anonymous (lua_State *L) {
  uint32_t bs = checkblocksize(L, 1);
  BlockFile *bf = newbf(L);
  int rc;
  mapped(bf, BF_OPENING);
  rc = fm_anonymous(bs, &bf->f);
  if ((rc = opened(bf, rc)) != 0) return pushfail(L, bf, rc, NULL);
  profopened(L);
  return 1;
}

/* fmap.memclr(view): zeroes the view's bytes. */
static int mod_memclr (lua_State *L) {
  View *v = checkwritable(L, 1);
  touch(L, v, 0, v->len);
  memset(vptr(v), 0, (size_t)v->len);
  CHECKLOST(L, v);
  return 0;
}

/* fmap.clock(): seconds on a monotonic clock, for timing benchmarks
** (os.clock counts CPU time, os.time whole seconds). */
static int mod_clock (lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* fmap.isatty(file): whether an io file (io.stderr) is a terminal, so
** that the tools draw progress only where someone watches. */
static int mod_isatty (lua_State *L) {
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  luaL_argcheck(L, p->closef != NULL, 1, "attempt to use a closed file");
  lua_pushboolean(L, isatty(fileno(p->f)));
  return 1;
}

/* fmap.sync_dir(path): fsyncs the folder at path, so that a file created,
** renamed or removed in it stays so after a power loss (what a rename
** over a file needs to be durable). */
static int mod_sync_dir (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), en;
  if (fd >= 0 && fsync(fd) == 0) {
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
  }
  en = errno;
  if (fd >= 0) close(fd);
  errno = en;
  return luaL_fileresult(L, 0, path);
}

static int doallocate (lua_State *L, BlockFile *bf, uint64_t n) {
  uint64_t off;
  int rc;
  COUNTSTORE(L, bf);
  rc = fm_allocate(&bf->f, n, &off);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return writefail(L, bf, lua_gettop(L) >= 2 ? 2 : 0);
  if (rc == FM_ECORRUPT) return corefail(L, bf, 0);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  PROFCOUNT(bf, PROF_ALLOC);
  lua_pushinteger(L, (lua_Integer)off);
  return 1;
}

static int bf_allocate (lua_State *L) {
  return doallocate(L, checkbf(L, 1), 1);
}

static int bf_allocate_blocks (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2,
                lua_pushfstring(L, "block count %I is not positive", n));
  return doallocate(L, bf, (uint64_t)n);
}

/* free(offset [, n]): n blocks from offset go back to the free list; the
** views over them die with them. */
static int bf_free (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  uint64_t end, bs = bf->f.h.block_size;
  View *v, *next;
  int rc;
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  COUNTSTORE(L, bf);
  rc = fm_free(&bf->f, off, (uint64_t)n);
  /* a count that runs past the allocated area from a block of the file
  ** is the count's fault */
  if (rc == FM_EMISUSE)
    return writefail(L, bf, off % bs == 0 && off < bf->f.h.top &&
                            (uint64_t)n > (bf->f.h.top - off) / bs ? 3 : 2);
  if (rc == FM_ECORRUPT) return corefail(L, bf, 0);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  PROFCOUNT(bf, PROF_FREE);
  end = off + (uint64_t)n * bs;
  for (v = bf->views; v != NULL; v = next) {
    next = v->next;
    if (v->off < end && off < v->off + v->len) unlink_view(v, FREED);
  }
  return 0;
}

/* get(offset [, blocks]) → a live view */
static int bf_get (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0)
    return corefail(L, bf, 2);
  newview(L, 1, bf, off, (uint64_t)n * bf->f.h.block_size);
  PROFCOUNT(bf, PROF_VIEW);
  return 1;
}

/* release(view): the view must be one of this BlockFile's, and live. */
static int bf_release (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  View *v = toview(L, 2);
  if (v == NULL) return luaL_typeerror(L, 2, "view");
  luaL_argcheck(L, v->bf == bf, 2, "view belongs to another BlockFile");
  if (v->state == RELEASED)
    return luaL_argerror(L, 2, lua_pushfstring(L, "attempt to release a "
                         "released view: %s", pushviewinfo(L, v)));
  unlink_view(v, RELEASED);   /* as view_release: an ended view passes */
  return 0;
}

/* with(offset, [blocks,] fn): fn(view)'s results; the view is
** to-be-closed in this C frame, so it is released however fn ends, and
** fn may yield (a coroutine that walks a structure): with_done finishes
** the call once it resumes and returns. */
static int with_done (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 5;   /* the view at 5 closes on the return */
}

static int bf_with (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2);
  lua_Integer n;
  if (lua_isnone(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  if (lua_type(L, 3) == LUA_TFUNCTION && lua_isnone(L, 4)) {
    lua_pushinteger(L, 1);   /* with(offset, fn): one block, as get */
    lua_insert(L, 3);
  }
  n = luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_argcheck(L, n >= 1, 3,
                lua_pushfstring(L, "block count %I is not positive", n));
  if (fm_check_range(&bf->f, off, (uint64_t)n) != 0)
    return corefail(L, bf, 2);
  lua_settop(L, 4);
  newview(L, 1, bf, off, (uint64_t)n * bf->f.h.block_size);   /* 5 */
  PROFCOUNT(bf, PROF_VIEW);
  lua_toclose(L, 5);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  lua_callk(L, 1, LUA_MULTRET, 0, with_done);
  return with_done(L, LUA_OK, 0);
}

static int bf_control_data (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  size_t len;
  const unsigned char *p = fm_control_data(&bf->f, &len);
  lua_pushlstring(L, (const char *)p, len);
  if (LOSTMAP(bf)) notopen(L, bf);
  return 1;
}

static int setctl (lua_State *L, int sync) {
  BlockFile *bf = checkbf(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int rc;
  if (bf->open != BF_OPEN) checkbf(L, 1);   /* a finalizer ran in the
                                           ** conversion */
  COUNTSTORE(L, bf);
  rc = fm_set_control_data(&bf->f, s, len, sync);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return writefail(L, bf, 2);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  if (LOSTMAP(bf)) notopen(L, bf);
  lua_pushboolean(L, 1);
  return 1;
}

static int bf_set_control_data (lua_State *L) { return setctl(L, 1); }
static int bf_set_control_data_nosync (lua_State *L) { return setctl(L, 0); }

static int bf_block_size (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkbf(L, 1)->f.h.block_size);
  return 1;
}

static int bf_size (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkbf(L, 1)->f.mapsize);
  return 1;
}

static int bf_path (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  if (bf->f.path) lua_pushstring(L, bf->f.path);
  else lua_pushnil(L);
  return 1;
}

static int bf_readonly (lua_State *L) {
  lua_pushboolean(L, checkbf(L, 1)->f.readonly);
  return 1;
}

static int bf_address (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(uintptr_t)checkbf(L, 1)->f.map);
  return 1;
}

static int bf_valid (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_Integer addr = luaL_checkinteger(L, 2);
  lua_pushboolean(L, (uintptr_t)addr == (uintptr_t)bf->f.map);
  return 1;
}

/* sync() and flush(): true, or nil, message, errno. */
static int dosync (lua_State *L, int (*fn) (fm_file *)) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  if (bf->rec != NULL)
    recorded(L, bf, fn == fm_flush ? "flush" : "sync", 0, 0);
  rc = fn(&bf->f);
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return luaL_error(L, "%s", bf->f.msg);
  if (rc != 0) return pushfail(L, bf, rc, bf->f.path);
  lua_pushboolean(L, 1);
  return 1;
}

static int bf_sync (lua_State *L) { return dosync(L, fm_sync); }
static int bf_flush (lua_State *L) { return dosync(L, fm_flush); }

/* remove(): deletes the file, closing the BlockFile first if it is open
** (which, as close does, refuses while views are live). */
static int bf_remove (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  const char *path;
  if (bf == NULL) return typefail(L, 1, "BlockFile", FMAP_BF);
  lua_settop(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TSTRING)
    return luaL_error(L, "cannot remove an anonymous BlockFile");
  /* read-only refuses every change, this one too (closed or not) */
  if (bf->f.readonly) return luaL_argerror(L, 1, "the BlockFile is read-only");
  path = lua_tostring(L, 2);
  if (bf->open != BF_CLOSED && doclose(L, bf, 1, 1) != 1) return 3;
  if ((errno = fm_unlink(path)) != 0) {   /* the file and its journal */
    int en = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(en));
    lua_pushinteger(L, en);
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void setbool (lua_State *L, const char *k, int b) {
  lua_pushboolean(L, b);
  lua_setfield(L, -2, k);
}

void setint (lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int bf_stats (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  fm_stats st;
  fm_get_stats(&bf->f, &st);
  lua_createtable(L, 0, 14);
  setint(L, "size", st.size);
  setint(L, "block_size", st.block_size);
  setint(L, "blocks", st.blocks);
  setint(L, "used_blocks", st.used_blocks);
  setint(L, "free_blocks", st.free_blocks);
  setint(L, "free_runs", st.free_runs);
  setint(L, "tail_blocks", st.tail_blocks);
  setint(L, "control_data", st.control_data);
  setint(L, "max_control_data", fm_max_control_data(&bf->f));
  setint(L, "live_views", (uint64_t)bf->nviews);
  setint(L, "remaps", st.remaps);
  setint(L, "version", FM_VERSION);
  setint(L, "dirty_blocks", st.dirty_blocks);
  setint(L, "journal_bytes", st.journal_bytes);
  setint(L, "journal_blocks", st.journal_blocks);
  setint(L, "undo_copies", st.undo_copies);
  setint(L, "commits", st.commits);
  setint(L, "checkpoints", st.checkpoints);
  setint(L, "direct_blocks", st.direct_blocks);
  setint(L, "journal_replayed", st.replayed);
  setint(L, "checkpoints_deferred", st.deferred);
  setbool(L, "readers", st.readers);
  setbool(L, "writer", st.writer);
  setbool(L, "in_transaction", st.in_transaction);
  setbool(L, "readonly", bf->f.readonly);
  setbool(L, "anonymous", bf->f.path == NULL);
  if (bf->f.path) {
    lua_pushstring(L, bf->f.path);
    lua_setfield(L, -2, "path");
  }
  return 1;
}

/* fm_check's problems, gathered in C while it walks the map: building
** Lua strings there could run a finalizer that closes or changes the
** file under the walk. */
#define MAXPROBLEMS 100
typedef struct Problems {
  int n;
  char line[MAXPROBLEMS][256];
} Problems;

static void addproblem (void *ud, const char *problem) {
  Problems *p = (Problems *)ud;
  if (p->n < MAXPROBLEMS)
    snprintf(p->line[p->n++], sizeof p->line[0], "%s", problem);
}

/* check() → true, or nil and a list of problems */
static int bf_check (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  Problems *p = (Problems *)lua_newuserdatauv(L, sizeof(Problems), 0);
  uint64_t n;
  int i;
  checkbf(L, 1);   /* again, after the allocation */
  p->n = 0;
  n = fm_check(&bf->f, addproblem, p, MAXPROBLEMS);
  if (LOSTMAP(bf)) notopen(L, bf);
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_createtable(L, p->n + 1, 0);
  for (i = 0; i < p->n; i++) {
    lua_pushstring(L, p->line[i]);
    lua_rawseti(L, -2, i + 1);
  }
  if (n > MAXPROBLEMS) {
    lua_pushfstring(L, "... and %I more", (lua_Integer)(n - MAXPROBLEMS));
    lua_rawseti(L, -2, MAXPROBLEMS + 1);
  }
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

static int bf_live_views (lua_State *L) {
  return listviews(L, checkbf(L, 1));
}

/* The free runs, gathered in C while the list is walked (as for check). */
typedef struct Runs {
  uint64_t n, max;
  uint64_t *r;     /* offset, blocks, offset, blocks, ... */
} Runs;

static int addrun (void *ud, uint64_t off, uint64_t blocks) {
  Runs *rs = (Runs *)ud;
  if (rs->n >= rs->max) return 1;
  rs->r[2 * rs->n] = off;
  rs->r[2 * rs->n + 1] = blocks;
  rs->n++;
  return 0;
}

/* free_list() → { {offset=, blocks=}, ... } in list order */
static int bf_free_list (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  Runs rs;
  uint64_t i;
  int rc;
  do {   /* room for every run; again if a finalizer added some */
    lua_settop(L, 1);
    rs.max = bf->f.h.free_runs;
    rs.r = (uint64_t *)lua_newuserdatauv(L, (size_t)rs.max * 16, 0);
    checkbf(L, 1);
  } while (bf->f.h.free_runs > rs.max);
  rs.n = 0;
  rc = fm_free_runs(&bf->f, addrun, &rs);
  if (rc != 0) return corefail(L, bf, 0);
  if (LOSTMAP(bf)) notopen(L, bf);
  lua_createtable(L, (int)rs.n, 0);
  for (i = 0; i < rs.n; i++) {
    lua_createtable(L, 0, 2);
    setint(L, "offset", rs.r[2 * i]);
    setint(L, "blocks", rs.r[2 * i + 1]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* is_free(offset): whether the block there is on the free list's marks */
static int bf_is_free (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  uint64_t off = checkoffset(L, 2), bs = bf->f.h.block_size;
  luaL_argcheck(L, off % bs == 0, 2,
                lua_pushfstring(L, "offset %I is not block-aligned",
                                (lua_Integer)off));
  lua_pushboolean(L, off >= bs && off < bf->f.h.top &&
                     fm_is_free(&bf->f, off));
  if (LOSTMAP(bf)) notopen(L, bf);
  return 1;
}

/* is_open(): whether the BlockFile is not closed yet: true until a close
** or a remove closed it, and after a close whose commit failed and kept
** it open; true as well once its map is lost (close ends that). */
static int bf_is_open (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  if (bf == NULL) return typefail(L, 1, "BlockFile", FMAP_BF);
  lua_pushboolean(L, bf->open != BF_CLOSED);
  return 1;
}


/* ---------------------------------------------------------------------- */
/* The module                                                              */
/* ---------------------------------------------------------------------- */

static const luaL_Reg bf_methods[] = {
  {"allocate", bf_allocate}, {"allocate_blocks", bf_allocate_blocks},
  {"free", bf_free}, {"get", bf_get}, {"release", bf_release},
  {"with", bf_with}, {"control_data", bf_control_data},
  {"set_control_data", bf_set_control_data},
  {"set_control_data_nosync", bf_set_control_data_nosync},
  {"block_size", bf_block_size}, {"size", bf_size}, {"path", bf_path},
  {"readonly", bf_readonly},
  {"address", bf_address}, {"valid", bf_valid}, {"sync", bf_sync},
  {"flush", bf_flush}, {"close", bf_close}, {"remove", bf_remove},
  {"stats", bf_stats}, {"check", bf_check}, {"live_views", bf_live_views},
  {"free_list", bf_free_list}, {"is_free", bf_is_free},
  {"is_open", bf_is_open},
  {NULL, NULL}
};

static const luaL_Reg bf_meta[] = {
  {"__tostring", bf_tostring}, {"__gc", bf_gc}, {"__close", bf_tbclose},
  {NULL, NULL}
};

static const luaL_Reg mod_funcs[] = {
  {"create", mod_create}, {"open", mod_open}, {"anonymous", mod_anonymous},
  {"memclr", mod_memclr}, {"clock", mod_clock}, {"isatty", mod_isatty},
  {"sync_dir", mod_sync_dir},
  {NULL, NULL}
};

/* Registers funcs into the table at the top, each closing over the two
** metatables, which sit at mt_view and mt_bf. */
static void setfuncs (lua_State *L, const luaL_Reg *funcs, int mt_view,
                      int mt_bf) {
  lua_pushvalue(L, mt_view);
  lua_pushvalue(L, mt_bf);
  luaL_setfuncs(L, funcs, 2);
}

/* Fills the metatable at mt: the metamethods meta, and as __index a table
** of the methods of each list in methods (a NULL-ended array of lists,
** one per file that adds some). */
static void fillmeta (lua_State *L, int mt, const luaL_Reg *meta,
                      const luaL_Reg *const *methods, int mt_view,
                      int mt_bf) {
  lua_pushvalue(L, mt);
  setfuncs(L, meta, mt_view, mt_bf);
  lua_newtable(L);
  for (; *methods != NULL; methods++)
    setfuncs(L, *methods, mt_view, mt_bf);
  lua_setfield(L, mt, "__index");
  lua_pop(L, 1);
}

/* The modules written in Lua that are fields of this one, so that
** fmap.audit(bf) and fmap.bptree.new(...) work: each is required on first
** use ("fmap.NAME", found on package.path) and then kept. The module
** fmap.modules names them (a set), so that one joins without a change
** here. */
#define MODULES  "fmap.modules"

static int mod_index (lua_State *L) {
  int known;
  luaL_checktype(L, 1, LUA_TTABLE);   /* it may be called by hand */
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  lua_settop(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, MODULES);
  /* Where the Lua modules are not on the path (fmap.so in a plain lua5.4
  ** without lua/), no field is a module: a missing one is nil. */
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;   /* 3: the set */
  if (lua_type(L, 3) != LUA_TTABLE)
    return luaL_error(L, "module '" MODULES "' returned %s, not a table",
                      luaL_typename(L, 3));
  lua_pushvalue(L, 2);
  known = lua_rawget(L, 3) != LUA_TNIL && lua_toboolean(L, -1);
  if (!known) return 0;
  /* Not kept in the fmap table: require's own cache (package.loaded) is
  ** the one place, so a script (or a test runner) that clears it gets the
  ** module anew through fmap.NAME too, not a stale copy of it. */
  lua_getglobal(L, "require");
  lua_pushfstring(L, "fmap.%s", lua_tostring(L, 2));
  lua_call(L, 1, 1);
  return 1;
}

/* The metatables are the engine's own: a view whose metatable lost its
** __gc would be freed while the BlockFile still lists it. getmetatable
** answers a proxy instead (the metatable's __metatable), which reads
** through to the metatable, iterates it, and refuses writes; the proxy's
** own metatable is hidden likewise. The method table stays reachable as
** getmetatable(v).__index, for scripts that add methods of their own. */
static int proxy_newindex (lua_State *L) {
  return luaL_error(L, "the metatable of %s is read-only",
                    lua_tostring(L, lua_upvalueindex(1)));
}

static int proxy_pairs (lua_State *L) {
  lua_getglobal(L, "next");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushnil(L);
  return 3;
}

static void protect (lua_State *L, int mt, const char *name) {
  lua_newtable(L);                             /* the proxy */
  lua_createtable(L, 0, 4);                    /* its metatable */
  lua_pushvalue(L, mt);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_pushcclosure(L, proxy_newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, proxy_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_setfield(L, mt, "__metatable");
}

LUAMOD_API int luaopen_fmap (lua_State *L) {
  static const luaL_Reg *const vmethods[] = {
    view_methods, node_view_methods, pack_view_methods, NULL
  };
  static const luaL_Reg *const bmethods[] = {
    bf_methods, node_bf_methods, iter_bf_methods, txn_bf_methods, NULL
  };
  int vmt, bmt;
  installbus();
  luaL_getsubtable(L, LUA_REGISTRYINDEX, FMAP_STRUCTURES);  /* for guard */
  lua_pop(L, 1);
  luaL_newmetatable(L, FMAP_VIEW);
  vmt = lua_gettop(L);
  luaL_newmetatable(L, FMAP_BF);
  bmt = lua_gettop(L);
  fillmeta(L, vmt, view_meta, vmethods, vmt, bmt);
  fillmeta(L, bmt, bf_meta, bmethods, vmt, bmt);
  protect(L, vmt, FMAP_VIEW);
  protect(L, bmt, FMAP_BF);
  lua_newtable(L);
  setfuncs(L, mod_funcs, vmt, bmt);
  setfuncs(L, iter_mod_funcs, vmt, bmt);
  lua_newtable(L);                   /* fmap.profile's: profile.c */
  setfuncs(L, profile_mod_funcs, vmt, bmt);
  lua_setfield(L, -2, "_profile");
  setint(L, "BLOCKSIZE", FM_BLOCKSIZE);
  lua_pushliteral(L, FMAP_VERSION);
  lua_setfield(L, -2, "VERSION");
  setint(L, "FORMAT_VERSION", FM_VERSION);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, mod_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
