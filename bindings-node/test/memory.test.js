'use strict'
// The contract on the in-memory bus, plus what only Node can show: configuration from
// options and environment, cleanup by the garbage collector, and a clean process exit.
const assert = require('node:assert/strict')
const { execFileSync, spawnSync } = require('node:child_process')
const { describe, it } = require('node:test')
const v8 = require('node:v8')
const vm = require('node:vm')

const busbar = require('..')
const { durableContract } = require('./support/durable')
const { contract, take, rejectsWith } = require('./support/contract')

contract('memory', () => undefined)
durableContract('memory', () => undefined)

describe('configuration', () => {
  it('passes camelCase options to the core as snake_case keys', async () => {
    const bus = await busbar.connect({ backend: 'memory', maxPayload: 8, source: 'svc-a' })
    const sub = await bus.subscribe('cfg')
    await bus.publish('cfg', '12345678')
    await rejectsWith(bus.publish('cfg', '123456789'), 'payload_too_large')
    const [msg] = await take(sub, 1)
    assert.equal(msg.source, 'svc-a')
    await bus.close()
  })

  it('takes the breaker and rate limits as options, with their codes', async () => {
    const bus = await busbar.connect({ breakerFailures: 1, breakerCooldownMs: 60000 })
    await rejectsWith(bus.request('nobody.home', '?', { timeoutMs: 1000 }), 'no_responders')
    await rejectsWith(bus.request('nobody.home', '?', { timeoutMs: 1000 }), 'circuit_open')
    await bus.close()
    const limited = await busbar.connect({ publishRate: 0.01, rateLimitMode: 'fail' })
    await limited.publish('metrics.cpu', '1')
    await rejectsWith(limited.publish('metrics.cpu', '2'), 'rate_limited')
    await limited.close()
    await rejectsWith(busbar.connect({ publishBufferFull: 'drop' }), 'invalid_argument')
  })

  it('reads BUSBAR_* variables, which options override', async () => {
    process.env.BUSBAR_MAX_PAYLOAD = '4'
    try {
      const fromEnv = await busbar.connect()
      await rejectsWith(fromEnv.publish('cfg', '12345'), 'payload_too_large')
      await fromEnv.close()
      const overridden = await busbar.connect({ maxPayload: '16' })
      await overridden.publish('cfg', '12345')
      await overridden.close()
      process.env.BUSBAR_MAX_PAYLAOD = '4'
      await rejectsWith(busbar.connect(), 'invalid_argument')
    } finally {
      delete process.env.BUSBAR_MAX_PAYLOAD
      delete process.env.BUSBAR_MAX_PAYLAOD
    }
  })

  it('rejects unknown keys and bad values with invalid_argument', async () => {
    await rejectsWith(busbar.connect({ natsUrll: 'nats://127.0.0.1:1' }), 'invalid_argument')
    await rejectsWith(busbar.connect({ backend: 'redis' }), 'invalid_argument')
    await rejectsWith(busbar.connect({ backpressure: 'drop' }), 'invalid_argument')
    await rejectsWith(busbar.connect({ natsUser: 'svc' }), 'invalid_argument')
    await rejectsWith(busbar.connect({ publishTimeoutMs: 0 }), 'invalid_argument')
    const bounded = await busbar.connect({ publishTimeoutMs: 250 })
    await bounded.close()
  })

  it('lists the stable error codes', () => {
    assert.deepEqual(busbar.errorCodes(), [
      'invalid_subject',
      'invalid_argument',
      'payload_too_large',
      'timeout',
      'no_responders',
      'forbidden',
      'closed',
      'decode',
      'crypto',
      'backend',
      'lagged',
      'unsupported',
      'circuit_open',
      'rate_limited',
    ])
  })
})

describe('resources', () => {
  it('unsubscribes an iterated subscription once it is collected', async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc')
    const bus = await busbar.connect()
    await (async () => {
      await bus.subscribe('collected.a')
      await bus.subscribe('collected.b')
    })()
    assert.equal(bus.stats().subscriptions, 2)
    const deadline = Date.now() + 5000
    while (bus.stats().subscriptions > 0 && Date.now() < deadline) {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(bus.stats().subscriptions, 0)
    await bus.close()
  })

  it('lets the process exit once the bus is closed, and keeps it alive while a callback listens', () => {
    const script = `
      const busbar = require(${JSON.stringify(require.resolve('..'))})
      ;(async () => {
        const bus = await busbar.connect()
        const iterated = await bus.subscribe('exit.*')
        await bus.subscribe('exit.*', (msg) => console.log('callback', msg.subject))
        await bus.publish('exit.now', 'x')
        const [msg] = await iterated.nextBatch()
        console.log('iterated', msg.subject)
        setTimeout(() => bus.close(), 100)
      })()
    `
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 })
    assert.deepEqual(out.trim().split('\n').sort(), ['callback exit.now', 'iterated exit.now'])
  })

  it('reports an exception thrown by a callback as uncaught, as an EventEmitter listener\'s', () => {
    const script = `
      const busbar = require(${JSON.stringify(require.resolve('..'))})
      ;(async () => {
        const bus = await busbar.connect()
        await bus.subscribe('boom', (msg) => {
          console.log('got', msg.text())
          if (msg.text() === '1') throw new Error('handler failed on 1')
        })
        for (const n of ['1', '2', '3']) await bus.publish('boom', n)
      })()
    `
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 })
    assert.notEqual(run.status, 0, 'an uncaught exception ends the process')
    assert.match(run.stderr, /handler failed on 1/)
    assert.equal(run.stdout.split('\n')[0], 'got 1')
  })
})
