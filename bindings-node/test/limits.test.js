'use strict'
// Limits and hostile inputs (issue 12), on both backends: deep and long subjects, numeric
// options out of range (they panicked into a GenericFailure), options of the wrong type,
// lone surrogates in subjects.
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')
const { rejectsWith, take } = require('./support/contract')

let server
before(async () => {
  server = await NatsServer.start()
})
after(async () => {
  await server.stop()
})

for (const [name, options] of [
  ['memory', () => ({})],
  ['nats', () => ({ backend: 'nats', natsUrl: server.url })],
]) {
  describe(`limits on the ${name} bus`, () => {
    let bus
    before(async () => {
      bus = await busbar.connect(options())
    })
    after(async () => {
      await bus.close()
    })

    it('refuses deep and long subjects with invalid_subject, and accepts the limits', async () => {
      const deep = Array(10000).fill('a').join('.') // overflowed the trie's recursion
      await rejectsWith(bus.subscribe(deep), 'invalid_subject')
      await rejectsWith(bus.queueSubscribe(Array(300).fill('*').join('.') + '.>', 'w'), 'invalid_subject')
      const long = 'x'.repeat(5000) // over a NATS server's 4096-byte control line
      await rejectsWith(bus.publish(long, 'x'), 'invalid_subject')
      await rejectsWith(bus.request(long, 'x', { timeoutMs: 500 }), 'invalid_subject')
      await assert.rejects(bus.subscribe(deep), (err) => err.message.length < 300 && /2000 bytes/.test(err.message))

      const longest = 'p'.repeat(1996) + '.end'
      const deepest = Array(256).fill('d').join('.')
      const byLong = await bus.subscribe('p'.repeat(1996) + '.*')
      const byDeep = await bus.subscribe(Array(255).fill('*').join('.') + '.>')
      await bus.flush()
      await bus.publish(longest, 'long')
      await bus.publish(deepest, 'deep')
      assert.equal((await take(byLong, 1))[0].subject, longest)
      assert.equal((await take(byDeep, 1))[0].subject, deepest)
      await byLong.unsubscribe()
      await byDeep.unsubscribe()
    })

    it('rejects out-of-range numbers with invalid_argument, never a panic', async () => {
      for (const timeout of [1e300, Number.MAX_VALUE, Infinity, NaN, -1]) {
        await rejectsWith(bus.request('svc', 'x', { timeoutMs: timeout }), 'invalid_argument')
      }
      await bus.declareStream(`LIMITS_${name}`, [`limits${name}.>`])
      for (const bad of [{ ackWaitMs: Number.MAX_VALUE }, { ackWaitMs: 2 ** 64 }, { ackWaitMs: NaN },
        { maxDeliver: 2 ** 40 }, { maxAckPending: -1 }, { backoff: { capMs: 1e300 } }]) {
        await rejectsWith(bus.durableSubscribe(`LIMITS_${name}`, 'c', bad), 'invalid_argument')
      }
      await rejectsWith(bus.declareStream('LIMITS_X', ['limitsx.>'], { maxAgeMs: 1e300 }), 'invalid_argument')
      await rejectsWith(bus.declareStream('LIMITS_X', ['limitsx.>'], { maxBytes: 1.5 }), 'invalid_argument')
    })

    it('refuses lone surrogates in subjects instead of replacing them', async () => {
      for (const subject of ['a.\uD800', '\uDC00.b', 'x\uD83D']) {
        assert.throws(() => bus.publish(subject, 'x'), { code: 'invalid_argument' })
        assert.throws(() => bus.subscribe(subject), { code: 'invalid_argument' })
      }
      // A real replacement character and a proper surrogate pair are ordinary text.
      const sub = await bus.subscribe('ok.\uFFFD.\uD83D\uDE00')
      await bus.flush()
      await bus.publish('ok.\uFFFD.\uD83D\uDE00', 'x')
      assert.equal((await take(sub, 1))[0].subject, 'ok.\uFFFD.\uD83D\uDE00')
      await sub.unsubscribe()
    })
  })
}

describe('connect options', () => {
  it('refuses subscriptionCapacity past its bound (2^61 panicked at subscribe)', async () => {
    await rejectsWith(busbar.connect({ subscriptionCapacity: 2 ** 61 }), 'invalid_argument')
    await rejectsWith(busbar.connect({ subscriptionCapacity: 1.5 }), 'invalid_argument')
    const bus = await busbar.connect({ subscriptionCapacity: 2 ** 24 })
    await (await bus.subscribe('ok')).unsubscribe()
    await bus.close()
  })

  it('refuses a number or boolean for a text option instead of coercing it', () => {
    assert.throws(() => busbar.connect({ backend: 5 }), TypeError)
    assert.throws(() => busbar.connect({ natsUrl: true }), TypeError)
  })
})
