/*
** fm.c: the fmap core. Maps a file, hands out fixed-size blocks, keeps a
** persistent free list and a checksummed control block. Plain C: no Lua in
** this file; it returns codes and never prints or exits.
**
** On-disk format, little-endian. Block 0 is the control block, so offset 0
** never names a user block and serves as "none".
**
** Block 0:
**   OFFSET       SIZE  FIELD
**        0        128  header slot 0
**      128        128  header slot 1
**      256          L  control-data area 0, L = (block size - 256) / 2
**    256+L          L  control-data area 1
**
** A header slot:
**        0          8  magic "\x89fmap\r\n\x1a"
**        8          4  format version (3)
**       12          4  block size, a multiple of 4096
**       16          8  sequence number; the valid slot with the highest wins
**       24          8  top: the end of the allocated area
**       32          8  free-list head: the first free run, 0 if none
**       40          8  free blocks (all runs)
**       48          8  free runs
**       56          4  control-data length
**       60          4  control-data area holding it, 0 or 1
**       64          8  checksum of the control data
**       72          8  pending mark: a free block whose mark is rewritten
**                      after this header, 0 if none (version 2)
**       80          8  its next run, as the mark is to say
**       88          8  its block count, as the mark is to say
**       96         24  reserved, zero
**      120          8  checksum of bytes 0..119
** Each header write goes to the slot not written last, so a torn write
** (a crash in the middle of one) leaves the other slot, one change older,
** intact. Control data is written to the area not in use, then the header
** switches to it: a torn write of either leaves the old data in force.
** Version 1 files are version 2 files without pending marks; version 3
** files may have a journal beside them (txn.c), which version 2 readers
** would ignore: all three open, and a writable open writes version 3
** into the file before anything else.
**
** A free block starts with a mark:
**        0          8  magic "fmapFREE"
**        8          8  the block's own offset
**       16          8  run heads: the next run (0 for the last run);
**                      members: their run's head, a hint (0 in old files)
**       24          8  blocks in the run (run heads), 0 (other members)
**       32          8  checksum of bytes 0..31
** Free blocks form runs of contiguous blocks; the free list links the run
** heads. Allocation takes blocks from the end of a run, so only the head's
** count changes. A member's mark names its run's head (a hint, checked
** before use), so a freed range merges with one free neighbour: the head
** run when the range ends where it begins, else the run just before it
** (one pending mark a free: two runs may touch). Runs grow instead of
** shredding. A stale hint (a crash between two writes) fails the check
** and at worst leaks the freed blocks; it never lists a block twice.
** Every block of a run is marked, so freeing any block twice is caught,
** and a mark names its own offset, so a copied block is not free.
**
** Blocks from top to the end of the file are the tail: never allocated
** since the file was last trimmed. The file grows geometrically (by a
** quarter, at least 16 blocks), so n allocations cost O(n) in all, and
** close trims the tail away. Space the file grows by reads as zeros, so a
** block taken from it for the first time is not zeroed again (touching it
** would fault the page in for nothing); anything else is zeroed.
**
** Invariants (fm_check verifies them):
**   - the file size, top and every block offset are multiples of the block
**     size; block size <= top <= file size
**   - each free block is marked free and on the free list exactly once;
**     free_blocks and free_runs count them
**   - the newest valid header slot describes the file
** The map is private (MAP_PRIVATE) when the file is writable: stores
** reach the file only through a commit's journal and its checkpoint
** (txn.c), so whatever a crash interrupts, the file is a commit's. The
** order below, inside the map, is kept from before the journal, for
** files an older fmap left: the header is the commit point. Before it,
** only blocks the free list does not reach are written (the marks of
** blocks being freed). A change to a mark the list does reach (a run's
** count, a link) is recorded in the header as its pending mark and
** written after it; opening redoes it, so a kill between the two loses
** nothing. Allocation zeroes blocks only
** after the header has unlisted them, and hands out only blocks that
** carry a valid mark. The worst a kill does is leak the blocks of the
** free or allocate it interrupted: they stay marked, fm_check reports
** them, and opening with FM_REPAIR lists them again.
*/
#define _GNU_SOURCE
#include "fm.h"
#include "fmint.h"

#define validate_header fm__validate_header
#define ctl_ptr fm__ctl_ptr
#define marked fm__marked
#define read_run fm__read_run
#define ofd_lock fm__ofd_lock
#define ofd_held fm__ofd_held

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
#include <unistd.h>

#define SLOT_SIZE   128
#define CTL_START   256
#define HDR_SUMMED  120
#define MARK_SIZE   40
#define MIN_GROWTH  16     /* blocks */
#define REPAIR_SLACK (1ull << 30)   /* see read_header */

static const unsigned char HDR_MAGIC[8] =
  { 0x89, 'f', 'm', 'a', 'p', '\r', '\n', 0x1a };
static const unsigned char FREE_MAGIC[8] =
  { 'f', 'm', 'a', 'p', 'F', 'R', 'E', 'E' };


/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

int fm__fail (fm_file *f, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->msg, sizeof f->msg, fmt, ap);
  va_end(ap);
  return rc;
}

int fm__sysfail (fm_file *f, int err) {
  f->msg[0] = '\0';
  return err ? err : EIO;
}


/* ---------------------------------------------------------------------- */
/* Header                                                                  */
/* ---------------------------------------------------------------------- */

static size_t ctl_area_size (uint32_t bs) {
  return (bs - CTL_START) / 2;
}

/* The fields of a header slot after its magic and version, as the table
** at the top of this file lists them: X(offset, width in bits, field of
** fm_header). encode_slot and decode_slot both walk this one list. */
#define SLOT_FIELDS(X) \
  X(12, 32, block_size) \
  X(16, 64, seq) \
  X(24, 64, top) \
  X(32, 64, free_head) \
  X(40, 64, free_blocks) \
  X(48, 64, free_runs) \
  X(56, 32, ctl_len) \
  X(60, 32, ctl_area) \
  X(64, 64, ctl_sum) \
  X(72, 64, pend_off) \
  X(80, 64, pend_next) \
  X(88, 64, pend_blocks)

static void encode_slot (const fm_header *h, unsigned char *s) {
#define PUT_FIELD(at, bits, field)  put##bits(s + (at), h->field);
  memset(s, 0, SLOT_SIZE);
  memcpy(s, HDR_MAGIC, 8);
  put32(s + 8, FM_VERSION);
  SLOT_FIELDS(PUT_FIELD)
  put64(s + HDR_SUMMED, checksum(s, HDR_SUMMED, 0));
#undef PUT_FIELD
}

static void decode_slot (const unsigned char *s, fm_header *h) {
#define GET_FIELD(at, bits, field)  h->field = get##bits(s + (at));
  SLOT_FIELDS(GET_FIELD)
#undef GET_FIELD
}

static void put_mark (fm_file *f, uint64_t off, uint64_t next,
                      uint64_t blocks);



/* Commits the live header: writes it into the slot not written last, then
** writes its pending mark. The fences keep the compiler from moving
** stores across the commit, so that a kill sees them in program order:
** the marks written before it, then the header, then the pending mark. */
static void put_header (fm_file *f) {
  (void)fm_touch(f, 0, 2 * SLOT_SIZE);   /* callers touched it already */
  f->h.seq++;
  f->slot ^= 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  encode_slot(&f->h, f->map + (size_t)f->slot * SLOT_SIZE);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (f->h.pend_off != 0) {
    put_mark(f, f->h.pend_off, f->h.pend_next, f->h.pend_blocks);
    f->h.pend_off = f->h.pend_next = f->h.pend_blocks = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
  }
}

/* Whether off is 0 or a block offset in [bs, top). */
static int link_ok (const fm_header *h, uint64_t off) {
  return off == 0 || (off >= h->block_size && off < h->top &&
                      off % h->block_size == 0);
}

/* Checks a decoded header against the file's size; 0 or FM_ECORRUPT. */
int fm__validate_header (fm_file *f, const fm_header *h, uint64_t size) {
  uint64_t bs = h->block_size;
  if (bs < FM_BLOCKSIZE || bs % FM_BLOCKSIZE != 0 || bs > FM_MAX_BLOCKSIZE)
    return fail(f, FM_ECORRUPT, "bad block size %llu (not a multiple of "
                "4096 up to 2^30)", (unsigned long long)bs);
  if (size % bs != 0)
    return fail(f, FM_ECORRUPT, "file size %llu is not a multiple of the "
                "block size %llu", (unsigned long long)size,
                (unsigned long long)bs);
  if (h->top < bs || h->top > size || h->top % bs != 0)
    return fail(f, FM_ECORRUPT, "allocated area ends at %llu, outside the "
                "file (size %llu) or not block-aligned",
                (unsigned long long)h->top, (unsigned long long)size);
  if (h->free_head != 0 && (h->free_head < bs || h->free_head >= h->top ||
                            h->free_head % bs != 0))
    return fail(f, FM_ECORRUPT, "free-list head %llu is out of range or "
                "not block-aligned", (unsigned long long)h->free_head);
  if (h->free_blocks > h->top / bs - 1 || h->free_runs > h->free_blocks ||
      (h->free_head == 0) != (h->free_runs == 0) ||
      (h->free_runs == 0) != (h->free_blocks == 0))
    return fail(f, FM_ECORRUPT, "free-list counts are inconsistent (%llu "
                "blocks in %llu runs, head %llu)",
                (unsigned long long)h->free_blocks,
                (unsigned long long)h->free_runs,
                (unsigned long long)h->free_head);
  if (h->pend_off != 0 && (!link_ok(h, h->pend_off) ||
                           !link_ok(h, h->pend_next) ||
                           h->pend_blocks > (h->top - h->pend_off) / bs))
    return fail(f, FM_ECORRUPT, "pending mark at %llu (next %llu, %llu "
                "blocks) is out of range", (unsigned long long)h->pend_off,
                (unsigned long long)h->pend_next,
                (unsigned long long)h->pend_blocks);
  if (h->ctl_area > 1 || h->ctl_len > ctl_area_size(h->block_size))
    return fail(f, FM_ECORRUPT, "control data length %lu or area %lu is "
                "out of range", (unsigned long)h->ctl_len,
                (unsigned long)h->ctl_area);
  return 0;
}

const unsigned char *fm__ctl_ptr (const fm_file *f, uint32_t area) {
  return f->map + CTL_START + area * ctl_area_size(f->h.block_size);
}


/* ---------------------------------------------------------------------- */
/* Free marks                                                              */
/* ---------------------------------------------------------------------- */

static void put_mark (fm_file *f, uint64_t off, uint64_t next,
                      uint64_t blocks) {
  unsigned char *p = f->map + off;
  (void)fm_touch(f, off, MARK_SIZE);     /* callers touched it already */
  memcpy(p, FREE_MAGIC, 8);
  put64(p + 8, off);
  put64(p + 16, next);
  put64(p + 24, blocks);
  put64(p + 32, checksum(p, 32, 1));
}

int fm_is_free (const fm_file *f, uint64_t off) {
  const unsigned char *p = f->map + off;
  return memcmp(p, FREE_MAGIC, 8) == 0 && get64(p + 8) == off &&
         get64(p + 32) == checksum(p, 32, 1);
}

/* The run that ends where end begins, found through hints: the mark of a
** run's member names its head in the next field (a head's mark has its
** count there instead). A hint is followed at most a few hops and then
** validated, so a stale one only costs a merge. Returns the run's head,
** or 0 when none can be trusted. */
int fm__read_run (fm_file *f, uint64_t off, uint64_t *next,
                     uint64_t *blocks);

static uint64_t run_ending_at (fm_file *f, uint64_t end, uint64_t *next,
                               uint64_t *blocks) {
  uint64_t bs = f->h.block_size, t = end - bs, h = t;
  int hop;
  if (end < 2 * bs || !fm_is_free(f, t)) return 0;
  for (hop = 0; get64(f->map + h + 24) == 0; hop++) {
    if (hop == 4) return 0;
    h = get64(f->map + h + 16);
    if (h < bs || h > t || h % bs != 0 || !fm_is_free(f, h)) return 0;
  }
  if (read_run(f, h, next, blocks) != 0 || *blocks > (end - h) / bs ||
      h + *blocks * bs != end)
    return 0;
  return h;
}

/* Reads the run at off, validating it; 0 or FM_ECORRUPT. */
int fm__read_run (fm_file *f, uint64_t off, uint64_t *next,
                     uint64_t *blocks) {
  uint64_t bs = f->h.block_size;
  const unsigned char *p;
  if (off < bs || off >= f->h.top || off % bs != 0)
    return fail(f, FM_ECORRUPT, "free list is corrupt: run at %llu is "
                "outside the allocated area", (unsigned long long)off);
  p = f->map + off;
  *next = get64(p + 16);
  *blocks = get64(p + 24);
  if (off == f->h.pend_off) {   /* read-only: the header's word is newer */
    *next = f->h.pend_next;
    *blocks = f->h.pend_blocks;
  }
  if (!fm_is_free(f, off) || *blocks == 0)
    return fail(f, FM_ECORRUPT, "free list is corrupt: block %llu is not "
                "marked as a free run", (unsigned long long)off);
  if (*blocks > (f->h.top - off) / bs)
    return fail(f, FM_ECORRUPT, "free list is corrupt: run at %llu of %llu "
                "blocks passes the allocated area", (unsigned long long)off,
                (unsigned long long)*blocks);
  if (*next != 0 && (*next < bs || *next >= f->h.top || *next % bs != 0))
    return fail(f, FM_ECORRUPT, "free list is corrupt: run at %llu links "
                "to %llu", (unsigned long long)off,
                (unsigned long long)*next);
  return 0;
}


/* ---------------------------------------------------------------------- */
/* Mapping and growth                                                      */
/* ---------------------------------------------------------------------- */

static void reset (fm_file *f) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  f->wal_fd = -1;
}

/* Sets up what the transaction layer needs once the map and the header
** are known: the flags of each block, and the block size's shift. */
static int txn_init (fm_file *f) {
  uint32_t bs = f->h.block_size;
  f->bshift = 0;
  if ((bs & (bs - 1)) == 0)
    while ((1u << f->bshift) < bs) f->bshift++;
  f->need = (f->fd >= 0 && !f->readonly) ? FM_B_DIRTY : 0;
  f->gen = 1;
  fm_set_spill(f, FM_SPILL);
  return fm__txn_resize(f) == 0 ? 0 : sysfail(f, ENOMEM);
}

static void release_all (fm_file *f) {
  fm__txn_free(f);
  if (f->map != NULL) munmap(f->map, f->mapsize);
  if (f->fd >= 0) close(f->fd);   /* also drops the flock */
  free(f->path);
  f->map = NULL;
  f->fd = -1;
  f->path = NULL;
  f->gate = 0;   /* the descriptor's locks went with it */
}

static int cut_short (fm_file *f);

/* Grows the file and the map to at least need bytes. On failure, the
** file and the map are as they were. */
static int grow (fm_file *f, uint64_t need) {
  uint64_t bs = f->h.block_size;
  uint64_t old = f->mapsize;
  uint64_t step = old / 4;
  uint64_t size;
  void *p;
  if (step < MIN_GROWTH * bs) step = MIN_GROWTH * bs;
  size = old + step;
  if (size < need) size = need;
  size = (size + bs - 1) / bs * bs;
  if (size < old || size > (uint64_t)INT64_MAX)
    return fail(f, EFBIG, "file would exceed the largest size");
  if (f->fd >= 0) {
    int cut = cut_short(f);   /* else the growth would hide the cut */
    if (cut != 0) return cut;
  }
  if (f->fd >= 0) {
    /* Reserve the space on disk now (a sparse hole that later fails to
    ** fill would raise SIGBUS on a write through the map), but past the
    ** end of the file; then set the size in one step, so that a kill or
    ** a failure halfway never leaves a size that is not a multiple of
    ** the block size. Where fallocate is missing, the file is sparse. */
    int rc = fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t)old,
                       (off_t)(size - old)) == 0 ? 0 : errno;
    if (rc == EOPNOTSUPP || rc == ENOSYS) rc = 0;
    if (rc == 0 && ftruncate(f->fd, (off_t)size) != 0) rc = errno;
    if (rc != 0) {
      int e = ftruncate(f->fd, (off_t)old);   /* undo a partial growth */
      (void)e;
      return sysfail(f, rc);
    }
  }
  p = mremap(f->map, old, size, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    int err = errno;
    if (f->fd >= 0 && ftruncate(f->fd, (off_t)old) != 0) { /* keep going */ }
    return sysfail(f, err);
  }
  f->map = p;
  f->mapsize = size;
  if (fm__txn_resize(f) != 0) {
    /* No flags for the new blocks: give the growth back. Shrinking a
    ** map in place does not fail. */
    p = mremap(f->map, size, old, 0);
    if (p != MAP_FAILED) f->map = p;
    f->mapsize = old;
    if (f->fd >= 0 && ftruncate(f->fd, (off_t)old) != 0) { /* as above */ }
    return sysfail(f, ENOMEM);
  }
  f->remaps++;
  return 0;   /* clean_from stays: the new space reads as zeros */
}

static int map_new (fm_file *f, uint32_t bs, int anonymous) {
  int prot = PROT_READ | PROT_WRITE;
  void *p;
  f->h.block_size = bs;
  f->h.top = bs;
  if (anonymous)
    p = mmap(NULL, bs, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  else
    p = mmap(NULL, bs, prot, MAP_PRIVATE, f->fd, 0);
  if (p == MAP_FAILED) return sysfail(f, errno);
  f->map = p;
  f->mapsize = bs;
  f->clean_from = bs;
  f->ctop = bs;
  f->version = FM_VERSION;
  if (txn_init(f) != 0) return ENOMEM;
  f->need = 0;     /* block 0 is written to the file directly, below */
  memset(f->map, 0, bs);
  f->slot = 1;
  f->h.ctl_sum = checksum(NULL, 0, 2);
  put_header(f);   /* into slot 0 */
  put_header(f);   /* and slot 1: both copies valid from the start */
  if (!anonymous) {
    /* The new file's first state, the one a crash before the first
    ** commit leaves. */
    if (pwrite(f->fd, f->map, bs, 0) != (ssize_t)bs)
      return sysfail(f, errno ? errno : EIO);
    f->need = FM_B_DIRTY;
  }
  return 0;
}

static int check_block_size (fm_file *f, uint32_t bs) {
  if (bs < FM_BLOCKSIZE || bs % FM_BLOCKSIZE != 0 || bs > FM_MAX_BLOCKSIZE)
    return fail(f, FM_EMISUSE, "block size %lu is not a multiple of 4096 "
                "up to 2^30", (unsigned long)bs);
  return 0;
}

/* Opens path into f->fd for create and open: a regular file or nothing.
** O_NONBLOCK, cleared once the file is known to be regular, keeps the
** open of a FIFO with no writer from blocking forever (a read-only open
** would wait for one). Returns 0 or an error code, with f released. */
static int open_regular (fm_file *f, const char *path, int flags) {
  struct stat st;
  int rc;
  f->fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0644);
  if (f->fd < 0) goto syserr;
  if (fstat(f->fd, &st) != 0) goto syserr;
  if (!S_ISREG(st.st_mode)) {
    release_all(f);
    return fail(f, FM_ECORRUPT, "not a regular file");
  }
  if (fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK) != 0)
    goto syserr;
  return 0;
syserr:
  rc = errno;
  release_all(f);
  return sysfail(f, rc);
}

/* fm_create's work. With fresh, a file that has bytes already is left
** alone (EEXIST); a missing one is made, and an empty one, which no
** writer holds, is taken: a creator that died before its first write
** leaves one, and a creator that is still at it holds the lock. The
** size is read again under the lock, where no other creator can be. */
static int create_file (fm_file *f, const char *path, uint32_t bs,
                        int fresh) {
  struct stat st;
  int rc;
  reset(f);
  if ((rc = check_block_size(f, bs)) != 0) return rc;
  if ((f->path = strdup(path)) == NULL) return sysfail(f, ENOMEM);
  if ((rc = open_regular(f, path, O_RDWR | O_CREAT)) != 0) return rc;
  if (fresh) {   /* before the lock: an open file is no creator's */
    if (fstat(f->fd, &st) != 0) goto syserr;
    if (st.st_size != 0) goto exists;
  }
  /* Lock before truncating, so a file another process has open for
  ** writing is refused rather than emptied under it. */
  if (flock(f->fd, LOCK_EX | LOCK_NB) != 0) {
    rc = errno;
    release_all(f);
    if (rc == EWOULDBLOCK)
      return fail(f, rc, "file is locked: another BlockFile has it open");
    return sysfail(f, rc);
  }
  if (ofd_lock(f->fd, F_WRLCK, FM_LOCK_WRITER, 0) != 0) goto syserr;
  if (!fresh && !fm__gate(f, 1)) {
    release_all(f);
    return fail(f, EWOULDBLOCK, "file is open for reading by another "
                "BlockFile: it cannot be emptied under it");
  }
  if (fresh) {
    if (fstat(f->fd, &st) != 0) goto syserr;
    if (st.st_size != 0) goto exists;    /* another creator finished */
  }
  else if (ftruncate(f->fd, 0) != 0) goto syserr;
  {   /* a journal left beside the old file must not replay over this */
    char *j = fm_journal_path(path);
    if (j == NULL) { errno = ENOMEM; goto syserr; }
    if (unlink(j) != 0 && errno != ENOENT) { free(j); goto syserr; }
    free(j);
  }
  rc = posix_fallocate(f->fd, 0, bs);
  if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL)
    rc = ftruncate(f->fd, bs) == 0 ? 0 : errno;
  if (rc != 0) { release_all(f); return sysfail(f, rc); }
  if ((rc = map_new(f, bs, 0)) != 0) { release_all(f); return rc; }
  fm__gate(f, 0);   /* readers may come now: the file is whole */
  return 0;
exists:
  release_all(f);
  return fail(f, EEXIST, "the file exists");
syserr:
  rc = errno;
  release_all(f);
  return sysfail(f, rc);
}

int fm_create (const char *path, uint32_t bs, fm_file *f) {
  return create_file(f, path, bs, 0);
}

int fm_create_new (const char *path, uint32_t bs, fm_file *f) {
  return create_file(f, path, bs, 1);
}

int fm_anonymous (uint32_t bs, fm_file *f) {
  int rc;
  reset(f);
  if ((rc = check_block_size(f, bs)) != 0) return rc;
  if ((rc = map_new(f, bs, 1)) != 0) release_all(f);
  return rc;
}

/* Picks the newest slot that is intact and agrees with the file. With
** repair, the file may be shorter than the slot says: *size is raised to
** what it must be, for the caller to extend it. */
static int read_header (fm_file *f, const unsigned char *blk,
                        uint64_t *size, int repair) {
  int i, rc = 0, seen_magic = 0, seen_sum = 0;
  fm_header h[2];
  int ok[2];
  uint32_t vers[2] = { 0, 0 };
  for (i = 0; i < 2; i++) {
    const unsigned char *s = blk + i * SLOT_SIZE;
    ok[i] = 0;
    if (memcmp(s, HDR_MAGIC, 8) != 0) continue;
    seen_magic = 1;
    if (get64(s + HDR_SUMMED) != checksum(s, HDR_SUMMED, 0)) continue;
    seen_sum = 1;
    if (get32(s + 8) < FM_MIN_VERSION || get32(s + 8) > FM_VERSION) {
      rc = fail(f, FM_ECORRUPT, "unsupported format version %lu (this "
                "fmap reads versions %d to %d)", (unsigned long)get32(s + 8),
                FM_MIN_VERSION, FM_VERSION);
      continue;
    }
    decode_slot(s, &h[i]);
    vers[i] = get32(s + 8);
    ok[i] = 1;
  }
  if (!seen_magic) return fail(f, FM_ECORRUPT, "not an fmap file");
  if (!seen_sum)
    return fail(f, FM_ECORRUPT, "corrupt header (checksum mismatch in "
                "both copies)");
  /* The newest intact slot is the file's state. An intact slot whose
  ** fields disagree with the file is damage or tampering, not a torn
  ** write: refuse rather than fall back to an older state silently. */
  i = (ok[1] && (!ok[0] || h[1].seq > h[0].seq)) ? 1 : 0;
  if (!ok[i]) return rc;
  if (repair) {   /* the free list is rebuilt: none of it is trusted */
    uint64_t bs = h[i].block_size, want;
    h[i].free_head = h[i].free_blocks = h[i].free_runs = 0;
    h[i].pend_off = h[i].pend_next = h[i].pend_blocks = 0;
    /* A power loss can keep a header written after a growth and lose
    ** the growth itself (the size is metadata, committed apart): such a
    ** file is extended to what its header says, within what one growth
    ** of it can be. grow() adds a quarter or MIN_GROWTH blocks, or what
    ** an allocation needs, which nothing bounds: taken here as four
    ** times the file and 256 blocks, the 256 blocks at most 1 GiB (or
    ** MIN_GROWTH blocks, if more), so that a header claiming huge
    ** blocks cannot claim a huge file. A claim past that, or a file
    ** shorter than one of its blocks (every fmap file holds one), is
    ** damage or a hostile header: it is refused below, and the file is
    ** left as it is. */
    if (bs >= FM_BLOCKSIZE && bs % FM_BLOCKSIZE == 0 &&
        bs <= FM_MAX_BLOCKSIZE && *size >= bs && *size <= UINT64_MAX / 8) {
      uint64_t slack = 256 * bs, most = MIN_GROWTH * bs;
      if (most < REPAIR_SLACK) most = REPAIR_SLACK;
      if (slack > most) slack = most;
      want = (*size + bs - 1) / bs * bs;
      if (h[i].top % bs == 0 && h[i].top > want &&
          h[i].top - want <= 3 * want + slack)
        want = h[i].top;
      *size = want;
    }
  }
  if ((rc = validate_header(f, &h[i], *size)) != 0) return rc;
  f->h = h[i];
  f->slot = i;
  f->version = vers[i];
  return 0;
}

/* Whether the block at off carries a free mark, intact or torn: the magic
** and its own offset, whatever the checksum says. */
int fm__marked (const fm_file *f, uint64_t off) {
  const unsigned char *p = f->map + off;
  return memcmp(p, FREE_MAGIC, 8) == 0 && get64(p + 8) == off;
}

/* put_mark, skipped when the block already says so. */
static int set_mark (fm_file *f, uint64_t off, uint64_t next,
                     uint64_t blocks) {
  const unsigned char *p = f->map + off;
  if (fm_is_free(f, off) && get64(p + 16) == next &&
      get64(p + 24) == blocks)
    return 0;
  if (fm_touch(f, off, MARK_SIZE) != 0) return ENOMEM;
  put_mark(f, off, next, blocks);
  return 0;
}

/* Rebuilds the free list from the marks: every block carrying one is
** free, contiguous ones form a run, the runs listed in file order. An
** empty list is committed first, so that a kill while the marks are
** rewritten leaves them unlisted but marked, for the next repair. */
static int repair (fm_file *f) {
  uint64_t bs = f->h.block_size, b = f->h.top / bs;
  uint64_t head = 0, blocks = 0, runs = 0;
  if (fm_touch(f, 0, CTL_START) != 0) return ENOMEM;
  put_header(f);   /* read_header emptied the list */
  while (b > 1) {
    uint64_t end = b, i;
    if (!marked(f, (b - 1) * bs)) { b--; continue; }
    while (b > 1 && marked(f, (b - 1) * bs)) b--;
    for (i = b + 1; i < end; i++)
      if (set_mark(f, i * bs, 0, 0) != 0) return ENOMEM;
    if (set_mark(f, b * bs, head, end - b) != 0) return ENOMEM;
    head = b * bs;
    blocks += end - b;
    runs++;
  }
  f->h.free_head = head;
  f->h.free_blocks = blocks;
  f->h.free_runs = runs;
  put_header(f);
  return 0;
}

/* An open that fails after repair extended the file (size before, or -1
** if it did not) gives the growth back: a refused file is left as it was.
** Unmaps first, since the map may reach past the old end. */
static void unextend (fm_file *f, off_t before) {
  if (before < 0 || f->fd < 0) return;
  if (f->map != NULL) {
    munmap(f->map, (size_t)f->mapsize);
    f->map = NULL;
  }
  if (ftruncate(f->fd, before) != 0) { /* the open's own error stands */ }
}

int fm_open (const char *path, int flags, fm_file *f) {
  unsigned char blk[CTL_START];
  struct stat st;
  ssize_t got;
  uint64_t size, nframes = 0, jsize = 0, i;
  fm_frame *frames = NULL;
  int rc, readonly = (flags & FM_READONLY) != 0, adopt;
  off_t before = -1;   /* the size before a repair extended the file */
  reset(f);
  if ((flags & ~(FM_READONLY | FM_REPAIR)) != 0 ||
      flags == (FM_READONLY | FM_REPAIR))
    return fail(f, FM_EMISUSE, "bad open flags %d", flags);
  f->readonly = readonly;
  if ((f->path = strdup(path)) == NULL) return sysfail(f, ENOMEM);
  if ((rc = open_regular(f, path, readonly ? O_RDONLY : O_RDWR)) != 0)
    return rc;
  if (readonly) {
    /* Beside a writer, a reader sees the last commit as of its open. It
    ** waits only while the writer itself writes into the file (a
    ** checkpoint, or the trim at close): a short write of what the
    ** journal already holds, and two syncs. */
    if ((rc = ofd_lock(f->fd, F_RDLCK, FM_LOCK_READERS, 1)) != 0) {
      release_all(f);
      return sysfail(f, rc);
    }
  } else if (flock(f->fd, LOCK_EX | LOCK_NB) != 0 ||
             ofd_lock(f->fd, F_WRLCK, FM_LOCK_WRITER, 0) != 0) {
    rc = errno;
    release_all(f);
    if (rc == EWOULDBLOCK || rc == EAGAIN || rc == EACCES)
      return fail(f, EWOULDBLOCK, "file is locked: another BlockFile has "
                  "it open");
    return sysfail(f, rc);
  }
  /* A journal left by a crash, or by a writer that closed beside
  ** readers: a reader lays its commits over its map (below); a writer
  ** copies them into the file, unless readers are mapped, whose view the
  ** copy would change under them: then it adopts the journal, laying its
  ** commits over its own map and appending after them. */
  adopt = !readonly && !fm__gate(f, 1);
  if ((rc = fm__recover(f, (readonly ? FM_RECOVER_READ : adopt ?
                        FM_RECOVER_ADOPT : FM_RECOVER_APPLY) |
                        ((flags & FM_REPAIR) ? FM_RECOVER_REPAIR : 0), &frames,
                        &nframes, &jsize)) != 0) {
    release_all(f);
    return rc;
  }
  fm__gate(f, 0);
  if (fstat(f->fd, &st) != 0) goto syserr;
  if (nframes > 0 && jsize > (uint64_t)st.st_size) {
    if (readonly) {
      free(frames);
      release_all(f);
      return fail(f, FM_ECORRUPT, "its journal holds a growth the file "
                  "lacks: open it for writing once to recover");
    }
    /* adopting: a growth a power loss lost; the space is past what any
    ** reader maps. Synced: the adopted journal counts on it. */
    if (ftruncate(f->fd, (off_t)jsize) != 0 || fsync(f->fd) != 0)
      goto syserr;
    st.st_size = (off_t)jsize;
  }
  if ((uint64_t)st.st_size < FM_BLOCKSIZE) {
    free(frames);
    release_all(f);
    return fail(f, FM_ECORRUPT, st.st_size == 0 ? "not an fmap file "
                "(empty)" : "not an fmap file (shorter than one block)");
  }
  got = pread(f->fd, blk, sizeof blk, 0);
  for (i = nframes; i-- > 0; ) {   /* the newest committed block 0 */
    if (frames[i].off == 0) {
      got = pread(f->wal_fd, blk, sizeof blk, (off_t)frames[i].pos);
      break;
    }
  }
  if (got < 0) goto syserr;
  if (got != (ssize_t)sizeof blk) {
    free(frames);
    release_all(f);
    return fail(f, FM_ECORRUPT, "not an fmap file (short read)");
  }
  size = (uint64_t)st.st_size;
  if ((rc = read_header(f, blk, &size, (flags & FM_REPAIR) != 0)) != 0) {
    free(frames);
    release_all(f);
    return rc;
  }
  if (size > (uint64_t)st.st_size) {   /* repair: a growth was lost */
    off_t more = (off_t)(size - (uint64_t)st.st_size);
    struct statvfs fs;
    if (size > (uint64_t)INT64_MAX) { errno = EFBIG; goto syserr; }
    /* Checked first, so that a refusal reserves nothing: fallocate can
    ** take part of the space before it fails. Where the disk cannot
    ** tell, fallocate's own failure below is the check. */
    if (fstatvfs(f->fd, &fs) == 0 && fs.f_frsize != 0 &&
        fs.f_bavail < ((uint64_t)more + fs.f_frsize - 1) / fs.f_frsize) {
      uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
      free(frames);
      release_all(f);
      return fail(f, ENOSPC, "restoring a lost growth needs %llu bytes "
                  "(the header says the file is %llu), the disk has %llu "
                  "free", (unsigned long long)more,
                  (unsigned long long)size, (unsigned long long)avail);
    }
    /* synced: the journal this open starts counts on the file holding
    ** every block below top (fm__recover) */
    if ((fallocate(f->fd, FALLOC_FL_KEEP_SIZE, st.st_size, more) != 0 &&
         errno != EOPNOTSUPP && errno != ENOSYS) ||
        ftruncate(f->fd, (off_t)size) != 0 || fsync(f->fd) != 0) {
      rc = errno;   /* give back what fallocate took past the end */
      if (ftruncate(f->fd, st.st_size) != 0) { /* the error above stands */ }
      errno = rc;
      goto syserr;
    }
    before = st.st_size;
    st.st_size = (off_t)size;
  }
  /* A sparse copy of the file (cp --sparse) has holes that take disk
  ** space only when first written: on a full disk, that store would
  ** raise SIGBUS (or a read of a hole would, on tmpfs). Reserved now, a
  ** full disk is this open's error instead. Where the file system has no
  ** fallocate, its holes stay holes. */
  if (!readonly && fallocate(f->fd, FALLOC_FL_KEEP_SIZE, 0, st.st_size) != 0
      && errno != EOPNOTSUPP && errno != ENOSYS)
    goto syserr;
  /* Private: stores never reach the file but through a commit (txn.c).
  ** A reader maps it shared, unless it lays a journal over it. */
  f->map = mmap(NULL, (size_t)st.st_size, readonly && nframes == 0 ?
                PROT_READ : PROT_READ | PROT_WRITE, readonly &&
                nframes == 0 ? MAP_SHARED : MAP_PRIVATE, f->fd, 0);
  if (f->map == MAP_FAILED) { f->map = NULL; goto syserr; }
  f->mapsize = (uint64_t)st.st_size;
  if (nframes > 0) {
    uint64_t bs = f->h.block_size;
    for (i = 0; i < nframes; i++) {
      if (frames[i].off + bs > f->mapsize ||
          pread(f->wal_fd, f->map + frames[i].off, bs,
                (off_t)frames[i].pos) != (ssize_t)bs)
        goto syserr;
    }
    if (readonly) {
      free(frames);
      frames = NULL;
      close(f->wal_fd);
      f->wal_fd = -1;
      if (mprotect(f->map, f->mapsize, PROT_READ) != 0) goto syserr;
    }
  }
  if (txn_init(f) != 0) {
    unextend(f, before);
    free(frames);
    release_all(f);
    return ENOMEM;
  }
  if (frames != NULL) {
    /* adopted: the journal holds these blocks, for the next checkpoint */
    uint64_t bs = f->h.block_size;
    for (i = 0; i < nframes; i++) {
      uint64_t b = frames[i].off / bs;
      if (f->bflag[b] & FM_B_INWAL) continue;
      if (fm__txn_inwal(f, b) != 0) goto nomem;
    }
    free(frames);
    frames = NULL;
  }
  /* A tail left by a crash may hold old bytes; growth from here on
  ** (posix_fallocate, ftruncate) reads as zeros. */
  f->clean_from = f->mapsize;
  f->ctop = f->h.top;
  if (checksum(ctl_ptr(f, f->h.ctl_area), f->h.ctl_len, 2) != f->h.ctl_sum) {
    unextend(f, before);
    free(frames);
    release_all(f);
    return fail(f, FM_ECORRUPT, "corrupt control data (checksum "
                "mismatch)");
  }
  if (!readonly && f->h.pend_off != 0) {
    /* Redo the mark a kill may have cut off after the header, but only
    ** over a mark of that block, never over data. A read-only open
    ** keeps it in f->h, and read_run takes its word. */
    if (fm_touch(f, f->h.pend_off, MARK_SIZE) != 0) goto nomem;
    if (marked(f, f->h.pend_off))
      put_mark(f, f->h.pend_off, f->h.pend_next, f->h.pend_blocks);
    f->h.pend_off = f->h.pend_next = f->h.pend_blocks = 0;
  }
  if (!readonly && f->version < FM_VERSION) {
    /* Upgraded in the file now, synced, before any journal can exist: the
    ** version tells an older fmap, which would ignore a journal, to
    ** refuse the file. The slot written is the older one (put_header),
    ** with the newest's content: torn, it leaves the newest valid. */
    if (fm_touch(f, 0, CTL_START) != 0) goto nomem;
    put_header(f);
    if (pwrite(f->fd, f->map + (size_t)f->slot * SLOT_SIZE, SLOT_SIZE,
               (off_t)f->slot * SLOT_SIZE) != SLOT_SIZE) {
      if (errno == 0) errno = EIO;
      goto syserr;
    }
    if (fsync(f->fd) != 0) goto syserr;
    f->version = FM_VERSION;
  }
  if ((flags & FM_REPAIR) && repair(f) != 0) goto nomem;
  return 0;
nomem:
  free(frames);
  release_all(f);
  return sysfail(f, ENOMEM);
syserr:
  rc = errno;
  free(frames);
  unextend(f, before);
  release_all(f);
  return sysfail(f, rc);
}

/* Says in f->msg, after what went wrong (rc's text when f->msg is empty),
** that a close lost what changed since the last commit, if it fits. */
static void lost_since_commit (fm_file *f, int rc) {
  static const char lost[] = "; what changed since the last commit is lost";
  size_t n;
  if (f->msg[0] == '\0')
    snprintf(f->msg, sizeof f->msg, "%s", rc > 0 ? strerror(rc) : "failed");
  n = strlen(f->msg);
  if (strstr(f->msg, "holds the last commit") == NULL &&
      n + sizeof lost <= sizeof f->msg)
    memcpy(f->msg + n, lost, sizeof lost);
}

int fm_close (fm_file *f) {
  int rc = 0, txn = f->txn != 0;
  if (f->map == NULL) return 0;
  if (txn) fm_rollback(f);   /* an open transaction never commits */
  if (f->fd >= 0 && !f->readonly && !f->faulted &&
      (rc = cut_short(f)) != 0) {
    release_all(f);   /* the map is zeros now: nothing more to write */
    return rc;
  }
  if (f->fd >= 0 && !f->readonly && !f->faulted) {
    /* What changed since the last commit commits now, durably; then the
    ** journal goes into the file, and away. On failure the file is as
    ** at the last commit, and its journal stays for the next open. With
    ** readers mapped, the journal stays too (the next writer's open
    ** copies it in), and the file keeps its tail. */
    if ((rc = fm_commit(f, 1)) != 0) {
      /* A failure a retry may clear (disk full, an I/O error, no
      ** memory) left every change in the map and dirty: f stays open,
      ** nothing lost, for the caller to close again or discard. Not
      ** after a rollback here: the caller would hold views and caches
      ** of what it undid. */
      if (rc > 0 && !txn && !f->nosync && !f->faulted) return rc;
      if (f->ndirty > 0) lost_since_commit(f, rc);
      release_all(f);
      return rc;
    }
    if (f->faulted) {   /* a fault after the commit: keep the journal */
      fm_fault_reason(f);
      release_all(f);
      return FM_ELOST;
    }
    if (!fm__gate(f, 1)) {
      release_all(f);
      f->msg[0] = '\0';
      return 0;
    }
    if ((rc = fm_checkpoint(f)) != 0) {
      release_all(f);
      return rc;
    }
    if (f->wal_fd >= 0) {
      char *j = fm_journal_path(f->path);
      if (j != NULL) {
        if (unlink(j) != 0) { /* a journal copied in replays harmlessly */ }
        free(j);
      }
    }
  }
  /* The trim keeps every block below top, which is all a journal left
  ** behind counts on (its header's top: fm__recover). */
  if (f->fd >= 0 && !f->readonly && !f->faulted && f->mapsize > f->h.top) {
    /* Trim the tail: the file on disk is as long as what it holds. */
    if (munmap(f->map, f->mapsize) != 0) rc = errno;
    f->map = NULL;
    if (ftruncate(f->fd, (off_t)f->h.top) != 0 && rc == 0) rc = errno;
  }
  release_all(f);
  f->msg[0] = '\0';
  return rc;
}


void fm_discard (fm_file *f) {
  if (f->map == NULL) return;
  release_all(f);
  f->msg[0] = '\0';
}

int fm_close_final (fm_file *f) {
  int rc = fm_close(f);
  if (f->map != NULL) {   /* the commit failed and kept it: drop that */
    if (f->ndirty > 0) lost_since_commit(f, rc);
    release_all(f);
  }
  return rc;
}

int fm_fault (fm_file *f) {
  struct stat st;   /* fstat may be called from a handler */
  void *p;
  if (f->map == NULL) return EINVAL;
  f->lost_size = (f->fd >= 0 && fstat(f->fd, &st) == 0) ?
                 (uint64_t)st.st_size : UINT64_MAX;
  p = mmap(f->map, f->mapsize, f->readonly ? PROT_READ : PROT_READ |
           PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return errno;
  f->faulted = 1;
  return 0;
}

/* Whether the file is shorter than the map: cut short under it, by another
** program or by the script, with no page of the cut touched yet. Then
** the map is replaced as a fault would have it, so that nothing the
** engine does next extends the file with zeros or writes into it, and
** FM_ELOST returned, f->msg saying how. */
static int cut_short (fm_file *f) {
  struct stat st;
  if (fstat(f->fd, &st) != 0 || (uint64_t)st.st_size >= f->mapsize)
    return 0;
  fm_fault(f);
  fm_fault_reason(f);
  return FM_ELOST;
}

const char *fm_fault_reason (fm_file *f) {
  if (f->lost_size < f->mapsize)
    snprintf(f->msg, sizeof f->msg, "the file was truncated to %llu "
             "bytes under its map of %llu", (unsigned long long)f->lost_size,
             (unsigned long long)f->mapsize);
  else
    snprintf(f->msg, sizeof f->msg, "a page of its map could not be read "
             "or written: an I/O error, or no disk space for a hole");
  return f->msg;
}


/* ---------------------------------------------------------------------- */
/* Allocation                                                              */
/* ---------------------------------------------------------------------- */

/* Takes n blocks from the end of a run on the free list, first fit among
** the first FIT_SEARCH runs; *off = 0 when none fits. A single block
** always fits the head run; only multi-block requests walk. */
#define FIT_SEARCH 512

static int take_free (fm_file *f, fm_header *nh, uint64_t n,
                      uint64_t *off) {
  uint64_t bs = nh->block_size;
  uint64_t prev = 0, prev_blocks = 0, run = nh->free_head, i;
  int k, rc;
  *off = 0;
  for (k = 0; run != 0 && k < FIT_SEARCH && (uint64_t)k < nh->free_runs;
       k++) {
    uint64_t next, blocks;
    if ((rc = read_run(f, run, &next, &blocks)) != 0) return rc;
    if (blocks >= n) {
      uint64_t first = run + (blocks - n) * bs;
      /* Hand out only blocks marked free (zeroing unmarks them): a
      ** damaged list is an error, never a block given out twice. */
      for (i = 0; i < n; i++) {
        if (!fm_is_free(f, first + i * bs))
          return fail(f, FM_ECORRUPT, "free list is corrupt: block %llu "
                      "of the run at %llu is not marked free",
                      (unsigned long long)(first + i * bs),
                      (unsigned long long)run);
      }
      if (blocks == n) {   /* unlink the whole run */
        if (prev == 0) nh->free_head = next;
        else {
          nh->pend_off = prev;
          nh->pend_next = next;
          nh->pend_blocks = prev_blocks;
        }
        nh->free_runs--;
      } else {
        nh->pend_off = run;
        nh->pend_next = next;
        nh->pend_blocks = blocks - n;
      }
      nh->free_blocks -= n;
      *off = first;
      return 0;
    }
    prev = run;
    prev_blocks = blocks;
    run = next;
  }
  return 0;
}

/* Whether nh, the header a change is about to commit, would open again:
** counts a damaged list has thrown off must not make the file
** unopenable. 0 or FM_ECORRUPT. */
static int check_next (fm_file *f, const fm_header *nh) {
  char why[sizeof f->msg];
  if (validate_header(f, nh, f->mapsize) == 0) return 0;
  memcpy(why, f->msg, sizeof why);
  return fail(f, FM_ECORRUPT, "free list is corrupt: %s", why);
}

int fm_allocate (fm_file *f, uint64_t n, uint64_t *off) {
  uint64_t bs = f->h.block_size;
  fm_header nh = f->h;
  int rc;
  if (f->readonly)
    return fail(f, FM_EMISUSE, "the BlockFile is read-only");
  if (n == 0 || n > (UINT64_MAX - f->mapsize) / bs)
    return fail(f, FM_EMISUSE, "cannot allocate %llu blocks",
                (unsigned long long)n);
  if (f->ndirty >= f->spill_next) fm__spill(f);   /* no store half done */
  if ((rc = take_free(f, &nh, n, off)) != 0) return rc;
  if (*off == 0) {
    if (nh.top + n * bs > f->mapsize &&
        (rc = grow(f, nh.top + n * bs)) != 0)
      return rc;
    *off = nh.top;
    nh.top += n * bs;
  }
  if ((rc = check_next(f, &nh)) != 0) return rc;
  if ((rc = fm_touch(f, 0, CTL_START)) != 0 ||
      (nh.pend_off != 0 && (rc = fm_touch(f, nh.pend_off, MARK_SIZE)) != 0)
      || (*off < f->clean_from &&
          (rc = fm_touch(f, *off, (*off + n * bs < f->clean_from ?
                                   *off + n * bs : f->clean_from) - *off))
             != 0)) {
    return rc;   /* a growth stays, as tail */
  }
  f->h = nh;
  put_header(f);                       /* unlisted first, then zeroed */
  if (*off < f->clean_from) {
    uint64_t end = *off + n * bs;
    memset(f->map + *off, 0, (size_t)((end < f->clean_from ? end :
                                        f->clean_from) - *off));
  }
  if (*off + n * bs > f->clean_from) f->clean_from = *off + n * bs;
  return 0;
}

int fm_check_range (fm_file *f, uint64_t off, uint64_t n) {
  uint64_t bs = f->h.block_size, i;
  if (off % bs != 0)
    return fail(f, FM_EMISUSE, "offset %llu is not block-aligned",
                (unsigned long long)off);
  if (off == 0)
    return fail(f, FM_EMISUSE, "offset 0 is the control block");
  if (n == 0)
    return fail(f, FM_EMISUSE, "block count must be at least 1");
  if (off >= f->h.top || n > (f->h.top - off) / bs)
    return fail(f, FM_EMISUSE, "%llu block%s at offset %llu pass%s the "
                "allocated area (which ends at %llu)", (unsigned long long)n,
                n == 1 ? "" : "s", (unsigned long long)off,
                n == 1 ? "es" : "", (unsigned long long)f->h.top);
  for (i = 0; i < n; i++) {
    if (fm_is_free(f, off + i * bs))
      return fail(f, FM_EMISUSE, "block at offset %llu is free",
                  (unsigned long long)(off + i * bs));
  }
  return 0;
}

int fm_free (fm_file *f, uint64_t off, uint64_t n) {
  uint64_t bs = f->h.block_size, i, head = f->h.free_head;
  uint64_t next = 0, blocks = 0;
  fm_header nh = f->h;
  uint64_t left = 0, lnext = 0, lblocks = 0, hint;
  int rc, merge = 0;   /* 1: extends a run, -1: precedes the head run */
  if (f->readonly)
    return fail(f, FM_EMISUSE, "the BlockFile is read-only");
  if ((rc = fm_check_range(f, off, n)) != 0) {
    if (strstr(f->msg, " is free") != NULL) {   /* name the free block */
      for (i = 0; i < n && !fm_is_free(f, off + i * bs); i++) {}
      return fail(f, FM_EMISUSE, "double free: block at offset %llu is "
                  "already free", (unsigned long long)(off + i * bs));
    }
    return rc;
  }
  /* Read the head run and settle the new header before writing anything:
  ** a damaged list is an error that frees nothing. */
  if (head != 0 && (rc = read_run(f, head, &next, &blocks)) != 0)
    return rc;
  if (head != 0 && head + blocks * bs == off) {
    merge = 1;
    left = head; lnext = next; lblocks = blocks;
  } else if (head != 0 && off + n * bs == head) {
    merge = -1;
  } else if ((left = run_ending_at(f, off, &lnext, &lblocks)) != 0) {
    merge = 1;   /* the free run just before, wherever it is in the list */
  }
  nh.free_blocks += n;
  if (merge == 1) {                    /* that run's count grows */
    nh.pend_off = left;
    nh.pend_next = lnext;
    nh.pend_blocks = lblocks + n;
  } else {
    nh.free_head = off;
    if (merge == -1) {                 /* the old head becomes a member */
      nh.pend_off = head;
      nh.pend_next = off;              /* whose hint is the new head */
      nh.pend_blocks = 0;
    } else {
      nh.free_runs++;
    }
  }
  if ((rc = check_next(f, &nh)) != 0) return rc;
  if ((rc = fm_touch(f, 0, CTL_START)) != 0 ||
      (rc = fm_touch(f, off, n * bs)) != 0 ||
      (nh.pend_off != 0 && (rc = fm_touch(f, nh.pend_off, MARK_SIZE)) != 0))
    return rc;
  /* Mark every block first: until the header lists them, they are only
  ** leaked, never handed out twice. Members name their run's head. */
  hint = merge == 1 ? left : off;
  for (i = 1; i < n; i++) put_mark(f, off + i * bs, hint, 0);
  if (merge == 1) put_mark(f, off, hint, 0);
  else if (merge == -1) put_mark(f, off, next, n + blocks);
  else put_mark(f, off, head, n);
  f->h = nh;
  put_header(f);
  return 0;
}


/* ---------------------------------------------------------------------- */
/* Control data and sync                                                  */
/* ---------------------------------------------------------------------- */

const unsigned char *fm_control_data (const fm_file *f, size_t *len) {
  *len = f->h.ctl_len;
  return ctl_ptr(f, f->h.ctl_area);
}

size_t fm_max_control_data (const fm_file *f) {
  return ctl_area_size(f->h.block_size);
}

int fm_set_control_data (fm_file *f, const void *data, size_t len,
                         int sync) {
  uint32_t area = f->h.ctl_area ^ 1;
  int rc;
  if (f->readonly)
    return fail(f, FM_EMISUSE, "the BlockFile is read-only");
  if (len > ctl_area_size(f->h.block_size))
    return fail(f, FM_EMISUSE, "control data of %llu bytes is longer than "
                "the %llu bytes it may have", (unsigned long long)len,
                (unsigned long long)ctl_area_size(f->h.block_size));
  if ((rc = fm_touch(f, 0, CTL_START + 2 * ctl_area_size(f->h.block_size)))
      != 0)
    return rc;
  memcpy((unsigned char *)ctl_ptr(f, area), data, len);
  f->h.ctl_area = area;
  f->h.ctl_len = (uint32_t)len;
  f->h.ctl_sum = checksum(data, len, 2);
  put_header(f);
  return sync ? fm_sync(f) : 0;
}

int fm_sync (fm_file *f) {
  int rc;
  if (f->fd < 0) return 0;
  if (!f->readonly && !f->txn && (rc = cut_short(f)) == 0 &&
      (rc = fm_commit(f, 0)) != 0)
    return rc;
  return cut_short(f);   /* read-only too: a reader may ask */
}

int fm_flush (fm_file *f) {
  int rc;
  if (f->txn)
    return fail(f, FM_EMISUSE, "flush: inside a transaction, commit it "
                "instead (commit waits for the disk)");
  if (f->fd < 0 || f->readonly) return 0;
  if ((rc = cut_short(f)) != 0) return rc;
  if ((rc = fm_commit(f, 1)) != 0) return rc;
  return cut_short(f);
}
