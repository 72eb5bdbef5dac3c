#!/usr/bin/env bash
# The C suite: builds libbusbar, checks that include/busbar.h is the generated one, runs
# the C tests (plainly, under valgrind, and against a private nats-server), and builds
# and runs the C quickstart against the static and the shared library and the durable
# streams example (in memory and on NATS).
# Needs cargo, a C compiler, make, python3 and git; installs Debian's valgrind package
# when valgrind is missing. Build output goes to target/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> c: %s\n' "$*"; }

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "scripts/test-c.sh needs $1 on PATH" >&2; exit 1; }
}
need cc
need make
need python3
need git

# cargo's target directory (CARGO_TARGET_DIR when set), made absolute for make -C.
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT="$TARGET_DIR/c"

step "build libbusbar (cdylib + staticlib); build.rs regenerates include/busbar.h"
cargo build --locked -p busbar-ffi

step "include/busbar.h is committed and current"
git ls-files --error-unmatch include/busbar.h >/dev/null
if ! git diff --exit-code --stat -- include/; then
    echo "include/busbar.h differs from what cbindgen generates from ffi/src: commit the regenerated header" >&2
    exit 1
fi
echo "header matches the code"

step "Rust unit tests of the ffi crate (status mapping)"
cargo test --locked -p busbar-ffi --quiet

step "C tests on the in-memory bus (vectors from tests/vectors/subjects.json)"
make --no-print-directory -C tests/c TARGET_DIR="$TARGET_DIR"
"$OUT"/test_busbar

step "C tests under valgrind: no invalid access, nothing definitely or indirectly lost"
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind not found: installing Debian's valgrind package"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind
fi
# The runtime's worker threads live until the process ends, so their memory is "still
# reachable", and glibc's cache of joined threads' stacks shows as "possibly lost"; only
# real leaks (definite, indirect) and memory errors fail the run. No suppression file.
valgrind --quiet --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    "$OUT"/test_busbar >"$OUT"/valgrind.out 2>&1 || {
    status=$?
    cat "$OUT"/valgrind.out
    echo "valgrind run failed (exit $status; 99 means a memory error or leak)" >&2
    exit 1
}
tail -n 1 "$OUT"/valgrind.out
echo "valgrind: 0 errors, 0 bytes definitely or indirectly lost"

step "C quickstart, static and shared library"
make --no-print-directory -C examples/c TARGET_DIR="$TARGET_DIR" all shared
for exe in "$OUT"/quickstart "$OUT"/quickstart-shared; do
    out=$("$exe")
    grep -q "four jobs, each done once" <<<"$out"
    grep -q "1 request(s) answered" <<<"$out"
    grep -q "\[no_responders\]" <<<"$out"
    echo "$exe ran the scenario"
done

step "C durable-streams example"
check_durable() {
    grep -q "sequence 1 (duplicate: stored once)" <<<"$1"
    grep -q "acked; acking twice: \[invalid_argument\]" <<<"$1"
    grep -q 'on dlq.orders.created, reason "terminated: unparsable order"' <<<"$1"
    grep -q "ORDERS holds 2 messages" <<<"$1"
}
check_durable "$("$OUT"/durable)"
echo "$OUT/durable ran the scenario"

step "C tests and quickstart against a private nats-server"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS_SERVER" ] || { echo "nats-server not found (apt-get install nats-server)" >&2; exit 1; }
NATS_DIR=$(mktemp -d)
NATS_PID=""
stop_nats() {
    if [ -n "$NATS_PID" ]; then kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
    rm -rf "$NATS_DIR"
}
trap stop_nats EXIT
for attempt in 1 2 3 4 5; do
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$NATS_SERVER" -js -a 127.0.0.1 -p "$PORT" -sd "$NATS_DIR/store" >"$NATS_DIR/log" 2>&1 &
    NATS_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break 2; fi
        kill -0 "$NATS_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; NATS_PID=""
done
[ -n "$NATS_PID" ] || { cat "$NATS_DIR/log" >&2; echo "could not start nats-server" >&2; exit 1; }
echo "nats-server pid $NATS_PID on 127.0.0.1:$PORT"
"$OUT"/test_busbar "nats://127.0.0.1:$PORT"
BUSBAR_BACKEND=nats BUSBAR_NATS_URL="nats://127.0.0.1:$PORT" "$OUT"/quickstart | grep -q "1 request(s) answered"
echo "quickstart ran on NATS"
check_durable "$(BUSBAR_BACKEND=nats BUSBAR_NATS_URL="nats://127.0.0.1:$PORT" "$OUT"/durable)"
echo "durable example ran on NATS"

printf '\nc: all passed\n'
