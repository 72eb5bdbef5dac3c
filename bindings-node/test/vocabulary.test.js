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

// publishBatch and a callback's batchSize, on the in-memory bus and on a private nats-server.
for (const backend of ['memory', 'nats']) {
  describe(`batches on the ${backend} bus`, () => {
    let server
    let bus
    const { before, after } = require('node:test')
    before(async () => {
      if (backend === 'nats') server = await NatsServer.start()
      bus = await busbar.connect(backend === 'nats' ? { backend, natsUrl: server.url } : {})
    })
    after(async () => {
      await bus.close()
      if (server) await server.stop()
    })

    async function take(sub, n) {
      const got = []
      for await (const msg of sub) {
        got.push(msg)
        if (got.length === n) break
      }
      return got
    }

    it('publishes a batch in order, in one call, with every option', async () => {
      const sub = await bus.subscribe('batch.>')
      await bus.flush()
      const count = await bus.publishBatch([
        { subject: 'batch.a', data: Buffer.from('one') },
        { subject: 'batch.b', data: { n: 2 }, options: { headers: { k: 'v' }, id: 'evt-2', correlationId: 'c' } },
        { subject: 'batch.c', data: 'three', options: null },
      ])
      assert.equal(count, 3)
      const got = await take(sub, 3)
      assert.deepEqual(got.map((m) => [m.subject, m.string()]), [
        ['batch.a', 'one'],
        ['batch.b', '{"n":2}'],
        ['batch.c', 'three'],
      ])
      assert.deepEqual([got[1].headers, got[1].id, got[1].correlationId, got[1].contentType], [{ k: 'v' }, 'evt-2', 'c', 'application/json'])
      assert.equal(await bus.publishBatch([]), 0)
    })

    it('stops at the first failure and says how far it got', async () => {
      const sub = await bus.subscribe('stop.>')
      await bus.flush()
      const big = Buffer.alloc(2 * 1024 * 1024) // over the default max_payload
      const items = [{ subject: 'stop.a' }, { subject: 'stop.b' }, { subject: 'stop.c', data: big }, { subject: 'stop.d' }]
      await assert.rejects(bus.publishBatch(items), (err) => {
        assert.ok(err instanceof busbar.PayloadTooLargeError, String(err))
        assert.equal(err.code, 'payload_too_large')
        assert.equal(err.published, 2)
        return true
      })
      await assert.rejects(bus.publishBatch([{ subject: 'stop.e' }, { subject: 'bad..subject' }]), (err) => {
        assert.equal(err.code, 'invalid_subject')
        assert.equal(err.published, 1)
        return true
      })
      await bus.publish('stop.end')
      const got = await take(sub, 4)
      assert.deepEqual(got.map((m) => m.subject), ['stop.a', 'stop.b', 'stop.e', 'stop.end'], 'nothing after a failure was sent')
    })

    it('refuses bad items with a TypeError before sending any', async () => {
      const sub = await bus.subscribe('refused.>')
      await bus.flush()
      const cases = [
        ['refused.a', /items must be an array, not a string/],
        [{ subject: 'refused.a' }, /items must be an array, not an object/],
        [[{ subject: 'refused.a' }, 'refused.b'], /items\[1\] must be an object \{ subject, data\?, options\? \}, not a string/],
        [[{ subject: 'refused.a' }, [1]], /items\[1\] must be an object/],
        [[{ subject: 'refused.a' }, { subject: 5 }], /items\[1\]\.subject must be a string, not a number/],
        [[{ subject: 'refused.a' }, { subject: 'refused.b', data: Symbol('x') }], /data must be/],
        [[{ subject: 'refused.a' }, { subject: 'refused.b', options: 'id' }], /options must be an object, not a string/],
        [[{ subject: 'refused.a' }, { subject: 'refused.b', options: { headers: 'h' } }], /options\.headers must be an object of strings/],
      ]
      for (const [items, says] of cases) {
        assert.throws(() => bus.publishBatch(items), (err) => err instanceof TypeError && says.test(err.message), String(says))
      }
      await bus.publish('refused.end')
      const [first] = await take(sub, 1)
      assert.equal(first.subject, 'refused.end', 'a refused batch publishes nothing')
    })

    it('hands a callback at most batchSize messages per native call, and checks the option', async () => {
      // Microtasks run after each native call, so the longest run of messages with no
      // microtask between them is the largest batch handed over.
      for (const batchSize of [1, 7]) {
        const got = []
        const seen = []
        const sub = await bus.subscribe(`small${batchSize}.>`, (msg) => {
          got.push(msg.subject)
          seen.push('m')
          queueMicrotask(() => seen.push('t'))
        }, { batchSize })
        await bus.flush()
        await bus.publishBatch(Array.from({ length: 200 }, (_, i) => ({ subject: `small${batchSize}.${i}` })))
        for (let i = 0; i < 500 && got.length < 200; i++) await new Promise((resolve) => setTimeout(resolve, 10))
        assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `small${batchSize}.${i}`))
        const longest = Math.max(...seen.join('').split('t').map((run) => run.length))
        assert.ok(longest >= 1 && longest <= batchSize, `batchSize ${batchSize}: a batch of ${longest}`)
        await sub.unsubscribe()
      }
      for (const bad of [0, 1025, 1.5, -1, NaN]) {
        assert.throws(() => bus.subscribe('x', () => {}, { batchSize: bad }), (err) => err.code === 'invalid_argument', String(bad))
      }
      assert.throws(() => bus.subscribe('x', () => {}, { batchSize: '8' }), TypeError)
      assert.throws(() => bus.subscribe('x', undefined, { batchSize: 8 }), /applies to a callback subscription/)
      assert.throws(() => bus.queueSubscribe('x', 'g', () => {}, { batchSize: 0 }), (err) => err.code === 'invalid_argument')
    })
  })
}
