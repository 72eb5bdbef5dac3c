// busbar's Node module against nats.js, side by side on one private nats-server, plus
// busbar's in-memory bus. One run prints one table.
//
//     bash scripts/test-node.sh   # once: installs npm packages and builds the module
//     node bindings-node/bench/bench.js    # BENCH_SCALE=0.2 for a quicker, noisier run
'use strict'
const path = require('node:path')
const { performance } = require('node:perf_hooks')

const bindings = path.join(__dirname, '..')
const busbar = require(bindings)
const nats = require(require.resolve('nats', { paths: [bindings] }))
const { NatsServer } = require(path.join(bindings, 'test/support/nats-server'))

const scale = Number(process.env.BENCH_SCALE || 1)
const N_PUBLISH = Math.round(500_000 * scale)
const N_PUBSUB = Math.round(200_000 * scale)
const N_REQUEST = Math.round(5_000 * scale)
const N_MEMORY = Math.round(500_000 * scale)
const PAYLOAD = Buffer.alloc(128, 'x')

const rows = []
function row(scenario, client, count, ms, extra = '') {
  rows.push({ scenario, client, rate: count / (ms / 1000), count, ms, extra })
}

// In the publish→subscribe runs the publisher lets the event loop run every YIELD_EVERY
// messages, both clients alike: a loop that never yields starves its own process's
// subscriber, and the client's buffers, not the library, decide what is lost.
const YIELD_EVERY = 1024
const tick = () => new Promise((resolve) => setImmediate(resolve))

function waitFor(done, what, ms = 60_000) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms
    const tick = () => {
      if (done()) return resolve()
      if (Date.now() > deadline) return reject(new Error(`timed out: ${what}`))
      setImmediate(tick)
    }
    tick()
  })
}

// -- publish throughput ---------------------------------------------------------------
async function publishNatsJs(url) {
  const nc = await nats.connect({ servers: url })
  const t0 = performance.now()
  for (let i = 0; i < N_PUBLISH; i++) nc.publish('bench.pub', PAYLOAD)
  await nc.flush()
  row('publish', 'nats.js 2.29 (publish, then flush)', N_PUBLISH, performance.now() - t0)
  await nc.close()
}

async function publishBusbar(options, label) {
  const bus = await busbar.connect(options)
  let t0 = performance.now()
  for (let i = 0; i < N_PUBLISH; i++) await bus.publish('bench.pub', PAYLOAD)
  await bus.flush()
  row('publish', `busbar ${label} (await each publish, then flush)`, N_PUBLISH, performance.now() - t0)
  t0 = performance.now()
  let last
  for (let i = 0; i < N_PUBLISH; i++) last = bus.publish('bench.pub', PAYLOAD)
  await last
  await bus.flush()
  row('publish', `busbar ${label} (no await per publish, then flush)`, N_PUBLISH, performance.now() - t0)
  await bus.close()
}

// -- publish -> subscribe throughput ----------------------------------------------------
async function pubsubNatsJs(url) {
  const sub = await nats.connect({ servers: url })
  const pub = await nats.connect({ servers: url })
  let got = 0
  sub.subscribe('bench.pubsub', { callback: () => got++ })
  await sub.flush()
  const t0 = performance.now()
  for (let i = 0; i < N_PUBSUB; i++) {
    pub.publish('bench.pubsub', PAYLOAD)
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await tick()
  }
  await pub.flush()
  await waitFor(() => got >= N_PUBSUB, `nats.js got ${got}`, 30_000).catch(() => {})
  row('publish→subscribe', 'nats.js 2.29 (callback)', got, performance.now() - t0, `${got}/${N_PUBSUB} received`)
  await pub.close()
  await sub.close()
}

async function pubsubBusbar(options, label, mode) {
  const N = options ? N_PUBSUB : N_MEMORY
  const subBus = await busbar.connect(options)
  const pubBus = options ? await busbar.connect(options) : subBus // memory: one bus
  let got = 0
  let done = Promise.resolve()
  if (mode === 'callback') {
    await subBus.subscribe('bench.pubsub', () => got++)
  } else {
    const sub = await subBus.subscribe('bench.pubsub')
    done = (async () => {
      for await (const _msg of sub) if (++got >= N) break
    })()
  }
  await subBus.flush()
  const t0 = performance.now()
  for (let i = 0; i < N; i++) {
    await pubBus.publish('bench.pubsub', PAYLOAD)
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await tick()
  }
  await pubBus.flush()
  await waitFor(() => got >= N, `busbar got ${got}`, 30_000).catch(() => {})
  const ms = performance.now() - t0
  const scenario = options ? 'publish→subscribe' : 'memory publish→deliver'
  row(scenario, `busbar ${label} (${mode})`, got, ms, `${got}/${N} received`)
  if (pubBus !== subBus) await pubBus.close()
  await subBus.close()
  await done
}

// -- request/reply latency --------------------------------------------------------------
function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

async function latency(label, request) {
  for (let i = 0; i < 200; i++) await request() // warm-up
  const samples = new Float64Array(N_REQUEST)
  const t0 = performance.now()
  for (let i = 0; i < N_REQUEST; i++) {
    const s = performance.now()
    await request()
    samples[i] = performance.now() - s
  }
  const total = performance.now() - t0
  samples.sort()
  const us = (p) => `${(percentile(samples, p) * 1000).toFixed(0)} µs`
  row('request/reply', label, N_REQUEST, total, `p50 ${us(50)}, p99 ${us(99)}`)
}

async function requestNatsJs(url) {
  const server = await nats.connect({ servers: url })
  const client = await nats.connect({ servers: url })
  server.subscribe('bench.req', { callback: (_err, m) => m.respond(m.data) })
  await server.flush()
  await latency('nats.js 2.29 (responder: nats.js)', () => client.request('bench.req', PAYLOAD, { timeout: 5000 }))
  await client.close()
  await server.close()
}

async function requestBusbar(options) {
  const server = await busbar.connect(options)
  const client = await busbar.connect(options)
  await server.subscribe('bench.req', (m) => m.respond(m.data))
  await server.flush()
  await latency('busbar (nats) (responder: busbar)', () => client.request('bench.req', PAYLOAD, { timeout: 5000 }))
  await client.close()
  await server.close()
}

async function main() {
  const server = await NatsServer.start()
  const natsOptions = { backend: 'nats', natsUrl: server.url }
  try {
    console.error(`nats-server on ${server.url}; ${N_PUBLISH} publishes, ${N_PUBSUB} pub→sub, ${N_REQUEST} requests`)
    await publishNatsJs(server.url)
    await publishBusbar(natsOptions, '(nats)')
    await pubsubNatsJs(server.url)
    await pubsubBusbar(natsOptions, '(nats)', 'callback')
    await pubsubBusbar(natsOptions, '(nats)', 'for await')
    await requestNatsJs(server.url)
    await requestBusbar(natsOptions)
    await pubsubBusbar(undefined, '(memory)', 'callback')
    await pubsubBusbar(undefined, '(memory)', 'for await')
  } finally {
    await server.stop()
  }
  console.log(`\nnode ${process.version}, payload ${PAYLOAD.length} B, one private nats-server (loopback)\n`)
  console.log('| scenario | client | msgs/s | messages | ms | notes |')
  console.log('|---|---|---:|---:|---:|---|')
  for (const r of rows) {
    const rate = Math.round(r.rate).toLocaleString('en')
    console.log(`| ${r.scenario} | ${r.client} | ${rate} | ${r.count} | ${r.ms.toFixed(0)} | ${r.extra} |`)
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
