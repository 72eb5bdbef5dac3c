#!/usr/bin/env bash
# Runs every test suite of busbar, from a fresh machine: crates come from crates.io,
# Debian's nats-server package is installed when no nats-server is found (the NATS
# tests start their own private servers with it), the vector check needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step names itself with the time it began, so a slow step shows in CI's log.
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

# Installs Debian package $1 (as root, or through sudo).
apt_install() {
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$1"
}

step "NATS: a nats-server binary for the tests to start"
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    echo "found $(command -v nats-server || echo /usr/sbin/nats-server)"
else
    echo "nats-server not found: installing Debian's nats-server package"
    apt_install nats-server
fi

step "Prometheus: a prometheus binary for the metrics test to start (core/tests/observability.rs)"
# Debian's package (about 30 s to install on a fresh machine); the test runs its own private
# server on a loopback port with a temporary store and stops it by PID.
if command -v prometheus >/dev/null 2>&1; then
    echo "found $(command -v prometheus)"
else
    echo "prometheus not found: installing Debian's prometheus package"
    apt_install prometheus
fi

step "Kafka: a tansu broker binary for the Kafka backend's tests (core/tests/kafka.rs, the contract)"
# tansu (an Apache-Kafka-compatible broker, crates.io) built once into a cache outside the
# clone: a cold install took 15 min 14 s on a 2-core machine. The tests start private
# brokers with it on free loopback ports (memory storage) and stop them by PID.
TANSU_ROOT="${TANSU_ROOT_DIR:-$HOME/.cache/busbar/tansu}"
export TANSU_BIN="$TANSU_ROOT/bin/tansu"
if [ -x "$TANSU_BIN" ]; then
    echo "found $("$TANSU_BIN" --version 2>/dev/null || echo "$TANSU_BIN")"
else
    echo "tansu not found: cargo install tansu 0.6.0 into $TANSU_ROOT (about 15 minutes, once)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,postgres --root "$TANSU_ROOT" --quiet
fi

step "One version everywhere (scripts/version.py: Cargo.toml, busbar.h, npm manifests, CHANGELOG.md)"
python3 scripts/version.py check

step "RabbitMQ: a broker at 127.0.0.1:5672 (guest/guest) for the RabbitMQ backend's tests"
# The machine runs one; the tests isolate themselves on exchanges of their own.
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    echo "no RabbitMQ broker answers at 127.0.0.1:5672 (set BUSBAR_TEST_AMQP_URL for another)" >&2
    [ -n "${BUSBAR_TEST_AMQP_URL:-}" ] || exit 1
fi

step "Rust: formatting"
cargo fmt --all --check

step "core: no import cycle between its files (scripts/check-cycles.py)"
python3 scripts/check-cycles.py --self-test
python3 scripts/check-cycles.py core/src

step "Rust: clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p busbar-sdk --features otel-metrics --all-targets --locked -- -D warnings

# --workspace takes bindings-python too (not a default member): clippy checks it; it has no
# Rust tests (test = false: pytest covers it), so cargo test builds no libpython-linked binary.
# The cluster fault tests run on their own below, so that their counts are printed.
cluster_tests=(acked_publishes_survive_a_leader_kill a_client_fails_over_when_its_node_dies
    a_hung_node_bounds_every_call_and_the_client_moves_on)
step "Rust: unit, contract, vector and doc tests (the READMEs' and guides' Rust blocks too)"
cargo test --workspace --locked -- "${cluster_tests[@]/#/--skip=}"

step "Rust: faults on a 3-node nats-server cluster, with their counts (acked, delivered, duplicates, lost) and recovery times"
cargo test -p busbar-sdk --locked --test cluster -- --nocapture --test-threads=1

step "Rust: API docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "Rust: the quickstart runs"
cargo run --quiet --locked -p busbar-sdk --example quickstart >/dev/null

step "Rust: the PHI example runs (masking per role, encryption, audit log verified)"
cargo run --quiet --locked -p busbar-sdk --example phi >/dev/null

step "Rust: OpenTelemetry traces and metrics across a nats-server (features otel, otel-metrics; the SDK's in-memory exporters)"
cargo test -p busbar-sdk --locked --features otel-metrics --test otel --test otel_metrics

step "Rust: the NATS contract through busbar-sdk alone (without nats-encoded-headers: headers as a HeaderMap, what a crates.io build sends)"
cargo test -p busbar-sdk --locked --test contract -- nats::

# The crate as crates.io would get it: packed (examples included) and built from the package,
# against crates.io's async-nats (a workspace [patch] does not reach the package's own build):
# the default features leave out nats-encoded-headers, the API only the vendored crate has.
step "Rust: cargo publish --dry-run -p busbar-sdk"
cargo publish --dry-run --locked -p busbar-sdk

step "Rust: the quickstart and the PHI example run unchanged on RabbitMQ (configuration only)"
for example in quickstart phi; do
    BUSBAR_BACKEND=rabbitmq BUSBAR_AMQP_URL="${BUSBAR_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" \
        BUSBAR_AMQP_EXCHANGE="busbar.example.$$" cargo run --quiet --locked -p busbar-sdk --example "$example" >/dev/null
done

step "Rust: the quickstart and the PHI example run unchanged on Kafka (configuration only, a private tansu broker)"
KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ >/dev/null 2>&1 &
KAFKA_PID=$!
trap 'kill "$KAFKA_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.1; done
for example in quickstart phi; do
    BUSBAR_BACKEND=kafka BUSBAR_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" BUSBAR_KAFKA_TOPIC="busbar.example.$example" \
        cargo run --quiet --locked -p busbar-sdk --example "$example" >/dev/null
done
kill "$KAFKA_PID" && wait "$KAFKA_PID" 2>/dev/null || true
trap - EXIT

step "Shared vectors: tests/vectors/subjects.json matches its generator"
python3 tests/vectors/tools/gen_subjects.py --check

step "Shared vectors: tests/vectors/masking.json matches its generator (HMAC from Python's stdlib)"
python3 tests/vectors/tools/gen_masking.py --check

step "Shared vectors: tests/vectors/json_payloads.json matches its generator (node's JSON.stringify)"
python3 tests/vectors/tools/gen_json_payloads.py --check

step "Dependencies: licenses, sources and bans (cargo-deny, offline: deny.toml)"
if ! cargo deny --version >/dev/null 2>&1; then
    echo "cargo-deny not found: cargo install cargo-deny --locked (a few minutes, once)"
    cargo install cargo-deny --locked --quiet
fi
# cargo-deny reads the metadata of every target platform's crates (windows-sys too); a
# Linux build downloads only its own, so fetch the rest first, or --offline fails on a
# fresh machine.
cargo fetch --locked --quiet
cargo deny --offline check --hide-inclusion-graph licenses sources bans

# Each language suite lives in its own script so the packages can grow independently.
for lang in c python node; do
    step "$lang: suite (scripts/test-$lang.sh)"
    bash "scripts/test-$lang.sh"
done

step "cross-language: every language publishes every attribute, every language reads it (scripts/test-cross.sh)"
bash scripts/test-cross.sh

# The packages as users install them: the C package from a temporary prefix, the npm
# tarballs in a scratch project without Rust (the wheel is tested by scripts/test-python.sh).
step "C package (scripts/test-c-package.sh)"
bash scripts/test-c-package.sh
step "npm packages (scripts/test-npm-package.sh)"
bash scripts/test-npm-package.sh

step "gateway: curl to Python masked per principal, schemathesis, the admin page in Chromium (scripts/test-gateway.sh)"
bash scripts/test-gateway.sh

step "Docs: every C, Python and Node code block runs (Rust blocks ran as doc tests above)"
python3 scripts/check-snippets.py

printf '\nall test suites passed [%s]\n' "$(date +%T)"
