'use strict'
// Never silent, never stuck: every message a slow subscriber does not get is counted and
// told by a lag notice at the gap (delivered + missed = published, at a million messages
// on NATS, iterated and with a callback), a subscription's buffer is bounded in bytes, and
// a message that cannot be decoded is reported while iterators, callbacks and responders
// go on.
const assert = require('node:assert/strict')
const net = require('node:net')
const { describe, it, before, after } = require('node:test')
const nats = require('nats')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')

const MILLION = 1_000_000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let server
before(async () => {
  server = await NatsServer.start()
})
after(async () => {
  await server.stop()
})

/** Publishes `count` small plain messages as fast as a socket takes them (the NATS
 * protocol by hand), then waits for the server's PONG: it has routed them all. */
function publishRaw(port, subject, count) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    let sent = false
    socket.on('error', reject)
    socket.on('data', async (data) => {
      text += data.toString()
      if (text.includes('-ERR')) return reject(new Error(text))
      if (!sent && text.includes('INFO ')) {
        sent = true
        socket.write('CONNECT {"verbose":false,"pedantic":false}\r\n')
        const chunk = Buffer.from(`PUB ${subject} 8\r\n12345678\r\n`.repeat(10_000))
        for (let i = 0; i < count / 10_000; i++) {
          if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r))
        }
        socket.write('PING\r\n')
      } else if (sent && text.includes('PONG')) {
        socket.end()
        resolve()
      }
    })
  })
}

/** The process warnings emitted while `fn` runs (and 50 ms after). */
async function warningsDuring(fn) {
  const warnings = []
  const listen = (w) => warnings.push(w)
  process.on('warning', listen)
  try {
    await fn()
    await sleep(50)
  } finally {
    process.off('warning', listen)
  }
  return warnings
}

async function waitFor(cond, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline && !cond()) await sleep(20)
  return cond()
}

/** Iterates to the end, pausing 1 ms every 512 messages; a lag notice is counted and
 * iteration goes on. */
async function consumeSlowly(sub, seen) {
  for (;;) {
    try {
      for await (const msg of sub) {
        assert.ok(msg.subject)
        if (++seen.messages % 512 === 0) await sleep(1)
      }
      return
    } catch (err) {
      if (err.code !== 'lagged') throw err
      seen.toldMissed += err.missed
      seen.notices++
    }
  }
}

/** Delivered + missed = published, and the lag notices told every miss. */
function assertAccounted(stats, seen) {
  assert.equal(stats.delivered + stats.missed, MILLION, JSON.stringify(stats))
  assert.equal(seen.messages + seen.toldMissed, MILLION, JSON.stringify(seen))
  assert.equal(seen.toldMissed, stats.missed)
  assert.ok(stats.missed > 0, 'the consumer was meant to be too slow')
}

describe('a slow consumer on NATS is told every loss', () => {
  for (const backpressure of ['block', 'lag']) {
    it(`iterated, in ${backpressure} mode`, async () => {
      const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url, backpressure })
      try {
        const sub = await bus.subscribe('load.*')
        await bus.flush()
        const seen = { messages: 0, toldMissed: 0, notices: 0 }
        const consumer = consumeSlowly(sub, seen)
        await publishRaw(server.port, 'load.x', MILLION)
        await waitFor(() => sub.stats().delivered + sub.stats().missed >= MILLION, 30_000)
        const stats = sub.stats()
        await sub.drain()
        await consumer
        assertAccounted(stats, seen)
      } finally {
        await bus.close()
      }
    })

    it(`with a callback, in ${backpressure} mode`, async () => {
      const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url, backpressure })
      try {
        const seen = { messages: 0, toldMissed: 0, notices: 0 }
        const spin = () => {
          const until = Date.now() + 1
          while (Date.now() < until);
        }
        const sub = await bus.subscribe(
          'load.*',
          () => {
            if (++seen.messages % 512 === 0) spin()
          },
          {
            onError: (err) => {
              assert.equal(err.code, 'lagged')
              seen.toldMissed += err.missed
              seen.notices++
            },
          },
        )
        await bus.flush()
        await publishRaw(server.port, 'load.x', MILLION)
        await waitFor(() => sub.stats().delivered + sub.stats().missed >= MILLION, 30_000)
        const stats = sub.stats()
        await waitFor(() => seen.messages + seen.toldMissed >= MILLION, 30_000)
        await sub.unsubscribe()
        assertAccounted(stats, seen)
      } finally {
        await bus.close()
      }
    })
  }
})

describe('lag notices and the byte bound', () => {
  it('an iterator throws the lag notice at the gap, with missed, and goes on', async () => {
    const bus = await busbar.connect({ subscriptionCapacity: 2, backpressure: 'lag' })
    const sub = await bus.subscribe('lag')
    for (let i = 0; i < 5; i++) await bus.publish('lag', String(i))
    const got = []
    await assert.rejects(
      (async () => {
        for await (const msg of sub) got.push(msg.text())
      })(),
      (err) => err.code === 'lagged' && err.missed === 3,
    )
    assert.deepEqual(got, ['0', '1'])
    await bus.publish('lag', 'after')
    for await (const msg of sub) {
      assert.equal(msg.text(), 'after')
      break
    }
    await bus.close()
  })

  it('a callback gets every lag notice through onError', async () => {
    const bus = await busbar.connect({ subscriptionCapacity: 2, backpressure: 'lag' })
    const seen = { messages: 0, toldMissed: 0 }
    const sub = await bus.subscribe('lag', () => seen.messages++, {
      onError: (err) => {
        assert.equal(err.code, 'lagged')
        seen.toldMissed += err.missed
      },
    })
    // The JavaScript thread is busy publishing, so the callback cannot keep up.
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => bus.publish('lag', String(i))))
    assert.ok(await waitFor(() => seen.messages + seen.toldMissed === 10_000, 5000), JSON.stringify(seen))
    assert.ok(seen.toldMissed > 0)
    assert.equal(seen.toldMissed, sub.stats().missed)
    await bus.close()
  })

  it('a callback without onError warns of lag at most once a second, counting every miss', async () => {
    const bus = await busbar.connect({ subscriptionCapacity: 2, backpressure: 'lag' })
    let messages = 0
    const sub = await bus.subscribe('lag', () => messages++)
    const warnings = await warningsDuring(async () => {
      await Promise.all(Array.from({ length: 10_000 }, (_, i) => bus.publish('lag', String(i))))
      assert.ok(await waitFor(() => messages + sub.stats().missed === 10_000, 5000))
      await sleep(1300) // what was held back is warned a second after the previous warning
    })
    const lagged = warnings.filter((w) => w.code === 'BUSBAR_LAGGED')
    const counted = lagged.map((w) => Number(/^(\d+) lag notices, (\d+) missed/.exec(w.detail)[2]))
    assert.ok(sub.stats().missed > 0)
    assert.ok(lagged.length >= 1 && lagged.length <= 4, `${lagged.length} warnings`)
    assert.equal(
      counted.reduce((a, b) => a + b, 0),
      sub.stats().missed,
    )
    await bus.close()
  })

  it('bounds a subscription in bytes (subscriptionMaxBytes)', async () => {
    const mib = 1024 * 1024
    const bus = await busbar.connect({ backpressure: 'lag', subscriptionMaxBytes: 8 * mib })
    const sub = await bus.subscribe('big')
    const payload = Buffer.alloc(1_000_000)
    for (let i = 0; i < 200; i++) await bus.publish('big', payload)
    const s = sub.stats()
    assert.equal(s.delivered + s.missed, 200)
    assert.ok(s.pending <= 8 && s.pendingBytes <= 8 * mib, JSON.stringify(s))
    await assert.rejects(busbar.connect({ subscriptionMaxBytes: 0 }), { code: 'invalid_argument' })
    await bus.close()
  })
})

describe('an undecodable message stops nothing', () => {
  let plain
  before(async () => {
    plain = await nats.connect({ servers: server.url })
  })
  after(async () => {
    await plain.close()
  })

  function sendBad(subject, reply) {
    const h = nats.headers()
    h.set('ce-time', 'not-a-time')
    plain.publish(subject, 'x', { headers: h, reply })
  }

  it('an iterator skips it with a warning and counts it', async () => {
    const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
    try {
      const sub = await bus.subscribe('mixed.>')
      await bus.flush()
      const warnings = await warningsDuring(async () => {
        sendBad('mixed.bad')
        plain.publish('mixed.good', 'ok')
        await plain.flush()
        for await (const msg of sub) {
          assert.equal(msg.text(), 'ok')
          break
        }
      })
      assert.equal(warnings.length, 1)
      assert.equal(warnings[0].code, 'BUSBAR_DECODE')
      assert.match(warnings[0].message, /not-a-time/)
    } finally {
      await bus.close()
    }
  })

  for (const form of ['iterator', 'callback']) {
    it(`a flood of 1,000 makes a handful of warnings counting all 1,000 (${form})`, async () => {
      const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
      try {
        const got = []
        const sub =
          form === 'callback'
            ? await bus.subscribe('flood.>', (msg) => got.push(msg.text()))
            : await bus.subscribe('flood.>')
        await bus.flush()
        const warnings = await warningsDuring(async () => {
          for (let i = 0; i < 1000; i++) sendBad('flood.bad')
          plain.publish('flood.good', 'ok')
          await plain.flush()
          if (form === 'callback') {
            assert.ok(await waitFor(() => got.length === 1, 10_000))
          } else {
            const { value } = await sub.next()
            got.push(value.text())
          }
          await sleep(1300) // what was held back is warned a second after the first warning
        })
        assert.deepEqual(got, ['ok'])
        assert.equal(sub.stats().undecodable, 1000)
        const decode = warnings.filter((w) => w.code === 'BUSBAR_DECODE')
        assert.ok(decode.length >= 2 && decode.length <= 5, `${decode.length} warnings`)
        const counts = decode.map((w) => Number(/^(\d+) undecodable/.exec(w.detail)[1]))
        assert.equal(
          counts.reduce((a, b) => a + b, 0),
          1000,
        )
      } finally {
        await bus.close()
      }
    })
  }

  it('a callback goes on, telling onError or warning', async () => {
    const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
    try {
      const got = []
      const errors = []
      const sub = await bus.subscribe('cb.>', (msg) => got.push(msg.text()), {
        onError: (err) => errors.push(err.code),
      })
      const quiet = []
      const bare = await bus.subscribe('cb.>', (msg) => quiet.push(msg.text()))
      await bus.flush()
      const warnings = await warningsDuring(async () => {
        sendBad('cb.bad')
        plain.publish('cb.good', 'ok')
        await plain.flush()
        assert.ok(await waitFor(() => got.length === 1 && quiet.length === 1, 5000))
      })
      assert.deepEqual(got, ['ok'])
      assert.deepEqual(quiet, ['ok'])
      assert.deepEqual(errors, ['decode'])
      assert.deepEqual(
        warnings.map((w) => w.code),
        ['BUSBAR_DECODE'],
      )
      assert.equal(sub.stats().undecodable, 1)
      assert.equal(bare.stats().undecodable, 1)
      assert.equal(sub.stats().missed, 0)
    } finally {
      await bus.close()
    }
  })

  for (const form of ['callback', 'iterator']) {
    it(`a ${form} responder answers on after one`, async () => {
      const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
      try {
        let sub
        let service
        if (form === 'callback') {
          sub = await bus.subscribe('svc.echo', (req) => req.respond(req.data), { onError: () => {} })
        } else {
          sub = await bus.subscribe('svc.echo')
          service = (async () => {
            for await (const req of sub) await req.respond(req.data)
          })()
        }
        await bus.flush()
        await warningsDuring(async () => {
          sendBad('svc.echo', 'reply.bad')
          await plain.flush()
          const reply = await bus.request('svc.echo', 'still here', { timeoutMs: 5000 })
          assert.equal(reply.text(), 'still here')
        })
        assert.equal(sub.stats().undecodable, 1)
        await sub.unsubscribe()
        await service
      } finally {
        await bus.close()
      }
    })
  }
})
