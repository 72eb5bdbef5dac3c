// A service that answers requests on `greet.<name>` until it is stopped (Ctrl-C or
// SIGTERM), as one member of the queue group `greeters`: start several and the bus
// spreads the requests over them.
//
//     BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 node examples/node/responder.js
//
// Any NATS client can call it, e.g. `nats request greet.ada '{"lang":"fr"}'`.
'use strict'
const { connect } = require('busbar')

const GREETINGS = { en: 'Hello', fr: 'Bonjour', de: 'Hallo' }

async function main() {
  const bus = await connect()
  const service = await bus.queueSubscribe('greet.*', 'greeters', async (request) => {
    const name = request.subject.split('.')[1]
    let lang = 'en'
    try {
      lang = request.data.length ? (request.json().lang ?? 'en') : 'en'
    } catch {
      // not JSON: answer in English
    }
    const greeting = GREETINGS[lang] ?? GREETINGS.en
    try {
      await request.respond({ greeting: `${greeting}, ${name}!`, lang }, { headers: { service: 'greeter' } })
    } catch (err) {
      console.error(`could not answer ${request.id}: [${err.code}] ${err.message}`)
    }
  })
  console.log(`listening on greet.* (${bus.backend} bus)`)

  const stop = async (signal) => {
    console.log(`${signal}: draining`)
    await service.drain() // answer what has arrived, take nothing new
    await bus.close()
    console.log(`stopped after ${bus.stats().published} replies`)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
