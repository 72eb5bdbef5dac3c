#!/usr/bin/env bash
# The Node suite: installs the npm packages it needs into local node_modules folders
# (bindings-node/ and examples/node/, both git-ignored, from the committed lock files),
# builds the native module with @napi-rs/cli, checks that the generated index.js and
# index.d.ts are current, installs the package into examples/node as a user would
# (npm install runs its cargo build), type-checks the TypeScript examples, and runs the
# node:test suite (shared vectors, both backends with private nats-servers, nats.js interop,
# the examples).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "Node: toolchain"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node and npm are needed (Node.js 18 or newer)" >&2
    exit 1
fi
echo "node $(node --version), npm $(npm --version)"

step "Node: npm packages of bindings-node (npm ci, no install scripts)"
cd "$root/bindings-node"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

step "Node: build the native module (napi build --platform --release)"
npx napi build --platform --release

step "Node: generated index.js and index.d.ts are committed and current"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    if ! git -C "$root" diff --exit-code -- bindings-node/index.js bindings-node/index.d.ts; then
        echo "bindings-node/index.js or index.d.ts changed when rebuilt: commit the regenerated files" >&2
        exit 1
    fi
    echo "up to date"
else
    echo "not a git checkout: skipped"
fi

step "Node: npm ci in examples/node (links ../../bindings-node; its install script builds it)"
cd "$root/examples/node"
npm ci --no-audit --no-fund --loglevel=error
node -e "require('busbar'); console.log('require(\"busbar\") works')"
node --input-type=module -e "import { connect } from 'busbar'; const bus = await connect(); await bus.close(); console.log('import { connect } from \"busbar\" works')"

step "Node: tsc --noEmit on the TypeScript examples"
npx tsc --noEmit -p tsconfig.json
echo "ok"

step "Node: node:test suite"
cd "$root/bindings-node"
node --test --test-reporter=spec test/*.test.js
