'use strict'
// `npm install ./bindings-node` runs this (the package's `install` script): it builds the
// native module with cargo and puts it where the generated index.js looks for it. It needs
// only a Rust toolchain, not @napi-rs/cli (a development dependency, used by `npm run build`
// to regenerate index.js and index.d.ts). Set BUSBAR_SKIP_BUILD=1 to skip it.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

if (process.env.BUSBAR_SKIP_BUILD) process.exit(0)

const here = __dirname
const cargo = process.env.CARGO || 'cargo'
const host = /^host: (.*)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))[1]
const metadata = JSON.parse(
  execFileSync(cargo, ['metadata', '--format-version', '1', '--no-deps'], { cwd: here, encoding: 'utf8' }),
)

// The same target directory as `napi build` (which passes --target), so the two share
// their compiled dependencies.
console.log(`busbar: building the native module (cargo build --release, ${host})`)
execFileSync(cargo, ['build', '--release', '--locked', '-p', 'busbar-node', '--target', host], {
  cwd: here,
  stdio: 'inherit',
})

const file = { linux: 'libbusbar_node.so', darwin: 'libbusbar_node.dylib', win32: 'busbar_node.dll' }[
  process.platform
]
if (!file) throw new Error(`busbar: no build recipe for platform ${process.platform}`)
const built = path.join(metadata.target_directory, host, 'release', file)

// The file names index.js tries, as napi-rs names them.
let abi = ''
if (process.platform === 'linux') abi = host.endsWith('-musl') ? '-musl' : '-gnu'
if (process.platform === 'win32') abi = host.endsWith('-gnu') ? '-gnu' : '-msvc'
const dest = path.join(here, `busbar.${process.platform}-${process.arch}${abi}.node`)
fs.copyFileSync(built, dest)
console.log(`busbar: installed ${path.relative(here, dest)}`)
