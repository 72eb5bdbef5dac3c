'use strict'
// The contract against a private Kafka-protocol broker (tansu): the backend is chosen by
// configuration alone; a request nobody reads times out (Kafka cannot tell), and durable
// streams are refused with `unsupported` (docs/design.md §5, §7).
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')

const busbar = require('..')
const { Tansu } = require('./support/tansu')
const { contract, take } = require('./support/contract')

let broker
before(async () => {
  broker = await Tansu.start()
})
after(async () => {
  await broker.stop()
})

contract('kafka', () => ({ backend: 'kafka', kafkaBrokers: broker.brokers }), {
  noResponders: 'timeout',
  onePartitionPerPublisher: true,
})

describe('the Kafka backend', () => {
  it('is chosen by BUSBAR_BACKEND and BUSBAR_KAFKA_BROKERS alone, or by a kafka:// URL', async () => {
    process.env.BUSBAR_BACKEND = 'kafka'
    process.env.BUSBAR_KAFKA_BROKERS = broker.brokers
    try {
      const bus = await busbar.connect()
      assert.equal(bus.backend, 'kafka')
      await bus.close()
    } finally {
      delete process.env.BUSBAR_BACKEND
      delete process.env.BUSBAR_KAFKA_BROKERS
    }
    const bus = await busbar.connect(`kafka://${broker.brokers}`, { kafkaTopic: 'node-url' })
    const sub = await bus.subscribe('url.>')
    await bus.publish('url.check', 'ok')
    const [msg] = await take(sub, 1, 10000)
    assert.equal(msg.text(), 'ok')
    await bus.close()
  })

  it('spreads a queue group over subjects with kafkaPartitionBy subject', async () => {
    const bus = await busbar.connect({
      backend: 'kafka',
      kafkaBrokers: broker.brokers,
      kafkaTopic: 'node-queue',
      kafkaPartitionBy: 'subject',
    })
    const a = await bus.queueSubscribe('jobs.*', 'workers')
    const b = await bus.queueSubscribe('jobs.*', 'workers')
    for (let n = 0; n < 40; n++) await bus.publish(`jobs.j${n}`, String(n))
    await bus.flush()
    const seen = []
    const pump = async (sub) => {
      for await (const m of sub) seen.push(Number(m.text()))
    }
    const pumps = [pump(a), pump(b)]
    const deadline = Date.now() + 10000
    while (seen.length < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    await new Promise((r) => setTimeout(r, 300)) // nothing more: no job twice
    assert.deepEqual(
      seen.sort((x, y) => x - y),
      Array.from({ length: 40 }, (_, n) => n),
    )
    await bus.close()
    await Promise.all(pumps)
  })

  it('refuses durable streams with unsupported, naming the call', async () => {
    const bus = await busbar.connect({ backend: 'kafka', kafkaBrokers: broker.brokers })
    await assert.rejects(bus.declareStream('ORDERS', ['orders.>']), (err) => {
      assert.equal(err.code, 'unsupported')
      assert.match(err.message, /declare_stream/)
      assert.match(err.message, /kafka/)
      return true
    })
    await bus.close()
  })

  it('refuses bad Kafka settings with invalid_argument and wrong types with TypeError', async () => {
    await assert.rejects(busbar.connect({ backend: 'kafka', kafkaBrokers: 'no-port' }), (err) => {
      assert.equal(err.code, 'invalid_argument')
      assert.match(err.message, /kafka_brokers/)
      return true
    })
    await assert.rejects(async () => busbar.connect({ backend: 'kafka', kafkaTopic: 5 }), TypeError)
  })
})
