#!/usr/bin/env bash
# The C package: `make -C ffi install` into a temporary prefix, then what a C user does
# with it: the quickstart built with `pkg-config --cflags --libs busbar` and with CMake's
# find_package(busbar) (shared and static), a version check (header macros = the loaded
# library = Cargo.toml's version), and the SONAME and symlinks of the shared library.
# Installs Debian's pkg-config and cmake when missing. Build output goes to target/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> c package: %s\n' "$*"; }

apt_install() {
    echo "$1 not found: installing Debian's $2 package"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2"
}
command -v pkg-config >/dev/null 2>&1 || apt_install pkg-config pkg-config
command -v cmake >/dev/null 2>&1 || apt_install cmake cmake

VERSION=$(python3 -c 'import re,sys; print(re.search(r"\[workspace\.package\][^\[]*?\nversion = \"([^\"]+)\"", open("Cargo.toml").read(), re.S).group(1))')
MAJOR=${VERSION%%.*}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX="$WORK/prefix"

step "make -C ffi install PREFIX=<temporary prefix> (release build)"
make --no-print-directory -C ffi install PREFIX="$PREFIX"

step "installed files"
for f in include/busbar.h lib/libbusbar.so.$VERSION lib/libbusbar.a lib/pkgconfig/busbar.pc \
    lib/cmake/busbar/busbarConfig.cmake lib/cmake/busbar/busbarConfigVersion.cmake; do
    [ -f "$PREFIX/$f" ] || { echo "missing $f" >&2; exit 1; }
done
[ "$(readlink "$PREFIX/lib/libbusbar.so.$MAJOR")" = "libbusbar.so.$VERSION" ]
[ "$(readlink "$PREFIX/lib/libbusbar.so")" = "libbusbar.so.$MAJOR" ]
soname=$(readelf -d "$PREFIX/lib/libbusbar.so.$VERSION" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libbusbar.so.$MAJOR" ] || { echo "SONAME is '$soname', not libbusbar.so.$MAJOR" >&2; exit 1; }
if readelf -S "$PREFIX/lib/libbusbar.a" | grep -q '\.debug_info'; then
    echo "libbusbar.a still has debug information" >&2
    exit 1
fi
grep -q '^Libs.private: -l' "$PREFIX/lib/pkgconfig/busbar.pc"
(cd "$PREFIX" && find . -type f -o -type l | sort | xargs ls -ld | awk '{print $5, $9, $10, $11}')
echo "SONAME $soname; libbusbar.a without debug sections; $(du -sh "$PREFIX" | cut -f1) installed"

check_quickstart() {
    local out
    out=$("$@")
    grep -q "four jobs, each done once" <<<"$out"
    grep -q "1 request(s) answered" <<<"$out"
    grep -q "\[no_responders\]" <<<"$out"
    echo "${*: -1} ran the scenario"
}

step "the quickstart with pkg-config --cflags --libs busbar (libbusbar.so, found through the SONAME)"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
[ "$(pkg-config --modversion busbar)" = "$VERSION" ]
# shellcheck disable=SC2046  # pkg-config's output is a list of words
cc -std=c11 -Wall -Wextra -Werror examples/c/quickstart.c $(pkg-config --cflags --libs busbar) \
    -o "$WORK/quickstart-pc"
readelf -d "$WORK/quickstart-pc" | grep -q "NEEDED.*\[libbusbar.so.$MAJOR\]"
check_quickstart env LD_LIBRARY_PATH="$PREFIX/lib" "$WORK/quickstart-pc"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror tests/c-package/version.c $(pkg-config --cflags --libs busbar) -o "$WORK/version-pc"
LD_LIBRARY_PATH="$PREFIX/lib" "$WORK/version-pc" "$VERSION"

step "the quickstart with CMake find_package(busbar $MAJOR...) (busbar::busbar and busbar::busbar_static)"
cmake -S tests/c-package -B "$WORK/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/cmake" >/dev/null
check_quickstart "$WORK/cmake/quickstart-cmake"
check_quickstart "$WORK/cmake/quickstart-cmake-static"
if readelf -d "$WORK/cmake/quickstart-cmake-static" | grep -q libbusbar; then
    echo "the static quickstart needs libbusbar.so" >&2
    exit 1
fi
"$WORK/cmake/version-cmake" "$VERSION"
# A version the package does not satisfy is refused.
mkdir -p "$WORK/too-new"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(p C)\nfind_package(busbar %s REQUIRED)\n' "$((MAJOR + 1)).0" \
    >"$WORK/too-new/CMakeLists.txt"
if cmake -S "$WORK/too-new" -B "$WORK/too-new/build" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null 2>&1; then
    echo "find_package(busbar $((MAJOR + 1)).0) accepted version $VERSION" >&2
    exit 1
fi
echo "find_package(busbar $((MAJOR + 1)).0) refuses $VERSION"

printf '\nc package: all passed\n'
