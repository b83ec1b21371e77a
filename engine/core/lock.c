/*
** lock.c: the locks that let readers beside a writer (see fm.h, "Readers
** beside a writer"): open file description locks on single bytes of the
** file, released with the last descriptor, so a crashed process holds
** none. Plain C: no Lua in this file.
*/
#define _GNU_SOURCE
#include "fm.h"
#include "fmint.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* The lock of type on one byte, as fcntl takes it. */
static struct flock onebyte (short type, off_t byte) {
  struct flock l;
  memset(&l, 0, sizeof l);
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  return l;
}

/* An open file description lock on one byte of fd: type F_RDLCK,
** F_WRLCK or F_UNLCK; with wait, waits for it. 0 or an errno value. */
int fm__ofd_lock (int fd, short type, off_t byte, int wait) {
  struct flock l = onebyte(type, byte);
  while (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &l) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

/* Whether another description holds a lock on byte that conflicts with
** one of type. */
int fm__ofd_held (int fd, short type, off_t byte) {
  struct flock l = onebyte(type, byte);
  if (fcntl(fd, F_OFD_GETLK, &l) != 0) return 0;
  return l.l_type != F_UNLCK;
}

int fm__gate (fm_file *f, int take) {
  if (f->fd < 0 || f->readonly) return 1;
  if (take) {
    if (f->gate) return 1;
    f->gate = fm__ofd_lock(f->fd, F_WRLCK, FM_LOCK_READERS, 0) == 0;
    return f->gate;
  }
  if (f->gate) fm__ofd_lock(f->fd, F_UNLCK, FM_LOCK_READERS, 0);
  f->gate = 0;
  return 0;
}

