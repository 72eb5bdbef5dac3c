'use strict'
// The Node participant of the cross-language test (tests/cross/run.py drives it).
//   cross.js publish URL SUBJECT DATA ID TYPE CONTENT_TYPE CORRELATION_ID CLASSIFICATION
//            TRACEPARENT TRACESTATE [HEADER_NAME HEADER_VALUE]...
//   cross.js read URL COUNT   # prints "ready", then one JSON line per message received
//   cross.js discover URL NAME  # prints {"ping": [...], "info": [...]} for services NAME
//   cross.js serve URL NAME   # a service NAME 1.2.3, endpoint "echo" on svc.NAME.echo;
//                             # prints "ready ID", serves until stdin closes
const path = require('node:path')
const { connect } = require(path.join(__dirname, '..', '..', '..', 'bindings-node'))

async function publish(bus, args) {
  const [subject, data, id, type, contentType, correlationId, classification, traceparent, tracestate] = args
  const headers = {}
  for (let i = 9; i + 1 < args.length; i += 2) headers[args[i]] = args[i + 1]
  await bus.publish(subject, Buffer.from(data, 'utf8'), {
    headers,
    id,
    type,
    contentType,
    correlationId,
    classification,
    traceparent,
    tracestate,
  })
  await bus.flush()
}

async function read(bus, count) {
  const sub = await bus.subscribe('cross.>')
  await bus.flush()
  process.stdout.write('ready\n')
  let got = 0
  for await (const msg of sub) {
    const record = {
      subject: msg.subject,
      data: msg.text(),
      id: msg.id,
      type: msg.type,
      content_type: msg.contentType,
      correlation_id: msg.correlationId,
      classification: msg.classification,
      traceparent: msg.traceparent,
      tracestate: msg.tracestate,
      headers: msg.headers,
      keyid: msg.keyid,
      time_ms: Math.round(msg.time),
    }
    process.stdout.write(JSON.stringify(record) + '\n')
    if (++got === count) break
  }
}

async function main() {
  const [role, url, ...rest] = process.argv.slice(2)
  const bus = await connect({ backend: 'nats', natsUrl: url })
  try {
    if (role === 'publish') await publish(bus, rest)
    else if (role === 'serve') {
      const service = await bus.startService({ name: rest[0], version: '1.2.3', description: 'the cross-language service' })
      await service.addEndpoint('echo', `svc.${rest[0]}.echo`, (request) => request.data)
      await bus.flush()
      process.stdout.write(`ready ${service.id}\n`)
      // Serves until the driver closes stdin.
      await new Promise((resolve) => {
        process.stdin.on('end', resolve).resume()
      })
      await service.stop()
    } else if (role === 'discover') {
      const ping = await bus.discover('PING', { name: rest[0], waitMs: 500 })
      const info = await bus.discover('INFO', { name: rest[0], waitMs: 500 })
      process.stdout.write(JSON.stringify({ ping, info }) + '\n')
    } else await read(bus, Number(rest[0]))
  } finally {
    await bus.close()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
