#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter, building it once if needed.
#   scripts/python313.sh            -> e.g. /root/.cache/fsgan-python3.13/bin/python3.13
# Blender 5.1 and later run Python 3.13, and bpy 5.2/5.3 on PyPI are cp313 wheels; Debian 12 has
# no Python 3.13 package. So this builds CPython from Debian trixie's python3.13 source package
# (the pristine upstream tarball inside it) with bookworm's build dependencies, and caches the
# result (FSGAN_PYTHON313_CACHE, default ~/.cache/fsgan-python3.13): later runs cost nothing.
# Needs root (apt-get) on the first run; runs without a terminal (CI). Progress goes to stderr,
# only the interpreter's path to stdout.
set -euo pipefail
cache=${FSGAN_PYTHON313_CACHE:-$HOME/.cache/fsgan-python3.13}
py="$cache/bin/python3.13"
export DEBIAN_FRONTEND=noninteractive

# bpy's own shared-library needs (X11/GL client libraries; no display is opened).
runtime_libs=(libx11-6 libxext6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1)
build_deps=(build-essential pkg-config libssl-dev zlib1g-dev libbz2-dev liblzma-dev libffi-dev
  libsqlite3-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev libexpat1-dev xz-utils)

missing() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

apt_install() {
  local need
  need=$(missing "$@")
  [ -z "$need" ] && return 0
  echo "python313.sh: apt-get install $need" >&2
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $need >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends $need >&2; }
}

works() { [ -x "$py" ] && "$py" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv' 2>/dev/null; }

if works; then
  apt_install "${runtime_libs[@]}"
  echo "$py"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "python313.sh: building Python 3.13 needs root (apt-get)" >&2; exit 1; }
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f /etc/apt/sources.list.d/fsgan-trixie-src.list' EXIT

# The source package only: a deb-src line for trixie, removed again right after the download so
# that nothing from trixie is ever installed.
src_list=/etc/apt/sources.list.d/fsgan-trixie-src.list
echo "deb-src http://deb.debian.org/debian trixie main" >"$src_list"
apt-get update -q >&2
(cd "$work" && apt-get source --download-only python3.13 >&2)
rm -f "$src_list"
apt-get update -q >&2

apt_install "${build_deps[@]}" "${runtime_libs[@]}"

orig=$(ls "$work"/python3.13_*.orig.tar.xz | head -n 1)
tar -xf "$orig" -C "$work"
srcdir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)
echo "python313.sh: building $(basename "$srcdir") into $cache" >&2
rm -rf "$cache"
(
  cd "$srcdir"
  ./configure -q --prefix="$cache" --with-ensurepip=install --disable-test-modules \
    --without-system-libmpdec >&2
  make -s -j"${FSGAN_MAKE_JOBS:-2}" >&2
  make -s install >&2
)
works || { echo "python313.sh: the built Python 3.13 misses a module (ssl, sqlite3, ...)" >&2; exit 1; }
echo "python313.sh: Python $("$py" -c 'import platform; print(platform.python_version())') built in $(($(date +%s) - start)) s" >&2
echo "$py"
