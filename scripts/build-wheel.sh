#!/usr/bin/env bash
# Builds the Python distributions of busbar (PyPI name busbar-sdk, module `busbar`):
#   - one abi3 wheel for every CPython >= 3.11 (pyo3's abi3-py311), tagged manylinux2014
#     (glibc 2.17: RHEL/CentOS 7 and newer, Ubuntu 14.04 and newer): maturin links it with
#     zig against glibc 2.17's symbols, so the wheel does not need the build machine's glibc
#     (a plain build here, on glibc 2.36, needs GLIBC_2.34 symbols: manylinux_2_34);
#   - an sdist, for platforms without a wheel (it builds from source and needs Rust), with
#     the patched async-nats copy (vendor/async-nats) that maturin leaves out.
# Build tools (maturin, ziglang from PyPI) go into a virtualenv, .venv-build (git-ignored).
# Output: target/wheels/busbar_sdk-X.Y.Z-cp311-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
# and target/wheels/busbar_sdk-X.Y.Z.tar.gz. Needs cargo (rustup: it adds the target).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT="$TARGET_DIR/wheels"
VENV=.venv-build

step() { printf '\n--> wheel: %s\n' "$*"; }

step "build tools in $VENV (maturin, ziglang)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.9.4,<2" "ziglang>=0.15,<0.18"
# maturin finds zig through the `python -m ziglang` of the Python on PATH: the virtualenv's.
export PATH="$(realpath "$VENV")/bin:$PATH"

# maturin --zig names the glibc version in the target (x86_64-unknown-linux-gnu.2.17) and
# builds in target/x86_64-unknown-linux-gnu/python-release.
step "abi3 wheel for manylinux2014 (glibc 2.17), linked by zig"
rm -f "$OUT"/busbar_sdk-*
"$VENV/bin/maturin" build --manifest-path bindings-python/Cargo.toml --locked --zig \
    --compatibility manylinux2014 --target x86_64-unknown-linux-gnu --out "$OUT"

step "sdist"
"$VENV/bin/maturin" sdist --manifest-path bindings-python/Cargo.toml --out "$OUT"
# maturin packs the path dependencies but not the root Cargo.toml's [patch] target
# (vendor/async-nats), without which the sdist's workspace does not resolve: add it. Its
# workspace has fewer members than the repository's, so its Cargo.lock (the repository's)
# lists packages it no longer uses, and pyproject's `locked = true` would refuse it: prune
# it offline (no version changes), then check that it resolves offline with --locked.
SDIST=$(ls "$OUT"/busbar_sdk-*.tar.gz)
NAME=$(basename "$SDIST" .tar.gz)
UNPACKED=$(mktemp -d)
trap 'rm -rf "$UNPACKED"' EXIT
tar -xzf "$SDIST" -C "$UNPACKED"
mkdir -p "$UNPACKED/$NAME/vendor"
cp -R vendor/async-nats "$UNPACKED/$NAME/vendor/"
(cd "$UNPACKED/$NAME" && cargo metadata --offline --format-version 1 >/dev/null &&
    cargo metadata --offline --locked --format-version 1 >/dev/null)
tar -czf "$SDIST" -C "$UNPACKED" "$NAME"
echo "added vendor/async-nats; the sdist resolves offline with --locked"

ls -l "$OUT"/busbar_sdk-*
