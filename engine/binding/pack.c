/*
** pack.c: view:pack and view:unpack, the format language of string.pack
** over the bytes of a view, with 0-based positions. It follows Lua 5.4's
** lstrlib.c: its options, sizes, alignment and messages, so a change
** there is one to follow here; only the bounds are the view's. Nothing is
** written unless every value fits, and no bytes are read from a map that
** a conversion may have moved.
*/
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "binding.h"

typedef enum {
  Oint, Ouint, Ofloat, Odouble, Onumber, Ochar, Ostring, Ozstr,
  Opad, Oalign, Onop
} Opt;

typedef struct Fmt {
  lua_State *L;
  int arg;          /* the format's argument index, for errors */
  const char *s;    /* the rest of the format */
  int little;
  int maxalign;
} Fmt;

struct cD { char c; union { LUAI_MAXALIGN; } u; };
#define NATIVE_ALIGN  ((int)offsetof(struct cD, u))
#define MAXINTSIZE    16

static int digit (int c) { return '0' <= c && c <= '9'; }

static int readsize (Fmt *h, int dflt) {
  if (!digit(*h->s)) return dflt;
  {
    int a = 0;
    do {
      a = a * 10 + (*h->s++ - '0');
    } while (digit(*h->s) && a <= (INT_MAX - 9) / 10);
    return a;
  }
}

static int intsize (Fmt *h, int dflt) {
  int n = readsize(h, dflt);
  if (n < 1 || n > MAXINTSIZE)
    luaL_error(h->L, "integral size (%d) out of limits [1,%d]", n,
               MAXINTSIZE);
  return n;
}

/* The next option and its size. */
static Opt nextopt (Fmt *h, int *size) {
  int c = *h->s++;
  *size = 0;
  switch (c) {
    case 'b': *size = 1; return Oint;
    case 'B': *size = 1; return Ouint;
    case 'h': *size = sizeof(short); return Oint;
    case 'H': *size = sizeof(short); return Ouint;
    case 'l': *size = sizeof(long); return Oint;
    case 'L': *size = sizeof(long); return Ouint;
    case 'j': *size = sizeof(lua_Integer); return Oint;
    case 'J': *size = sizeof(lua_Integer); return Ouint;
    case 'T': *size = sizeof(size_t); return Ouint;
    case 'f': *size = sizeof(float); return Ofloat;
    case 'n': *size = sizeof(lua_Number); return Onumber;
    case 'd': *size = sizeof(double); return Odouble;
    case 'i': *size = intsize(h, sizeof(int)); return Oint;
    case 'I': *size = intsize(h, sizeof(int)); return Ouint;
    case 's': *size = intsize(h, sizeof(size_t)); return Ostring;
    case 'c':
      *size = readsize(h, -1);
      if (*size == -1) luaL_error(h->L, "missing size for format option 'c'");
      return Ochar;
    case 'z': return Ozstr;
    case 'x': *size = 1; return Opad;
    case 'X': return Oalign;
    case ' ': return Onop;
    case '<': h->little = 1; return Onop;
    case '>': h->little = 0; return Onop;
    case '=': h->little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
              return Onop;
    case '!': h->maxalign = intsize(h, NATIVE_ALIGN); return Onop;
    default: luaL_error(h->L, "invalid format option '%c'", c);
  }
  return Onop;
}

/* The next option, with the padding that alignment asks for at pos. */
static Opt nextdetail (Fmt *h, uint64_t pos, int *size, int *pad) {
  Opt o = nextopt(h, size);
  int align = *size;
  *pad = 0;
  if (o == Oalign) {
    if (*h->s == '\0' || nextopt(h, &align) == Ochar || align == 0)
      luaL_argerror(h->L, h->arg, "invalid next option for option 'X'");
  }
  if (align > 1 && o != Ochar) {
    if (align > h->maxalign) align = h->maxalign;
    if ((align & (align - 1)) != 0)
      luaL_argerror(h->L, h->arg, "format asks for alignment not power "
                    "of 2");
    *pad = (int)((uint64_t)(align - (int)(pos & (uint64_t)(align - 1))) &
                 (uint64_t)(align - 1));
  }
  return o;
}

static void putint (unsigned char *p, uint64_t x, int little, int size,
                    int neg) {
  int i;
  for (i = 0; i < size; i++) {
    unsigned char byte = i < 8 ? (unsigned char)(x >> (8 * i))
                               : (neg ? 0xff : 0);
    p[little ? i : size - 1 - i] = byte;
  }
}

static void putbytes (unsigned char *p, const void *src, int size,
                      int little) {
  const unsigned char *s = (const unsigned char *)src;
  int i, native = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  for (i = 0; i < size; i++)
    p[i] = s[(little == native) ? i : size - 1 - i];
}

/* One pass of pack: with out NULL it only checks the arguments and
** measures; else it writes at out. Returns the bytes taken. */
static uint64_t dopack (lua_State *L, int fmtarg, uint64_t start,
                        unsigned char *out) {
  Fmt h;
  uint64_t pos = start;
  int arg = fmtarg;
  h.L = L; h.arg = fmtarg; h.s = luaL_checkstring(L, fmtarg);
  h.little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__); h.maxalign = 1;
  while (*h.s != '\0') {
    int size, pad;
    Opt o = nextdetail(&h, pos, &size, &pad);
    if (out) memset(out + (pos - start), 0, (size_t)pad);
    pos += (uint64_t)pad;
    switch (o) {
      case Oint: case Ouint: {
        lua_Integer n = luaL_checkinteger(L, ++arg);
        if (size < (int)sizeof(lua_Integer)) {
          lua_Integer lim = (lua_Integer)1 << ((size * 8) - 1);
          if (o == Oint)
            luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
          else
            luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * 8)),
                          arg, "unsigned overflow");
        }
        if (out) putint(out + (pos - start), (uint64_t)n, h.little, size,
                        n < 0);
        break;
      }
      case Ofloat: {
        float f = (float)luaL_checknumber(L, ++arg);
        if (out) putbytes(out + (pos - start), &f, size, h.little);
        break;
      }
      case Odouble: case Onumber: {
        double d = (double)luaL_checknumber(L, ++arg);
        if (out) putbytes(out + (pos - start), &d, size, h.little);
        break;
      }
      case Ochar: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, len <= (size_t)size, arg,
                      "string longer than given size");
        if (out) {
          memcpy(out + (pos - start), s, len);
          memset(out + (pos - start) + len, 0, (size_t)size - len);
        }
        break;
      }
      case Ostring: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, size >= (int)sizeof(size_t) ||
                      len < ((size_t)1 << (size * 8)), arg,
                      "string length does not fit in given size");
        if (out) {
          putint(out + (pos - start), (uint64_t)len, h.little, size, 0);
          memcpy(out + (pos - start) + size, s, len);
        }
        pos += len;
        break;
      }
      case Ozstr: {
        size_t len;
        const char *s = luaL_checklstring(L, ++arg, &len);
        luaL_argcheck(L, strlen(s) == len, arg, "string contains zeros");
        if (out) memcpy(out + (pos - start), s, len + 1);
        pos += len + 1;
        break;
      }
      case Opad:
        if (out) out[pos - start] = 0;
        break;
      case Oalign: case Onop:
        break;
    }
    pos += (uint64_t)size;
  }
  return pos - start;
}

/* pack(pos, fmt, ...): writes the values at pos as string.pack would lay
** them out; returns the next position. Nothing is written if a value is
** wrong or the result would not fit. */
static int view_pack (lua_State *L) {
  View *v = checkwritable(L, 1);
  lua_Integer pos;
  if (lua_type(L, 2) == LUA_TSTRING && lua_type(L, 3) == LUA_TNUMBER)
    luaL_argerror(L, 2, "position expected, got string; pack takes the "
                  "position first: v:pack(pos, fmt, ...)");
  pos = luaL_checkinteger(L, 2);
  uint64_t n;
  checkspan(L, v, 2, pos, 0);
  n = dopack(L, 3, (uint64_t)pos, NULL);
  /* Converting numbers to strings in that pass may have run a finalizer
  ** that retired or retargeted the view: look again before writing. */
  if (v->state != LIVE) checkview(L, 1);
  checkspan(L, v, 2, pos, 0);
  if (n > v->len - (uint64_t)pos)
    luaL_argerror(L, 2, lua_pushfstring(L, "position %I + %I packed bytes "
                  "is outside the view (%I bytes)", pos, (lua_Integer)n,
                  (lua_Integer)v->len));
  touch(L, v, (uint64_t)pos, n);
  dopack(L, 3, (uint64_t)pos, vptr(v) + pos);
  CHECKLOST(L, v);
  lua_pushinteger(L, pos + (lua_Integer)n);
  return 1;
}

static lua_Integer getint (lua_State *L, const unsigned char *p, int little,
                           int size, int issigned) {
  uint64_t r = 0;
  int i, limit = size <= 8 ? size : 8;
  for (i = limit - 1; i >= 0; i--) {
    r <<= 8;
    r |= p[little ? i : size - 1 - i];
  }
  if (size < 8) {
    if (issigned) {
      uint64_t mask = (uint64_t)1 << (size * 8 - 1);
      r = (r ^ mask) - mask;
    }
  } else if (size > 8) {
    int mask = (!issigned || (int64_t)r >= 0) ? 0 : 0xff;
    for (i = limit; i < size; i++) {
      if (p[little ? i : size - 1 - i] != mask)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", size);
    }
  }
  return (lua_Integer)r;
}

/* unpack(fmt [, pos]): the values at pos (default 0), then the position
** after them, as string.unpack does with 0-based positions. */
static int view_unpack (lua_State *L) {
  View *v = checkview(L, 1);
  lua_Integer ipos;
  if (lua_type(L, 2) == LUA_TNUMBER)
    luaL_argerror(L, 2, "format expected, got number; unpack takes the "
                  "format first: v:unpack(fmt [, pos])");
  ipos = luaL_optinteger(L, 3, 0);
  const unsigned char *data = NULL;
  uint64_t pos, len = 0;
  int n = 0, stale = 0;
  Fmt h;
  h.L = L; h.arg = 2; h.s = luaL_checkstring(L, 2);
  h.little = (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__); h.maxalign = 1;
  if (v->state != LIVE) checkview(L, 1);   /* the format's conversion ran
                                           ** a finalizer (see below) */
  checkspan(L, v, 3, ipos, 0);
  pos = (uint64_t)ipos;
  data = vptr(v);
  len = v->len;
  while (*h.s != '\0') {
    int size, pad;
    Opt o;
    if (stale) {
      /* After an allocation, which may run a finalizer that moves the
      ** map, retires or retargets the view: look again. */
      if (v->state != LIVE) checkview(L, 1);
      checkspan(L, v, 3, (lua_Integer)pos, 0);
      data = vptr(v);
      len = v->len;
      stale = 0;
    }
    o = nextdetail(&h, pos, &size, &pad);
    if ((uint64_t)pad + (uint64_t)size > len - pos)
      luaL_argerror(L, 3, lua_pushfstring(L, "format reads past the end of "
                    "the view (%I bytes) at position %I", (lua_Integer)len,
                    (lua_Integer)pos));
    pos += (uint64_t)pad;
    luaL_checkstack(L, 2, "too many results");
    n++;
    switch (o) {
      case Oint: case Ouint:
        lua_pushinteger(L, getint(L, data + pos, h.little, size, o == Oint));
        break;
      case Ofloat: {
        float f;
        putbytes((unsigned char *)&f, data + pos, size, h.little);
        lua_pushnumber(L, (lua_Number)f);
        break;
      }
      case Odouble: case Onumber: {
        double d;
        putbytes((unsigned char *)&d, data + pos, size, h.little);
        lua_pushnumber(L, (lua_Number)d);
        break;
      }
      case Ochar:
        lua_pushlstring(L, (const char *)data + pos, (size_t)size);
        stale = 1;
        break;
      case Ostring: {
        uint64_t l = (uint64_t)getint(L, data + pos, h.little, size, 0);
        if (l > len - pos - (uint64_t)size)
          luaL_argerror(L, 3, lua_pushfstring(L, "string length %I at "
                        "position %I passes the end of the view",
                        (lua_Integer)l, (lua_Integer)pos));
        lua_pushlstring(L, (const char *)data + pos + size, (size_t)l);
        stale = 1;
        pos += l;
        break;
      }
      case Ozstr: {
        const unsigned char *z = memchr(data + pos, 0, (size_t)(len - pos));
        if (z == NULL)
          luaL_argerror(L, 3, "unfinished string for format 'z'");
        lua_pushlstring(L, (const char *)data + pos,
                        (size_t)(z - (data + pos)));
        stale = 1;
        pos += (uint64_t)(z - (data + pos)) + 1;
        break;
      }
      case Oalign: case Opad: case Onop:
        n--;
        break;
    }
    pos += (uint64_t)size;
  }
  CHECKLOST(L, v);
  PROFREAD(v, ipos, pos - (uint64_t)ipos);
  lua_pushinteger(L, (lua_Integer)pos);
  return n + 1;
}


/* luaopen_fmap adds these to the views' methods. */
LUAI_DDEF const luaL_Reg pack_view_methods[] = {
  {"pack", view_pack}, {"unpack", view_unpack},
  {NULL, NULL}
};
