/*
** bench_lmdb.c: the LMDB peer of bench/bench.lua and bench/bench_txn.lua,
** as a plain C program against liblmdb.
**   fmap_bench_lmdb PATH N            the standard workload (bench.lua)
**   fmap_bench_lmdb --txn PATH N K    durable transactions (bench_txn.lua)
** Runs the four phases on a fresh single-file environment at PATH (PATH and
** PATH-lock are removed at the end) and prints the one machine-readable
** line every peer prints (see bench/bench.lua):
**   fmap-bench peer=lmdb n=N insert=SECS get=SECS scan=SECS delete=SECS
**     get_mismatches=M scan_count=C scan_unsorted=U removed=R remaining=K
**     file_bytes=B rss_kb=KB
** file_bytes is the file's size after the insert phase, rss_kb the
** process's peak resident set (VmHWM).
** The workload, kept exactly as the other peers run it:
**   key i   = 16 bytes, big-endian i * 0x9E3779B97F4A7C15 (mod 2^64), then i
**   value i = "val:%012d"
**   insert  i = 0..N-1 in one write transaction (MDB_NOSYNC), commit, then
**           one durable mdb_env_sync
**   get     i = (j * 7919) % N for j = 0..N-1, each value checked
**   scan    a cursor over the whole tree, order and count checked
**   delete  every even i in one write transaction, commit, mdb_env_sync
** With --txn, inserts i = 0..N-1 into a fresh environment opened with
** default flags (every commit synced), K puts a write transaction: each
** mdb_txn_begin .. mdb_txn_commit timed, keys and values made inside;
** then reopens the environment and counts the records. It prints
**   fmap-bench-txn peer=lmdb n=N per=K commits=C secs=S p50=S p99=S
**     count=M
** secs the whole loop, p50 and p99 the nearest-rank percentiles of the
** C transactions' times, count the records found after the reopen.
** No Lua in this file.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check (int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "bench_lmdb: %s: %s\n", what, mdb_strerror(rc));
    exit(1);
  }
}

static void put_be64 (unsigned char *p, uint64_t x) {
  int b;
  for (b = 7; b >= 0; b--) { p[b] = (unsigned char)(x & 0xff); x >>= 8; }
}

/* Key i: the multiplication wraps mod 2^64 as Lua's integers do. */
static void make_key (unsigned char *k, uint64_t i) {
  put_be64(k, i * UINT64_C(0x9E3779B97F4A7C15));
  put_be64(k + 8, i);
}

/* Value i: "val:%012d", 16 bytes, no terminator stored. */
static void make_value (char *v, uint64_t i) {
  char buf[32];
  snprintf(buf, sizeof buf, "val:%012llu", (unsigned long long)i);
  memcpy(v, buf, 16);
}

/* Peak resident set size in kB: VmHWM from /proc/self/status. */
static long peak_rss_kb (void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static int cmp_double (const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The nearest-rank pct-th percentile of n sorted times: the one of rank
** ceil(n * pct / 100). */
static double percentile (const double *sorted, uint64_t n, unsigned pct) {
  uint64_t r = (n * pct + 99) / 100;
  return sorted[(r < 1 ? 1 : r) - 1];
}

static MDB_env *open_env (const char *path, size_t mapsize) {
  MDB_env *env;
  check(mdb_env_create(&env), "env_create");
  check(mdb_env_set_mapsize(env, mapsize), "env_set_mapsize");
  check(mdb_env_open(env, path, MDB_NOSUBDIR, 0644), "env_open");
  return env;
}

/* --txn: N inserts, K to a durable write transaction. */
static int run_txn (const char *path, long long n, long long k) {
  char lock[4096], val[16];
  unsigned char key[16];
  uint64_t i = 0, c, commits = (uint64_t)((n + k - 1) / k);
  size_t mapsize = (size_t)n * 256 + ((size_t)64 << 20);
  double *lat, t0, t, secs;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val mk, mv;
  MDB_stat st;

  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);
  lat = malloc((size_t)commits * sizeof *lat);
  if (lat == NULL) { perror("bench_lmdb"); return 1; }
  env = open_env(path, mapsize);
  check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
  check(mdb_txn_commit(txn), "commit");

  mk.mv_size = 16; mk.mv_data = key;
  mv.mv_size = 16; mv.mv_data = val;
  t0 = now();
  for (c = 0; c < commits; c++) {
    long long j;
    t = now();
    check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
    for (j = 0; j < k && i < (uint64_t)n; j++, i++) {
      make_key(key, i);
      make_value(val, i);
      check(mdb_put(txn, dbi, &mk, &mv, 0), "put");
    }
    check(mdb_txn_commit(txn), "commit");
    lat[c] = now() - t;
  }
  secs = now() - t0;
  mdb_env_close(env);

  /* what a reopen finds */
  env = open_env(path, mapsize);
  check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
  check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
  check(mdb_stat(txn, dbi, &st), "stat");
  mdb_txn_abort(txn);
  mdb_env_close(env);

  qsort(lat, (size_t)commits, sizeof *lat, cmp_double);
  printf("fmap-bench-txn peer=lmdb n=%lld per=%lld commits=%llu secs=%.9f "
         "p50=%.9f p99=%.9f count=%llu\n",
         n, k, (unsigned long long)commits, secs,
         percentile(lat, commits, 50), percentile(lat, commits, 99),
         (unsigned long long)st.ms_entries);
  free(lat);
  unlink(path);
  unlink(lock);
  return 0;
}

int main (int argc, char **argv) {
  const char *path;
  long long n;
  uint64_t i, j, mismatches = 0, count = 0, unsorted = 0, removed = 0;
  unsigned char key[16], prev[16];
  char val[16], lock[4096];
  double t_insert, t_get, t_scan, t_delete, t;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val mk, mv;
  MDB_stat st;
  struct stat sb;
  size_t mapsize;
  int rc;

  if (argc == 5 && strcmp(argv[1], "--txn") == 0) {
    long long k = atoll(argv[4]);
    if ((n = atoll(argv[3])) > 0 && k > 0) return run_txn(argv[2], n, k);
  }
  if (argc != 3 || (n = atoll(argv[2])) <= 0) {
    fprintf(stderr, "usage: fmap_bench_lmdb PATH N\n"
            "       fmap_bench_lmdb --txn PATH N K\n");
    return 2;
  }
  path = argv[1];
  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);
  /* Room for the tree with a wide margin; LMDB grows the file only as far
  ** as the pages it writes, so the margin costs address space, not disk. */
  mapsize = (size_t)n * 256 + ((size_t)64 << 20);

  check(mdb_env_create(&env), "env_create");
  check(mdb_env_set_mapsize(env, mapsize), "env_set_mapsize");
  check(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC, 0644),
        "env_open");

  /* insert: one write transaction, then one durable sync */
  t = now();
  check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
  mk.mv_size = 16; mk.mv_data = key;
  mv.mv_size = 16; mv.mv_data = val;
  for (i = 0; i < (uint64_t)n; i++) {
    make_key(key, i);
    make_value(val, i);
    check(mdb_put(txn, dbi, &mk, &mv, 0), "put");
  }
  check(mdb_txn_commit(txn), "commit");
  check(mdb_env_sync(env, 1), "env_sync");
  t_insert = now() - t;
  /* the file size after the insert, the figure the issue bounds */
  if (stat(path, &sb) != 0) { perror(path); return 1; }

  /* get: a stride that visits every record once, each value checked */
  t = now();
  check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
  for (j = 0; j < (uint64_t)n; j++) {
    char want[16];
    i = (j * 7919) % (uint64_t)n;
    make_key(key, i);
    make_value(want, i);
    mk.mv_size = 16; mk.mv_data = key;
    rc = mdb_get(txn, dbi, &mk, &mv);
    if (rc == MDB_NOTFOUND || mv.mv_size != 16
        || memcmp(mv.mv_data, want, 16) != 0)
      mismatches++;
    else
      check(rc, "get");
  }
  mdb_txn_abort(txn);
  t_get = now() - t;

  /* scan: the whole tree in key order, order and count checked */
  t = now();
  check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
  check(mdb_cursor_open(txn, dbi, &cur), "cursor_open");
  while ((rc = mdb_cursor_get(cur, &mk, &mv, count ? MDB_NEXT : MDB_FIRST))
         == 0) {
    if (mk.mv_size != 16
        || (count > 0 && memcmp(prev, mk.mv_data, 16) >= 0))
      unsorted++;
    memcpy(prev, mk.mv_data, mk.mv_size < 16 ? mk.mv_size : 16);
    count++;
  }
  if (rc != MDB_NOTFOUND) check(rc, "cursor_get");
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  t_scan = now() - t;

  /* delete: every even i in one write transaction, then one durable sync */
  t = now();
  check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  for (i = 0; i < (uint64_t)n; i += 2) {
    make_key(key, i);
    mk.mv_size = 16; mk.mv_data = key;
    rc = mdb_del(txn, dbi, &mk, NULL);
    if (rc == 0) removed++;
    else if (rc != MDB_NOTFOUND) check(rc, "del");
  }
  check(mdb_txn_commit(txn), "commit");
  check(mdb_env_sync(env, 1), "env_sync");
  t_delete = now() - t;

  check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
  check(mdb_stat(txn, dbi, &st), "stat");
  mdb_txn_abort(txn);

  printf("fmap-bench peer=lmdb n=%lld insert=%.9f get=%.9f scan=%.9f "
         "delete=%.9f get_mismatches=%llu scan_count=%llu "
         "scan_unsorted=%llu removed=%llu remaining=%llu file_bytes=%lld "
         "rss_kb=%ld\n",
         n, t_insert, t_get, t_scan, t_delete,
         (unsigned long long)mismatches, (unsigned long long)count,
         (unsigned long long)unsorted, (unsigned long long)removed,
         (unsigned long long)st.ms_entries, (long long)sb.st_size,
         peak_rss_kb());
  mdb_env_close(env);
  unlink(path);
  unlink(lock);
  return 0;
}
