/*
** faultinject.c: an LD_PRELOAD shim that makes one system call fail, for
** the fault specs (spec/faults_spec.lua). Test-only: nothing in fmap links
** it. Controlled by the environment:
**   FMAP_FAULT        the call to fail: open, ftruncate, fallocate,
**                     posix_fallocate, mmap, mremap, msync, fsync,
**                     fdatasync, pwrite, pwritev, flock, fstatvfs
**   FMAP_FAULT_AFTER  how many of its calls succeed first (default 0)
**   FMAP_FAULT_TIMES  how many calls then fail (default 1; 0: all of them)
**   FMAP_FAULT_ERRNO  the error: a number or a name such as ENOSPC, EIO,
**                     ENOMEM, EDQUOT, EFBIG, EACCES, EMFILE (default EIO)
**   FMAP_FAULT_MATCH  open only counts paths containing this (default
**                     ".fmap"), so the interpreter's own files are spared
**   FMAP_FAULT_FREE   if set, fstatvfs reports this many bytes free to
**                     the caller (f_bavail), as on a nearly full disk
**   FMAP_FAULT_REPORT if set, at exit: "faultinject: CALL: N calls" on
**                     stderr, to learn how many calls a workload makes
**   FMAP_CUT_AFTER    K: right after the Kth fstat of a matching file (not
**   FMAP_CUT_SIZE     its journal, "-wal"), the file is cut to
**                     FMAP_CUT_SIZE bytes, as another process would cut
**                     it just after the engine looked ("faultinject: cut
**                     ..." on stderr); set FMAP_FAULT to none with it
** Only the engine's calls are counted: mmap of file mappings, mremap of
** those, open of matching paths (the journal's too); every other call
** passes through untouched. Each injected failure is reported on stderr as
**   faultinject: CALL call N fails with ERRNO
** Built by premake (project faultinject) into build/lib/libfaultinject.so.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

static const char *target;       /* the call to fail, NULL for none */
static long after, times = 1;
static long seen, failed;
static int err = EIO;
static const char *match = ".fmap";

static const struct { const char *name; int value; } ERRNOS[] = {
  { "ENOSPC", ENOSPC }, { "EIO", EIO }, { "ENOMEM", ENOMEM },
  { "EDQUOT", EDQUOT }, { "EFBIG", EFBIG }, { "EACCES", EACCES },
  { "EMFILE", EMFILE }, { "EPERM", EPERM }, { "EINTR", EINTR },
  { "EAGAIN", EAGAIN }, { "EROFS", EROFS }, { "ENFILE", ENFILE },
  { NULL, 0 }
};

__attribute__((constructor)) static void setup (void) {
  const char *s;
  target = getenv("FMAP_FAULT");
  if (target != NULL && *target == '\0') target = NULL;
  if ((s = getenv("FMAP_FAULT_AFTER")) != NULL) after = atol(s);
  if ((s = getenv("FMAP_FAULT_TIMES")) != NULL) times = atol(s);
  if ((s = getenv("FMAP_FAULT_MATCH")) != NULL) match = s;
  if ((s = getenv("FMAP_FAULT_ERRNO")) != NULL) {
    int i;
    if (*s >= '0' && *s <= '9') err = atoi(s);
    for (i = 0; ERRNOS[i].name != NULL; i++)
      if (strcmp(s, ERRNOS[i].name) == 0) err = ERRNOS[i].value;
  }
}

__attribute__((destructor)) static void report (void) {
  if (target != NULL && getenv("FMAP_FAULT_REPORT") != NULL)
    fprintf(stderr, "faultinject: %s: %ld calls\n", target, seen);
}

/* Counts a call of name; the errno it must fail with, or 0. */
static int fault (const char *name) {
  if (target == NULL || strcmp(name, target) != 0) return 0;
  seen++;
  if (seen <= after || (times > 0 && failed >= times)) return 0;
  failed++;
  fprintf(stderr, "faultinject: %s call %ld fails with %d\n", name, seen,
          err);
  return err;
}

/* The file mappings the engine made: mremap is counted on those only
** (malloc uses mremap too). */
#define MAXMAPS 64
static void *maps[MAXMAPS];

static int known (void *p) {
  int i;
  for (i = 0; i < MAXMAPS; i++) if (maps[i] == p && p != NULL) return i;
  return -1;
}

static void remember (void *p) {
  int i;
  for (i = 0; i < MAXMAPS; i++) if (maps[i] == NULL) { maps[i] = p; return; }
}

static int matches (const char *path) {
  return path != NULL && strstr(path, match) != NULL;
}

/* open and open64 (SHIM_OPEN): both count as "open". */
static int shim_open (openfn *real, const char *path, int flags,
                      mode_t mode) {
  int e;
  if (matches(path) && (e = fault("open")) != 0) { errno = e; return -1; }
  return real(path, flags, mode);
}

SHIM_OPEN(open)
SHIM_OPEN(open64)

/* fstat: the cut of FMAP_CUT_AFTER, after the Kth look at a data file. */
int fstat (int fd, struct stat *st) {
  static long looks;
  const char *k = getenv("FMAP_CUT_AFTER"), *size = getenv("FMAP_CUT_SIZE");
  char link[64], path[4096];
  ssize_t n;
  int rc;
  REAL(fstat);
  REAL(ftruncate);
  rc = real_fstat(fd, st);
  if (rc != 0 || k == NULL || size == NULL) return rc;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return rc;
  path[n] = '\0';
  if (!matches(path) || strstr(path, "-wal") != NULL) return rc;
  if (++looks == atol(k)) {
    if (real_ftruncate(fd, (off_t)atol(size)) == 0)
      fprintf(stderr, "faultinject: cut %s to %s bytes after fstat %ld\n",
              path, size, looks);
  }
  return rc;
}

int ftruncate (int fd, off_t len) {
  int e;
  REAL(ftruncate);
  if ((e = fault("ftruncate")) != 0) { errno = e; return -1; }
  return real_ftruncate(fd, len);
}

int fallocate (int fd, int mode, off_t off, off_t len) {
  int e;
  REAL(fallocate);
  if ((e = fault("fallocate")) != 0) { errno = e; return -1; }
  return real_fallocate(fd, mode, off, len);
}

int posix_fallocate (int fd, off_t off, off_t len) {
  int e;
  REAL(posix_fallocate);
  if ((e = fault("posix_fallocate")) != 0) return e;
  return real_posix_fallocate(fd, off, len);
}

void *mmap (void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  void *p;
  int e;
  REAL(mmap);
  if (fd >= 0) {
    if ((e = fault("mmap")) != 0) { errno = e; return MAP_FAILED; }
    p = real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) remember(p);
    return p;
  }
  return real_mmap(addr, len, prot, flags, fd, off);
}

void *mremap (void *old, size_t oldlen, size_t newlen, int flags, ...) {
  void *p, *at = NULL;
  int e, i = known(old);
  REAL(mremap);
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    at = va_arg(ap, void *);
    va_end(ap);
  }
  if (i >= 0 && (e = fault("mremap")) != 0) { errno = e; return MAP_FAILED; }
  p = real_mremap(old, oldlen, newlen, flags, at);
  if (i >= 0 && p != MAP_FAILED) maps[i] = p;
  return p;
}

int munmap (void *p, size_t len) {
  int i = known(p);
  REAL(munmap);
  if (i >= 0) maps[i] = NULL;
  return real_munmap(p, len);
}

int msync (void *p, size_t len, int flags) {
  int e;
  REAL(msync);
  if ((e = fault("msync")) != 0) { errno = e; return -1; }
  return real_msync(p, len, flags);
}

int fsync (int fd) {
  int e;
  REAL(fsync);
  if ((e = fault("fsync")) != 0) { errno = e; return -1; }
  return real_fsync(fd);
}

int fdatasync (int fd) {
  int e;
  REAL(fdatasync);
  if ((e = fault("fdatasync")) != 0) { errno = e; return -1; }
  return real_fdatasync(fd);
}

ssize_t pwrite (int fd, const void *buf, size_t n, off_t off) {
  int e;
  REAL(pwrite);
  if ((e = fault("pwrite")) != 0) { errno = e; return -1; }
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwritev (int fd, const struct iovec *iov, int n, off_t off) {
  int e;
  REAL(pwritev);
  if ((e = fault("pwritev")) != 0) { errno = e; return -1; }
  return real_pwritev(fd, iov, n, off);
}

int flock (int fd, int op) {
  int e;
  REAL(flock);
  if ((e = fault("flock")) != 0) { errno = e; return -1; }
  return real_flock(fd, op);
}

int fstatvfs (int fd, struct statvfs *buf) {
  const char *free_ = getenv("FMAP_FAULT_FREE");
  int e, rc;
  REAL(fstatvfs);
  if ((e = fault("fstatvfs")) != 0) { errno = e; return -1; }
  rc = real_fstatvfs(fd, buf);
  if (rc == 0 && free_ != NULL && buf->f_frsize != 0)
    buf->f_bavail = (fsblkcnt_t)(strtoull(free_, NULL, 10) / buf->f_frsize);
  return rc;
}
