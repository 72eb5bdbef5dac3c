'use strict'
// The whole API in JavaScript's idiom (docs/design.md §9): every attribute read back,
// request ids and headers, serve, connection events, durable verbs, error classes, and the
// habits of nats.js users (drain, closed(), status(), msg.string(), a forgotten await).
const assert = require('node:assert/strict')
const { describe, it } = require('node:test')

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')

const ALL = {
  id: 'evt-1',
  type: 'com.example.created',
  contentType: 'text/plain; charset=utf-8',
  correlationId: 'corr-9',
  classification: 'internal,pii',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tracestate: 'busbar=1',
}

async function first(iterable) {
  for await (const item of iterable) return item
  return undefined
}

describe('the whole API in JavaScript', () => {
  it('reads back every attribute it can set', async () => {
    const bus = await busbar.connect()
    const sub = await bus.subscribe('attrs.>')
    const before = Date.now()
    await bus.publish('attrs.a', 'x', { ...ALL, headers: { k: 'v' } })
    const msg = await first(sub)
    for (const [key, value] of Object.entries(ALL)) assert.equal(msg[key], value, key)
    assert.deepEqual(msg.headers, { k: 'v' })
    assert.equal(msg.keyid, null)
    assert.ok(Math.abs(msg.time - before) < 60_000)
    assert.equal(msg.string(), 'x')
    await bus.close()
  })

  it('serves requests with a handler until the subscription ends', async () => {
    const bus = await busbar.connect()
    const sub = await bus.subscribe('svc.upper')
    const serving = busbar.serve(sub, async (msg) => {
      if (msg.string() === 'boom') throw new Error('the handler fails on this one')
      return msg.string().toUpperCase()
    })
    const reply = await bus.request('svc.upper', 'abc', { timeoutMs: 5000, id: 'req-7', headers: { h: '1' } })
    assert.equal(reply.string(), 'ABC')
    assert.equal(reply.correlationId, 'req-7')
    await assert.rejects(bus.request('svc.upper', 'boom', { timeoutMs: 300 }), busbar.TimeoutError)
    assert.equal((await bus.request('svc.upper', 'def', { timeoutMs: 5000 })).string(), 'DEF')
    await sub.unsubscribe()
    assert.equal(await serving, 2)
    await bus.close()
  })

  it('rejects with error classes, each a BusError with its code', async () => {
    const bus = await busbar.connect()
    const err = await bus.request('nobody.home', 'x').catch((e) => e)
    assert.ok(err instanceof busbar.NoRespondersError)
    assert.ok(err instanceof busbar.BusError && err instanceof Error)
    assert.equal(err.code, 'no_responders')
    assert.equal(err.name, 'NoRespondersError')
    await assert.rejects(bus.publish('a..b', 'x'), busbar.InvalidSubjectError)
    for (const code of busbar.errorCodes()) {
      const name = code.replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase()) + 'Error'
      assert.equal(busbar[name].code, code, name)
    }
    await bus.close()
  })

  it('fails the same way as Python: bad values reject, snake_case keys name the camelCase one', async () => {
    await assert.rejects(busbar.connect({ nats_url: 'nats://127.0.0.1:4222' }), (err) => {
      return err instanceof busbar.InvalidArgumentError && /natsUrl/.test(err.message)
    })
    await assert.rejects(busbar.connect({ noSuchKey: 1 }), busbar.InvalidArgumentError)
    const bus = await busbar.connect()
    await assert.rejects(bus.request('x', 'y', { timeoutMs: -1 }), busbar.InvalidArgumentError)
    assert.throws(() => bus.request('x', 'y', { timeoutMs: 'soon' }), TypeError)
    await bus.close()
  })

  it('says what to do when a subscribe is not awaited', async () => {
    const bus = await busbar.connect()
    const pending = bus.subscribe('no.await')
    await assert.rejects(
      (async () => {
        for await (const msg of pending) return msg
      })(),
      (err) => err instanceof TypeError && /await bus\.subscribe/.test(err.message),
    )
    await (await pending).unsubscribe()
    await bus.close()
  })

  it('drains, and closed() resolves, as nats.js', async () => {
    const bus = await busbar.connect()
    const sub = await bus.subscribe('drain.x')
    await bus.publish('drain.x', '1')
    let closed = false
    bus.closed().then(() => (closed = true))
    await bus.drain()
    const got = []
    for await (const msg of sub) got.push(msg.string())
    assert.deepEqual(got, ['1'])
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(closed, true)
    await assert.rejects(bus.publish('drain.x', '2'), busbar.ClosedError)
  })

  it('drains a durable subscription and counts it, as a plain one', async () => {
    const bus = await busbar.connect()
    await bus.declareStream('V_DURABLE', ['vd.>'])
    await bus.publishDurable('vd.a', 'one')
    const sub = await bus.durableSubscribe('V_DURABLE', 'reader', { ackWaitMs: 1000 })
    assert.deepEqual(sub.stats(), { delivered: 0, undecodable: 0, unsettled: 0 })
    const msg = (await sub.next()).value
    assert.equal(msg.string(), 'one')
    assert.equal(sub.stats().unsettled, 1)
    let drained = false
    const draining = sub.drain().then(() => (drained = true))
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(drained, false) // waits for the message handed out
    await msg.ack()
    await draining
    assert.equal(sub.stats().unsettled, 0)
    assert.equal((await sub.next()).done, true)
    await sub.unsubscribe()
    await bus.close()
  })

  it('subscribes and requests as a principal, with a class filter', async () => {
    const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'tests', 'vectors', 'masking.json'), 'utf8'))
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-node-policy-'))
    const policy = path.join(dir, 'policy.json')
    fs.writeFileSync(policy, JSON.stringify(vectors.policies.scoped))
    try {
      const bus = await busbar.connect({ policy })
      await assert.rejects(bus.subscribeAs('eve', 'hr.salary'), busbar.ForbiddenError)
      const sub = await bus.subscribeAs('ann', 'sales.*', { roles: ['hr'], classes: ['pii'] })
      await bus.publish('sales.orders', { x: 1 }) // unclassified: filtered
      await bus.publish('sales.orders', { x: 2 }, { classification: 'pii' })
      const msg = await first(sub)
      assert.deepEqual(msg.json(), { x: 2 })
      assert.ok(bus.policyStats().filtered >= 1)
      await assert.rejects(bus.requestAs('eve', 'hr.salary', 'x', { timeoutMs: 500 }), busbar.ForbiddenError)
      assert.throws(() => bus.verifyAudit(), busbar.InvalidArgumentError)
      await bus.close()
      const plain = await busbar.connect()
      assert.throws(() => plain.policyStats(), (err) => err.code === 'invalid_argument' && /policy/.test(err.message))
      await plain.close()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('ends connection events at once without a connection', async () => {
    const bus = await busbar.connect()
    const events = []
    for await (const e of bus.connectionEvents()) events.push(e)
    assert.deepEqual(events, [])
    await bus.close()
  })

  it('tells a lost and regained server, also through status()', async () => {
    const server = await NatsServer.start()
    try {
      const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
      const status = bus.status()
      await server.kill()
      // A client error (the broken socket) may come first: the loss is then told.
      const kinds = []
      while (!kinds.includes('disconnected')) {
        const { value } = await status.next()
        assert.equal(value.type, value.kind)
        kinds.push(value.kind)
      }
      await server.spawn()
      while (!kinds.includes('connected')) kinds.push((await status.next()).value.kind)
      await bus.close()
    } finally {
      await server.stop()
    }
  })
})
