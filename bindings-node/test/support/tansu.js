'use strict'
// A private Kafka-protocol broker for a test file: tansu (installed by scripts/test.sh into
// ~/.cache/busbar/tansu when missing) on a free loopback port with memory storage, stopped
// by its PID. The same approach as core/tests/support/tansu.rs.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

function binary() {
  if (process.env.TANSU_BIN) return process.env.TANSU_BIN
  const cached = path.join(os.homedir(), '.cache/busbar/tansu/bin/tansu')
  return fs.existsSync(cached) ? cached : 'tansu'
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

function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class Tansu {
  static async start() {
    for (let attempt = 0; attempt < 10; attempt++) {
      const port = await freePort()
      const url = `tcp://127.0.0.1:${port}`
      const child = spawn(
        binary(),
        ['broker', '--listener-url', url, '--advertised-listener-url', url, '--storage-engine', 'memory://tansu/'],
        { stdio: 'ignore', env: { ...process.env, RUST_LOG: 'warn' } },
      )
      let exited = false
      child.once('exit', () => {
        exited = true
      })
      const deadline = Date.now() + 30000
      while (!exited && Date.now() < deadline) {
        if (await listening(port)) return new Tansu(child, port)
        await sleep(20)
      }
      child.kill('SIGKILL')
    }
    throw new Error('tansu did not start in 10 tries')
  }

  constructor(child, port) {
    this.child = child
    this.port = port
  }

  get brokers() {
    return `127.0.0.1:${this.port}`
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.kill('SIGKILL')
    await exited
  }
}

module.exports = { Tansu }
