#!/usr/bin/env bash
# The Python suite, against the distribution a user installs: scripts/build-wheel.sh builds
# the abi3 manylinux2014 wheel (and the sdist); a fresh virtualenv (.venv-python,
# git-ignored, re-created every run) installs the wheel with no cargo or rustc on PATH,
# then runs ruff, mypy --strict on the examples, stubtest on the .pyi, pytest (every
# backend: the NATS tests start private nats-servers, the RabbitMQ ones use the machine's
# broker; nats-py and pika interop; the examples), all with that PATH. Building from source (`pip install ./bindings-python`) is the same maturin
# build; CI builds once, the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n--> python: %s\n' "$*"; }
VENV=.venv-python
PY="$VENV/bin/python"
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")

step "Rust: formatting and clippy of bindings-python (a workspace member outside default-members)"
cargo fmt -p busbar-python --check
cargo clippy -p busbar-python --locked --all-targets -- -D warnings

step "wheel and sdist (scripts/build-wheel.sh)"
bash scripts/build-wheel.sh
WHEEL=$(ls "$TARGET_DIR"/wheels/busbar_sdk-*-cp311-abi3-manylinux*_x86_64.whl)

step "fresh virtualenv $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"

# Everything from here runs without Rust: no cargo or rustc on PATH.
NORUST_PATH="$(realpath "$VENV")/bin:/usr/bin:/bin:/usr/sbin:/sbin"
if env PATH="$NORUST_PATH" sh -c 'command -v cargo || command -v rustc'; then
    echo "cargo or rustc is still on the restricted PATH" >&2
    exit 1
fi
export PATH="$NORUST_PATH"

step "pip install the wheel, no Rust on PATH"
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
start=$(date +%s.%N)
"$PY" -m pip install --quiet --disable-pip-version-check --only-binary :all: "$WHEEL"
"$PY" -c 'import busbar; print("busbar", busbar.__version__, "from", busbar.__file__)'
echo "install + import: $("$PY" -c "import time; print(round(time.time() - $start, 1))") s; wheel $(du -k "$WHEEL" | cut -f1) KiB"

step "test tools (pytest, pytest-asyncio, nats-py, pika, confluent-kafka, opentelemetry-sdk, the CloudEvents SDK, mypy, ruff)"
"$PY" -m pip install --quiet --disable-pip-version-check \
    "pytest>=8,<10" "pytest-asyncio>=1,<2" "nats-py==2.16.0" "pika>=1.3,<2" "opentelemetry-sdk>=1.30,<2" \
    "cloudevents==2.2.0" "confluent-kafka==2.16.1" \
    "mypy>=1.18,<3" "ruff>=0.14,<1" "typing_extensions>=4.15"

step "ruff (lint + format check)"
"$VENV/bin/ruff" check --config bindings-python/pyproject.toml bindings-python examples/python examples/observability bindings-python/bench
"$VENV/bin/ruff" format --check --config bindings-python/pyproject.toml bindings-python examples/python examples/observability bindings-python/bench

step "mypy --strict on the examples, and stubtest of the .pyi against the module"
MYPYPATH=bindings-python/tests "$PY" -m mypy --strict examples/python examples/observability bindings-python/bench bindings-python/tests
"$PY" -m mypy.stubtest busbar

step "pytest (vectors, every backend (a private nats-server; RabbitMQ), nats-py and pika interop, examples)"
(cd bindings-python && "../$PY" -m pytest -q)
