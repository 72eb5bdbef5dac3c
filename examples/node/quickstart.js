// busbar quickstart: wildcards, a queue group and a request/reply round trip.
//
// Runs on the embedded in-memory bus by default. The same program talks to a NATS
// server when the environment says so (BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...).
//
//     npm install ./bindings-node && node examples/node/quickstart.js
'use strict'
const { connect } = require('busbar')

async function main() {
  const bus = await connect() // BUSBAR_* variables apply; memory by default
  console.log(`connected to the ${bus.backend} bus\n`)

  // 1. Subjects are dot-separated tokens. `*` matches one token, `>` one or more.
  console.log('1. wildcards')
  const everyOrder = await bus.subscribe('orders.>')
  const euOrders = await bus.subscribe('orders.eu.*')
  for (const subject of ['orders.eu.created', 'orders.us.created', 'orders.eu.paid.late']) {
    await bus.publish(subject, { qty: 1 })
    console.log(`   published ${subject}`)
  }
  await bus.flush()
  console.log(`   'orders.>'    got ${JSON.stringify(await subjects(everyOrder, 3))}`)
  console.log(`   'orders.eu.*' got ${JSON.stringify(await subjects(euOrders, 1))}`)
  console.log("   ('orders.eu.*' wants exactly one token after 'orders.eu', so it skips orders.eu.paid.late)\n")

  // 2. A queue group shares the work: each message goes to one member.
  console.log("2. queue group 'workers' with two members")
  const gotA = []
  const gotB = []
  await bus.queueSubscribe('jobs.resize', 'workers', (msg) => gotA.push(msg.text()))
  await bus.queueSubscribe('jobs.resize', 'workers', (msg) => gotB.push(msg.text()))
  for (let n = 1; n <= 4; n++) await bus.publish('jobs.resize', `image-${n}`)
  await bus.flush()
  // Each job goes to one member; which one is the bus's choice (in turn on the
  // in-memory bus, at random on NATS). Wait until all four are in.
  await until(() => gotA.length + gotB.length === 4, 'four jobs')
  console.log(`   worker a took ${JSON.stringify(gotA)}`)
  console.log(`   worker b took ${JSON.stringify(gotB)}`)
  console.log('   four jobs, each done once\n')

  // 3. Request/reply: the request carries an inbox and a correlation id; the reply echoes it.
  console.log('3. request/reply')
  let answered = 0
  await bus.subscribe('time.now', async (request) => {
    await request.respond(`it is tea time (you asked ${JSON.stringify(request.text())})`)
    answered++
  })
  const requestId = `req-${process.pid}-${Date.now()}`
  const reply = await bus.request('time.now', 'what time is it?', { timeoutMs: 2000, id: requestId })
  console.log(`   reply: ${reply.text()}`)
  console.log(`   request id            ${requestId}`)
  console.log(`   reply correlation id  ${reply.correlationId ?? '-'}`)

  // Nobody listens on `time.later`: the request fails at once (no_responders) instead of
  // waiting; on Kafka, which cannot tell who listens, it fails after its timeout.
  try {
    await bus.request('time.later', 'hello?', { timeoutMs: 2000 })
    console.log('   unexpected reply from time.later')
  } catch (err) {
    console.log(`   request to time.later failed: [${err.code}] ${err.message}`)
  }

  // Bad input gets a clear error, never a silent drop.
  try {
    await bus.publish('orders..eu', 'x')
  } catch (err) {
    console.log(`\n4. bad input\n   publish to "orders..eu": [${err.code}] ${err.message}`)
  }

  await bus.close()
  const stats = bus.stats()
  console.log(`\nclosed: ${stats.published} published, ${stats.delivered} delivered, ${answered} request(s) answered`)
}

/** The subjects of the next `n` messages of `sub`, waiting at most two seconds for each. */
async function subjects(sub, n) {
  const out = []
  for await (const msg of sub) {
    out.push(msg.subject)
    if (out.length === n) break // leaving the loop unsubscribes
  }
  return out
}

async function until(done, what) {
  const deadline = Date.now() + 2000
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
