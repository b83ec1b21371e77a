/*
** txn.c: the binding of transactions: bf:begin, commit, rollback,
** in_transaction, transaction, on_rollback and fail_after, and what every
** store does first (touch, in binding.h, and touchslow here). It only
** translates: the journal, the undo copies and the write order are the
** core's (engine/core/txn.c).
*/
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"


/* ---------------------------------------------------------------------- */
/* Stores                                                                  */
/* ---------------------------------------------------------------------- */

/* fail_after's trap: the store it counted down to. */
void trapped (lua_State *L, BlockFile *bf) {
  bf->trap = 0;
  if (bf->trap_kill) {
    fflush(NULL);
    raise(SIGKILL);
  }
  luaL_error(L, "store refused by fail_after (a test of recovery code)");
}

void touchslow (lua_State *L, View *v, uint64_t pos, uint64_t len,
                uint64_t bytes) {
  BlockFile *bf = v->bf;
  if (bf->trap != 0 && --bf->trap == 0) trapped(L, bf);
  if (len == 0) return;   /* stores nothing, and touches no block */
  if (bf->rec != NULL) recorded(L, bf, "write", v->off + pos, len);
  if (fm_touch(&bf->f, v->off + pos, len) != 0)
    luaL_error(L, "%s", bf->f.msg);
  if (PROFILING(bf)) profwrite(bf, v->off + pos, len, bytes);
  /* A one-block view has had its block touched: until the generation
  ** changes, its stores need not ask again; unless a recording must see
  ** every store (bf:record: so it is the one writer of wgen). */
  if (v->len <= bf->f.h.block_size && bf->rec == NULL)
    v->wgen = bf->f.gen;
}


/* ---------------------------------------------------------------------- */
/* Recording: bf:record                                                    */
/* ---------------------------------------------------------------------- */

/* bf:record(fn) hands fn an event for each change made to the BlockFile,
** once the change is complete: when the next one starts, or when
** bf:record() stops. What a change did is found against a shadow, a copy
** of the map as the last event left it: a store changed its own range;
** anything else that may change bytes (an allocate, a free, the control
** data, a rollback) is found by comparing the whole map with the shadow.
** Those are rare, and the comparison knows nothing of the core's writes,
** so it cannot miss one. begin, commit, flush and sync change no byte of
** the map; stopping checks that the map and the shadow agree.
**
** A recording is a userdata in the registry's RECORDINGS table, at its
** BlockFile's address. User values: 1 fn, 2 the shadow (a userdata),
** 3 the event under way, 4 the error fn raised, which ended the
** recording and which bf:record() raises. */
#define RECORDINGS  "fmap.recordings"
#define REC_GAP     16   /* equal bytes that do not split a change */

enum { REC_NONE, REC_WRITE, REC_SCAN, REC_EVENT };

struct Rec {
  unsigned char *shadow;   /* the map after the last event; zeros past it */
  uint64_t size;           /* bytes of shadow: at least the map's */
  uint64_t commits;        /* bf->f.commits after the last event */
  uint64_t serial;         /* the BlockFile's: an entry left by a dead
                           ** BlockFile at the same address is not its */
  uint64_t off, len;       /* the store under way: its range in the file */
  int pending;             /* REC_NONE, or what the event under way is */
  int busy;                /* fn is running */
};
typedef struct Rec Rec;

/* Pushes the recording of bf, or nil; returns it, or NULL. */
static Rec *pushrec (lua_State *L, BlockFile *bf) {
  Rec *r = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, RECORDINGS) == LUA_TTABLE) {
    lua_rawgetp(L, -1, bf);
    r = (Rec *)lua_touserdata(L, -1);
    if (r != NULL && r->serial != bf->serial) r = NULL;
    lua_remove(L, -2);
  }
  if (r == NULL) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  return r;
}

static unsigned char mapbyte (const fm_file *f, uint64_t pos) {
  return pos < f->mapsize ? f->map[pos] : 0;
}

/* Makes the shadow (user value 2 of the recording at reci) need bytes
** long at least, zeros added. */
static void growshadow (lua_State *L, Rec *r, int reci, uint64_t need) {
  unsigned char *p;
  if (need <= r->size) return;
  if (need > (uint64_t)(SIZE_MAX / 2)) luaL_error(L, "record: the file is "
                                                  "too large to record");
  p = (unsigned char *)lua_newuserdatauv(L, (size_t)need, 0);
  if (r->size > 0) memcpy(p, r->shadow, (size_t)r->size);
  memset(p + r->size, 0, (size_t)(need - r->size));
  lua_setiuservalue(L, reci, 2);
  r->shadow = p;
  r->size = need;
}

/* Appends to the table at ti (n entries) the change of [lo, hi): its
** offset, the shadow's bytes, the map's; then the shadow takes them. */
static void addchange (lua_State *L, Rec *r, const fm_file *f, int ti,
                       lua_Integer *n, uint64_t lo, uint64_t hi) {
  uint64_t inmap = hi <= f->mapsize ? hi : lo < f->mapsize ? f->mapsize : lo;
  lua_pushinteger(L, (lua_Integer)lo);
  lua_rawseti(L, ti, ++*n);
  lua_pushlstring(L, (const char *)r->shadow + lo, (size_t)(hi - lo));
  lua_rawseti(L, ti, ++*n);
  if (inmap > lo) memcpy(r->shadow + lo, f->map + lo, (size_t)(inmap - lo));
  if (hi > inmap) memset(r->shadow + inmap, 0, (size_t)(hi - inmap));
  lua_pushlstring(L, (const char *)r->shadow + lo, (size_t)(hi - lo));
  lua_rawseti(L, ti, ++*n);
}

/* The changes of the store under way: its range, less the bytes at its
** ends that it left as they were. */
static void settlewrite (lua_State *L, Rec *r, const fm_file *f, int reci,
                         int ti, lua_Integer *n) {
  uint64_t lo = r->off, hi = r->off + r->len;
  growshadow(L, r, reci, hi > f->mapsize ? hi : f->mapsize);
  while (lo < hi && mapbyte(f, lo) == r->shadow[lo]) lo++;
  while (hi > lo && mapbyte(f, hi - 1) == r->shadow[hi - 1]) hi--;
  if (lo < hi) addchange(L, r, f, ti, n, lo, hi);
}

static int allzero (const unsigned char *p, uint64_t n) {
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, (size_t)(n - 1)) == 0);
}

/* Every change between the shadow and the map: runs of differing bytes,
** merged across fewer than REC_GAP equal ones. */
static void settlescan (lua_State *L, Rec *r, const fm_file *f, int reci,
                        int ti, lua_Integer *n) {
  uint64_t pos = 0, end;
  growshadow(L, r, reci, f->mapsize);
  end = r->size;
  while (pos < end) {
    uint64_t chunk = 4096 - pos % 4096, lo, last;
    if (chunk > end - pos) chunk = end - pos;
    if ((pos + chunk <= f->mapsize &&
         memcmp(f->map + pos, r->shadow + pos, (size_t)chunk) == 0) ||
        (pos >= f->mapsize && allzero(r->shadow + pos, chunk))) {
      pos += chunk;
      continue;
    }
    if (mapbyte(f, pos) == r->shadow[pos]) {
      pos++;
      continue;
    }
    lo = last = pos;
    for (pos = lo + 1; pos < end && pos - last <= REC_GAP; pos++)
      if (mapbyte(f, pos) != r->shadow[pos]) last = pos;
    addchange(L, r, f, ti, n, lo, last + 1);
    pos = last + 1;
  }
}

/* The name of the allocate, free or control-data change under way: the
** BlockFile method running at level 1, found among the methods. */
static const char *opname (lua_State *L) {
  static const char *const ops[] = { "allocate", "allocate_blocks", "free",
    "set_control_data", "set_control_data_nosync", NULL };
  lua_Debug ar;
  int i;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "f", &ar)) return "change";
  luaL_getmetatable(L, FMAP_BF);
  lua_getfield(L, -1, "__index");
  for (i = 0; ops[i] != NULL; i++) {
    int same;
    lua_getfield(L, -1, ops[i]);
    same = lua_rawequal(L, -1, -4);
    lua_pop(L, 1);
    if (same) break;
  }
  lua_pop(L, 3);
  return ops[i] != NULL ? ops[i] : "change";
}

/* Pushes the traceback of the method that changes (level 1) and of its
** callers, as luaL_traceback words it, but without looking the functions
** up in package.loaded: that search made a recorded store ten times
** slower. */
#define REC_LEVELS 24

static void pushtraceback (lua_State *L) {
  luaL_Buffer b;
  lua_Debug ar;
  int level;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "stack traceback:");
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    if (level > REC_LEVELS) {
      luaL_addstring(&b, "\n\t...");
      break;
    }
    lua_getinfo(L, "Slnt", &ar);
    if (ar.currentline <= 0)
      lua_pushfstring(L, "\n\t%s: in ", ar.short_src);
    else
      lua_pushfstring(L, "\n\t%s:%d: in ", ar.short_src, ar.currentline);
    luaL_addvalue(&b);
    if (*ar.namewhat != '\0')
      lua_pushfstring(L, "%s '%s'", ar.namewhat, ar.name);
    else if (*ar.what == 'm')
      lua_pushliteral(L, "main chunk");
    else if (*ar.what != 'C')
      lua_pushfstring(L, "function <%s:%d>", ar.short_src, ar.linedefined);
    else
      lua_pushliteral(L, "?");
    luaL_addvalue(&b);
    if (ar.istailcall) luaL_addstring(&b, "\n\t(...tail calls...)");
  }
  luaL_pushresult(&b);
}

/* deliver(bf, kind, off, len, final), protected: completes the event
** under way and hands it to fn; then starts the event kind (nil: an
** allocate, free or control-data change), or with final checks that the
** map holds nothing the events did not say. */
static int deliver (lua_State *L) {
  BlockFile *bf = (BlockFile *)lua_touserdata(L, 1);
  Rec *r = bf->rec;
  fm_file *f = &bf->f;
  const char *kind;
  int reci;
  lua_settop(L, 5);
  pushrec(L, bf);
  reci = lua_gettop(L);
  if (r->pending != REC_NONE) {
    lua_Integer n = 0;
    lua_getiuservalue(L, reci, 1);                 /* fn */
    lua_getiuservalue(L, reci, 3);                 /* the event */
    lua_newtable(L);
    if (r->pending == REC_WRITE) settlewrite(L, r, f, reci, reci + 3, &n);
    else if (r->pending == REC_SCAN) settlescan(L, r, f, reci, reci + 3, &n);
    lua_setfield(L, reci + 2, "changes");
    lua_pushboolean(L, f->commits != r->commits);
    lua_setfield(L, reci + 2, "commit");
    lua_pushboolean(L, f->txn);
    lua_setfield(L, reci + 2, "transaction");
    lua_pushinteger(L, (lua_Integer)f->mapsize);
    lua_setfield(L, reci + 2, "size");
    r->commits = f->commits;
    r->pending = REC_NONE;
    lua_pushnil(L);
    lua_setiuservalue(L, reci, 3);
    r->busy = 1;
    lua_call(L, 1, 0);
    r->busy = 0;
  }
  if (lua_toboolean(L, 5)) {
    lua_Integer n = 0;
    lua_newtable(L);
    settlescan(L, r, f, reci, lua_gettop(L), &n);
    if (n > 0) {
      lua_rawgeti(L, -1, 1);
      return luaL_error(L, "record: bytes at offset %I changed without a "
                        "store announcing them (a bug of fmap)",
                        lua_tointeger(L, -1));
    }
    return 0;
  }
  kind = lua_isnil(L, 2) ? opname(L) : lua_tostring(L, 2);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  if (strcmp(kind, "write") == 0) {
    r->pending = REC_WRITE;
    r->off = (uint64_t)lua_tointeger(L, 3);
    r->len = (uint64_t)lua_tointeger(L, 4);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "offset");
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "length");
  } else if (strcmp(kind, "begin") == 0 || strcmp(kind, "commit") == 0 ||
             strcmp(kind, "flush") == 0 || strcmp(kind, "sync") == 0) {
    r->pending = REC_EVENT;
  } else {
    r->pending = REC_SCAN;
  }
  pushtraceback(L);
  lua_setfield(L, -2, "traceback");
  lua_setiuservalue(L, reci, 3);
  return 0;
}

/* The recording ends on the error on top: bf:record() raises it. */
static void recfailed (lua_State *L, BlockFile *bf) {
  bf->rec->busy = 0;
  bf->rec->pending = REC_NONE;
  bf->rec = NULL;
  if (pushrec(L, bf) != NULL) {
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 4);
  }
}

void recorded (lua_State *L, BlockFile *bf, const char *kind, uint64_t off,
               uint64_t len) {
  int top = lua_gettop(L);
  if (bf->rec->busy) {   /* no position: the stop raises it again */
    lua_pushliteral(L, "record: the recorder changed the BlockFile it "
                    "records");
    lua_error(L);
  }
  luaL_checkstack(L, 8, NULL);
  lua_pushcfunction(L, deliver);
  lua_pushlightuserdata(L, bf);
  if (kind != NULL) lua_pushstring(L, kind);
  else lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)off);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushboolean(L, 0);
  if (lua_pcall(L, 5, 0, 0) != LUA_OK) recfailed(L, bf);
  lua_settop(L, top);
  /* The change under way would store into a map that is gone. */
  if (bf->open != BF_OPEN)
    luaL_error(L, "record: the recorder closed the BlockFile it records");
}

/* record(): delivers the last event, ends the recording, and raises the
** error that ended it early, if one did. */
static int recstop (lua_State *L, BlockFile *bf) {
  Rec *r = pushrec(L, bf);
  int reci = lua_gettop(L);
  if (r == NULL) return 0;
  if (r->busy)
    return luaL_error(L, "record: the recorder cannot stop its recording");
  if (bf->rec == r && bf->open == BF_OPEN) {
    lua_pushcfunction(L, deliver);
    lua_pushlightuserdata(L, bf);
    lua_pushnil(L);
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 0);
    lua_pushboolean(L, 1);
    if (lua_pcall(L, 5, 0, 0) != LUA_OK) recfailed(L, bf);
    lua_settop(L, reci);
  }
  bf->rec = NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, RECORDINGS);
  lua_pushnil(L);
  lua_rawsetp(L, -2, bf);
  if (lua_getiuservalue(L, reci, 4) != LUA_TNIL) {
    const char *msg = lua_tostring(L, -1);
    if (msg != NULL && strncmp(msg, "record: ", 8) == 0) return lua_error(L);
    if (msg != NULL)
      return luaL_error(L, "record: the recorder failed: %s", msg);
    return lua_error(L);
  }
  return 0;
}

/* record(fn) starts a recording, record() stops it. */
static int bf_record (lua_State *L) {
  BlockFile *bf = tobf(L, 1);
  Rec *r;
  if (bf == NULL) return typefail(L, 1, "BlockFile", FMAP_BF);
  if (lua_isnoneornil(L, 2)) return recstop(L, bf);
  checkbf(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (pushrec(L, bf) != NULL)
    return luaL_error(L, "record: the BlockFile is being recorded already "
                      "(bf:record() stops it)");
  r = (Rec *)lua_newuserdatauv(L, sizeof(Rec), 4);
  memset(r, 0, sizeof *r);
  r->serial = bf->serial;
  r->commits = bf->f.commits;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  growshadow(L, r, lua_gettop(L), bf->f.mapsize);
  memcpy(r->shadow, bf->f.map, (size_t)bf->f.mapsize);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, RECORDINGS);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, bf);
  bf->rec = r;
  /* Views that have touched their block skip touchslow until the
  ** generation changes: now it has. */
  bf->f.gen++;
  return 0;
}


/* ---------------------------------------------------------------------- */
/* Transactions                                                            */
/* ---------------------------------------------------------------------- */

/* Raises "not in a transaction" and the like, or returns the failure of
** the environment as nil, message, errno. */
static int txnfail (lua_State *L, BlockFile *bf, int rc,
                    const char *fname) {
  if (rc == FM_ELOST) return lostfail(L, bf);
  if (rc == FM_EMISUSE) return luaL_error(L, "%s: %s", fname, bf->f.msg);
  return pushfail(L, bf, rc, bf->f.path);
}

static int bf_begin (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  if (bf->rec != NULL) recorded(L, bf, "begin", 0, 0);
  rc = fm_begin(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "begin");
  bf->begins++;
  return 0;
}

/* The sync option of commit([opts]): true unless opts.sync is false. */
static int optsync (lua_State *L, int i) {
  int sync = 1;
  if (lua_isnoneornil(L, i)) return 1;
  luaL_checktype(L, i, LUA_TTABLE);
  if (lua_getfield(L, i, "sync") != LUA_TNIL) {
    luaL_argcheck(L, lua_isboolean(L, -1), i, "opts.sync must be a boolean");
    sync = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return sync;
}

static int bf_commit (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int sync = optsync(L, 2), rc;
  if (bf->open != BF_OPEN) checkbf(L, 1);   /* a finalizer in getfield */
  if (!bf->f.txn)
    return luaL_error(L, "commit: no transaction is open (bf:begin() "
                      "starts one; flush and sync commit outside one)");
  if (bf->rec != NULL) recorded(L, bf, "commit", 0, 0);
  rc = fm_commit(&bf->f, sync);
  if (rc != 0) return txnfail(L, bf, rc, "commit");
  lua_pushboolean(L, 1);
  return 1;
}

/* After a rollback, views over blocks it left unallocated die. The
** checks' messages are not the core's to keep: the one before stays (a
** failed commit's, say). */
static void undoviews (BlockFile *bf) {
  uint64_t bs = bf->f.h.block_size;
  char msg[sizeof bf->f.msg];
  View *v, *next;
  memcpy(msg, bf->f.msg, sizeof msg);
  for (v = bf->views; v != NULL; v = next) {
    next = v->next;
    if (fm_check_range(&bf->f, v->off, v->len / bs) != 0)
      unlink_view(v, UNDONE);
  }
  memcpy(bf->f.msg, msg, sizeof msg);
}

/* Calls the on_rollback hooks of the BlockFile at bfi: fn(key) for each.
** They are gathered first, since a hook may change the table. Each runs
** protected, so that one that raises keeps no other from running: returns
** 1 with the first error on top of the stack, else 0. */
static int runhooks (lua_State *L, int bfi) {
  int t, list, n = 0, i, failed = 0;
  if (lua_getiuservalue(L, bfi, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  t = lua_gettop(L);
  lua_newtable(L);
  list = t + 1;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, list, ++n);   /* the key */
    lua_rawseti(L, list, ++n);   /* its function */
  }
  lua_pushnil(L);                /* the first error */
  for (i = 1; i < n; i += 2) {
    lua_rawgeti(L, list, i + 1);
    lua_rawgeti(L, list, i);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      if (failed) lua_pop(L, 1);
      else lua_replace(L, list + 1);
      failed = 1;
    }
  }
  lua_replace(L, t);
  lua_pop(L, 1);                 /* the list: the error (or nil) is left */
  if (!failed) lua_pop(L, 1);
  return failed;
}

/* A rollback's aftermath: views that died, and the hooks. Returns 1 with
** a hook's error on top of the stack when one raised, else 0. */
static int rolledback (lua_State *L, BlockFile *bf, int bfi) {
  undoviews(bf);
  return runhooks(L, bfi);
}

/* A hook's error (on top) when another outcome is the one to give: a
** warning. Its text is the error's if a string or a number, else its
** type: no metamethod of it runs, which could raise in turn. */
static void hookwarning (lua_State *L) {
  lua_pushliteral(L, "fmap: an on_rollback hook raised while a failed "
                  "transaction rolled back: ");
  if (lua_type(L, -2) == LUA_TSTRING || lua_type(L, -2) == LUA_TNUMBER)
    lua_pushvalue(L, -2);
  else
    lua_pushfstring(L, "(a %s)", luaL_typename(L, -2));
  lua_concat(L, 2);
  lua_warning(L, lua_tostring(L, -1), 0);
  lua_pop(L, 2);
}

/* rollback: a hook that raises does so after the rollback is whole and
** every other hook ran. */
static int bf_rollback (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  if (bf->rec != NULL && bf->f.txn) recorded(L, bf, "rollback", 0, 0);
  rc = fm_rollback(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "rollback");
  if (rolledback(L, bf, 1)) return lua_error(L);
  return 0;
}

/* on_rollback(key, fn): after every rollback of this BlockFile, fn(key)
** runs, while key lives (it is held weakly): a structure that keeps
** state in Lua (a root, a count, cached views) reloads it there. A nil
** fn removes the hook. */
static int bf_on_rollback (lua_State *L) {
  checkbf(L, 1);
  luaL_checkany(L, 2);
  luaL_argcheck(L, !lua_isnil(L, 2), 2, "a key is needed (the hook's "
                "owner, held weakly)");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);                   /* its metatable: weak keys */
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int bf_in_transaction (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  lua_pushboolean(L, bf->f.txn);
  return 1;
}

/* Rolls back the transaction that transaction() began, when another
** outcome is the one to give (fn's error, a refusal, a failed commit): a
** hook that raises is a warning. */
static void abandon (lua_State *L, BlockFile *bf) {
  if (bf->rec != NULL) recorded(L, bf, "rollback", 0, 0);
  fm_rollback(&bf->f);
  if (rolledback(L, bf, 1)) hookwarning(L);
}

/* transaction(fn, ...): fn(...) in a transaction; commits (durably) when
** it returns and returns its results, or returns nil, message, errno if
** the commit fails (rolled back); rolls back and raises fn's error again
** when it raises. fn may yield: transaction_done ends the call once it
** returns. Slot 1 holds the BlockFile, slot 2 the error handler's
** result; fn's results follow. */
static int transaction_done (lua_State *L, int status, lua_KContext ctx) {
  BlockFile *bf = (BlockFile *)ctx;
  int rc;
  if (status != LUA_OK && status != LUA_YIELD) {
    if (bf->open == BF_OPEN && bf->f.txn) abandon(L, bf);
    return lua_error(L);   /* fn's error, on top */
  }
  if (bf->open != BF_OPEN) checkbf(L, 1);
  if (!bf->f.txn || bf->begins != bf->txbegun) {
    if (bf->f.txn) abandon(L, bf);   /* fn began another: not its own */
    return luaL_error(L, "transaction: the function ended the transaction "
                      "itself (commit or rollback inside transaction)");
  }
  if (bf->rec != NULL) recorded(L, bf, "commit", 0, 0);
  rc = fm_commit(&bf->f, 1);
  if (rc != 0) {
    abandon(L, bf);
    return txnfail(L, bf, rc, "transaction");
  }
  return lua_gettop(L) - 1;
}

static int bf_transaction (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (bf->rec != NULL) recorded(L, bf, "begin", 0, 0);
  if ((rc = fm_begin(&bf->f)) != 0)
    return txnfail(L, bf, rc, "transaction");
  bf->txbegun = ++bf->begins;
  return transaction_done(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET,
                                        0, (lua_KContext)bf,
                                        transaction_done), (lua_KContext)bf);
}

/* fail_after(n [, how]): the n-th store from now (a write through a view,
** an allocate, a free, a change of the control data) raises an error
** instead, or with how "kill" kills the process (SIGKILL) right before
** it: a test of recovery code. fail_after(nil) disarms it. */
static int bf_fail_after (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  static const char *const hows[] = { "error", "kill", NULL };
  lua_Integer n;
  if (lua_isnoneornil(L, 2)) {
    bf->trap = 0;
    return 0;
  }
  n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2,
                lua_pushfstring(L, "store count %I is not positive", n));
  bf->trap_kill = luaL_checkoption(L, 3, "error", hows);
  bf->trap = (uint64_t)n;
  return 0;
}


/* spill([bytes]) -> bytes: the bytes of changes a BlockFile holds in
** memory before it writes the blocks allocated since the last commit into
** the file ahead of the commit; set when given, 0 for never. */
static int bf_spill (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2,
                  lua_pushfstring(L, "spill size %I is negative", n));
    fm_set_spill(&bf->f, (uint64_t)n);
  }
  lua_pushinteger(L, (lua_Integer)bf->f.spill);
  return 1;
}

LUAI_DDEF const luaL_Reg txn_bf_methods[] = {
  {"begin", bf_begin}, {"commit", bf_commit}, {"rollback", bf_rollback},
  {"in_transaction", bf_in_transaction}, {"transaction", bf_transaction},
  {"fail_after", bf_fail_after}, {"on_rollback", bf_on_rollback},
  {"record", bf_record}, {"spill", bf_spill},
  {NULL, NULL}
};
