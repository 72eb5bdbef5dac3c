#!/usr/bin/env bash
# The C suite: builds libbusbar, checks that include/busbar.h is the generated one, runs
# the C tests (tests/c/api_*.c and int_*.c: plainly, the leak runs under valgrind, and
# against a private nats-server), and builds
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

# Runs every C test program (api_*, int_*), with the NATS URL given as $1 if any, and
# prints the total of their checks.
run_c_tests() {
    local total=0 out checks
    for name in api_subjects api_config api_errors int_pubsub int_callbacks int_durable int_observe; do
        out=$("$OUT/$name" "$@") || { printf '%s\n' "$out"; echo "$name failed" >&2; return 1; }
        printf '%s\n' "$out"
        checks=$(sed -n 's/^\([0-9]*\) checks, 0 failed$/\1/p' <<<"$out")
        total=$((total + checks))
    done
    echo "C tests: $total checks, 0 failed"
}

step "C API and integration tests on the in-memory bus (vectors from tests/vectors/subjects.json)"
make --no-print-directory -C tests/c TARGET_DIR="$TARGET_DIR"
run_c_tests

step "C leak runs: every test program under valgrind, no invalid access, nothing definitely or indirectly lost"
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind not found: installing Debian's valgrind package"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind
fi
make --no-print-directory -C tests/c TARGET_DIR="$TARGET_DIR" leak
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

step "C tour example (attributes, serve, connection events, a principal)"
check_tour() {
    grep -q "read order-7 com.example.order.created application/json corr-1" <<<"$1"
    grep -q "internal tour=1 tenant=st-marys keyid=(none)" <<<"$1"
    grep -q "served: HELLO" <<<"$1"
    grep -q "answered 1 request(s)" <<<"$1"
    grep -q 'clerk sees {"ssn":"\*\*\*\*\*\*\*6789"}; policy counters: 1 masked' <<<"$1"
}
check_tour "$("$OUT"/tour)"
echo "$OUT/tour ran the scenario"

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
run_c_tests "nats://127.0.0.1:$PORT"
BUSBAR_BACKEND=nats BUSBAR_NATS_URL="nats://127.0.0.1:$PORT" "$OUT"/quickstart | grep -q "1 request(s) answered"
echo "quickstart ran on NATS"
check_durable "$(BUSBAR_BACKEND=nats BUSBAR_NATS_URL="nats://127.0.0.1:$PORT" "$OUT"/durable)"
echo "durable example ran on NATS"
check_tour "$(BUSBAR_BACKEND=nats BUSBAR_NATS_URL="nats://127.0.0.1:$PORT" "$OUT"/tour)"
echo "tour example ran on NATS"

printf '\nc: all passed\n'
