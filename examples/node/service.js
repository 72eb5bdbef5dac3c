// A NATS-protocol service: `calc` with one endpoint, `calc.double`, found by discovery.
//
// Every member answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (so `nats micro ls` and
// nats.js or async-nats service clients see it), shares the endpoint's requests with the
// other members of its queue group, and counts requests and errors. A handler that throws
// answers with an error reply (`Nats-Service-Error` headers).
//
//     BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 node examples/node/service.js
//     node examples/node/service.js --demo   # in-memory: start, call, discover, stop
'use strict'
const { connect } = require('busbar')

function double(request) {
  const n = Number(request.string())
  if (!(n >= 0)) throw Object.assign(new Error('only numbers from 0'), { code: 422 })
  return String(2 * n)
}

async function start(bus) {
  const service = await bus.startService({ name: 'calc', version: '1.0.0', description: 'doubles numbers' })
  await service.addEndpoint('double', 'calc.double', double)
  return service
}

async function demo() {
  const bus = await connect()
  try {
    const service = await start(bus)
    console.log(`calc.double 21 -> ${(await bus.request('calc.double', '21', { timeoutMs: 2000 })).string()}`)
    const refused = await bus.request('calc.double', '-1', { timeoutMs: 2000 })
    console.log(
      `calc.double -1 -> error ${refused.headers['Nats-Service-Error-Code']}: ${refused.headers['Nats-Service-Error']}`,
    )
    for (const found of await bus.discover('STATS', { name: 'calc', waitMs: 200 })) {
      const [endpoint] = found.endpoints
      console.log(
        `discovered ${found.name} ${found.version} (${found.id}): ${endpoint.num_requests} requests, ${endpoint.num_errors} errors`,
      )
    }
    await service.stop()
  } finally {
    await bus.close()
  }
}

async function main() {
  const bus = await connect()
  const service = await start(bus)
  console.log(`calc ${service.id} answering calc.double on the ${bus.backend} bus; Ctrl-C stops`)
  const stop = async () => {
    await service.stop()
    await bus.close()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

;(process.argv.includes('--demo') ? demo() : main()).catch((err) => {
  console.error(err)
  process.exitCode = 1
})
