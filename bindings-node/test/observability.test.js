'use strict'
// metrics(), health(), the metricsAddr endpoint and setLogger, on the in-memory bus.
const assert = require('node:assert/strict')
const http = require('node:http')
const net = require('node:net')
const { describe, it } = require('node:test')

const busbar = require('..')
const { take } = require('./support/contract')

/** The value of the sample line `series` (name and labels exactly as exposed). */
function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * A bus serving its endpoint on a free loopback port, and that port. A port found free can
 * be taken before the bus binds it, so "Address already in use" is retried on a fresh port,
 * a bounded number of times; any other error fails the test.
 */
async function connectServing() {
  for (let i = 0; i < 20; i++) {
    const port = await freePort()
    try {
      return { bus: await busbar.connect({ metricsAddr: `127.0.0.1:${port}` }), port }
    } catch (e) {
      if (e.code !== 'backend' || !e.message.includes('Address already in use')) throw e
    }
  }
  throw new Error('20 free ports in a row were taken before the bus could bind them')
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = ''
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode, body }))
      })
      .on('error', reject)
  })
}

describe('metrics and health', () => {
  it('counts by pattern, never by subject, and reports health', async () => {
    const bus = await busbar.connect()
    const sub = await bus.queueSubscribe('orders.*', 'workers')
    for (let i = 0; i < 3; i++) await bus.publish(`orders.${i}`, 'x')
    await take(sub, 3)
    const text = bus.metrics()
    const labels = '{pattern="orders.*",queue_group="workers"}'
    assert.equal(sample(text, `busbar_subscription_delivered_total${labels}`), 3, text)
    assert.equal(sample(text, `busbar_subscription_active${labels}`), 1)
    assert.equal(sample(text, 'busbar_connected'), 1)
    assert.ok(!text.includes('orders.1'))
    assert.ok(text.endsWith('# EOF\n'))
    const health = bus.health()
    assert.equal(health.state, 'connected')
    assert.equal(health.ready, true)
    assert.equal(health.lastError ?? null, null)
    assert.equal(health.pendingRequests, 0)
    assert.equal(health.subscriptions, 1)
    assert.equal(health.laggingSubscriptions, 0)
    await bus.close()
    assert.equal(bus.health().state, 'closed')
    assert.equal(bus.health().ready, false)
    assert.equal(sample(bus.metrics(), 'busbar_connected'), 0)
  })

  it('names the open request circuits', async () => {
    const bus = await busbar.connect({ breakerFailures: 1 })
    assert.deepEqual([bus.health().openCircuits, bus.health().openCircuitSubjects], [0, []])
    await assert.rejects(bus.request('svc.down', '?', { timeoutMs: 1000 }), { code: 'no_responders' })
    const health = bus.health()
    assert.deepEqual([health.openCircuits, health.openCircuitSubjects], [1, ['svc.down']])
    assert.equal(sample(bus.metrics(), 'busbar_open_circuits'), 1)
    await assert.rejects(bus.request('svc.down', '?'), busbar.CircuitOpenError)
    await bus.close()

    // breakerPatterns: the subjects under a pattern share its circuit.
    const shared = await busbar.connect({ breakerFailures: 1, breakerPatterns: 'svc.orders.* svc.>' })
    await assert.rejects(shared.request('svc.orders.a', '?'), { code: 'no_responders' })
    await assert.rejects(shared.request('svc.orders.b', '?'), busbar.CircuitOpenError)
    assert.deepEqual(shared.health().openCircuitSubjects, ['svc.orders.*'])
    await shared.close()
    await assert.rejects(busbar.connect({ breakerPatterns: 'svc..bad' }), { code: 'invalid_argument' })
  })

  it('serves /metrics and /readyz at metricsAddr until closed', async () => {
    const { bus, port } = await connectServing()
    await bus.publish('a.b', '1')
    const metrics = await get(port, '/metrics')
    assert.equal(metrics.status, 200)
    assert.equal(sample(metrics.body, 'busbar_published_total'), 1)
    const ready = await get(port, '/readyz')
    assert.equal(ready.status, 200)
    assert.equal(JSON.parse(ready.body).state, 'connected')
    await bus.close()
  })

  it('refuses a malformed metricsAddr', async () => {
    await assert.rejects(busbar.connect({ metricsAddr: 'nowhere' }), { code: 'invalid_argument' })
  })
})

describe('setLogger', () => {
  it('hands busbar records to the logger, at its level and above', async () => {
    const records = []
    busbar.setLogger((r) => records.push(r), 'warn')
    try {
      const bus = await busbar.connect({ backpressure: 'lag', subscriptionCapacity: 1 })
      const sub = await bus.subscribe('lag.>')
      for (let i = 0; i < 3; i++) await bus.publish('lag.x', 'x')
      await assert.rejects(take(sub, 3), { code: 'lagged' })
      await bus.close()
      // Records arrive through the event loop.
      for (let i = 0; i < 50 && records.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
      const lag = records.find((r) => r.message.includes('lag'))
      assert.ok(lag, JSON.stringify(records))
      assert.equal(lag.level, 'warn')
      assert.ok(lag.target.startsWith('busbar'))
      assert.ok(!records.some((r) => r.level === 'info'), 'below the level')
    } finally {
      busbar.setLogger(null)
    }
    assert.throws(() => busbar.setLogger(() => {}, 'loud'), { code: 'invalid_argument' })
  })
})

describe('discover', () => {
  it('answers a list and checks its arguments (tests/cross/discover.py finds a service)', async () => {
    const bus = await busbar.connect()
    try {
      assert.deepEqual(await bus.discover(undefined, { waitMs: 50 }), [])
      assert.deepEqual(await bus.discover('stats', { name: 'nobody', waitMs: 50 }), [])
      await assert.rejects(bus.discover('PONG', { waitMs: 50 }), { code: 'invalid_argument', message: /PING, INFO or STATS/ })
      await assert.rejects(bus.discover('PING', { waitMs: -1 }), { code: 'invalid_argument' })
      assert.throws(() => bus.discover(5), TypeError)
    } finally {
      await bus.close()
    }
  })
})
