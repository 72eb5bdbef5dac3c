#!/usr/bin/env bash
# The Python suite: builds and installs ./bindings-python into a local virtualenv
# (.venv-python, git-ignored) exactly as a user would (`pip install ./bindings-python`),
# then runs ruff, mypy --strict on the examples, stubtest on the .pyi, pytest (both
# backends: the NATS tests start private nats-servers; the examples run on both).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n--> python: %s\n' "$*"; }
VENV=.venv-python
PY="$VENV/bin/python"

step "virtualenv $VENV"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip

step "test tools (maturin, pytest, pytest-asyncio, nats-py, mypy, ruff)"
"$PY" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.9.4,<2" "pytest>=8,<10" "pytest-asyncio>=1,<2" "nats-py==2.16.0" \
    "mypy>=1.18,<3" "ruff>=0.14,<1" "typing_extensions>=4.15"

step "Rust: formatting and clippy of bindings-python (a workspace member outside default-members)"
cargo fmt -p busbar-python --check
cargo clippy -p busbar-python --locked --all-targets -- -D warnings

# maturin builds in the root workspace (its Cargo.lock, --locked, target/python-release).
step "pip install ./bindings-python (maturin builds the extension; first run takes a few minutes)"
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings-python
"$PY" -c 'import busbar; print("installed busbar from", busbar.__file__)'

step "ruff (lint + format check)"
"$VENV/bin/ruff" check --config bindings-python/pyproject.toml bindings-python examples/python bindings-python/bench
"$VENV/bin/ruff" format --check --config bindings-python/pyproject.toml bindings-python examples/python bindings-python/bench

step "mypy --strict on the examples, and stubtest of the .pyi against the module"
MYPYPATH=bindings-python/tests "$PY" -m mypy --strict examples/python bindings-python/bench bindings-python/tests
"$PY" -m mypy.stubtest busbar

step "pytest (vectors, both backends with a private nats-server, nats-py interop, examples)"
(cd bindings-python && "../$PY" -m pytest -q)
