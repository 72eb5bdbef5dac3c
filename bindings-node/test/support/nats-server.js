'use strict'
// A private nats-server (JetStream on, temporary store, loopback, free port) for a test
// file, stopped by its PID. The same approach as core/tests/support/nats_server.rs.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

function binary() {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, 'nats-server')
    if (dir && fs.existsSync(candidate)) return candidate
  }
  if (fs.existsSync('/usr/sbin/nats-server')) return '/usr/sbin/nats-server'
  throw new Error(
    'nats-server not found: install it (apt-get install -y nats-server) or set NATS_SERVER_BIN; ' +
      'the NATS tests do not skip themselves',
  )
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Resolves when a TCP client on `port` reads the server's INFO line. */
function saysInfo(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('data', (chunk) => done(chunk.toString().startsWith('INFO {')))
    socket.once('error', () => done(false))
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class NatsServer {
  static async start() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-node-nats-'))
    let lastError
    for (let attempt = 0; attempt < 5; attempt++) {
      const server = new NatsServer(dir, await freePort())
      try {
        await server.spawn()
        return server
      } catch (err) {
        lastError = err
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
    throw lastError
  }

  constructor(dir, port) {
    this.dir = dir
    this.port = port
    this.url = `nats://127.0.0.1:${port}`
    this.log = path.join(dir, 'nats-server.log')
    this.child = null
  }

  async spawn() {
    fs.rmSync(this.log, { force: true })
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', path.join(this.dir, 'store')]
    const child = spawn(binary(), [...args, '-l', this.log], { stdio: 'ignore' })
    let exited = null
    child.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`))
    this.child = child
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (exited) break
      const log = fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8') : ''
      if (log.includes('Server is ready') && (await saysInfo(this.port))) return
      await sleep(20)
    }
    await this.stop()
    const log = fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8') : ''
    throw new Error(`nats-server on port ${this.port} did not start (${exited ?? 'not ready in 10 s'}):\n${log}`)
  }

  /** Kills the server by its PID and waits for it; `spawn()` starts it again, same port. */
  async kill() {
    const child = this.child
    this.child = null
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      process.kill(child.pid, 'SIGKILL')
      await exited
    }
  }

  /** Kills the server by its PID, waits for it, and removes its store. */
  async stop() {
    await this.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

module.exports = { NatsServer }
