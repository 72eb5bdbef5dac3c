// busbar's Node module against nats.js, side by side on one private nats-server, plus
// busbar's in-memory bus. One run prints one table.
//
//     bash scripts/test-node.sh   # once: installs npm packages and builds the module
//     node bindings-node/bench/bench.js    # BENCH_SCALE=0.2 for a quicker, noisier run,
//                                          # BENCH_ROUNDS=3 for fewer rounds
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

const ROUNDS = Number(process.env.BENCH_ROUNDS || 5)
const rows = []
let round = 0
function row(scenario, client, count, ms, extra = '', p50 = undefined) {
  rows.push({ scenario, client, rate: count / (ms / 1000), count, ms, extra, p50, round })
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
  row('request/reply', label, N_REQUEST, total, `p50 ${us(50)}, p99 ${us(99)}`, percentile(samples, 50))
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
  await latency('busbar (nats) (responder: busbar)', () => client.request('bench.req', PAYLOAD, { timeoutMs: 5000 }))
  await client.close()
  await server.close()
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}
const loadAverage = () => {
  try {
    return require('node:fs').readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    return 'unknown'
  }
}

// Per scenario and client: the median over rounds, and the median of the per-round ratios
// to nats.js in the same scenario (rates: busbar / nats.js; request p50: busbar / nats.js).
function summary() {
  const lines = []
  const keys = [...new Set(rows.map((r) => `${r.scenario}\u0000${r.client}`))]
  for (const key of keys) {
    const [scenario, client] = key.split('\u0000')
    const mine = rows.filter((r) => r.scenario === scenario && r.client === client)
    const ref = (r) => rows.find((x) => x.scenario === scenario && x.round === r.round && x.client.startsWith('nats.js'))
    const latency = mine[0].p50 !== undefined
    const ratios = mine.filter(ref).map((r) => (latency ? r.p50 / ref(r).p50 : r.rate / ref(r).rate))
    const value = latency ? `p50 ${(median(mine.map((r) => r.p50)) * 1000).toFixed(0)} µs` : Math.round(median(mine.map((r) => r.rate))).toLocaleString('en')
    const ratio = ratios.length && !client.startsWith('nats.js') ? `${median(ratios).toFixed(2)}x` : ''
    lines.push(`| ${scenario} | ${client} | ${value} | ${ratio} | ${mine[mine.length - 1].extra} |`)
  }
  return lines
}

async function main() {
  const server = await NatsServer.start()
  const natsOptions = { backend: 'nats', natsUrl: server.url }
  const load = loadAverage()
  try {
    console.error(`nats-server on ${server.url}; ${N_PUBLISH} publishes, ${N_PUBSUB} pub→sub, ${N_REQUEST} requests, ${ROUNDS} rounds`)
    for (round = 0; round < ROUNDS; round++) {
      // Interleaved: nats.js first in even rounds, busbar first in odd ones.
      const pairs = [
        [() => publishNatsJs(server.url), () => publishBusbar(natsOptions, '(nats)')],
        [() => pubsubNatsJs(server.url), async () => {
          await pubsubBusbar(natsOptions, '(nats)', 'callback')
          await pubsubBusbar(natsOptions, '(nats)', 'for await')
        }],
        [() => requestNatsJs(server.url), () => requestBusbar(natsOptions)],
      ]
      for (const [theirs, ours] of pairs) {
        if (round % 2 === 0) {
          await theirs()
          await ours()
        } else {
          await ours()
          await theirs()
        }
      }
      await pubsubBusbar(undefined, '(memory)', 'callback')
      await pubsubBusbar(undefined, '(memory)', 'for await')
    }
  } finally {
    await server.stop()
  }
  console.log(`\nnode ${process.version}, payload ${PAYLOAD.length} B, one private nats-server (loopback); ${ROUNDS} interleaved rounds, medians; load average ${load} before, ${loadAverage()} after\n`)
  console.log('| scenario | client | msgs/s (median) | vs nats.js (median of per-round ratios) | notes (last round) |')
  console.log('|---|---|---:|---:|---|')
  for (const line of summary()) console.log(line)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
