'use strict'
// busbar/otel across a private nats-server: the SDK's in-memory exporter shows one trace
// from a producer span through NATS to the consumer's `process` span, and back through a
// reply. One test: instrument() is process-wide.
const assert = require('node:assert/strict')
const { after, before, describe, it } = require('node:test')

const api = require('@opentelemetry/api')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')

const busbar = require('..')
const otel = require('../otel.js')
const { NatsServer } = require('./support/nats-server')

const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
const tracer = provider.getTracer('busbar-test')

function finished(name) {
  const spans = exporter.getFinishedSpans()
  const span = spans.find((s) => s.name === name)
  assert.ok(span, `no finished span ${name} among ${spans.map((s) => s.name)}`)
  return span
}

const parentOf = (span) => (span.parentSpanContext ?? {}).spanId ?? span.parentSpanId

async function next(sub) {
  const item = await sub.next()
  assert.equal(item.done, false)
  return item.value
}

let server
before(async () => {
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  server = await NatsServer.start()
})
after(async () => {
  otel.uninstrument()
  await server.stop()
  api.context.disable()
  api.propagation.disable()
})

describe('busbar/otel', () => {
  it('carries a trace through publish, NATS, process and back through the reply', async () => {
    const bus = await busbar.connect({ backend: 'nats', natsUrl: server.url })
    try {
      const sub = await bus.subscribe('orders.>')

      // Not instrumented: a publish inside a span carries nothing.
      await tracer.startActiveSpan('quiet', async (span) => {
        await bus.publish('orders.quiet', 'q')
        span.end()
      })
      assert.equal((await next(sub)).traceparent, null)

      otel.instrument()
      otel.instrument() // twice is once

      // Outside any span: still nothing.
      await bus.publish('orders.none', 'n')
      assert.equal((await next(sub)).traceparent, null)

      // Inside the producer's span: without options, with options, and a durable-style
      // options object keeps its other fields.
      let checkout
      await tracer.startActiveSpan('checkout', async (span) => {
        checkout = span.spanContext()
        await bus.publish('orders.eu.created', 'x')
        await bus.publish('orders.eu.paid', 'yy', { correlationId: 'corr-7', headers: { k: 'v' } })
        span.end()
      })
      for (const [subject, correlation] of [['orders.eu.created', null], ['orders.eu.paid', 'corr-7']]) {
        const msg = await next(sub)
        assert.equal(msg.subject, subject)
        assert.equal(msg.traceparent, `00-${checkout.traceId}-${checkout.spanId}-01`)
        assert.equal(msg.correlationId, correlation)
        const result = await otel.process(msg, async (span) => {
          assert.equal(api.trace.getActiveSpan(), span)
          return 'handled'
        }, tracer)
        assert.equal(result, 'handled')
        const processed = finished(`process ${subject}`)
        assert.equal(processed.spanContext().traceId, checkout.traceId)
        assert.equal(parentOf(processed), checkout.spanId)
        assert.equal(processed.kind, api.SpanKind.CONSUMER)
        assert.equal(processed.attributes['messaging.system'], 'busbar')
        assert.equal(processed.attributes['messaging.operation.type'], 'process')
        assert.equal(processed.attributes['messaging.destination.name'], subject)
        assert.equal(processed.attributes['messaging.message.id'], msg.id)
        assert.equal(processed.attributes['messaging.message.body.size'], msg.data.length)
        assert.equal(processed.attributes['messaging.message.conversation_id'], correlation ?? undefined)
      }

      // A caller's own traceparent wins over the active span.
      const own = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
      await tracer.startActiveSpan('own', async (span) => {
        await bus.publish('orders.own', 'o', { traceparent: own, tracestate: 'k=v' })
        span.end()
      })
      const mine = await next(sub)
      assert.deepEqual([mine.traceparent, mine.tracestate], [own, 'k=v'])

      // Request/reply both ways: the responder replies inside its process span.
      const responder = await bus.subscribe('prices.get')
      const answered = (async () => {
        const request = await next(responder)
        await otel.process(request, () => request.respond('42'), tracer)
        return request.traceparent
      })()
      let ask
      const reply = await tracer.startActiveSpan('ask', async (span) => {
        ask = span.spanContext()
        try {
          return await bus.request('prices.get', '?', { timeoutMs: 5000 })
        } finally {
          span.end()
        }
      })
      assert.equal(await answered, `00-${ask.traceId}-${ask.spanId}-01`)
      const processed = finished('process prices.get')
      assert.equal(parentOf(processed), ask.spanId)
      assert.equal(reply.traceparent, `00-${ask.traceId}-${processed.spanContext().spanId}-01`)

      // A handler that throws: the span ends with status ERROR and the error goes on.
      const boom = new Error('boom')
      await assert.rejects(otel.process(mine, async () => { throw boom }, tracer), boom)
      assert.throws(() => otel.process(mine, () => { throw boom }, tracer), boom)
      const failed = exporter.getFinishedSpans().filter((s) => s.name === 'process orders.own')
      assert.equal(failed.length, 2)
      for (const span of failed) assert.equal(span.status.code, api.SpanStatusCode.ERROR)
      // Its parent is the caller's own traceparent, as the message carries it.
      assert.equal(failed[0].spanContext().traceId, '0af7651916cd43dd8448eb211c80319c')

      // A broken traceparent gives a span without a parent, not an error.
      otel.process({ subject: 'orders.bad', id: 'b', data: Buffer.alloc(0), traceparent: '00-zz-yy-01' }, () => {}, tracer)
      assert.equal(parentOf(finished('process orders.bad')), undefined)

      // Wrong types still reach the native call's TypeError.
      await tracer.startActiveSpan('wrong', async (span) => {
        await assert.rejects(async () => bus.publish('orders.x', 'x', 'not-options'), TypeError)
        span.end()
      })

      otel.uninstrument()
      await tracer.startActiveSpan('after', async (span) => {
        await bus.publish('orders.after', 'a')
        span.end()
      })
      assert.equal((await next(sub)).traceparent, null)
    } finally {
      await bus.close()
    }
  })
})
