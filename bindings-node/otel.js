'use strict'
// OpenTelemetry traces across busbar (`require('busbar/otel')`; needs the peer dependency
// @opentelemetry/api): Node's side of Python's `busbar.otel` and Rust's `busbar::otel`
// (docs/guide/observability.md, docs/design.md §10).
//
//   const otel = require('busbar/otel')
//   otel.instrument()                    // publishes, requests and replies inside a span carry it
//   for await (const msg of sub) {
//     await otel.process(msg, async (span) => { ... })   // a child of the producer's span
//   }
//
// The context travels as W3C Trace Context in the message's `traceparent` and `tracestate`
// (the CloudEvents distributed-tracing extension), written and read through the global
// propagator the application registers (the SDK's W3CTraceContextPropagator), so a producer
// in any language and a consumer in any other share one trace. Without `instrument()` no
// call is wrapped and a publish does no tracing work.

const api = require('@opentelemetry/api')
const { Bus, Message } = require('./busbar.js')

// The calls that send a message, and the position of their options argument.
const SENDERS = [
  [Bus.prototype, 'publish', 2],
  [Bus.prototype, 'publishDurable', 2],
  [Bus.prototype, 'request', 2],
  [Message.prototype, 'respond', 1],
]
const originals = new Map()

// `options` with the active span's context, unless it has a `traceparent` of its own or no
// valid span is active. A non-object `options` is passed on untouched (the native call
// refuses it with its own TypeError).
function withActiveContext(options) {
  if (options != null && (typeof options !== 'object' || options.traceparent != null)) return options
  const carrier = {}
  api.propagation.inject(api.context.active(), carrier)
  if (typeof carrier.traceparent !== 'string') return options
  const traced = { ...options, traceparent: carrier.traceparent }
  if (typeof carrier.tracestate === 'string' && carrier.tracestate !== '') traced.tracestate = carrier.tracestate
  return traced
}

// From now on `publish`, `publishDurable`, `request` and `respond` called inside an active
// span carry that span's context (unless given a `traceparent` of their own).
function instrument() {
  for (const [proto, name, at] of SENDERS) {
    if (originals.has(name)) continue
    const native = proto[name]
    originals.set(name, [proto, native])
    proto[name] = function (...args) {
      while (args.length < at) args.push(undefined)
      args[at] = withActiveContext(args[at])
      return native.apply(this, args)
    }
  }
}

// Stops what `instrument()` started.
function uninstrument() {
  for (const [name, [proto, native]] of originals) proto[name] = native
  originals.clear()
}

// The context whose remote parent is `msg`'s producer span (the root context when `msg`
// carries no `traceparent`, or one the propagator cannot read).
function contextOf(msg) {
  const carrier = {}
  if (msg.traceparent != null) carrier.traceparent = msg.traceparent
  if (msg.tracestate != null) carrier.tracestate = msg.tracestate
  return api.propagation.extract(api.ROOT_CONTEXT, carrier)
}

// Runs `fn(span)` inside the `process <subject>` span of `msg` (kind CONSUMER, the
// messaging semantic conventions), a child of the producer's span and active for `fn`, so
// a reply `fn` sends carries it. Returns what `fn` returns; the span ends when `fn` returns
// or its Promise settles, with status ERROR and the exception recorded if it throws.
function process(msg, fn, tracer = api.trace.getTracer('busbar')) {
  const attributes = {
    'messaging.system': 'busbar',
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process',
    'messaging.destination.name': msg.subject,
    'messaging.message.id': msg.id,
    'messaging.message.body.size': msg.data.length,
  }
  if (msg.correlationId != null) attributes['messaging.message.conversation_id'] = msg.correlationId
  const options = { kind: api.SpanKind.CONSUMER, attributes }
  return tracer.startActiveSpan(`process ${msg.subject}`, options, contextOf(msg), (span) => {
    const failed = (err) => {
      span.recordException(err)
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: err && err.message })
      span.end()
      throw err
    }
    let result
    try {
      result = fn(span)
    } catch (err) {
      failed(err)
    }
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      return result.then((value) => {
        span.end()
        return value
      }, failed)
    }
    span.end()
    return result
  })
}

module.exports = { instrument, uninstrument, contextOf, process }
