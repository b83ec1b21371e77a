/*
** fault.c: faults of the map. A page of a file's map with no file behind
** it raises SIGBUS when it is touched: the file was truncated under the
** map (by another process, or by this one: io.open(path, "w")), a hole of
** a sparse file met a full disk, a read failed. The default action kills
** the process. onbus, the handler, finds the BlockFile whose map holds
** the faulting address and has the core replace its whole map with zeros
** (fm_fault): the access that faulted then completes, on zeros, and no
** later store reaches the file. It retires the BlockFile (BF_LOST) and
** its views (LOST): the call that met the fault raises where it checks
** (LOSTMAP), every later use raises, and close only unmaps. A fault
** anywhere else goes to the handler that was there before, or to the
** default action.
**
** onbus calls no Lua and takes no lock: it walks the list, has the core
** replace the map, and stores; what it calls must stay so.
**
** This is the module's one process-wide state besides its serials: a
** signal's handler has no other way to reach the BlockFiles. The list of
** open BlockFiles is the process's (Lua states in several threads, or
** one state moved between threads, all add to it), changed under a lock
** that the handler does not take: it reads the list in the thread that
** faulted, stopped in an access of a map, where no change of the list is
** under way; a change in another thread at that instant could show it a
** torn list, which only a SIGBUS fmap was about to handle could meet.
*/
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"

static BlockFile *maps;          /* the open BlockFiles, newest first */
static pthread_mutex_t mapslock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prevbus; /* the handler onbus passes others to */
static pthread_once_t busonce = PTHREAD_ONCE_INIT;

/* Puts bf on the list, in the state given (BF_OPENING or BF_OPEN). */
void mapped (BlockFile *bf, int state) {
  pthread_mutex_lock(&mapslock);
  bf->open = state;
  bf->mprev = NULL;
  bf->mnext = maps;
  if (maps != NULL) maps->mprev = bf;
  maps = bf;
  pthread_mutex_unlock(&mapslock);
}

/* Takes bf off the list, unless it is closed (and so not on it). */
void unmapped (BlockFile *bf) {
  if (bf->open == BF_CLOSED) return;
  pthread_mutex_lock(&mapslock);
  if (bf->mprev != NULL) bf->mprev->mnext = bf->mnext;
  else maps = bf->mnext;
  if (bf->mnext != NULL) bf->mnext->mprev = bf->mprev;
  bf->mprev = bf->mnext = NULL;
  pthread_mutex_unlock(&mapslock);
}

/* After fm_create, fm_open or fm_anonymous returned rc for bf, which was
** BF_OPENING: BF_OPEN, or off the list and closed with an error code (a
** fault while the file was read makes the open fail, FM_ELOST). */
int opened (BlockFile *bf, int rc) {
  if (bf->f.faulted) {   /* whatever the core made of the zeros it read */
    char why[sizeof bf->f.msg];
    memcpy(why, fm_fault_reason(&bf->f), sizeof why);
    fm_close_final(&bf->f);   /* (a failed open has closed it already) */
    memcpy(bf->f.msg, why, sizeof why);
    rc = FM_ELOST;
  }
  unmapped(bf);
  if (rc != 0) {
    bf->open = BF_CLOSED;
    return rc;
  }
  mapped(bf, BF_OPEN);
  return 0;
}

/* Retires a BlockFile whose map is lost: its views die (LOST), and every
** use raises until it is closed. Plain stores only: onbus calls it. */
void retire (BlockFile *bf) {
  while (bf->views != NULL) unlink_view(bf->views, LOST);
  bf->open = BF_LOST;
}

/* A core call returned FM_ELOST: the file was cut short under the map. */
int lostfail (lua_State *L, BlockFile *bf) {
  retire(bf);
  return notopen(L, bf);
}

static void onbus (int sig, siginfo_t *si, void *ctx) {
  const unsigned char *at = (const unsigned char *)si->si_addr;
  BlockFile *bf;
  if (si->si_code > 0) {   /* raised by the kernel, not by kill() */
    for (bf = maps; bf != NULL; bf = bf->mnext) {
      fm_file *f = &bf->f;
      if ((bf->open == BF_OPEN || bf->open == BF_OPENING) &&
          f->map != NULL && at >= f->map && at < f->map + f->mapsize) {
        if (fm_fault(f) != 0) break;
        retire(bf);
        return;
      }
    }
  }
  if (prevbus.sa_flags & SA_SIGINFO) {
    if (prevbus.sa_sigaction != NULL) prevbus.sa_sigaction(sig, si, ctx);
  }
  else if (prevbus.sa_handler != SIG_DFL && prevbus.sa_handler != SIG_IGN)
    prevbus.sa_handler(sig);
  else if (si->si_code <= 0) {
    /* sent by kill(): ignored, or raised again with the default action
    ** once this handler returns, as if no handler were there */
    if (prevbus.sa_handler == SIG_DFL) {
      signal(SIGBUS, SIG_DFL);
      raise(SIGBUS);
    }
  }
  else {
    /* a fault outside every map: the access faults again on return and
    ** the kernel takes the default action, ignored or not */
    signal(SIGBUS, SIG_DFL);
  }
}

static void sethandler (void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &prevbus);
}

/* Installs onbus for the process, once: luaopen_fmap calls it. */
void installbus (void) {
  pthread_once(&busonce, sethandler);
}
