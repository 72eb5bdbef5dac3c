'use strict'
// The Node participant of the cross-language trace test (tests/cross/trace.py drives it).
//   trace.js produce URL SUBJECT   # publishes inside a span; prints its trace and span ids
//   trace.js consume URL SUBJECT   # prints "ready", then the ids of one message's process span
// The OpenTelemetry packages are bindings-node's dev dependencies (scripts/test-node.sh
// installs them), resolved from there so busbar/otel and this script share one API.
const path = require('node:path')

const pkg = path.join(__dirname, '..', '..', '..', 'bindings-node')
const load = (name) => require(require.resolve(name, { paths: [pkg] }))
const api = load('@opentelemetry/api')
const { AsyncLocalStorageContextManager } = load('@opentelemetry/context-async-hooks')
const { W3CTraceContextPropagator } = load('@opentelemetry/core')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = load('@opentelemetry/sdk-trace-base')
const { connect } = require(pkg)
const otel = require(path.join(pkg, 'otel.js'))

api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
const tracer = provider.getTracer('busbar-cross')

async function produce(url, subject) {
  otel.instrument()
  const bus = await connect({ backend: 'nats', natsUrl: url })
  let ids
  await tracer.startActiveSpan('produce', async (span) => {
    ids = span.spanContext()
    await bus.publish(subject, 'traced')
    span.end()
  })
  await bus.flush()
  await bus.close()
  console.log(JSON.stringify({ trace_id: ids.traceId, span_id: ids.spanId }))
}

async function consume(url, subject) {
  const bus = await connect({ backend: 'nats', natsUrl: url })
  const sub = await bus.subscribe(subject)
  await bus.flush()
  process.stdout.write('ready\n')
  const timer = setTimeout(() => {
    console.error('no message within 30 s')
    process.exit(1)
  }, 30_000)
  const { value: msg } = await sub.next()
  clearTimeout(timer)
  otel.process(msg, () => {}, tracer)
  await bus.close()
  const [span] = exporter.getFinishedSpans()
  const parent = (span.parentSpanContext ?? {}).spanId ?? span.parentSpanId ?? null
  console.log(JSON.stringify({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId, parent_span_id: parent, name: span.name }))
}

const [role, url, subject] = process.argv.slice(2)
;(role === 'produce' ? produce : consume)(url, subject).catch((err) => {
  console.error(err)
  process.exit(1)
})
