'use strict'
// The contract against the machine's RabbitMQ broker (BUSBAR_TEST_AMQP_URL), on a topic
// exchange of this run's own (auto-deleted once its buses disconnect): the backend is
// chosen by configuration alone, and durable streams work as on the other backends.
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { describe, it } = require('node:test')

const amqp = require('amqplib')

const busbar = require('..')
const { contract, take } = require('./support/contract')

const amqpUrl = process.env.BUSBAR_TEST_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f'
const exchange = () => `busbar.test.${crypto.randomUUID()}`

// Deletes the durable journal of test exchange `name` (a RabbitMQ stream queue, which
// would otherwise stay on the broker's disk), as the Rust and Python suites do.
async function deleteJournal(name) {
  const conn = await amqp.connect(amqpUrl)
  try {
    const channel = await conn.createChannel()
    await channel.deleteQueue(`${name}.journal`)
  } finally {
    await conn.close()
  }
}

contract('rabbitmq', () => ({ backend: 'rabbitmq', amqpUrl, amqpExchange: exchange() }))

describe('configuration of the RabbitMQ backend', () => {
  it('is chosen by BUSBAR_BACKEND, BUSBAR_AMQP_URL and BUSBAR_AMQP_EXCHANGE alone', async () => {
    process.env.BUSBAR_BACKEND = 'rabbitmq'
    process.env.BUSBAR_AMQP_URL = amqpUrl
    process.env.BUSBAR_AMQP_EXCHANGE = exchange()
    try {
      const bus = await busbar.connect()
      assert.equal(bus.backend, 'rabbitmq')
      await bus.close()
    } finally {
      delete process.env.BUSBAR_BACKEND
      delete process.env.BUSBAR_AMQP_URL
      delete process.env.BUSBAR_AMQP_EXCHANGE
    }
  })

  it('stores durable publishes and delivers them to a durable consumer', async () => {
    // Durable streams live in the exchange's journal, a RabbitMQ stream that outlives the
    // buses: an exchange of this run's own, whose journal queue is deleted at the end.
    const amqpExchange = exchange()
    const bus = await busbar.connect({ backend: 'rabbitmq', amqpUrl, amqpExchange })
    const id = crypto.randomUUID().replaceAll('-', '')
    const stream = `NODE_${id}`
    try {
      const info = await bus.declareStream(stream, [`node${id}.>`])
      assert.equal(info.lastSequence, 0)
      const ack = await bus.publishDurable(`node${id}.created`, 'x', { id: 'n-1' })
      assert.deepEqual([ack.stream, ack.sequence, ack.duplicate], [stream, 1, false])
      const again = await bus.publishDurable(`node${id}.created`, 'x', { id: 'n-1' })
      assert.deepEqual([again.sequence, again.duplicate], [1, true])
      const sub = await bus.durableSubscribe(stream, 'reader')
      for await (const m of sub) {
        assert.deepEqual([m.text(), m.sequence, m.attempt], ['x', 1, 1])
        await m.ack()
        break
      }
      await assert.rejects(bus.publishDurable('nowhere.x', 'y'), { code: 'invalid_argument' })

      // Listed and deleted as on the other backends (other runs' streams may be listed too).
      const listed = (await bus.listStreams()).find((s) => s.name === stream)
      assert.deepEqual([listed.subjects, listed.messages, listed.lastSequence], [[`node${id}.>`], 1, 1])
      const consumers = await bus.listConsumers(stream)
      assert.deepEqual(consumers.map((c) => c.name), ['reader'])
      const reader = await bus.consumerInfo(stream, 'reader')
      assert.deepEqual([reader.pending, reader.ackPending, reader.deliveredSequence], [0, 0, 1])
      await bus.deleteConsumer(stream, 'reader')
      await assert.rejects(bus.consumerInfo(stream, 'reader'), { code: 'invalid_argument' })
      await bus.deleteStream(stream)
      assert.ok(!(await bus.listStreams()).some((s) => s.name === stream))
      await assert.rejects(bus.streamInfo(stream), { code: 'invalid_argument' })
      await assert.rejects(bus.deleteStream(stream), { code: 'invalid_argument' })
    } finally {
      await bus.close()
      await deleteJournal(amqpExchange)
    }
  })

  it('refuses a pattern with a literal # token with code invalid_subject', async () => {
    const bus = await busbar.connect({ backend: 'rabbitmq', amqpUrl, amqpExchange: exchange() })
    try {
      await assert.rejects(bus.subscribe('a.#'), { code: 'invalid_subject' })
    } finally {
      await bus.close()
    }
  })
})
