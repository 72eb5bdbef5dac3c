'use strict'
// Services from Node (docs/design.md §5): startService and addEndpoint over core's
// endpoint jobs, found by discover, on the in-memory bus and on a private nats-server
// (where a plain nats.js client calls the endpoint).
const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')
const nats = require('nats')

const busbar = require('..')
const { NatsServer } = require('./support/nats-server')

let server
before(async () => {
  server = await NatsServer.start()
})
after(async () => {
  await server.stop()
})

/** A service `calc` that doubles a number; a negative one is an error reply (code 422). */
async function calc(bus) {
  const service = await bus.startService({ name: 'calc', version: '1.2.3', description: 'doubles' })
  await service.addEndpoint('double', 'calc.double', async (request) => {
    const n = Number(request.string())
    if (n < 0) throw Object.assign(new Error('negative'), { code: 422 })
    if (Number.isNaN(n)) throw new Error('not a number')
    return String(2 * n)
  })
  return service
}

for (const [backend, options] of [
  ['memory', () => ({})],
  ['nats', () => ({ backend: 'nats', natsUrl: server.url })],
]) {
  describe(`services on ${backend}`, () => {
    it('answer requests, send error replies, count them and are discovered', async () => {
      const bus = await busbar.connect(options())
      try {
        const service = await calc(bus)
        await bus.flush()
        assert.equal((await bus.request('calc.double', '21', { timeoutMs: 5000 })).string(), '42')
        const negative = await bus.request('calc.double', '-1', { timeoutMs: 5000 })
        assert.equal(negative.headers['Nats-Service-Error'], 'negative')
        assert.equal(negative.headers['Nats-Service-Error-Code'], '422')
        const nan = await bus.request('calc.double', 'x', { timeoutMs: 5000 })
        assert.deepEqual(
          [nan.headers['Nats-Service-Error'], nan.headers['Nats-Service-Error-Code']],
          ['not a number', '500'],
        )
        const [info] = await bus.discover('INFO', { name: 'calc', waitMs: 300 })
        assert.equal(info.id, service.id)
        assert.deepEqual(
          [info.version, info.description, info.endpoints[0].subject],
          ['1.2.3', 'doubles', 'calc.double'],
        )
        const [stats] = await bus.discover('STATS', { name: 'calc', waitMs: 300 })
        assert.deepEqual([stats.endpoints[0].num_requests, stats.endpoints[0].num_errors], [3, 2])
        await service.stop()
        await assert.rejects(bus.request('calc.double', '1', { timeoutMs: 300 }), (e) =>
          ['no_responders', 'timeout'].includes(e.code),
        )
      } finally {
        await bus.close()
      }
    })
  })
}

describe('services: bad input', () => {
  it('refuses bad settings with invalid_argument and a handler that is not a function', async () => {
    const bus = await busbar.connect()
    try {
      await assert.rejects(bus.startService({ name: 'bad name', version: '1.0.0' }), { code: 'invalid_argument' })
      await assert.rejects(bus.startService({ name: 'ok', version: '1.0.0', restMs: -1 }), { code: 'invalid_argument' })
      await assert.rejects(bus.startService(), { code: 'invalid_argument' })
      const service = await bus.startService({ name: 'ok', version: '1.0.0' })
      await assert.rejects(service.addEndpoint('e', 'svc.e', 'not a function'), TypeError)
      await assert.rejects(service.addEndpoint('e', 'a..b', () => 'x'), { code: 'invalid_subject' })
      const jobs = await service.endpointJobs('twice', 'svc.twice')
      const asked = bus.request('svc.twice', 'x', { timeoutMs: 5000 })
      const job = await jobs.next()
      assert.equal(job.request.string(), 'x')
      job.reply('once')
      assert.throws(() => job.reply('twice'), { code: 'invalid_argument', message: /answered already/ })
      assert.throws(() => job.fail('late', 70000), { code: 'invalid_argument' })
      assert.equal((await asked).string(), 'once')
      await service.stop()
      assert.equal(await jobs.next(), null, 'the jobs end when the service stops')
    } finally {
      await bus.close()
    }
  })
})

describe('services: interop', () => {
  it('a plain nats.js client calls a busbar service endpoint', async () => {
    const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
    const nc = await nats.connect({ servers: server.url })
    try {
      const service = await calc(bus)
      await bus.flush()
      const reply = await nc.request('calc.double', nats.StringCodec().encode('5'), { timeout: 5000 })
      assert.equal(nats.StringCodec().decode(reply.data), '10')
      await service.stop()
    } finally {
      await nc.close()
      await bus.close()
    }
  })
})
