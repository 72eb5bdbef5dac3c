#!/usr/bin/env bash
# Sets busbar's version everywhere it is written (scripts/version.py lists the places):
#   bash scripts/bump-version.sh 0.2.0
# then refreshes Cargo.lock (offline) and the generated header, and checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: scripts/bump-version.sh X.Y.Z" >&2; exit 2; }
python3 scripts/version.py bump "$1"
cargo metadata --offline --format-version 1 >/dev/null   # rewrites the workspace's Cargo.lock entries
cargo build --offline --quiet -p busbar-ffi              # regenerates include/busbar.h
python3 scripts/version.py check
