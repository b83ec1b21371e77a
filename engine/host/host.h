/*
** host.h: what the two halves of the fmap executable share, internal to
** it. host.c is the interpreter as lua.c is (options, LUA_INIT, scripts,
** the package searcher, Ctrl-C, the state and main); repl.c is the
** interactive loop (reading lines, history, completion, the pager). The
** names are lua.c's where lua.c has the same function; LUAI_FUNC keeps
** them out of the executable's exports, which C modules link against.
*/
#ifndef FMAP_HOST_H
#define FMAP_HOST_H

#include "lua.h"

#define PROGNAME   "fmap"
#define PRINT_KEY  "fmap.host.print"  /* registry: the standard print */

/* The name messages begin with: argv[0], as lua.c's, so "fmap: ..." when
** run as fmap and "build/bin/fmap: ..." when run by that path. In the
** REPL it is NULL: errors there are printed bare, as lua.c does. */
LUAI_DDEC(const char *progname);

/* sigaction with no flags and an empty mask. */
LUAI_FUNC void setsignal (int sig, void (*handler) (int));

/* lua_pcall with Ctrl-C armed: a SIGINT stops the Lua code it runs. */
LUAI_FUNC int pcallint (lua_State *L, int narg, int nres, int msgh);

/* Runs the function below narg arguments, with a traceback on error. */
LUAI_FUNC int docall (lua_State *L, int narg, int nres);

/* Prints the error message on top of the stack if status is an error. */
LUAI_FUNC int report (lua_State *L, int status);

/* msg on stderr, after "pname: " unless pname is NULL; stdout first. */
LUAI_FUNC void l_message (const char *pname, const char *msg);

/* The REPL (repl.c), until the end of input. */
LUAI_FUNC void doREPL (lua_State *L);

#endif
