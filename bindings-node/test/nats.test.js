'use strict'
// The contract against a private nats-server, and interop with a plain nats.js client:
// what busbar publishes is a CloudEvent in binary mode (payload as the body, attributes as
// ce-* headers), and a request from nats.js is answered by a busbar responder.
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')
const nats = require('nats')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')
const { durableContract } = require('./support/durable')
const { contract, take } = require('./support/contract')

let server
before(async () => {
  server = await NatsServer.start()
})
after(async () => {
  await server.stop()
})

contract('nats', () => ({ backend: 'nats', natsUrl: server.url }))
durableContract('nats', () => ({ backend: 'nats', natsUrl: server.url }))

describe('configuration of the NATS backend', () => {
  it('is chosen by BUSBAR_BACKEND and BUSBAR_NATS_URL alone', async () => {
    process.env.BUSBAR_BACKEND = 'nats'
    process.env.BUSBAR_NATS_URL = server.url
    try {
      const bus = await busbar.connect()
      assert.equal(bus.backend, 'nats')
      await bus.close()
    } finally {
      delete process.env.BUSBAR_BACKEND
      delete process.env.BUSBAR_NATS_URL
    }
  })

  it('is chosen by a URL given first, as in Python (options may follow)', async () => {
    const bus = await busbar.connect(server.url)
    assert.equal(bus.backend, 'nats')
    await bus.close()
    const named = await busbar.connect(server.url, { source: 'url-test' })
    const sub = await named.subscribe('url.x')
    await named.publish('url.x', 'x')
    const [msg] = await take(sub, 1)
    assert.equal(msg.source, 'url-test')
    await named.close()
    await assert.rejects(busbar.connect('http://user:secret@example'), (err) => {
      assert.equal(err.code, 'invalid_argument')
      assert.match(err.message, /nats:\/\//)
      assert.ok(!err.message.includes('secret'), 'the URL is not quoted')
      return true
    })
    assert.throws(() => busbar.connect({ backend: 'nats' }, { natsUrl: server.url }), TypeError)
    // A string is a URL now, as in Python: one without a scheme is a bad value, not a bad type.
    await assert.rejects(busbar.connect('nats'), { code: 'invalid_argument', message: /without a scheme/ })
  })

  it('rejects with code backend when no server answers', async () => {
    const dead = await NatsServer.start()
    const url = dead.url
    await dead.stop()
    await assert.rejects(busbar.connect({ backend: 'nats', natsUrl: url }), (err) => {
      assert.equal(err.code, 'backend')
      // The core's report: each cause once, not repeated by the binding.
      assert.equal(err.message.split('Connection refused').length, 2, err.message)
      return true
    })
  })
})

describe('interop with nats.js', () => {
  let bus
  let nc
  before(async () => {
    bus = await busbar.connect({ backend: 'nats', natsUrl: server.url, source: 'interop-test' })
    nc = await nats.connect({ servers: server.url })
  })
  after(async () => {
    await nc.close()
    await bus.close()
  })

  it('a plain nats.js subscriber receives the payload and ce- headers intact', async () => {
    const sub = nc.subscribe('interop.orders.>', { max: 1 })
    await nc.flush()
    const payload = Buffer.from([0x7b, 0x00, 0xff, 0x7d]) // not UTF-8 on purpose
    await bus.publish('interop.orders.created', payload, {
      headers: { tenant: 'st-marys' },
      type: 'com.example.created',
      correlationId: 'corr-7',
    })
    await bus.flush()
    let received
    for await (const m of sub) received = m
    assert.ok(received, 'nats.js got the message')
    assert.equal(received.subject, 'interop.orders.created')
    assert.deepEqual(Buffer.from(received.data), payload)
    const h = received.headers
    assert.ok(h, 'headers present')
    assert.equal(h.get('ce-specversion'), '1.0')
    assert.match(h.get('ce-id'), /^[0-9a-f-]{36}$/)
    assert.equal(h.has('Nats-Msg-Id'), false, 'only a durable publish carries the dedupe id')
    assert.equal(h.has('ce-subject'), false, 'the NATS subject is the subject')
    assert.equal(h.get('ce-source'), 'interop-test')
    assert.equal(h.get('ce-type'), 'com.example.created')
    assert.equal(h.get('ce-correlationid'), 'corr-7')
    assert.ok(h.get('ce-time'), 'ce-time present')
    assert.equal(h.get('tenant'), 'st-marys')
  })

  it('a busbar subscriber reads a plain nats.js message as an event', async () => {
    const sub = await bus.subscribe('interop.plain')
    await bus.flush()
    const h = nats.headers()
    h.set('tenant', 'x')
    nc.publish('interop.plain', new TextEncoder().encode('hello'), { headers: h })
    await nc.flush()
    const [msg] = await take(sub, 1)
    assert.equal(msg.text(), 'hello')
    assert.equal(msg.headers.tenant, 'x')
    assert.ok(msg.id, 'an id is generated')
    await sub.unsubscribe()
  })

  it('a busbar responder answers a nats.js request', async () => {
    const responder = await bus.subscribe('interop.time', (req) => req.respond(`tea for ${req.text()}`))
    await bus.flush()
    const reply = await nc.request('interop.time', new TextEncoder().encode('two'), { timeout: 2000 })
    assert.equal(new TextDecoder().decode(reply.data), 'tea for two')
    assert.ok(reply.headers && reply.headers.get('ce-id'), 'the reply is a CloudEvent too')
    await responder.unsubscribe()
  })

  it('a busbar request is answered by a nats.js responder that echoes ce-correlationid', async () => {
    const sub = nc.subscribe('interop.echo', {
      max: 1,
      callback: (err, m) => {
        if (err) return
        const h = nats.headers()
        h.set('ce-correlationid', m.headers.get('ce-correlationid'))
        m.respond(m.data, { headers: h })
      },
    })
    await nc.flush()
    const reply = await bus.request('interop.echo', 'ping', { timeoutMs: 2000 })
    assert.equal(reply.text(), 'ping')
    await sub.closed
  })

  it('refuses and counts a reply without the correlation id (docs/design.md §5)', async () => {
    const sub = nc.subscribe('interop.bare', {
      max: 1,
      callback: (err, m) => {
        if (!err) m.respond(m.data)
      },
    })
    await nc.flush()
    const before = bus.stats().rejectedReplies
    await assert.rejects(bus.request('interop.bare', 'ping', { timeoutMs: 300 }), { code: 'timeout' })
    assert.equal(bus.stats().rejectedReplies, before + 1)
    await sub.closed
  })
})
