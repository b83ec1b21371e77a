/*
** fuzz_open.c: a libFuzzer target for the core's file-open path: header
** parsing and validation (fm_open, plain, read-only and repairing), the
** pending-mark redo, fm_check and fm_free_runs over whatever the file
** holds, then a few allocations and frees on it. It asserts what the
** engine promises for any file: no crash, no read outside the map, and no
** block handed out twice or outside the file.
**
** Built by testing/fuzz.sh, not by premake:
**   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine \
**     testing/fuzz_open.c -o build/fuzz/fuzz_open
** It includes fm.c itself, to reseal checksums with fm.c's own functions.
**
** An input describes a file compactly, so that mutations land on the
** header and the free marks rather than on kilobytes of zeros:
**   byte 0     flags: 1 read-only open, 2 repair, 4 keep header checksums
**              as given (else both slots are resealed, control-data sum
**              included), 8 keep mark checksums as given (else resealed),
**              16 raw: the rest of the input is the file itself
**   byte 1     file size in blocks of 4096, taken modulo 64, plus one
**   byte 2     K, the number of operations (modulo 17), then K op bytes:
**              even: allocate (op / 2 % 4 + 1) blocks; odd: free the
**              block (op / 2 % blocks)
**   then       chunks, to the end: block index (modulo the blocks), offset
**              in the block in 16-byte units, length, then that many bytes
** With FMAP_FUZZ_MKSEEDS=dir in the environment, it writes a small seed
** corpus of real files in this format to dir, and exits.
*/
#include "fm.c"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define FBS       4096u
#define MAXBLOCKS 64
#define MAXOPS    16

enum { F_READONLY = 1, F_REPAIR = 2, F_KEEPHDR = 4, F_KEEPMARKS = 8,
       F_RAW = 16 };

static void nothing (void *ud, const char *problem) {
  (void)ud; (void)problem;
}

static int count_run (void *ud, uint64_t off, uint64_t blocks) {
  (void)off; (void)blocks;
  ++*(uint64_t *)ud;
  return 0;
}

/* Recomputes the checksums a mutation broke, as fm.c writes them. */
static void reseal (unsigned char *img, size_t size, int flags) {
  size_t b;
  int i;
  if (!(flags & F_KEEPHDR) && size >= CTL_START) {
    for (i = 0; i < 2; i++) {
      unsigned char *s = img + i * SLOT_SIZE;
      uint32_t bs = get32(s + 12), len = get32(s + 56), area = get32(s + 60);
      if (memcmp(s, HDR_MAGIC, 8) != 0) continue;
      if (bs >= FM_BLOCKSIZE && bs <= size && area <= 1 &&
          len <= ctl_area_size(bs)) {
        size_t at = CTL_START + area * ctl_area_size(bs);
        if (at + len <= size) put64(s + 64, checksum(img + at, len, 2));
      }
      put64(s + HDR_SUMMED, checksum(s, HDR_SUMMED, 0));
    }
  }
  if (!(flags & F_KEEPMARKS)) {
    for (b = FBS; b + MARK_SIZE <= size; b += FBS) {
      if (memcmp(img + b, FREE_MAGIC, 8) == 0)
        put64(img + b + 32, checksum(img + b, 32, 1));
    }
  }
}

/* The file an input describes; *flags and the ops are returned too. */
static unsigned char *build (const uint8_t *data, size_t n, size_t *size,
                             int *flags, uint8_t *ops, int *nops) {
  unsigned char *img;
  size_t i = 3, nb;
  *flags = n > 0 ? data[0] : 0;
  *nops = 0;
  if (*flags & F_RAW) {
    *size = n > 1 ? n - 1 : 0;
    img = malloc(*size + 1);
    if (img != NULL && *size > 0) memcpy(img, data + 1, *size);
    return img;
  }
  nb = (n > 1 ? data[1] % MAXBLOCKS : 0) + 1;
  *size = nb * FBS;
  if (n > 2) {
    *nops = data[2] % (MAXOPS + 1);
    for (; i < n && i < 3 + (size_t)*nops; i++) ops[i - 3] = data[i];
    *nops = (int)(i - 3);
  }
  img = calloc(*size, 1);
  if (img == NULL) return NULL;
  while (i + 3 <= n) {
    size_t blk = data[i] % nb, at = (size_t)data[i + 1] * 16 % FBS;
    size_t len = data[i + 2];
    i += 3;
    if (len > n - i) len = n - i;
    if (len > FBS - at) len = FBS - at;
    memcpy(img + blk * FBS + at, data + i, len);
    i += len;
  }
  return img;
}

/* A memfd holding the image, named by a path fm_open can take. */
static int memfile (const unsigned char *img, size_t size, char *path,
                    size_t pathlen) {
  int fd = memfd_create("fmap-fuzz", MFD_CLOEXEC);
  size_t done = 0;
  if (fd < 0) { perror("memfd_create"); abort(); }
  while (done < size) {
    ssize_t w = write(fd, img + done, size - done);
    if (w <= 0) { perror("write"); abort(); }
    done += (size_t)w;
  }
  snprintf(path, pathlen, "/proc/self/fd/%d", fd);
  return fd;
}

/* Blocks this run allocated and still holds: [off, off + n blocks). */
typedef struct Live { uint64_t off, n; } Live;

static void run_ops (fm_file *f, const uint8_t *ops, int nops) {
  Live live[MAXOPS];
  int nlive = 0, i, j;
  uint64_t bs = f->h.block_size;
  for (i = 0; i < nops; i++) {
    if ((ops[i] & 1) == 0) {
      uint64_t n = (uint64_t)(ops[i] >> 1) % 4 + 1, off, k;
      if (fm_allocate(f, n, &off) != 0) continue;
      /* What any file must never make the engine do. */
      if (off < bs || off % bs != 0 || off + n * bs > f->mapsize ||
          off + n * bs > f->h.top) {
        fprintf(stderr, "allocate gave %llu blocks at %llu, outside the "
                "file (%llu bytes)\n", (unsigned long long)n,
                (unsigned long long)off, (unsigned long long)f->mapsize);
        abort();
      }
      for (j = 0; j < nlive; j++) {
        if (off < live[j].off + live[j].n * bs && live[j].off < off + n * bs) {
          fprintf(stderr, "allocate gave %llu twice\n",
                  (unsigned long long)off);
          abort();
        }
      }
      for (k = 0; k < n; k++) {
        if (fm_is_free(f, off + k * bs)) {
          fprintf(stderr, "allocate gave a block still marked free\n");
          abort();
        }
      }
      memset(fm_ptr(f, off), 0xA5, (size_t)(n * bs));   /* the user's data */
      live[nlive].off = off;
      live[nlive].n = n;
      nlive++;
    } else {
      uint64_t blocks = f->mapsize / bs;
      uint64_t off = (uint64_t)(ops[i] >> 1) % blocks * bs;
      if (fm_free(f, off, 1) != 0) continue;
      for (j = 0; j < nlive; j++) {
        if (off >= live[j].off && off < live[j].off + live[j].n * bs) {
          live[j] = live[--nlive];   /* let go of all of it: simpler */
          break;
        }
      }
    }
  }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t n) {
  uint8_t ops[MAXOPS];
  int flags, nops, fd, oflags, rc;
  size_t size;
  char path[64];
  fm_file f;
  unsigned char *img = build(data, n, &size, &flags, ops, &nops);
  if (img == NULL) return 0;
  reseal(img, size, flags);
  fd = memfile(img, size, path, sizeof path);
  free(img);
  oflags = (flags & F_READONLY) ? FM_READONLY
           : (flags & F_REPAIR) ? FM_REPAIR : 0;
  rc = fm_open(path, oflags, &f);
  if (rc == 0) {
    uint64_t runs = 0;
    fm_check(&f, nothing, NULL, 10);
    (void)fm_free_runs(&f, count_run, &runs);
    if (!f.readonly) {
      run_ops(&f, ops, nops);
      fm_check(&f, nothing, NULL, 10);
    }
    fm_close_final(&f);
  } else if (f.map != NULL || f.fd != -1 || f.path != NULL) {
    fprintf(stderr, "a failed open left something open\n");
    abort();
  }
  close(fd);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The seed corpus                                                         */
/* ---------------------------------------------------------------------- */

/* Writes a real file's image as an input: block 0's header and control
** data, and the first 48 bytes of every other block that is not zero. */
static void write_seed (const char *dir, const char *name, fm_file *f,
                        int flags, const uint8_t *sops, int nops) {
  char path[512];
  FILE *out;
  uint64_t b, blocks = f->h.top / FBS;
  size_t head = CTL_START + 2 * ctl_area_size(f->h.block_size);
  int i;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  out = fopen(path, "wb");
  if (out == NULL) { perror(path); exit(1); }
  fputc(flags, out);
  fputc((int)((blocks - 1) % MAXBLOCKS), out);
  fputc(nops, out);
  for (i = 0; i < nops; i++) fputc(sops[i], out);
  for (b = 0; b < CTL_START; b += 128) {   /* the two slots */
    fputc(0, out); fputc((int)(b / 16), out); fputc(128, out);
    fwrite(f->map + b, 1, 128, out);
  }
  for (b = CTL_START; b < head; b += 128) {   /* control data, if any */
    unsigned char z[128] = { 0 };
    if (memcmp(f->map + b, z, 128) == 0) continue;
    fputc(0, out); fputc((int)(b / 16), out); fputc(128, out);
    fwrite(f->map + b, 1, 128, out);
  }
  for (b = 1; b < blocks; b++) {
    unsigned char z[48] = { 0 };
    if (memcmp(f->map + b * FBS, z, 48) == 0) continue;
    fputc((int)b, out); fputc(0, out); fputc(48, out);
    fwrite(f->map + b * FBS, 1, 48, out);
  }
  fclose(out);
}

static void make_seeds (const char *dir) {
  static const uint8_t sops[] = { 0, 2, 4, 1, 3, 0, 6 };
  char path[64];
  fm_file f;
  uint64_t off[8];
  int fd, i;
  unsigned char one = 0;
  /* 1: one control block, nothing else */
  fd = memfile(&one, 0, path, sizeof path);
  if (fm_create(path, FBS, &f) != 0) { perror("fm_create"); exit(1); }
  write_seed(dir, "empty", &f, 0, sops, 3);
  /* 2: blocks in use, runs of several shapes, control data */
  for (i = 0; i < 8; i++) fm_allocate(&f, (uint64_t)(i % 3 + 1), &off[i]);
  fm_free(&f, off[1], 2);
  fm_free(&f, off[2], 3);
  fm_free(&f, off[5], 3);
  fm_free(&f, off[6], 1);
  fm_set_control_data(&f, "root=4096", 9, 0);
  write_seed(dir, "runs", &f, 0, sops, (int)sizeof sops);
  write_seed(dir, "runs-readonly", &f, F_READONLY, sops, 0);
  write_seed(dir, "runs-repair", &f, F_REPAIR, sops, 2);
  /* 3: a pending mark in the header, its mark not yet written */
  fm_allocate(&f, 1, &off[0]);
  write_seed(dir, "pending", &f, 0, sops, 4);
  fm_close_final(&f);
  close(fd);
}

/* The files are memfds, which live in RAM. A header may claim any size:
** a repairing open extends the file to it (a growth was lost), and a
** growth with huge blocks reserves 16 of them; one input did that to
** 24 GiB and the machine's OOM killer ended the run. Files are capped
** at 256 MiB instead, past which fallocate and ftruncate fail with
** EFBIG, an error the engine must report like any other (testing/fuzz.sh
** passes -handle_xfsz=0, or libFuzzer would stop at the first). */
#define FILE_CAP ((rlim_t)256 << 20)

int LLVMFuzzerInitialize (int *argc, char ***argv) {
  const char *dir = getenv("FMAP_FUZZ_MKSEEDS");
  struct rlimit cap;
  (void)argc; (void)argv;
  if (dir != NULL) {
    make_seeds(dir);
    exit(0);
  }
  cap.rlim_cur = cap.rlim_max = FILE_CAP;
  signal(SIGXFSZ, SIG_IGN);             /* EFBIG, not death */
  if (setrlimit(RLIMIT_FSIZE, &cap) != 0) { perror("setrlimit"); abort(); }
  return 0;
}
