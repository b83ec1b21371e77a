/*
** repl.c: the fmap executable's interactive loop, lua.c's doREPL with
** line editing. Lines come from GNU readline on a terminal (with history
** and completion) or from plain stdio otherwise; Ctrl-C at the prompt
** drops the line. Each chunk runs through host.c's docall, and its
** results print through fmap.repl.show; help() and more() page through
** l_page. No engine logic here: the printing, completion and help live in
** Lua (lua/fmap/repl.lua, lua/fmap/help.lua); this file only drives them.
*/

/* sigaction, getline: POSIX.1-2008 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <readline/readline.h>
#include <readline/history.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "host.h"
#include "lfmap.h"


#define PROMPT          "> "
#define PROMPT2         ">> "
#define EOFMARK         "<eof>"       /* ends messages of unfinished chunks */
#define HISTORY_FILE    ".fmap_history"   /* in $HOME */
#define HISTORY_MAX     1000  /* entries kept in memory */
#define HISTORY_LINES   4000  /* lines kept in the file (a chunk has several) */
#define REPL_MODULE     "fmap.repl"
#define REPL_KEY        "fmap.host.repl"  /* registry: the loaded module */

/* The state of the REPL, which readline's completion calls into:
** readline's callbacks take no context argument, so they can reach Lua
** only through a global. */
static lua_State *replL = NULL;


/*
** {==================================================================
** Reading lines: GNU readline on a terminal, plain stdio otherwise
** ===================================================================
*/

/* What the REPL's readline side keeps between lines; a global because
** readline's callbacks and signal handlers take no context argument. */
static struct {
  int on;                           /* reading through readline */
  char *histfile;                   /* history file, NULL for none */
  volatile sig_atomic_t interrupted;  /* Ctrl-C at the prompt */
} tty;

/* Ctrl-C at the prompt. Readline's own handler has already dropped the
** line's state and echoed ^C, then passed the signal on to this one;
** rl_done makes readline return, which it checks only when rl_event_hook
** is set (see initreadline). */
static void oninterrupt (int sig) {
  (void)sig;
  tty.interrupted = 1;
  rl_done = 1;
}

/* Keeps readline polling its input, so that it notices rl_done. */
static int idle (void) {
  return 0;
}

/* Reads a line with readline: Ctrl-C drops the line and prompts again
** instead of killing the process, as it would in lua. Returns 1 with a
** malloc'd line, 0 at end of input, -1 if Ctrl-C dropped the line. */
static int ttyread (const char *prompt, char **line) {
  tty.interrupted = 0;
  setsignal(SIGINT, oninterrupt);
  *line = readline(prompt);
  setsignal(SIGINT, SIG_DFL);
  if (tty.interrupted) {
    free(*line);
    *line = NULL;
    return -1;
  }
  return *line != NULL;
}

/* Without a terminal: the prompt on stdout and a line of any length,
** echoed after the prompt as Debian's lua5.4 (readline) does, so that the
** output of 'fmap -i < file' reads as a transcript: an empty line after
** an empty prompt shows nothing, not even its newline. */
static int plainread (const char *prompt, char **line) {
  size_t size = 0;
  ssize_t n;
  fputs(prompt, stdout);
  fflush(stdout);
  *line = NULL;
  n = getline(line, &size, stdin);
  if (n < 0) {
    free(*line);
    *line = NULL;
    return 0;
  }
  if (n > 0 && (*line)[n - 1] == '\n')
    (*line)[n - 1] = '\0';
  if (prompt[0] != '\0' || (*line)[0] != '\0') {  /* readline's echo */
    fputs(*line, stdout);
    fputs("\n", stdout);
  }
  return 1;
}

/* Keeps a complete entry (several lines for a multi-line chunk) in the
** history and appends it to the file at once, so that a crash or a kill
** loses nothing and parallel sessions interleave rather than overwrite. */
static void saveline (const char *line) {
  HIST_ENTRY *last;
  if (!tty.on || line[0] == '\0')
    return;
  last = history_get(history_base + history_length - 1);
  if (last != NULL && strcmp(last->line, line) == 0)
    return;
  add_history(line);
  if (tty.histfile != NULL)
    append_history(1, tty.histfile);
}

/* Multi-line entries survive a restart only as timestamped entries:
** history_multiline_entries joins the lines between two timestamps. */
static void openhistory (void) {
  const char *home = getenv("HOME");
  size_t len;
  history_comment_char = '#';  /* timestamps are written only with it */
  history_write_timestamps = 1;
  history_multiline_entries = 1;
  stifle_history(HISTORY_MAX);
  if (home == NULL || home[0] == '\0')
    return;
  len = strlen(home) + sizeof("/" HISTORY_FILE);
  tty.histfile = malloc(len);
  if (tty.histfile == NULL)
    return;
  snprintf(tty.histfile, len, "%s/%s", home, HISTORY_FILE);
  if (read_history(tty.histfile) == ENOENT)
    write_history(tty.histfile);  /* append_history needs the file */
}

static void closehistory (void) {
  if (tty.histfile != NULL) {
    history_truncate_file(tty.histfile, HISTORY_LINES);
    free(tty.histfile);
    tty.histfile = NULL;
  }
  clear_history();
}

/* }================================================================== */


/*
** {==================================================================
** Completion: readline asks, fmap.repl.complete answers
** ===================================================================
*/

#define MATCHES_KEY "fmap.host.matches"  /* registry: the current matches */

/* Hands out the matches one by one, as rl_completion_matches wants. */
static char *nextmatch (const char *text, int state) {
  static lua_Integer i;
  lua_State *L = replL;
  int top = lua_gettop(L);
  char *match = NULL;
  (void)text;
  if (state == 0)
    i = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, MATCHES_KEY) == LUA_TTABLE &&
      lua_rawgeti(L, -1, ++i) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    match = malloc(len + 1);  /* readline frees it */
    if (match != NULL)
      memcpy(match, s, len + 1);
  }
  lua_settop(L, top);
  return match;
}

/* t[k] of the table at idx, without metamethods: the REPL reads its
** helpers from fmap.repl's table outside any pcall, and a script may have
** given that table an __index that raises. */
static int rawfield (lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  return lua_rawget(L, idx);
}

/* Calls complete(text, line) of fmap.repl, which returns the full words
** that may replace text ("bf:al" -> "bf:allocate", ...). Completion must
** never disturb the REPL: any error just means no matches. */
static char **complete (const char *text, int start, int end) {
  lua_State *L = replL;
  int top = lua_gettop(L);
  char **matches = NULL;
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;  /* never fall back to file names */
  rl_completion_suppress_append = 1;  /* no space after "bf:get" */
  if (lua_getfield(L, LUA_REGISTRYINDEX, REPL_KEY) == LUA_TTABLE &&
      rawfield(L, -1, "complete") == LUA_TFUNCTION) {
    lua_pushstring(L, text);
    lua_pushstring(L, rl_line_buffer);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
      lua_setfield(L, LUA_REGISTRYINDEX, MATCHES_KEY);
      matches = rl_completion_matches(text, nextmatch);
      lua_pushnil(L);
      lua_setfield(L, LUA_REGISTRYINDEX, MATCHES_KEY);
    }
  }
  lua_settop(L, top);
  return matches;
}

/* Lists matches by their last name only ("allocate", not "bf:allocate"),
** as a file name completion lists base names. */
static void showmatches (char **matches, int n, int maxlen) {
  char **names = malloc((size_t)(n + 2) * sizeof(char *));
  int i;
  (void)maxlen;
  if (names == NULL) {
    rl_display_match_list(matches, n, maxlen);
  }
  else {
    int longest = 0;
    names[0] = matches[0];
    for (i = 1; i <= n; i++) {
      char *s = matches[i];
      char *p = s + strlen(s);
      int len;
      while (p > s && p[-1] != '.' && p[-1] != ':')
        p--;
      names[i] = p;
      len = (int)strlen(p);
      if (len > longest)
        longest = len;
    }
    names[n + 1] = NULL;
    rl_display_match_list(names, n, longest);
    free(names);
  }
  rl_forced_update_display();
}

static void initreadline (void) {
  rl_readline_name = PROGNAME;  /* for ~/.inputrc conditionals */
  rl_event_hook = idle;
  rl_attempted_completion_function = complete;
  rl_completion_display_matches_hook = showmatches;
  /* '.' and ':' are not word breaks: "bf:al" is one word to complete */
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
  openhistory();
  tty.on = 1;
}

/* }================================================================== */


/*
** {==================================================================
** The pager: fmap.repl pages help() and more() through it
** ===================================================================
*/

/* page(command, text): when stdout is a terminal, runs command with
** /bin/sh, its stdin a pipe that text is written to, and waits for it to
** end; returns true, or false when stdout is not a terminal (the caller
** prints), or nil and a message when the pager did not run. While it
** runs the host ignores SIGINT and SIGPIPE: Ctrl-C is the pager's (two
** of them would otherwise kill the host), and a pager that leaves before
** reading everything must not end the host with the write. LESS is set
** to FRX unless set, as git does, so that a PAGER=less leaves at once
** when the text fits on the screen. */
static int l_page (lua_State *L) {
  size_t len, done = 0;
  const char *cmd = luaL_checkstring(L, 1);
  const char *text = luaL_checklstring(L, 2, &len);
  struct sigaction ign, oldint, oldpipe;
  int fds[2], status = 0, err = 0;
  pid_t pid;
  if (!isatty(STDOUT_FILENO)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  fflush(stdout);
  if (pipe(fds) != 0)
    return luaL_fileresult(L, 0, "pager");
  ign.sa_handler = SIG_IGN;
  ign.sa_flags = 0;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGINT, &ign, &oldint);
  sigaction(SIGPIPE, &ign, &oldpipe);
  pid = fork();
  if (pid == 0) {  /* the pager (the host has one thread: setenv is safe) */
    setsignal(SIGINT, SIG_DFL);
    setsignal(SIGPIPE, SIG_DFL);
    dup2(fds[0], STDIN_FILENO);
    close(fds[0]);
    close(fds[1]);
    setenv("LESS", "FRX", 0);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  close(fds[0]);
  if (pid < 0)
    err = errno;
  while (pid > 0 && done < len) {
    ssize_t n = write(fds[1], text + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;  /* EPIPE: the pager has left */
    done += (size_t)n;
  }
  close(fds[1]);
  while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  sigaction(SIGINT, &oldint, NULL);
  sigaction(SIGPIPE, &oldpipe, NULL);
  if (err != 0) {
    errno = err;
    return luaL_fileresult(L, 0, "pager");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    luaL_pushfail(L);
    lua_pushfstring(L, "pager '%s' not found", cmd);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* }================================================================== */


/*
** {==================================================================
** Read-Eval-Print Loop
** ===================================================================
*/

/* The prompt (_PROMPT/_PROMPT2 if set, as in lua), left on the stack to
** keep it alive while it is shown. */
/* What the REPL does between chunks runs unprotected, so an error there
** would end it: globals are read raw (an __index of _G cannot raise), and
** a value is made a string by a protected call (its __tostring can). */
static int getglobalraw (lua_State *L, const char *name) {
  int t;
  lua_pushglobaltable(L);
  lua_pushstring(L, name);
  t = lua_rawget(L, -2);
  lua_remove(L, -2);
  return t;
}

static int tostr (lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static const char *get_prompt (lua_State *L, int firstline) {
  const char *dflt = firstline ? PROMPT : PROMPT2;
  if (getglobalraw(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL)
    return dflt;
  lua_pushcfunction(L, tostr);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {  /* a broken _PROMPT: ignore it */
    lua_pop(L, 1);
    lua_pushnil(L);
    return dflt;
  }
  return lua_tostring(L, -1);
}

/* Whether status is a syntax error at the end of the chunk, that is, one
** that more lines could fix. If so, pops the message. */
static int incomplete (lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t lmark = sizeof(EOFMARK) - 1;
    if (lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Prompts and pushes one line. Returns 1, 0 at end of input (nothing
** pushed), or -1 when Ctrl-C dropped the line (nothing pushed). */
static int pushline (lua_State *L, int firstline) {
  char *b;
  const char *prompt = get_prompt(L, firstline);
  int status = tty.on ? ttyread(prompt, &b) : plainread(prompt, &b);
  lua_pop(L, 1);  /* the prompt */
  if (status != 1)
    return status;
  if (firstline && b[0] == '=')  /* '=x' means 'return x', as in 5.2 */
    lua_pushfstring(L, "return %s", b + 1);
  else
    lua_pushstring(L, b);
  free(b);
  return 1;
}

/* Tries the line on the stack as 'return <line>;', so that an expression
** prints its values. Leaves the function, or the line if that failed. */
static int addreturn (lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    saveline(line);
  }
  else
    lua_pop(L, 2);
  return status;
}

/* Reads continuation lines until the chunk compiles or fails for a reason
** other than its end. Returns the load status, or -1 if Ctrl-C dropped the
** chunk. The end of input reports the chunk's own syntax error. */
static int multiline (lua_State *L) {
  for (;;) {
    size_t len;
    const char *chunk = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, chunk, len, "=stdin");
    int more;
    if (!incomplete(L, status)) {
      saveline(chunk);
      return status;
    }
    more = pushline(L, 0);
    if (more == -1)
      return -1;
    if (more == 0) {
      saveline(chunk);
      return luaL_loadbuffer(L, chunk, len, "=stdin");
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

#define NO_INPUT     (-1)  /* end of input: leave the REPL */
#define INTERRUPTED  (-2)  /* Ctrl-C at a prompt: prompt again */

/* Reads a chunk: an expression, else statements over as many lines as
** they need. Leaves the compiled function or an error message. */
static int loadline (lua_State *L) {
  int status;
  lua_settop(L, 0);
  status = pushline(L, 1);
  if (status != 1)
    return (status == 0) ? NO_INPUT : INTERRUPTED;
  if ((status = addreturn(L)) != LUA_OK) {
    status = multiline(L);
    if (status == -1) {
      lua_settop(L, 0);
      return INTERRUPTED;
    }
  }
  lua_remove(L, 1);
  return status;
}

/* Prints its arguments, a chunk's results, through the global print as
** lua's REPL does, so that a print of the script's own prints them (and
** print = nil is an error calling 'print'). While print is still the
** standard library's, fmap.repl.show prints them instead: that is where
** the pretty-printing comes from. Run protected: an __index of _G that
** raises is an error calling 'print' too, not the end of the REPL. */
static int printresults (lua_State *L) {
  int n = lua_gettop(L);
  lua_getglobal(L, "print");
  lua_getfield(L, LUA_REGISTRYINDEX, PRINT_KEY);
  if (lua_rawequal(L, -1, -2) &&
      lua_getfield(L, LUA_REGISTRYINDEX, REPL_KEY) == LUA_TTABLE &&
      rawfield(L, -1, "show") == LUA_TFUNCTION)
    lua_replace(L, n + 1);
  lua_settop(L, n + 1);
  lua_insert(L, 1);
  lua_call(L, n, 0);
  return 0;
}

/* Prints the results on the stack. Printing a huge table can be stopped
** with Ctrl-C like any other code. */
static void l_print (lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    if (!lua_checkstack(L, LUA_MINSTACK)) {
      l_message(progname, "too many results to print");
      lua_settop(L, 0);
      return;
    }
    lua_pushcfunction(L, printresults);
    lua_insert(L, 1);
    if (pcallint(L, n, 0, 0) != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)",
                              luaL_typename(L, -1));
      l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                          msg));
    }
  }
}

/* Loads fmap.repl (pretty printing, completion, help) and lets it set up
** the REPL's globals, handing it the pager (l_page). Without it the REPL
** still works, with print. */
static void loadrepl (lua_State *L, const char *pname) {
  int status;
  getglobalraw(L, "require");
  lua_pushliteral(L, REPL_MODULE);
  status = docall(L, 1, 1);
  if (status == LUA_OK && !lua_istable(L, -1)) {
    lua_pushliteral(L, "module '" REPL_MODULE "' is not a table");
    status = LUA_ERRRUN;
  }
  if (status == LUA_OK) {
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REPL_KEY);
    if (rawfield(L, -1, "start") == LUA_TFUNCTION) {
      lua_pushstring(L, FMAP_VERSION);
      lua_pushcfunction(L, l_page);
      status = docall(L, 2, 0);
    }
    else
      lua_pop(L, 1);
  }
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    lua_writestringerror("%s: the REPL's helpers did not load; printing "
                         "with print\n", pname);
    if (msg != NULL)
      lua_writestringerror("%s\n", msg);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REPL_KEY);
  }
  lua_settop(L, 0);
}

/* Reads, runs and prints chunks until the end of input; errors are
** printed bare, without the program's name, as lua.c's REPL does. */
void doREPL (lua_State *L) {
  int status;
  const char *oldprogname = progname;
  progname = NULL;  /* errors in the REPL are printed bare */
  replL = L;
  if (isatty(STDIN_FILENO))
    initreadline();
  loadrepl(L, oldprogname);
  while ((status = loadline(L)) != NO_INPUT) {
    if (status == INTERRUPTED)
      continue;
    if (status == LUA_OK)
      status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      l_print(L);
    else
      report(L, status);
  }
  lua_settop(L, 0);
  lua_writeline();
  if (tty.on) {
    closehistory();
    tty.on = 0;
  }
  progname = oldprogname;
}

/* }================================================================== */
