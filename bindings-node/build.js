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

// Without a Rust toolchain, say what is needed instead of a spawn stack trace.
function missingRust(tool) {
  console.error(
    [
      `busbar: building the native module from source needs a Rust toolchain, and \`${tool}\` was not found on PATH.`,
      '  Install Rust 1.89 or newer (https://rustup.rs), then run npm install again;',
      '  or install the published package (`npm install busbar`), which brings a prebuilt',
      '  module for linux-x64-gnu and needs no Rust.',
    ].join('\n'),
  )
  process.exit(1)
}
let rustcInfo
try {
  rustcInfo = execFileSync('rustc', ['-vV'], { encoding: 'utf8' })
  execFileSync(cargo, ['--version'], { stdio: 'ignore' })
} catch (err) {
  if (err.code === 'ENOENT') missingRust(err.path === 'rustc' ? 'rustc' : cargo)
  throw err
}
const host = /^host: (.*)$/m.exec(rustcInfo)[1]
const metadata = JSON.parse(
  execFileSync(cargo, ['metadata', '--format-version', '1', '--no-deps'], { cwd: here, encoding: 'utf8' }),
)

// The same target directory as `napi build` (which passes --target), so the two share
// their compiled dependencies.
console.log(`busbar: building the native module from source (cargo build --release, ${host}; a few minutes the first time)`)
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
