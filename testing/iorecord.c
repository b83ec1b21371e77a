/*
** iorecord.c: an LD_PRELOAD shim that records every change a process makes
** to the files of a BlockFile (the file and its journal), for the power-loss
** specs (spec/powerloss_spec.lua), in the spirit of ALICE and CrashMonkey:
** the spec replays the record to build every state a power loss could
** leave. Test-only: nothing in fmap links it. Controlled by the
** environment:
**   FMAP_RECORD        the log to append to; nothing is recorded without it
**   FMAP_RECORD_MATCH  only paths containing this are recorded (".fmap")
** The log is a sequence of records, a text line each, the bytes of a write
** following its line:
**   C path             created or truncated to empty by open (O_TRUNC)
**   W path off len     len bytes written at off (pwrite, pwritev), then
**                      the len bytes
**   T path len         truncated or extended to len (ftruncate)
**   S path             fsync or fdatasync returned: what was written
**                      before is on disk
**   U path             removed (unlink)
** fsync of a folder is not recorded: the spec takes creation and removal
** as durable at once (the engine syncs the folder right after each).
** Built by premake (project iorecord) into build/lib/libiorecord.so.
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

#define MAXFD 1024

static int logfd = -1;
static const char *match = ".fmap";
static char *paths[MAXFD];       /* the recorded path of each fd, or NULL */

__attribute__((constructor)) static void setup (void) {
  const char *log = getenv("FMAP_RECORD"), *m = getenv("FMAP_RECORD_MATCH");
  REAL(open);
  if (m != NULL && *m != '\0') match = m;
  if (log != NULL && *log != '\0')
    logfd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void put (const void *p, size_t n) {
  REAL(write);
  while (n > 0) {
    ssize_t w = real_write(logfd, p, n);
    if (w <= 0) return;
    p = (const char *)p + w;
    n -= (size_t)w;
  }
}

static void line (const char *fmt, ...) {
  char buf[4096 + 64];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) put(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static int recorded (const char *path) {
  return logfd >= 0 && path != NULL && strstr(path, match) != NULL;
}

static const char *pathof (int fd) {
  return (logfd >= 0 && fd >= 0 && fd < MAXFD) ? paths[fd] : NULL;
}

static void opened (int fd, const char *path, int flags) {
  if (fd < 0 || !recorded(path)) return;
  if (fd < MAXFD) {
    free(paths[fd]);
    paths[fd] = strdup(path);
  }
  if (flags & O_TRUNC) line("C %s\n", path);
}

/* open and open64 (SHIM_OPEN). */
static int shim_open (openfn *real, const char *path, int flags,
                      mode_t mode) {
  int fd = real(path, flags, mode);
  opened(fd, path, flags);
  return fd;
}

SHIM_OPEN(open)
SHIM_OPEN(open64)

int close (int fd) {
  REAL(close);
  if (fd >= 0 && fd < MAXFD && paths[fd] != NULL) {
    free(paths[fd]);
    paths[fd] = NULL;
  }
  return real_close(fd);
}

/* Records a write of fd that returned w, from the n buffers of iov, at
** off: its line, then the bytes written. Returns w. */
static ssize_t written (int fd, const struct iovec *iov, int n, off_t off,
                        ssize_t w) {
  const char *p = pathof(fd);
  if (p != NULL && w > 0) {
    size_t left = (size_t)w;
    int i;
    line("W %s %lld %lld\n", p, (long long)off, (long long)w);
    for (i = 0; i < n && left > 0; i++) {
      size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
      put(iov[i].iov_base, k);
      left -= k;
    }
  }
  return w;
}

ssize_t pwrite (int fd, const void *buf, size_t n, off_t off) {
  struct iovec one;
  REAL(pwrite);
  one.iov_base = (void *)buf;
  one.iov_len = n;
  return written(fd, &one, 1, off, real_pwrite(fd, buf, n, off));
}

ssize_t pwritev (int fd, const struct iovec *iov, int n, off_t off) {
  REAL(pwritev);
  return written(fd, iov, n, off, real_pwritev(fd, iov, n, off));
}

int ftruncate (int fd, off_t len) {
  const char *p = pathof(fd);
  int rc;
  REAL(ftruncate);
  rc = real_ftruncate(fd, len);
  if (p != NULL && rc == 0) line("T %s %lld\n", p, (long long)len);
  return rc;
}

/* Records a sync of fd that returned rc (fsync and fdatasync alike).
** Returns rc. */
static int synced (int fd, int rc) {
  const char *p = pathof(fd);
  if (p != NULL && rc == 0) line("S %s\n", p);
  return rc;
}

int fsync (int fd) {
  REAL(fsync);
  return synced(fd, real_fsync(fd));
}

int fdatasync (int fd) {
  REAL(fdatasync);
  return synced(fd, real_fdatasync(fd));
}

int unlink (const char *path) {
  int rc;
  REAL(unlink);
  rc = real_unlink(path);
  if (rc == 0 && recorded(path)) line("U %s\n", path);
  return rc;
}
