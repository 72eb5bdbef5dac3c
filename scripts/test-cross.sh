#!/usr/bin/env bash
# The cross-language test (tests/cross/run.py): Rust, C, Python and Node each publish one
# message with every envelope attribute set to a private nats-server, and each reads all
# four back: 16 publisher x reader pairs, identical on all eight fields. Runs after the C,
# Python and Node suites (scripts/test.sh), which build libbusbar, .venv-python and the
# Node module; here only the Rust and C participants are built (a few seconds warm).
# Needs cargo, cc, python3, node and a nats-server (scripts/test.sh installs Debian's).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> cross: %s\n' "$*"; }
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
PY=.venv-python/bin/python
[ -x "$PY" ] || { echo "run scripts/test-python.sh first (it makes $PY)" >&2; exit 1; }
ls bindings-node/busbar.*.node >/dev/null 2>&1 || { echo "run scripts/test-node.sh first (it builds the Node module)" >&2; exit 1; }

step "build the Rust participant and libbusbar"
cargo build --locked --quiet -p busbar-cross -p busbar-ffi

step "build the C participant"
mkdir -p "$TARGET_DIR/c"
cc -std=c11 -g -O1 -Wall -Wextra -Werror -Iinclude -o "$TARGET_DIR/c/cross" tests/cross/c/cross.c \
    "$TARGET_DIR/debug/libbusbar.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lz

step "16 publisher x reader pairs on a private nats-server"
python3 tests/cross/run.py --rust "$TARGET_DIR/debug/busbar-cross" --c "$TARGET_DIR/c/cross" \
    --python "$PY" --node "$(command -v node)"

step "traces: a Python producer's trace continued by a Node consumer and the other way round"
python3 tests/cross/trace.py --python "$PY" --node "$(command -v node)"

step "discovery: a busbar service run from each language, found with \$SRV.PING and \$SRV.INFO from Rust, C, Python and Node"
python3 tests/cross/discover.py --rust "$TARGET_DIR/debug/busbar-cross" --c "$TARGET_DIR/c/cross" \
    --python "$PY" --node "$(command -v node)"
