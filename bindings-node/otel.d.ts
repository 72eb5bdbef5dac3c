// Types of `busbar/otel` (otel.js): OpenTelemetry traces across busbar. Needs the peer
// dependency @opentelemetry/api. docs/guide/observability.md, docs/design.md §10.
import type { Context, Span, Tracer } from '@opentelemetry/api'
import type { Message } from './index'

/**
 * From now on `publish`, `publishDurable`, `request` and `respond` called inside an active
 * span carry that span's W3C context as `traceparent`/`tracestate` (unless given a
 * `traceparent` of their own). Process-wide; calling it twice is calling it once.
 */
export declare function instrument(): void

/** Stops what `instrument()` started. */
export declare function uninstrument(): void

/**
 * The context whose remote parent is `msg`'s producer span (the root context when `msg`
 * carries no `traceparent`, or one the propagator cannot read).
 */
export declare function contextOf(msg: Pick<Message, 'traceparent' | 'tracestate'>): Context

/**
 * Runs `fn(span)` inside the `process <subject>` span of `msg` (kind CONSUMER, messaging
 * semantic conventions), a child of the producer's span and active for `fn`, so a reply
 * `fn` sends carries it. Returns what `fn` returns; the span ends when `fn` returns or its
 * Promise settles (status ERROR, exception recorded, if it throws). `tracer` defaults to
 * `trace.getTracer('busbar')`.
 */
export declare function process<T>(
  msg: Pick<Message, 'subject' | 'id' | 'data' | 'correlationId' | 'traceparent' | 'tracestate'>,
  fn: (span: Span) => T,
  tracer?: Tracer,
): T
