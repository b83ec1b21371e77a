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
  COUNTSTORE(L, bf);
  if (len == 0) return;   /* stores nothing, and touches no block */
  if (fm_touch(&bf->f, v->off + pos, len) != 0)
    luaL_error(L, "%s", bf->f.msg);
  if (PROFILING(bf)) profwrite(bf, v->off + pos, len, bytes);
  /* A one-block view has had its block touched: until the generation
  ** changes, its stores need not ask again. */
  if (v->len <= bf->f.h.block_size) v->wgen = bf->f.gen;
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
  int rc = fm_begin(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "begin");
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
  rc = fm_commit(&bf->f, sync);
  if (rc != 0) return txnfail(L, bf, rc, "commit");
  lua_pushboolean(L, 1);
  return 1;
}

/* After a rollback, views over blocks the transaction allocated die. */
static void undoviews (BlockFile *bf) {
  uint64_t bs = bf->f.h.block_size;
  View *v, *next;
  for (v = bf->views; v != NULL; v = next) {
    next = v->next;
    if (fm_check_range(&bf->f, v->off, v->len / bs) != 0)
      unlink_view(v, UNDONE);
  }
  bf->f.msg[0] = '\0';
}

/* Calls the on_rollback hooks of the BlockFile at bfi: fn(key) for each.
** They are gathered first, since a hook may change the table. */
static void runhooks (lua_State *L, int bfi) {
  int t, list, n = 0, i;
  if (lua_getiuservalue(L, bfi, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
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
  for (i = 1; i < n; i += 2) {
    lua_rawgeti(L, list, i + 1);
    lua_rawgeti(L, list, i);
    lua_call(L, 1, 0);
  }
  lua_pop(L, 2);
}

/* A rollback's aftermath: views that died, and the hooks. */
static void rolledback (lua_State *L, BlockFile *bf, int bfi) {
  undoviews(bf);
  runhooks(L, bfi);
}

static int bf_rollback (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc = fm_rollback(&bf->f);
  if (rc != 0) return txnfail(L, bf, rc, "rollback");
  rolledback(L, bf, 1);
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
    if (bf->open == BF_OPEN && bf->f.txn) {
      fm_rollback(&bf->f);
      rolledback(L, bf, 1);
    }
    return lua_error(L);   /* the error object is on top */
  }
  if (bf->open != BF_OPEN) checkbf(L, 1);
  if (!bf->f.txn)
    return luaL_error(L, "transaction: the function ended the transaction "
                      "itself (commit or rollback inside transaction)");
  rc = fm_commit(&bf->f, 1);
  if (rc != 0) {
    int n;
    fm_rollback(&bf->f);
    rolledback(L, bf, 1);
    n = txnfail(L, bf, rc, "transaction");
    return n;
  }
  return lua_gettop(L) - 1;
}

static int bf_transaction (lua_State *L) {
  BlockFile *bf = checkbf(L, 1);
  int rc;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if ((rc = fm_begin(&bf->f)) != 0)
    return txnfail(L, bf, rc, "transaction");
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


LUAI_DDEF const luaL_Reg txn_bf_methods[] = {
  {"begin", bf_begin}, {"commit", bf_commit}, {"rollback", bf_rollback},
  {"in_transaction", bf_in_transaction}, {"transaction", bf_transaction},
  {"fail_after", bf_fail_after}, {"on_rollback", bf_on_rollback},
  {NULL, NULL}
};
