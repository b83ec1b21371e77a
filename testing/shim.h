/*
** shim.h: what the LD_PRELOAD shims (faultinject.c, iorecord.c) share:
** reaching the function a wrapper stands in for, and open and open64
** (glibc has both; the engine may call either), defined once from the
** shim's own function of their four arguments. Test-only.
*/
#ifndef FMAP_SHIM_H
#define FMAP_SHIM_H

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

/* Declares real_NAME, the definition of NAME that the shim's hides (the C
** library's), looked up on first use. */
#define REAL(name) \
  static __typeof__(name) *real_##name; \
  if (real_##name == NULL) \
    real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* open's type, and open64's. */
typedef int openfn (const char *path, int flags, ...);

/* Defines NAME, open or open64, as a call of the shim's
**   static int shim_open (openfn *real, const char *path, int flags,
**                         mode_t mode);
** with real the C library's NAME, and mode the argument open takes only
** with O_CREAT or O_TMPFILE (0 without). */
#define SHIM_OPEN(name) \
  int name (const char *path, int flags, ...) { \
    mode_t mode = 0; \
    REAL(name); \
    if (flags & (O_CREAT | O_TMPFILE)) { \
      va_list ap; \
      va_start(ap, flags); \
      mode = (mode_t)va_arg(ap, int); \
      va_end(ap); \
    } \
    return shim_open(real_##name, path, flags, mode); \
  }

#endif
