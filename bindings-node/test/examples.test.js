'use strict'
// The examples in examples/node run and say what they should: the quickstart on the
// in-memory bus, the responder service against a private nats-server until SIGTERM.
// They import `busbar` as a user would, from examples/node/node_modules (npm install there).
const assert = require('node:assert/strict')
const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { describe, it, before, after } = require('node:test')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')

const examples = path.join(__dirname, '../../examples/node')

before(() => {
  assert.ok(
    fs.existsSync(path.join(examples, 'node_modules/busbar')),
    'run `npm install` in examples/node first (scripts/test-node.sh does)',
  )
})

describe('examples/node', () => {
  it('tour.js shows attributes, serve, connection events and a principal', () => {
    const env = { ...process.env }
    for (const key of Object.keys(env)) if (key.startsWith('BUSBAR_')) delete env[key]
    const out = execFileSync(process.execPath, ['tour.js'], { cwd: examples, env, encoding: 'utf8', timeout: 20_000 })
    assert.match(out, /read order-7 com\.example\.order\.created application\/json corr-1/)
    assert.match(out, /internal tour=1 \{"tenant":"st-marys"\} keyid=null/)
    assert.match(out, /served: HELLO/)
    assert.match(out, /answered 1 request\(s\)/)
    assert.match(out, /clerk sees \{"ssn":"\*{7}6789"\}; policy counters: 1 masked/)
  })

  it('quickstart.js runs the shared scenario on the in-memory bus', () => {
    const env = { ...process.env }
    for (const key of Object.keys(env)) if (key.startsWith('BUSBAR_')) delete env[key]
    const out = execFileSync(process.execPath, ['quickstart.js'], { cwd: examples, env, encoding: 'utf8', timeout: 20_000 })
    assert.match(out, /connected to the memory bus/)
    assert.match(out, /'orders\.>' {4}got \["orders\.eu\.created","orders\.us\.created","orders\.eu\.paid\.late"\]/)
    assert.match(out, /'orders\.eu\.\*' got \["orders\.eu\.created"\]/)
    assert.match(out, /four jobs, each done once/)
    const id = /request id +(\S+)/.exec(out)[1]
    assert.equal(/reply correlation id +(\S+)/.exec(out)[1], id)
    assert.match(out, /\[no_responders\]/)
    assert.match(out, /\[invalid_subject\]/)
    assert.match(out, /1 request\(s\) answered/)
  })

  it('service.js --demo runs a discoverable service on the in-memory bus', () => {
    const env = { ...process.env }
    for (const key of Object.keys(env)) if (key.startsWith('BUSBAR_')) delete env[key]
    const out = execFileSync(process.execPath, ['service.js', '--demo'], { cwd: examples, env, encoding: 'utf8', timeout: 20_000 })
    assert.match(out, /calc\.double 21 -> 42/)
    assert.match(out, /calc\.double -1 -> error 422: only numbers from 0/)
    assert.match(out, /discovered calc 1\.0\.0 \(\w+\): 2 requests, 1 errors/)
  })

  describe('responder.js', () => {
    let server
    before(async () => {
      server = await NatsServer.start()
    })
    after(async () => {
      await server.stop()
    })

    it('answers requests on NATS and drains on SIGTERM', async () => {
      const env = { ...process.env, BUSBAR_BACKEND: 'nats', BUSBAR_NATS_URL: server.url }
      const child = spawn(process.execPath, ['responder.js'], { cwd: examples, env, stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (chunk) => (out += chunk))
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
      try {
        const deadline = Date.now() + 10_000
        while (!out.includes('listening') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
        assert.match(out, /listening on greet\.\* \(nats bus\)/)
        const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
        const reply = await bus.request('greet.ada', { lang: 'fr' }, { timeoutMs: 2000 })
        assert.deepEqual(reply.json(), { greeting: 'Bonjour, ada!', lang: 'fr' })
        assert.equal(reply.headers.service, 'greeter')
        const plain = await bus.request('greet.bob', 'not json', { timeoutMs: 2000 })
        assert.equal(plain.json().greeting, 'Hello, bob!')
        await bus.close()
      } finally {
        process.kill(child.pid, 'SIGTERM')
      }
      assert.deepEqual(await exited, { code: 0, signal: null })
      assert.match(out, /SIGTERM: draining/)
      assert.match(out, /stopped after 2 replies/)
    })
  })
})
