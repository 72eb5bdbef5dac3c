'use strict'
// The behaviours every backend must show from Node, run by memory.test.js against the
// in-memory bus and by nats.test.js against a private nats-server.
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')

const busbar = require('../..')

/** Takes `n` messages from `sub`, failing after `ms` without them. */
async function take(sub, n, ms = 2000) {
  const out = []
  const deadline = Date.now() + ms
  while (out.length < n) {
    let timer
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`only ${out.length} of ${n} messages in ${ms} ms`)),
        Math.max(0, deadline - Date.now()),
      )
    })
    try {
      const batch = await Promise.race([sub.nextBatch(n - out.length), timeout])
      assert.notEqual(batch, null, 'subscription ended early')
      out.push(...batch)
    } finally {
      clearTimeout(timer)
    }
  }
  return out
}

/** A callback that records each message, and a wait until it has `n`. */
function collector() {
  const got = []
  let wake = () => {}
  return {
    got,
    handler: (msg) => {
      got.push(msg)
      wake()
    },
    async until(n, ms = 2000) {
      const deadline = Date.now() + ms
      while (got.length < n) {
        if (Date.now() > deadline) throw new Error(`callback got ${got.length} of ${n} messages in ${ms} ms`)
        await new Promise((resolve) => {
          wake = resolve
          setTimeout(resolve, 20).unref()
        })
      }
      return got
    },
  }
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, `${err} is an Error`)
    assert.equal(err.code, code, `code of: ${err.message}`)
    return true
  })
}

/**
 * `known.closing`: a reason to skip the closing test on this backend (a known defect,
 * reported, never a silent difference). `known.noResponders = 'timeout'`: the backend
 * answers a request nobody reads with `timeout` (Kafka, docs/design.md §5).
 * `known.onePartitionPerPublisher`: a queue group gets one publisher's messages through
 * one member (Kafka's default `kafkaPartitionBy`, docs/design.md §4).
 */
function contract(name, options, known = {}) {
  describe(`contract on the ${name} bus`, () => {
    let bus
    before(async () => {
      bus = await busbar.connect(options())
    })
    after(async () => {
      await bus.close()
    })

    it('reports its backend', () => {
      assert.equal(bus.backend, name)
    })

    it('delivers to every matching subscription, wildcards by NATS rules', async () => {
      const all = await bus.subscribe('wild.>')
      const one = await bus.subscribe('wild.eu.*')
      for (const s of ['wild.eu.created', 'wild.us.created', 'wild.eu.paid.late']) await bus.publish(s, 'x')
      await bus.flush()
      assert.deepEqual(
        (await take(all, 3)).map((m) => m.subject),
        ['wild.eu.created', 'wild.us.created', 'wild.eu.paid.late'],
      )
      assert.deepEqual(
        (await take(one, 1)).map((m) => m.subject),
        ['wild.eu.created'],
      )
      await all.unsubscribe()
      await one.unsubscribe()
    })

    it('carries Buffer, string and JSON payloads, headers and attributes', async () => {
      const sub = await bus.subscribe('payload.*')
      await bus.publish('payload.buffer', Buffer.from([0, 1, 2, 255]))
      await bus.publish('payload.bytes', new Uint8Array([7, 8]))
      await bus.publish('payload.floats', new Float32Array([1.5, -2]))
      await bus.publish('payload.text', 'grüße')
      await bus.publish('payload.json', { qty: 2, tags: ['a'] }, { headers: { tenant: 'st-marys' } })
      await bus.publish('payload.attrs', 'x', {
        id: 'order-1',
        type: 'com.example.created',
        contentType: 'text/plain',
        correlationId: 'c-1',
        classification: 'internal',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        tracestate: 'k=v',
      })
      await bus.publish('payload.empty')
      const [buf, bytes, floats, text, json, attrs, empty] = await take(sub, 7)
      assert.deepEqual(buf.data, Buffer.from([0, 1, 2, 255]))
      assert.ok(Buffer.isBuffer(buf.data))
      assert.deepEqual(bytes.data, Buffer.from([7, 8]))
      assert.deepEqual(floats.data, Buffer.from(new Float32Array([1.5, -2]).buffer))
      assert.equal(text.text(), 'grüße')
      assert.equal(text.contentType, null)
      assert.deepEqual(json.json(), { qty: 2, tags: ['a'] })
      assert.equal(json.contentType, 'application/json')
      assert.deepEqual(json.headers, { tenant: 'st-marys' })
      assert.equal(attrs.id, 'order-1')
      assert.equal(attrs.type, 'com.example.created')
      assert.equal(attrs.contentType, 'text/plain')
      assert.equal(attrs.correlationId, 'c-1')
      assert.equal(attrs.classification, 'internal')
      assert.equal(attrs.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
      assert.equal(attrs.tracestate, 'k=v')
      assert.equal(buf.classification, null)
      assert.equal(attrs.source, 'busbar')
      assert.equal(empty.data.length, 0)
      assert.match(buf.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.notEqual(buf.id, text.id)
      assert.ok(Math.abs(buf.time - Date.now()) < 60_000, `time ${buf.time}`)
      assert.equal(buf.replyTo, null)
      await rejectsWith(buf.respond('no'), 'invalid_argument')
      assert.throws(() => text.json(), { name: 'DecodeError', code: 'decode' })
      await sub.unsubscribe()
    })

    it('iterates with for await, and break unsubscribes', async () => {
      const sub = await bus.subscribe('iter.*')
      for (let i = 0; i < 5; i++) await bus.publish(`iter.${i}`, String(i))
      const seen = []
      for await (const msg of sub) {
        seen.push(msg.text())
        if (seen.length === 3) break
      }
      assert.deepEqual(seen, ['0', '1', '2'])
      assert.equal(await sub.nextBatch(), null, 'ended after break')
    })

    it('calls a callback with each message, in order', async () => {
      const c = collector()
      const sub = await bus.subscribe('cb.>', c.handler)
      for (let i = 0; i < 50; i++) await bus.publish(`cb.${i % 3}`, String(i))
      const got = await c.until(50)
      assert.deepEqual(
        got.map((m) => m.text()),
        Array.from({ length: 50 }, (_, i) => String(i)),
      )
      await rejectsWith(sub.nextBatch(), 'invalid_argument')
      await sub.unsubscribe()
      await bus.publish('cb.0', 'after')
      await bus.flush()
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(c.got.length, 50, 'nothing after unsubscribe')
    })

    it('gives each message of a queue group to one member', async () => {
      const a = collector()
      const b = collector()
      const sa = await bus.queueSubscribe('jobs.resize', 'workers', a.handler)
      const sb = await bus.queueSubscribe('jobs.resize', 'workers', b.handler)
      assert.equal(sa.queueGroup, 'workers')
      assert.equal(sa.pattern, 'jobs.resize')
      for (let i = 0; i < 40; i++) await bus.publish('jobs.resize', `image-${i}`)
      await bus.flush()
      const deadline = Date.now() + 2000
      while (a.got.length + b.got.length < 40 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      const all = [...a.got, ...b.got].map((m) => m.text()).sort()
      assert.deepEqual(all, Array.from({ length: 40 }, (_, i) => `image-${i}`).sort())
      // Kafka hands one publisher's messages to one partition, so to one member: the
      // Kafka suite checks the spread with kafkaPartitionBy 'subject' (docs/design.md §4).
      if (!known.onePartitionPerPublisher) {
        assert.ok(a.got.length > 0 && b.got.length > 0, `split ${a.got.length}/${b.got.length}`)
      }
      await sa.unsubscribe()
      await sb.unsubscribe()
    })

    it('answers requests; the reply echoes the request id', async () => {
      let requestId
      const responder = await bus.subscribe('time.now', (req) => {
        requestId = req.id
        assert.ok(req.replyTo)
        req.respond(`tea for ${req.text()}`, { headers: { answered: 'yes' } })
      })
      const reply = await bus.request('time.now', 'two', { timeoutMs: 2000, headers: { asked: 'x' } })
      assert.equal(reply.text(), 'tea for two')
      assert.equal(reply.correlationId, requestId)
      assert.deepEqual(reply.headers, { answered: 'yes' })
      const json = await bus.request('time.now', { n: 1 })
      assert.equal(json.text(), 'tea for {"n":1}')
      await responder.unsubscribe()
    })

    it('refuses a forged reply on the request inbox and counts it', async () => {
      const responder = await bus.subscribe('svc.forged')
      const pending = bus.request('svc.forged', 'q', { timeoutMs: 5000 })
      const [req] = await take(responder, 1)
      const before = bus.stats()
      await bus.publish(req.replyTo, 'forged: no correlation id')
      await bus.flush()
      const deadline = Date.now() + 5000
      while (bus.stats().rejectedReplies === before.rejectedReplies && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      assert.equal(bus.stats().rejectedReplies, before.rejectedReplies + 1)
      assert.equal(typeof before.undecodable, 'number')
      assert.equal(typeof before.disconnects, 'number')
      await req.respond('real')
      assert.equal((await pending).text(), 'real')
      await responder.unsubscribe()
    })

    it('rejects a request with no_responders at once and with timeout when nobody answers', async () => {
      const started = Date.now()
      if (known.noResponders === 'timeout') {
        // Kafka cannot tell that nobody reads a subject (docs/design.md §5): a timeout.
        await rejectsWith(bus.request('nobody.home', 'x', { timeoutMs: 300 }), 'timeout')
        assert.ok(Date.now() - started >= 300, 'the timeout came early')
      } else {
        await rejectsWith(bus.request('nobody.home', 'x', { timeoutMs: 5000 }), 'no_responders')
        assert.ok(Date.now() - started < 2000, 'no_responders did not wait for the timeout')
      }
      const silent = await bus.subscribe('silent')
      await rejectsWith(bus.request('silent', 'x', { timeoutMs: 100 }), 'timeout')
      await silent.unsubscribe()
    })

    it('rejects bad subjects and oversize payloads with their codes', async () => {
      await rejectsWith(bus.publish('orders..eu', 'x'), 'invalid_subject')
      await rejectsWith(bus.publish('orders.*', 'x'), 'invalid_subject')
      await rejectsWith(bus.subscribe('a.>.b'), 'invalid_subject')
      await rejectsWith(bus.request('a b', 'x'), 'invalid_subject')
      await rejectsWith(bus.publish('ok', 'x', { headers: { 'ce-id': 'x' } }), 'invalid_argument')
      await rejectsWith(bus.publish('ok', Buffer.alloc(2 * 1024 * 1024)), 'payload_too_large')
    })

    it('throws TypeError for arguments of the wrong type', () => {
      const typeError = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }
      assert.throws(() => bus.publish(42, 'x'), typeError)
      assert.throws(() => bus.publish('ok', Symbol('s')), typeError)
      assert.throws(() => bus.publish('ok', () => 1), typeError)
      assert.throws(() => bus.publish('ok', 10n), TypeError) // JSON.stringify's own TypeError
      assert.throws(() => bus.publish('ok', 'x', { headers: 'no' }), typeError)
      assert.throws(() => bus.publish('ok', 'x', { headers: { n: 1 } }), typeError)
      assert.throws(() => bus.publish('ok', 'x', 'options'), typeError)
      assert.throws(() => bus.request('ok', 'x', { headers: ['a'] }), typeError)
      assert.throws(() => bus.subscribe(null), typeError)
      assert.throws(() => bus.subscribe('ok', 'not a function'), typeError)
      assert.throws(() => bus.queueSubscribe('ok', 7), typeError)
      assert.throws(() => bus.request('ok', 'x', { timeoutMs: 'soon' }), typeError)
      // A duration without its Ms is refused, naming the option to use (design.md §9).
      assert.throws(() => bus.request('ok', 'x', { timeout: 100 }), (err) => {
        return err instanceof TypeError && /options\.timeoutMs/.test(err.message)
      })
      assert.throws(() => busbar.connect(5), typeError)
      assert.throws(() => busbar.connect({ maxPayload: {} }), typeError)
      assert.throws(() => busbar.subjectMatches('a', 1), typeError)
      return bus.subscribe('types').then(async (sub) => {
        assert.throws(() => sub.nextBatch('many'), typeError)
        await sub.unsubscribe()
        // A number of the right type but out of range is the core's invalid_argument.
        await rejectsWith(bus.request('ok', 'x', { timeoutMs: -1 }), 'invalid_argument')
      })
    })

    it('drain delivers what is buffered, then ends', async () => {
      const sub = await bus.subscribe('drain.me')
      for (let i = 0; i < 3; i++) await bus.publish('drain.me', String(i))
      await bus.flush()
      // Give the backend time to hand the three messages to the subscription's buffer.
      const deadline = Date.now() + 2000
      while (sub.stats().pending < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      await sub.drain()
      const seen = []
      for await (const msg of sub) seen.push(msg.text())
      assert.deepEqual(seen, ['0', '1', '2'])
    })

    it('counts what it published and delivered', async () => {
      const before = bus.stats()
      const sub = await bus.subscribe('count.me')
      await bus.publish('count.me', 'x')
      await take(sub, 1)
      const after = bus.stats()
      assert.equal(after.published - before.published, 1)
      assert.ok(after.delivered - before.delivered >= 1)
      assert.equal(sub.stats().delivered, 1)
      await sub.unsubscribe()
    })
  })

  describe(`closing the ${name} bus`, () => {
    it('ends subscriptions, rejects pending requests and later calls with closed', async () => {
      const bus = await busbar.connect(options())
      const sub = await bus.subscribe('end.*')
      const responder = await bus.subscribe('never.answers')
      const pending = bus.request('never.answers', 'x', { timeoutMs: 10_000 })
      await new Promise((resolve) => setTimeout(resolve, 50))
      // A pending request may reject while close() is still at work (close first writes out
      // what was published, then drains): its handler is attached before close is awaited.
      const rejected = rejectsWith(pending, 'closed')
      await bus.close()
      await rejected
      assert.equal(await sub.nextBatch(), null)
      const held = []
      for await (const msg of responder) held.push(msg.text())
      assert.deepEqual(held, ['x'], 'the responder yields what it held, then ends')
      await rejectsWith(bus.publish('end.x', 'x'), 'closed')
      await rejectsWith(bus.subscribe('end.*'), 'closed')
      await rejectsWith(bus.request('end.x', 'x'), 'closed')
    })
  })
}

module.exports = { contract, take, collector, rejectsWith }
