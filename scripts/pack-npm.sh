#!/usr/bin/env bash
# Makes busbar's npm packages the way napi-rs projects ship them: the main package `busbar`
# (the JavaScript layer, the generated loader and typings) and one package per platform
# holding the prebuilt native module (`busbar-linux-x64-gnu`, ...), listed as
# optionalDependencies of the main one, so `npm install busbar` downloads the one binary of
# the user's platform and needs no Rust.
#
# The platform packages are made by @napi-rs/cli (create-npm-dirs, artifacts, pre-publish
# with --skip-optional-publish: nothing is published). Every target named in
# bindings-node/package.json's napi.targets whose module was built gets a package: the one
# `napi build --platform --release` made here, plus any busbar.<platform>.node found in
# $BUSBAR_NPM_ARTIFACTS (a CI matrix's downloads).
#
#   bash scripts/pack-npm.sh              # builds the module first (napi build --release)
#   bash scripts/pack-npm.sh --no-build   # packs the module already built
# Output: target/npm/busbar-X.Y.Z.tgz and target/npm/busbar-<platform>-X.Y.Z.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT="$TARGET_DIR/npm"
STAGE="$OUT/busbar"
napi="$root/bindings-node/node_modules/.bin/napi"

cd "$root/bindings-node"
[ -x "$napi" ] || npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
if [ "${1:-}" != "--no-build" ]; then
    npx napi build --platform --release
fi

rm -rf "$OUT"
mkdir -p "$STAGE/artifacts"
# The prebuilt modules, stripped of symbols (a user never debugs into them).
shopt -s nullglob
for module in "$root"/bindings-node/busbar.*.node ${BUSBAR_NPM_ARTIFACTS:+"$BUSBAR_NPM_ARTIFACTS"/busbar.*.node}; do
    cp "$module" "$STAGE/artifacts/"
    case "$module" in *linux*) strip --strip-unneeded "$STAGE/artifacts/$(basename "$module")" ;; esac
done
built=("$STAGE"/artifacts/busbar.*.node)
[ ${#built[@]} -gt 0 ] || { echo "no busbar.*.node built: run without --no-build" >&2; exit 1; }

# The main package: package.json's `files`, without what only a source checkout needs (the
# install script that builds with cargo, build.js, a module beside index.js), and with
# napi.targets narrowed to the platforms built, so each optional dependency exists.
cp package.json busbar.js otel.js otel.d.ts index.js index.d.ts README.md "$root/LICENSE" "$STAGE/"
node - "$STAGE" "${built[@]}" <<'EOF'
const fs = require('node:fs')
const path = require('node:path')
const [stage, ...modules] = process.argv.slice(2)
const file = path.join(stage, 'package.json')
const pkg = JSON.parse(fs.readFileSync(file, 'utf8'))
const platforms = new Set(modules.map((m) => path.basename(m).split('.')[1]))
// napi's own platform name of a Rust target (the folder create-npm-dirs makes).
const { parseTriple } = require(path.join(process.cwd(), 'node_modules/@napi-rs/cli'))
const platformOf = (t) => parseTriple(t).platformArchABI
pkg.napi.targets = pkg.napi.targets.filter((t) => platforms.has(platformOf(t)))
if (pkg.napi.targets.length !== platforms.size) {
  throw new Error(`built ${[...platforms]} but napi.targets names ${pkg.napi.targets}`)
}
delete pkg.scripts
delete pkg.devDependencies
pkg.files = pkg.files.filter((f) => f !== 'build.js' && f !== '*.node').concat(['LICENSE'])
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n')
console.log(`main package for ${pkg.napi.targets.join(', ')}`)
EOF

cd "$STAGE"
"$napi" create-npm-dirs
"$napi" artifacts --output-dir artifacts
cp "$root/LICENSE" npm/*/
"$napi" pre-publish --skip-optional-publish
rm -rf artifacts

for dir in npm/*/ .; do
    (cd "$dir" && npm pack --pack-destination "$OUT" --loglevel=error >/dev/null)
done
ls -l "$OUT"/*.tgz
