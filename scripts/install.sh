#!/usr/bin/env bash
# scripts/install.sh: installs fmap under a prefix, or removes it.
#   bash scripts/install.sh [--no-build] [PREFIX]   build, then install
#   bash scripts/install.sh --uninstall [PREFIX]    remove what it installed
# PREFIX defaults to /usr/local; DESTDIR, if set, is put in front of every
# path written (a staged install: the files work once moved to PREFIX).
# The layout is the one Debian's lua5.4 searches under /usr/local:
#   PREFIX/bin/fmap                    the host
#   PREFIX/lib/lua/5.4/fmap.so         the engine as a C module
#   PREFIX/share/lua/5.4/fmap/...      the Lua modules
#   PREFIX/share/doc/fmap/             the reference help() reads, MANIFEST
#   PREFIX/share/man/man1/fmap.1       the man page
# MANIFEST lists every file installed; --uninstall removes those files and
# the folders they leave empty, and nothing else.
set -euo pipefail
here=$(pwd -P)
cd "$(dirname "$0")/.."

usage () {
  cat <<'EOF'
usage: bash scripts/install.sh [--no-build] [PREFIX]
       bash scripts/install.sh --uninstall [PREFIX]
Installs fmap under PREFIX (default /usr/local): PREFIX/bin/fmap,
PREFIX/lib/lua/5.4/fmap.so, PREFIX/share/lua/5.4/fmap/, the reference in
PREFIX/share/doc/fmap/ and the man page PREFIX/share/man/man1/fmap.1.
  --no-build    install what build/ holds, without running the build
  --uninstall   remove the files a previous install listed in its MANIFEST
  --help        print this
DESTDIR=DIR in the environment installs under DIR/PREFIX instead.
EOF
}

die () {
  echo "install.sh: $*" >&2
  exit 1
}

mode=install
build=1
prefix=""
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    --uninstall) mode=uninstall ;;
    --help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option '$a'" >&2; usage >&2; exit 2 ;;
    *) [ -z "$prefix" ] || { usage >&2; exit 2; }; prefix=$a ;;
  esac
done
prefix=${prefix:-/usr/local}
case "$prefix" in
  /*) ;;
  *) prefix="$here/$prefix" ;;  # the host finds its files from itself
esac
prefix=${prefix%/}
root="${DESTDIR:-}$prefix"

V=5.4
BIN=bin/fmap
CMOD=lib/lua/$V/fmap.so
LUADIR=share/lua/$V
DOCDIR=share/doc/fmap
MAN=share/man/man1/fmap.1
MANIFEST=$DOCDIR/MANIFEST

# Removes the files the manifest under $root lists, the manifest, and
# the folders of fmap's own they leave empty (share/lua/5.4/fmap/...,
# share/doc/fmap), never a folder such as bin/ that others share.
# Returns 1 if there is no manifest.
remove_installed () {
  local files f d
  [ -f "$root/$MANIFEST" ] || return 1
  mapfile -t files < "$root/$MANIFEST"
  files+=("$MANIFEST")
  for f in "${files[@]}"; do
    case "$f" in
      ""|/*|*..*) continue ;;  # only paths under the prefix
    esac
    rm -f -- "$root/$f"
  done
  for f in "${files[@]}"; do
    d=$(dirname -- "$f")
    while [ "$d" != . ] && [ "$d" != / ]; do
      echo "$d"
      d=$(dirname -- "$d")
    done
  done | sort -ru | while IFS= read -r d; do  # children before parents
    case "$d" in
      */fmap|*/fmap/*) rmdir -- "$root/$d" 2>/dev/null || true ;;
    esac
  done
  return 0
}

if [ "$mode" = uninstall ]; then
  remove_installed || die "$root: no fmap installation here (no $MANIFEST)"
  echo "removed fmap from $root"
  exit 0
fi

if [ "$build" = 1 ]; then
  premake4 --file=premake5.lua gmake >/dev/null
  make -s -C build config=release fmap fmap_module
fi
for f in build/bin/fmap build/lib/fmap.so; do
  [ -f "$f" ] || die "$f is missing: build it first (or drop --no-build)"
done

# What goes where: "source destination" pairs, destinations under root.
pairs=("build/bin/fmap $BIN" "build/lib/fmap.so $CMOD" "doc/fmap.1 $MAN"
       "README.md $DOCDIR/README.md")
while IFS= read -r f; do
  pairs+=("$f $LUADIR/${f#lua/}")
done < <(find lua/fmap -type f -name '*.lua' | sort)
while IFS= read -r f; do
  pairs+=("$f $DOCDIR/${f#doc/}")
done < <(find doc -maxdepth 1 -type f \( -name '*.md' -o -name '*.png' \) \
           | sort)

# An earlier installation goes first, so that no file it had and this
# one has not (a module since removed) stays behind.
remove_installed || true

LIST=""
for p in "${pairs[@]}"; do
  src=${p%% *}
  dst=${p#* }
  perm=644
  case "$dst" in bin/*|*.so) perm=755 ;; esac
  install -D -m "$perm" -- "$src" "$root/$dst"
  LIST+="$dst"$'\n'
done
printf '%s' "$LIST" > "$root/$MANIFEST"
chmod 644 "$root/$MANIFEST"
echo "installed fmap in $root: $(printf '%s' "$LIST" | wc -l) files," \
     "listed in $root/$MANIFEST"
