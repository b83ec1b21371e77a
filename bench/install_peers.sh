#!/usr/bin/env bash
# bench/install_peers.sh: installs, from Debian 12, the peers that
# bench/bench.lua runs beside fmap's B+tree, then rebuilds so the LMDB
# peer (bench/bench_lmdb.c) is compiled.
#   bash bench/install_peers.sh          as root, or with sudo
# Peers: SQLite from Lua 5.4 through LuaSQL (lua-sql-sqlite3) and through
# LuaDBI (lua-dbi-sqlite3), LMDB from C (liblmdb-dev), Tarantool's memtx
# tree (tarantool). bench.lua reports any of them that is missing as
# skipped, so installing them is optional.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(lua-sql-sqlite3 lua-dbi-sqlite3 liblmdb-dev tarantool)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "peers already installed: ${PACKAGES[*]}"
fi

# Debian's tarantool registers itself as the lua-interpreter alternative
# with a higher priority than lua5.4, which would make /usr/bin/lua (and so
# busted, whose shebang is "env lua") run tarantool. Put lua5.4 back.
if [ -x /usr/bin/lua5.4 ] && [ "$(readlink -f /usr/bin/lua)" != /usr/bin/lua5.4 ]
then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo update-alternatives --set lua-interpreter /usr/bin/lua5.4 >/dev/null
  echo "restored /usr/bin/lua -> lua5.4 (tarantool had taken it)"
fi

# premake adds the LMDB peer only when lmdb.h exists: regenerate, rebuild.
premake4 --file=premake5.lua gmake >/dev/null
make -s -C build config=release -j"$(nproc)" fmap_bench_lmdb
echo "built build/bin/fmap_bench_lmdb"
