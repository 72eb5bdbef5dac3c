'use strict'
// The contract against the machine's RabbitMQ broker (BUSBAR_TEST_AMQP_URL), on a topic
// exchange of this run's own (auto-deleted once its buses disconnect): the backend is
// chosen by configuration alone, and durable calls reject with code `unsupported`.
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { describe, it } = require('node:test')

const busbar = require('..')
const { contract, take } = require('./support/contract')

const amqpUrl = process.env.BUSBAR_TEST_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f'
const exchange = () => `busbar.test.${crypto.randomUUID()}`

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

  it('rejects a durable call with code unsupported, and the bus goes on', async () => {
    const bus = await busbar.connect({ backend: 'rabbitmq', amqpUrl, amqpExchange: exchange() })
    try {
      await assert.rejects(bus.declareStream('ORDERS', ['orders.>']), (e) => {
        assert.equal(e.code, 'unsupported')
        assert.match(e.message, /durable.*rabbitmq/)
        return true
      })
      await assert.rejects(bus.publishDurable('orders.created', 'x'), { code: 'unsupported' })
      const sub = await bus.subscribe('orders.*')
      await bus.publish('orders.created', 'still works')
      assert.equal((await take(sub, 1))[0].data.toString(), 'still works')
    } finally {
      await bus.close()
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
