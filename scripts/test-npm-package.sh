#!/usr/bin/env bash
# The npm packages as a user gets them: scripts/pack-npm.sh packs the main package and the
# linux-x64-gnu package (`npm pack`), a scratch project installs both tarballs with no cargo
# or rustc on PATH, then: require('busbar'), import { connect } from 'busbar', .version;
# `tsc --noEmit` with the current TypeScript and the oldest supported, in a tsconfig
# without `types: ["node"]`; and the node:test suite of bindings-node run against the
# installed package. Expects the module built by scripts/test-node.sh (pass --build to
# build it here). Work goes to target/npm (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT="$TARGET_DIR/npm"
# The TypeScript releases the typings are checked with: the current one and the oldest
# supported (README: "TypeScript 5.6 or newer", the oldest the current @types/node supports).
TS_CURRENT=7.0.2
TS_OLDEST=5.6.3

step() { printf '\n==> npm package: %s\n' "$*"; }

step "npm pack the main package and the platform package (scripts/pack-npm.sh)"
if [ "${1:-}" = "--build" ]; then bash scripts/pack-npm.sh; else bash scripts/pack-npm.sh --no-build; fi
VERSION=$(node -p "require('./bindings-node/package.json').version")
MAIN="$OUT/busbar-$VERSION.tgz"
PLATFORM="$OUT/busbar-linux-x64-gnu-$VERSION.tgz"
[ -f "$MAIN" ] && [ -f "$PLATFORM" ]
# What the main package holds: no native module, no build script, no Cargo.toml.
if tar -tzf "$MAIN" | grep -E '\.node$|build\.js$|Cargo\.toml$'; then
    echo "the main package carries a native module or a source build" >&2
    exit 1
fi
tar -tzf "$PLATFORM" | grep -qx 'package/busbar.linux-x64-gnu.node'

# The scratch project sits outside the repository, so nothing resolves to the checkout.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
NODE_DIR=$(dirname "$(realpath "$(command -v node)")")
NORUST_PATH="$NODE_DIR:/usr/bin:/bin:/usr/sbin:/sbin"
if env PATH="$NORUST_PATH" sh -c 'command -v cargo || command -v rustc'; then
    echo "cargo or rustc is still on the restricted PATH" >&2
    exit 1
fi

step "npm install the two tarballs into a scratch project, no Rust on PATH"
cd "$SCRATCH"
printf '{ "name": "scratch", "private": true }\n' >package.json
start=$(date +%s.%N)
env PATH="$NORUST_PATH" npm install --no-audit --no-fund --loglevel=error "$PLATFORM" "$MAIN"
echo "npm install: $(node -e "console.log((Date.now() / 1000 - $start).toFixed(1))") s;" \
    "tarballs $(du -k "$MAIN" | cut -f1) KiB + $(du -k "$PLATFORM" | cut -f1) KiB;" \
    "node_modules/busbar* $(du -sck node_modules/busbar* | tail -1 | cut -f1) KiB"
[ ! -e node_modules/busbar/busbar.linux-x64-gnu.node ]
[ -f node_modules/busbar-linux-x64-gnu/busbar.linux-x64-gnu.node ]

step "require, import and .version"
export PATH="$NORUST_PATH"
node -e "
const busbar = require('busbar')
if (busbar.version !== '$VERSION') throw new Error('version ' + busbar.version)
console.log('require(\"busbar\"): version', busbar.version)
"
node --input-type=module -e "
import { connect, version } from 'busbar'
const bus = await connect()
const sub = await bus.subscribe('greet.*')
await bus.publish('greet.world', 'hello')
for await (const msg of sub) { console.log('import { connect }: got', msg.subject, msg.text()); break }
await bus.close()
if (version !== '$VERSION') throw new Error('version ' + version)
"

step "tsc --noEmit with TypeScript $TS_CURRENT and $TS_OLDEST, tsconfig without types: [\"node\"]"
cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "node16",
    "moduleResolution": "node16",
    "strict": true,
    "noEmit": true,
    "skipLibCheck": false
  },
  "files": ["check.ts"]
}
EOF
cat >check.ts <<'EOF'
import { connect, version, type Message, type Payload } from 'busbar'

const payload: Payload = { qty: 1 }
async function main(): Promise<string> {
  const bus = await connect()
  const sub = await bus.subscribe('orders.>')
  await bus.publish('orders.eu.created', payload)
  for await (const msg of sub) {
    const m: Message = msg
    const bytes = m.data
    await bus.close()
    return `${version} ${m.subject} ${bytes.length}`
  }
  return version
}
void main()
EOF
for ts in "$TS_CURRENT" "$TS_OLDEST"; do
    npm install --no-audit --no-fund --loglevel=error --no-save "typescript@$ts" >/dev/null
    ./node_modules/.bin/tsc --version
    ./node_modules/.bin/tsc --noEmit -p tsconfig.json
    echo "typescript $ts: ok"
done

step "the node:test suite of bindings-node against the installed package"
# The suite requires '..' (the package): here a folder whose index.js is the installed busbar.
# The suite's own dependencies (nats.js, amqplib, the OpenTelemetry SDK pieces): every
# devDependency of bindings-node but the napi build tool, at the versions it pins.
TEST_DEPS=$(node -p "Object.entries(require('$root/bindings-node/package.json').devDependencies).filter(([n]) => n !== '@napi-rs/cli').map(([n, v]) => n + '@' + v).join(' ')")
# shellcheck disable=SC2086
npm install --no-audit --no-fund --loglevel=error --no-save $TEST_DEPS >/dev/null
mkdir -p suite/bindings-node suite/examples
cp -r "$root/bindings-node/test" suite/bindings-node/test
cp -r "$root/examples/node" suite/examples/node
rm -rf suite/examples/node/node_modules
# The examples import busbar from their own node_modules: the installed package.
mkdir -p suite/examples/node/node_modules
ln -s "$SCRATCH/node_modules/busbar" suite/examples/node/node_modules/busbar
ln -s "$root/tests" suite/tests
printf '{ "name": "suite", "private": true, "main": "index.js" }\n' >suite/bindings-node/package.json
printf "module.exports = require('busbar')\n" >suite/bindings-node/index.js
printf "module.exports = require('busbar/otel')\n" >suite/bindings-node/otel.js
node -e "
const p = require.resolve('busbar', { paths: ['$SCRATCH/suite/bindings-node/test'] })
if (!p.startsWith('$SCRATCH/node_modules/')) throw new Error('the suite would load ' + p)
console.log('the suite loads', p)
"
(cd suite/bindings-node && node --test --test-reporter=spec test/*.test.js)

printf '\nnpm package: all passed\n'
