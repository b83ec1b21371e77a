/*
** host.c: the fmap executable. A drop-in for the lua 5.4 standalone
** interpreter (lua.c): the same options, messages (named after argv[0]),
** exit statuses, error reports and package paths, with the engine
** preloaded, a searcher for fmap's own Lua modules after lua's, Ctrl-C
** that waits for a structure's operation to end, and a state whose memory
** comes from a pool. The REPL, with line editing, is repl.c's (host.h).
** No engine logic here: the engine is reached only through luaopen_fmap.
*/

/* sigaction, readlink: POSIX.1-2008 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "alloc.h"
#include "host.h"
#include "lfmap.h"


#define INIT_VAR        "LUA_INIT"
#define INIT_VARVERSION INIT_VAR LUA_VERSUFFIX   /* LUA_INIT_5_4 */
#define LUADIR_DEPTH    4     /* the exe's directory and 3 parents */

LUAI_DDEF const char *progname = PROGNAME;

/* The state a SIGINT must interrupt (lua.c's one global): a signal
** handler takes no context argument. */
static lua_State *globalL = NULL;


/*
** {==================================================================
** Signals, errors, calls
** ===================================================================
*/

void setsignal (int sig, void (*handler) (int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* How long Ctrl-C waits for an operation to end before it stops the
** script anyway: a where() callback in an endless loop must stay
** stoppable, and a second Ctrl-C kills the process (laction). */
#define STOP_GRACE  2.0

static volatile double stopby;   /* when the grace ends; laction sets it */

static double monotonic (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The structures written in Lua change a file in several steps. An
** operation of theirs stopped between two steps would leave the structure
** half-changed (a B+tree whose cells overlap, a list naming a freed blob):
** Ctrl-C waits until none of their functions is on the stack, so that it
** stops the script between two operations, as it stops a loop of them.
** Which chunks are structures is the engine's list (FMAP_STRUCTURES),
** which fmap.guard fills: the host names none.
**
** Whether a function of one of them is on L's stack; if so, pushes the
** name the list gives it. The list is walked with lua_next for each
** function rather than indexed by its source, which would make a string
** in a hook. */
static int instructure (lua_State *L) {
  lua_Debug ar;
  int level, list;
  if (lua_getfield(L, LUA_REGISTRYINDEX, FMAP_STRUCTURES) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  list = lua_gettop(L);
  for (level = 0; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "S", &ar) || ar.source[0] != '@') continue;
    lua_pushnil(L);
    while (lua_next(L, list)) {
      if (lua_type(L, -2) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -2), ar.source) == 0) {
        if (lua_type(L, -1) != LUA_TSTRING) {   /* a name, or the file */
          lua_pop(L, 1);
          lua_pushstring(L, ar.source + 1);
        }
        lua_replace(L, list);
        lua_settop(L, list);
        return 1;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return 0;
}

/* The hook a SIGINT sets: raises at the next instruction of any Lua
** function, so a running loop stops with an error that unwinds normally;
** inside an operation of a structure, at the first instruction after it
** returns (looked for every 1000 instructions), or once the grace ends. */
static void lstop (lua_State *L, lua_Debug *ar) {
  int in = instructure(L);   /* pushes the structure's name */
  (void)ar;
  if (in && monotonic() < stopby) {
    lua_pop(L, 1);
    lua_sethook(L, lstop, LUA_MASKCOUNT, 1000);
    return;
  }
  lua_sethook(L, NULL, 0, 0);
  if (in)
    luaL_error(L, "interrupted! (after %f s inside %s, which may have "
               "left a structure half-changed: verify it)", STOP_GRACE,
               lua_tostring(L, -1));
  luaL_error(L, "interrupted!");
}

/* A signal handler may not touch the Lua state beyond lua_sethook, which
** Lua allows from a handler; a second SIGINT kills the process, so a
** runaway C function cannot make the host unkillable. clock_gettime may
** be called from a handler. */
static void laction (int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(sig, SIG_DFL);
  stopby = monotonic() + STOP_GRACE;
  lua_sethook(globalL, lstop, flag, 1);
}

/* lua's message for a bad option, and its usage, on stderr: -h and
** --help are bad options too, as in lua. */
static void print_usage (const char *badoption) {
  lua_writestringerror("%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    lua_writestringerror("'%s' needs argument\n", badoption);
  else
    lua_writestringerror("unrecognized option '%s'\n", badoption);
  lua_writestringerror(
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n", progname);
}

/* stdout goes first, so that with 2>&1 an error follows the output that
** came before it. */
void l_message (const char *pname, const char *msg) {
  fflush(stdout);
  if (pname != NULL)
    lua_writestringerror("%s: ", pname);
  lua_writestringerror("%s\n", msg);
}

/* Prints the error message on top of the stack if status is an error.
** The message is a string: Lua made it, or msghandler did. */
int report (lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL)  /* only an error in msghandler itself leaves this */
      msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

/* Turns any error object into a message with a traceback; an object
** with __tostring speaks for itself (and gets no traceback, as in lua). */
static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* lua_pcall with Ctrl-C armed: a SIGINT stops the Lua code it runs. */
int pcallint (lua_State *L, int narg, int nres, int msgh) {
  int status;
  globalL = L;
  setsignal(SIGINT, laction);
  status = lua_pcall(L, narg, nres, msgh);
  setsignal(SIGINT, SIG_DFL);
  return status;
}

/* Runs the function below narg arguments, with msghandler for errors. */
int docall (lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = pcallint(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

static void print_version (void) {
  const char *v = FMAP_VERSION " on " LUA_COPYRIGHT;
  lua_writestring(v, strlen(v));
  lua_writeline();
}

/* }================================================================== */


/*
** {==================================================================
** The environment: arg, fmap, package.path, LUA_INIT
** ===================================================================
*/

/* arg[0] is the script (or the interpreter when there is none), script
** arguments go at positive indices, the interpreter and its options at
** negative ones. */
static void createargtable (lua_State *L, char **argv, int argc,
                            int script) {
  int i;  /* with no script (0), argv[0] is arg[0] and options follow */
  lua_createtable(L, argc - (script + 1), script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int isdir (const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
** Finds fmap's Lua modules from the executable's own location, so that
** the host works from the build tree and from an installed prefix
** whatever the current directory. Rule: for DIR the executable's
** directory, then its parents (LUADIR_DEPTH directories in all), the
** first of DIR/lua and DIR/share/lua/5.4 that holds a folder fmap/.
**   build/bin/fmap, build/sanitize/bin/fmap   ->  the checkout's lua/
**   PREFIX/bin/fmap                           ->  PREFIX/share/lua/5.4
** Leaves the directory in buf and returns 1, or returns 0.
*/
static int findluadir (char *buf, size_t size) {
  static const char *const places[] = {
    "/lua", "/share/lua/" LUA_VERSION_MAJOR "." LUA_VERSION_MINOR
  };
  char exe[4096];
  char probe[4096 + 32];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  int depth;
  if (n <= 0)
    return 0;
  exe[n] = '\0';
  for (depth = 0; depth < LUADIR_DEPTH; depth++) {
    char *slash = strrchr(exe, '/');
    size_t i;
    if (slash == NULL)
      return 0;
    *slash = '\0';  /* up one level: first from the file to its folder */
    for (i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
      snprintf(probe, sizeof(probe), "%s%s/fmap", exe, places[i]);
      if (isdir(probe)) {
        int len = snprintf(buf, size, "%s%s", exe, places[i]);
        return len > 0 && (size_t)len < size;
      }
    }
    if (exe[0] == '\0')  /* just left the root */
      return 0;
  }
  return 0;
}

static int readable (const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  fclose(f);
  return 1;
}

/* The searcher addsearcher appends: a module fmap.NAME from the folder
** findluadir found (its upvalue), as lua's own Lua searcher would find it
** with the path DIR/?.lua;DIR/?/init.lua, and with the same messages. It
** has nothing to say about other names, so that require's message for
** them is lua's. */
static int searcher_fmap (lua_State *L) {
  static const char *const forms[] = { "%s/%s.lua", "%s/%s/init.lua" };
  const char *name = luaL_checkstring(L, 1);
  const char *dir = lua_tostring(L, lua_upvalueindex(1));
  const char *files[2];
  size_t i;
  if (strncmp(name, "fmap.", 5) != 0)
    return 0;
  name = luaL_gsub(L, name, ".", LUA_DIRSEP);
  for (i = 0; i < 2; i++) {
    files[i] = lua_pushfstring(L, forms[i], dir, name);
    if (readable(files[i])) {
      if (luaL_loadfile(L, files[i]) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file "
                          "'%s':\n\t%s", lua_tostring(L, 1), files[i],
                          lua_tostring(L, -1));
      lua_pushstring(L, files[i]);  /* the module's second argument */
      return 2;
    }
  }
  lua_pushfstring(L, "no file '%s'\n\tno file '%s'", files[0], files[1]);
  return 1;
}

/* package.path and package.cpath stay exactly lua's (LUA_PATH_5_4,
** LUA_PATH or the defaults); fmap's own modules are found after them, by
** a searcher appended to package.searchers. So a script sees the paths
** it would see under lua, and lua's rules decide which file a name
** loads; the host's folder only fills the gap when they find none. */
static void addsearcher (lua_State *L) {
  char dir[4096];
  if (!findluadir(dir, sizeof(dir)))
    return;
  lua_getglobal(L, "package");
  if (lua_getfield(L, -1, "searchers") == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    lua_pushstring(L, dir);
    lua_pushcclosure(L, searcher_fmap, 1);
    lua_rawseti(L, -2, n + 1);
  }
  lua_pop(L, 2);
}

/* The engine is built in: require "fmap" finds it in package.preload,
** with no C module on disk. */
static void preloadfmap (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_fmap);
  lua_setfield(L, -2, "fmap");
  lua_pop(L, 1);
}

static int dochunk (lua_State *L, int status) {
  if (status == LUA_OK)
    status = docall(L, 0, 0);
  return report(L, status);
}

static int dofile (lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring (lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* 'g=mod' runs g = require "mod"; a bare 'mod' runs mod = require "mod". */
static int dolibrary (lua_State *L, char *globname) {
  int status;
  char *modname = strchr(globname, '=');
  if (modname == NULL)
    modname = globname;
  else {
    *modname = '\0';
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);
  if (status == LUA_OK)
    lua_setglobal(L, globname);
  return report(L, status);
}

/* Pushes arg[1] .. arg[#arg], the script's '...'. */
static int pushargs (lua_State *L) {
  int i, n;
  lua_Integer len;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  /* a script run by -e or LUA_INIT may give arg a __len of its own */
  len = luaL_len(L, -1);
  if (len < 0 || len > INT_MAX - 3)
    luaL_error(L, "'arg' has a length of %I: no count of arguments", len);
  n = (int)len;
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* '-' names stdin, unless it follows '--' (then it is a file named -). */
static int handle_script (lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* bits of the options collectargs finds */
#define has_error  1  /* bad option */
#define has_i      2  /* -i */
#define has_v      4  /* -v */
#define has_e      8  /* -e */
#define has_E      16 /* -E */

/*
** Scans the options without running anything: returns the mask of those
** needed before any Lua code runs, or has_error. In *first it leaves the
** index of the bad option, or of the script, or 0 if there is no script.
*/
static int collectargs (char **argv, int *first) {
  int args = 0;
  int i;
  *first = 0;
  if (argv[0] == NULL)  /* no program name: no options either */
    return 0;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-')  /* the script */
      return args;
    switch (argv[i][1]) {
      case '-':  /* '--' */
        if (argv[i][2] != '\0')
          return has_error;
        *first = (argv[i + 1] != NULL) ? i + 1 : 0;
        return args;
      case '\0':  /* '-': the script is stdin */
        return args;
      case 'E': case 'W': case 'i': case 'v': {  /* nothing may follow */
        int c = argv[i][1];
        if (argv[i][2] != '\0')
          return has_error;
        args |= (c == 'E') ? has_E
              : (c == 'i') ? has_i | has_v  /* -i implies -v */
              : (c == 'v') ? has_v : 0;     /* -W: run by runargs */
        break;
      }
      case 'e':
        args |= has_e;
        /* FALLTHROUGH */
      case 'l':  /* both need an argument, joined or next */
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-')
            return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = 0;
  return args;
}

/* Runs -e and -l, and -W, in command-line order, up to argv[n]. Returns
** 0 as soon as one fails. */
static int runargs (lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        int status;
        char *extra = argv[i] + 2;
        if (*extra == '\0')
          extra = argv[++i];
        status = (option == 'e')
                 ? dostring(L, extra, "=(command line)")
                 : dolibrary(L, extra);
        if (status != LUA_OK)
          return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
    }
  }
  return 1;
}

/* LUA_INIT_5_4, else LUA_INIT: '@file' runs a file, anything else is
** code. */
static int handle_luainit (lua_State *L) {
  const char *name = "=" INIT_VARVERSION;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" INIT_VAR;
    init = getenv(name + 1);
  }
  if (init == NULL)
    return LUA_OK;
  else if (init[0] == '@')
    return dofile(L, init + 1);
  else
    return dostring(L, init, name);
}

/* }================================================================== */


/* The body of the host, run in protected mode so that no error in setting
** up escapes. Returns true on success. */
static int pmain (lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int args = collectargs(argv, &script);
  int optlim = (script > 0) ? script : argc;
  luaL_checkversion(L);
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & has_v)
    print_version();
  if (args & has_E) {  /* libraries read this to ignore LUA_PATH etc. */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  lua_getglobal(L, "print");
  lua_setfield(L, LUA_REGISTRYINDEX, PRINT_KEY);
  preloadfmap(L);
  addsearcher(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK)
    return 0;
  if (!runargs(L, argv, optlim))
    return 0;
  if (script > 0 && handle_script(L, argv + script) != LUA_OK)
    return 0;
  if (args & has_i)
    doREPL(L);
  else if (script == 0 && !(args & (has_e | has_v))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      doREPL(L);
    }
    else
      dofile(L, NULL);  /* as in lua, a failure is reported, status 0 */
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** {==================================================================
** The state: its allocator, panic and warnings
** ===================================================================
*/

/* What a state created here needs beyond Lua: the pool its memory comes
** from (NULL with the system allocator) and where its warnings are. */
typedef struct hoststate {
  fm_pool *pool;
  enum { WARN_OFF, WARN_ON, WARN_CONT } warn;
} hoststate;

/* lauxlib's panic, which luaL_newstate installs: the message, then abort. */
static int panic (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL)
    msg = "error object is not a string";
  lua_writestringerror("PANIC: unprotected error in call to Lua API (%s)\n",
                       msg);
  return 0;
}

/* lauxlib's warning function, as luaL_newstate installs it: off until a
** "@on" (what -W sends), a message as "Lua warning: " and its pieces. */
static void warnf (void *ud, const char *msg, int tocont) {
  hoststate *hs = ud;
  if (hs->warn != WARN_CONT && !tocont && msg[0] == '@') {  /* control */
    if (strcmp(msg, "@off") == 0)
      hs->warn = WARN_OFF;
    else if (strcmp(msg, "@on") == 0)
      hs->warn = WARN_ON;
    return;
  }
  if (hs->warn == WARN_OFF)
    return;
  if (hs->warn == WARN_ON)
    lua_writestringerror("%s", "Lua warning: ");
  lua_writestringerror("%s", msg);
  if (tocont)
    hs->warn = WARN_CONT;
  else {
    lua_writestringerror("%s", "\n");
    hs->warn = WARN_ON;
  }
}

/* Lua 5.4 keeps its short strings in a hash table that doubles when it
** holds as many strings as it has slots, and that every collection,
** young ones included, halves when it finds it under a quarter full. A
** program with few live strings that makes many short-lived ones, as a
** B+tree scan makes a key and a value per record, then doubles and halves
** the table at almost every collection, rehashing all its strings each
** time: 16% of the scan's time in bench/bench.lua (perf), and more or
** less from one run to the next as the count of live strings falls near a
** power of two or not. fmap's data lives in its files, so its scripts'
** heaps are small: the case that suffers. The host anchors FMAP_STRINGS
** short strings of its own (default 4096; 0 for none) in the registry, a
** floor under which the table is never halved: about 200 KiB. */
#define STRINGS_DEFAULT 4096
#define STRINGS_MAX 1000000

static int anchorstrings (lua_State *L) {
  lua_Integer n = lua_tointeger(L, 1), i;
  char s[8] = { '\1', 'f', 'm' };      /* short, and unlike a script's */
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    s[3] = (char)(i & 0xFF);
    s[4] = (char)(i >> 8 & 0xFF);
    s[5] = (char)(i >> 16 & 0xFF);
    lua_pushlstring(L, s, sizeof s);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "fmap.strings");
  return 0;
}

/* A setting of the environment the host cannot use does not stop it:
** it says so on stderr, once, as "PROGNAME: ...", and takes the default,
** so that a script runs as it would under lua. */
static void badsetting (const char *name, const char *value,
                        const char *want, const char *dflt) {
  fflush(stdout);
  lua_writestringerror("%s: ", progname);
  lua_writestringerror("%s", name);
  lua_writestringerror("='%.64s' is not ", value);
  lua_writestringerror("%s", want);
  lua_writestringerror("; using %s\n", dflt);
}

/* FMAP_STRINGS: how many strings to anchor. */
static long stringscount (void) {
  const char *v = getenv("FMAP_STRINGS");
  char *end;
  long n;
  if (v == NULL || *v == '\0')
    return STRINGS_DEFAULT;
  errno = 0;
  n = strtol(v, &end, 10);
  if (*end != '\0' || errno != 0 || n < 0 || n > STRINGS_MAX) {
    badsetting("FMAP_STRINGS", v, "a count from 0 to 1000000", "4096");
    return STRINGS_DEFAULT;
  }
  return n;
}

/* FMAP_ALLOC: whether to allocate from malloc alone ("system") rather
** than from the pool ("pool", the default). */
static int systemalloc (void) {
  const char *v = getenv("FMAP_ALLOC");
  if (v == NULL || *v == '\0' || strcmp(v, "pool") == 0)
    return 0;
  if (strcmp(v, "system") == 0)
    return 1;
  badsetting("FMAP_ALLOC", v, "'pool' or 'system'", "'pool'");
  return 0;
}

/* A state whose small objects come from a pool (engine/host/alloc.c), or,
** with FMAP_ALLOC=system in the environment, from malloc as lua's are:
** a memory checker such as valgrind then sees every Lua object. NULL if
** there is not enough memory. */
static lua_State *newstate (hoststate *hs) {
  int usemalloc = systemalloc();
  long strings = stringscount();
  lua_State *L;
  hs->pool = NULL;
  hs->warn = WARN_OFF;
  if (usemalloc)
    L = luaL_newstate();
  else {
    if ((hs->pool = fm_pool_new()) == NULL)
      return NULL;
    L = lua_newstate(fm_pool_alloc, hs->pool);
  }
  if (L != NULL) {
    lua_atpanic(L, panic);
    lua_setwarnf(L, warnf, hs);
    lua_pushcfunction(L, anchorstrings);
    lua_pushinteger(L, strings);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_close(L);
      L = NULL;
    }
  }
  return L;
}

/* }================================================================== */


/* SIGXFSZ's handler: nothing. The write or ftruncate that raised it
** then fails with EFBIG, which allocate returns, instead of the signal
** killing the process. A handler rather than SIG_IGN because exec resets
** a handled signal to its default but keeps an ignored one ignored: the
** children of os.execute and io.popen start with the default, as they do
** under lua. */
static void onxfsz (int sig) {
  (void)sig;
}

int main (int argc, char **argv) {
  int status, result;
  hoststate hs;
  lua_State *L;
  struct sigaction sa;
  if (argv[0] != NULL && argv[0][0] != '\0')
    progname = argv[0];
  sa.sa_handler = onxfsz;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGXFSZ, &sa, NULL);
  L = newstate(&hs);
  if (L == NULL) {
    l_message(progname, "cannot create state: not enough memory");
    fm_pool_delete(hs.pool);
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);  /* no collection while the state is built */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  fm_pool_delete(hs.pool);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
