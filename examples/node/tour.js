'use strict'
// The whole API in one scenario, the same in examples/c/tour.c and examples/python/tour.py:
// publish with every attribute and read them back, serve requests, watch connection
// events, and subscribe as a principal under a policy (docs/design.md §9).
//   node tour.js          # BUSBAR_BACKEND=nats BUSBAR_NATS_URL=... for NATS
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const busbar = require('busbar')

const POLICY = {
  classes: ['pii'],
  fields: [{ path: '/ssn', class: 'pii', action: 'partial', keep: 4 }],
  grants: { hr: ['pii'] },
}

async function attributes(bus) {
  const sub = await bus.subscribe('tour.attrs')
  await bus.publish('tour.attrs', { qty: 1 }, {
    id: 'order-7',
    type: 'com.example.order.created',
    correlationId: 'corr-1',
    classification: 'internal',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    tracestate: 'tour=1',
    headers: { tenant: 'st-marys' },
  })
  for await (const msg of sub) {
    console.log(`read ${msg.id} ${msg.type} ${msg.contentType} ${msg.correlationId}`)
    console.log(`     ${msg.classification} ${msg.tracestate} ${JSON.stringify(msg.headers)} keyid=${msg.keyid}`)
    break
  }
}

async function serving(bus) {
  const sub = await bus.subscribe('tour.upper')
  const server = busbar.serve(sub, (req) => req.string().toUpperCase())
  const reply = await bus.request('tour.upper', 'hello', { timeoutMs: 2000, headers: { caller: 'tour' } })
  console.log(`served: ${reply.string()}`)
  await sub.unsubscribe()
  console.log(`answered ${await server} request(s)`)
}

async function events(bus) {
  const seen = []
  const events = bus.connectionEvents()
  const watcher = (async () => {
    for await (const event of events) seen.push(event.kind)
  })()
  await Promise.race([watcher, new Promise((resolve) => setTimeout(resolve, 100))])
  console.log(`connection events so far: ${seen.length ? seen.join(', ') : 'none'} (${bus.backend} bus)`)
}

async function asPrincipal() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-tour-'))
  const policy = path.join(dir, 'policy.json')
  fs.writeFileSync(policy, JSON.stringify(POLICY))
  try {
    const bus = await busbar.connect({ policy })
    const clerk = await bus.subscribeAs('clerk', 'staff.>', { classes: ['pii'] })
    await bus.publish('staff.joined', { ssn: '123-45-6789' })
    for await (const msg of clerk) {
      console.log(`clerk sees ${JSON.stringify(msg.json())}; policy counters: ${bus.policyStats().masked} masked`)
      break
    }
    await bus.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function main() {
  const bus = await busbar.connect()
  await attributes(bus)
  await serving(bus)
  await events(bus)
  await bus.close()
  await asPrincipal()
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
