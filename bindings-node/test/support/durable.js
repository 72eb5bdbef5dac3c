'use strict'
// The durable-stream behaviours every backend must show from Node, run by memory.test.js
// against the in-memory bus and by nats.test.js against a private nats-server (whose
// streams outlive a test, so every test uses names of its own).
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')

const busbar = require('../..')
const { take, rejectsWith } = require('./contract')

let serial = 0
/** A stream name and subject root no other test uses. */
function fresh(label) {
  serial += 1
  const id = `${label}${serial}${process.pid}`
  return { stream: id.toUpperCase(), root: id.toLowerCase() }
}

/** Fails if `sub` yields a message within `ms`; then unsubscribes it. */
async function quiet(sub, ms) {
  let timer
  const waited = new Promise((resolve) => {
    timer = setTimeout(() => resolve('quiet'), ms)
  })
  try {
    const got = await Promise.race([sub.nextBatch(), waited])
    if (got !== 'quiet') assert.fail(`expected no delivery, got ${got && got.map((m) => `${m.text()} #${m.attempt}`)}`)
  } finally {
    clearTimeout(timer)
    await sub.unsubscribe()
  }
}

function durableContract(name, options) {
  describe(`durable streams on the ${name} bus`, () => {
    let bus
    before(async () => {
      bus = await busbar.connect(options())
    })
    after(async () => {
      await bus.close()
    })

    it('declares a stream, acks durable publishes and deduplicates by id', async () => {
      const { stream, root } = fresh('dedupe')
      const info = await bus.declareStream(stream, [`${root}.>`], { duplicateWindowMs: 60000 })
      assert.deepEqual(info, {
        name: stream,
        subjects: [`${root}.>`],
        messages: 0,
        bytes: 0,
        firstSequence: 0,
        lastSequence: 0,
      })
      assert.equal((await bus.declareStream(stream, [`${root}.>`])).name, stream, 'declaring twice is harmless')

      const first = await bus.publishDurable(`${root}.created`, { n: 1 }, { id: 'order-1' })
      assert.deepEqual(first, { stream, sequence: 1, duplicate: false })
      const second = await bus.publishDurable(`${root}.paid`, 'two', { id: 'order-2', headers: { k: 'v' } })
      assert.deepEqual(second, { stream, sequence: 2, duplicate: false })
      const retry = await bus.publishDurable(`${root}.created`, { n: 1 }, { id: 'order-1' })
      assert.deepEqual(retry, { stream, sequence: 1, duplicate: true }, 'a repeated id is stored once')

      const now = await bus.streamInfo(stream)
      assert.equal(now.name, stream)
      assert.deepEqual([now.messages, now.firstSequence, now.lastSequence], [2, 1, 2])
      assert.ok(now.bytes > 0, `bytes: ${now.bytes}`)
    })

    it('delivers to a durable subscription with its attributes; ack settles it', async () => {
      const { stream, root } = fresh('ack')
      await bus.declareStream(stream, [`${root}.>`])
      await bus.publishDurable(`${root}.created`, { qty: 2 }, { id: 'a-1', headers: { tenant: 't1' } })
      const sub = await bus.durableSubscribe(stream, 'billing', { ackWaitMs: 300 })
      assert.deepEqual([sub.stream, sub.name], [stream, 'billing'])
      let msg
      for await (const m of sub) {
        msg = m
        break // leaves the subscription unsubscribed; the message is still ours to settle
      }
      assert.ok(msg instanceof busbar.Message)
      assert.deepEqual(
        [msg.subject, msg.id, msg.attempt, msg.sequence, msg.stream],
        [`${root}.created`, 'a-1', 1, 1, stream],
      )
      assert.deepEqual(msg.json(), { qty: 2 })
      assert.equal(msg.headers.tenant, 't1')
      assert.equal(msg.contentType, 'application/json')
      await msg.ack()
      assert.equal(await sub.nextBatch(), null, 'iteration ended with the loop')

      // Acked: not delivered again to the consumer, even after its ack wait.
      const again = await bus.durableSubscribe(stream, 'billing', { ackWaitMs: 300 })
      await quiet(again, 800)
    })

    it('redelivers a nacked message with attempt 2, after the backoff or the given delay', async () => {
      const { stream, root } = fresh('nak')
      await bus.declareStream(stream, [`${root}.>`])
      // Backoff 150 ms after attempt 1, then a minute: only an explicit delay brings
      // attempt 3 within take()'s two seconds.
      const sub = await bus.durableSubscribe(stream, 'retry', {
        backoff: { baseMs: 150, factor: 400, capMs: 60000 },
      })
      await bus.publishDurable(`${root}.created`, 'a')
      const [first] = await take(sub, 1)
      assert.equal(first.attempt, 1)
      const nacked = Date.now()
      await first.nak()
      const [second] = await take(sub, 1)
      assert.deepEqual([second.text(), second.attempt, second.sequence], ['a', 2, first.sequence])
      assert.ok(Date.now() - nacked >= 130, `redelivered ${Date.now() - nacked} ms after nak, backoff is 150`)
      const again = Date.now()
      await second.nak(50)
      const [third] = await take(sub, 1)
      assert.equal(third.attempt, 3, 'an explicit delay overrides the backoff')
      assert.ok(Date.now() - again >= 40, `redelivered ${Date.now() - again} ms after nak(50)`)
      await third.inProgress()
      await third.ack()
      await quiet(sub, 500)
    })

    it('sends a terminated message to the dead-letter stream DLQ_DLQ with the reason', async () => {
      const { stream, root } = fresh('term')
      await bus.declareStream(stream, [`${root}.>`])
      const sub = await bus.durableSubscribe(stream, 'parser')
      const dead = await bus.durableSubscribe('DLQ_DLQ', `inspector-${root}`, { filter: `dlq.${root}.>` })
      await bus.publishDurable(`${root}.bad`, 'not json')
      const [msg] = await take(sub, 1)
      await msg.term('cannot parse')
      const [letter] = await take(dead, 1)
      assert.equal(letter.subject, `dlq.${root}.bad`)
      assert.equal(letter.text(), 'not json')
      assert.equal(letter.stream, 'DLQ_DLQ')
      assert.match(letter.headers['busbar-dlq-reason'], /cannot parse/)
      assert.equal(letter.headers['busbar-dlq-stream'], stream)
      await letter.ack()
      await sub.unsubscribe()
      await dead.unsubscribe()
    })

    it('replays from a sequence, from a Date, and starts new consumers at new messages', async () => {
      const { stream, root } = fresh('replay')
      await bus.declareStream(stream, [`${root}.>`])
      for (let i = 1; i <= 3; i++) await bus.publishDurable(`${root}.tick`, `m${i}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const cut = new Date()
      await new Promise((resolve) => setTimeout(resolve, 50))
      for (let i = 4; i <= 5; i++) await bus.publishDurable(`${root}.tick`, `m${i}`)

      async function read(consumer, start, n) {
        const sub = await bus.durableSubscribe(stream, consumer, start === undefined ? undefined : { start })
        const got = []
        for await (const msg of sub) {
          got.push(msg.sequence)
          await msg.ack()
          if (got.length === n) break
        }
        return got
      }
      assert.deepEqual(await read('all', undefined, 5), [1, 2, 3, 4, 5])
      assert.deepEqual(await read('begin', 'beginning', 5), [1, 2, 3, 4, 5])
      assert.deepEqual(await read('from3', 3, 3), [3, 4, 5])
      assert.deepEqual(await read('since', cut, 2), [4, 5])

      const fresh6 = await bus.durableSubscribe(stream, 'later', { start: 'new' })
      await bus.publishDurable(`${root}.tick`, 'm6')
      const [m6] = await take(fresh6, 1)
      assert.deepEqual([m6.sequence, m6.text()], [6, 'm6'])
      await m6.ack()
      await fresh6.unsubscribe()
    })

    it('redelivers what a subscription left unsettled to the next one', async () => {
      const { stream, root } = fresh('crash')
      await bus.declareStream(stream, [`${root}.>`])
      await bus.publishDurable(`${root}.job`, 'j')
      const first = await bus.durableSubscribe(stream, 'worker', { ackWaitMs: 300 })
      const [held] = await take(first, 1)
      assert.equal(held.attempt, 1)
      await first.unsubscribe() // the handler "crashes" without settling
      const second = await bus.durableSubscribe(stream, 'worker', { ackWaitMs: 300 })
      const [again] = await take(second, 1, 5000)
      assert.deepEqual([again.text(), again.attempt], ['j', 2])
      await again.ack()
      await second.unsubscribe()
    })

    it('lists and deletes streams and consumers', async () => {
      const { stream, root } = fresh('admin')
      await bus.declareStream(stream, [`${root}.>`])
      await bus.publishDurable(`${root}.a`, '1')
      await bus.publishDurable(`${root}.b`, '2')
      const listed = (await bus.listStreams()).find((s) => s.name === stream)
      assert.deepEqual([listed.subjects, listed.messages], [[`${root}.>`], 2])
      const sub = await bus.durableSubscribe(stream, 'reader', { filter: `${root}.>` })
      const [msg] = await take(sub, 1)
      await msg.ack()
      await sub.unsubscribe()
      assert.deepEqual(
        (await bus.listConsumers(stream)).map((c) => c.name),
        ['reader'],
      )
      const info = await bus.consumerInfo(stream, 'reader')
      assert.deepEqual([info.stream, info.name, info.filter], [stream, 'reader', `${root}.>`])
      assert.equal(info.pending + info.deliveredSequence, 2, 'NATS pulls ahead of the handler')
      assert.equal(typeof info.ackPending, 'number')
      await bus.deleteConsumer(stream, 'reader')
      assert.deepEqual(await bus.listConsumers(stream), [])
      await rejectsWith(bus.consumerInfo(stream, 'reader'), 'invalid_argument')
      await bus.deleteStream(stream)
      assert.ok(!(await bus.listStreams()).some((s) => s.name === stream))
      await rejectsWith(bus.deleteStream(stream), 'invalid_argument')
      await rejectsWith(bus.deleteConsumer('bad name', 'c'), 'invalid_argument')
      assert.throws(() => bus.deleteStream(5), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
    })

    it('rejects unknown streams and second settlements with invalid_argument', async () => {
      await rejectsWith(bus.durableSubscribe('NO_SUCH_STREAM', 'c'), 'invalid_argument')
      await rejectsWith(bus.streamInfo('NO_SUCH_STREAM'), 'invalid_argument')
      await rejectsWith(bus.publishDurable('nowhere.captured', 'x'), 'invalid_argument')
      await rejectsWith(bus.declareStream('bad.name', ['x.>']), 'invalid_argument')
      await rejectsWith(bus.declareStream('EMPTY', []), 'invalid_argument')

      const { stream, root } = fresh('twice')
      await bus.declareStream(stream, [`${root}.>`])
      await rejectsWith(bus.durableSubscribe(stream, 'c', { maxDeliver: 0 }), 'invalid_argument')
      await rejectsWith(
        bus.durableSubscribe(stream, 'c', { backoff: { baseMs: 10, factor: 0.5, capMs: 100 } }),
        'invalid_argument',
      )
      await bus.publishDurable(`${root}.x`, 'x')
      const sub = await bus.durableSubscribe(stream, 'c')
      const [msg] = await take(sub, 1)
      await msg.ack()
      await rejectsWith(msg.ack(), 'invalid_argument')
      await rejectsWith(msg.nak(), 'invalid_argument')
      await rejectsWith(msg.term('late'), 'invalid_argument')
      await rejectsWith(msg.inProgress(), 'invalid_argument')
      await sub.unsubscribe()

      // A plain message has no durable part: null attributes, nothing to settle.
      const plain = await bus.subscribe(`${root}.plain`)
      await bus.publish(`${root}.plain`, 'p')
      const [p] = await take(plain, 1)
      assert.deepEqual([p.attempt, p.sequence, p.stream], [null, null, null])
      await rejectsWith(p.ack(), 'invalid_argument')
      await plain.unsubscribe()
    })

    it('throws TypeError for arguments of the wrong type', async () => {
      const { stream, root } = fresh('types')
      await bus.declareStream(stream, [`${root}.>`])
      const typeError = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }
      assert.throws(() => bus.declareStream(stream, `${root}.>`), typeError)
      assert.throws(() => bus.declareStream(stream, [1]), typeError)
      // Numbers of the right type but out of range are the core's invalid_argument.
      await rejectsWith(bus.declareStream(stream, [`${root}.>`], { maxAgeMs: -1 }), 'invalid_argument')
      await rejectsWith(bus.declareStream(stream, [`${root}.>`], { maxMessages: 1.5 }), 'invalid_argument')
      assert.throws(() => bus.streamInfo(7), typeError)
      assert.throws(() => bus.publishDurable(`${root}.x`, 'x', 'id'), typeError)
      assert.throws(() => bus.durableSubscribe(stream, 'c', { start: 'middle' }), typeError)
      // A start sequence of the right type but out of range is invalid_argument too.
      await rejectsWith(bus.durableSubscribe(stream, 'c', { start: -1 }), 'invalid_argument')
      await rejectsWith(bus.durableSubscribe(stream, 'c', { start: 1.5 }), 'invalid_argument')
      await rejectsWith(bus.durableSubscribe(stream, 'c', { ackWaitMs: Infinity }), 'invalid_argument')
      assert.throws(() => bus.durableSubscribe(stream, 'c', { backoff: 5 }), typeError)
      await bus.publishDurable(`${root}.x`, 'x')
      const sub = await bus.durableSubscribe(stream, 'c')
      const [msg] = await take(sub, 1)
      assert.throws(() => msg.nak('soon'), typeError)
      await rejectsWith(msg.nak(-5), 'invalid_argument') // and the message stays unsettled
      assert.throws(() => msg.term(), typeError)
      await msg.ack()
      await sub.unsubscribe()
    })

    it('ends durable iteration when the bus closes', async () => {
      const own = await busbar.connect(options())
      const { stream, root } = fresh('close')
      await own.declareStream(stream, [`${root}.>`])
      const sub = await own.durableSubscribe(stream, 'c')
      const ended = sub.nextBatch()
      await own.close()
      assert.equal(await ended, null)
    })
  })
}

module.exports = { durableContract }
