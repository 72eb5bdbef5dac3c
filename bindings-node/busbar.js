'use strict'
// The package entry: the native module (loaded by the generated index.js) plus the two
// pieces that are plain JavaScript. Keeping them here lets a message that waits in a batch
// reach `for await` without a native call per message.
module.exports = require('./index.js')
// busbar's version, "major.minor.patch" (the same in every language). The native module
// comes from the platform package of exactly this version (an exact optional dependency).
module.exports.version = require('./package.json').version

const { Bus, ConnectionEvents, DurableSubscription, Message, NoticeThrottle, Subscription } = module.exports

// -- Error classes: `BusError` and one subclass per code, so `instanceof` works -------
// Every error busbar rejects or throws with is built natively with its `code`, then given
// the prototype of its class here (`__busbarAdoptError`, called by src/error.rs).
class BusError extends Error {}
Object.defineProperty(BusError.prototype, 'name', { value: 'BusError' })
const errorClasses = { BusError }
const byCode = {}
for (const code of module.exports.errorCodes()) {
  const name = code.replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase()) + 'Error'
  const Class = { [name]: class extends BusError {} }[name]
  Object.defineProperty(Class.prototype, 'name', { value: name })
  Object.defineProperty(Class, 'code', { value: code })
  errorClasses[name] = Class
  byCode[code] = Class.prototype
}
Object.assign(module.exports, errorClasses)
Object.defineProperty(globalThis, '__busbarAdoptError', {
  value: function adopt(err) {
    if (err !== null && typeof err === 'object') Object.setPrototypeOf(err, byCode[err.code] || BusError.prototype)
  },
  configurable: true,
})

// -- Notices: a lag notice (code 'lagged', `missed`) and an undecodable message ('decode')
// A message that could not be decoded (a foreign producer's) never stops delivery: with no
// `onError` to take it, it becomes a process warning (and counts in `stats().undecodable`),
// as does a lag notice of a callback subscription without `onError`. The core's throttle
// (one per subscription and code) decides when: the first at once, then at most one warning
// a second, whose text counts every notice held back since the previous one; the exact
// totals are always in `stats()`.
function warn(throttles, err) {
  const throttle = throttles[err.code] || (throttles[err.code] = new NoticeThrottle())
  const now = throttle.hit(err.code === 'lagged' ? err.missed : 1)
  if (now.notices > 0) {
    emit(err, now)
  } else if (now.flushAfterMs != null) {
    setTimeout(() => {
      const held = throttle.flush()
      if (held !== null) emit(err, held)
    }, now.flushAfterMs).unref()
  }
}

function emit(err, report) {
  const code = `BUSBAR_${err.code.toUpperCase()}`
  let text = err.message
  if (report.notices > 1) {
    text =
      err.code === 'lagged'
        ? `busbar: ${report.notices} lag notices since the previous warning, ${report.total} messages missed in all (at most one warning a second; the first: ${err.message})`
        : `busbar: skipped ${report.notices} undecodable messages since the previous warning (at most one warning a second; one of them: ${err.message})`
  }
  const detail =
    err.code === 'lagged'
      ? `${report.notices} lag notices, ${report.total} missed since the previous warning (stats().missed has the total)`
      : `${report.notices} undecodable since the previous warning (stats().undecodable has the total)`
  process.emitWarning(text, { type: 'BusbarWarning', code, detail })
}

// -- Subscriptions (plain and durable) are async iterators over nextBatch() ------------
const queued = Symbol('busbar.queued')
const DONE = Object.freeze({ value: undefined, done: true })

// A lag notice is thrown where the gap is: `for await` ends with it, the subscription
// stays open, and iterating again goes on after the gap. An undecodable message is
// skipped with a warning.
async function next() {
  let q = this[queued]
  if (q === undefined) q = this[queued] = { items: [], head: 0 }
  while (q.head >= q.items.length) {
    let batch
    try {
      batch = await this.nextBatch()
    } catch (err) {
      if (err && err.code === 'decode') {
        warn(q.throttles || (q.throttles = {}), err)
        continue
      }
      throw err
    }
    if (batch === null) return DONE
    if (q.head >= q.items.length) {
      q.items = batch
      q.head = 0
    } else {
      for (const msg of batch) q.items.push(msg)
    }
  }
  const value = q.items[q.head]
  q.items[q.head++] = undefined
  return { value, done: false }
}

// `break` (or an exception) inside `for await` ends the subscription. Durable messages
// that were fetched but not yet yielded are redelivered after their ack wait.
async function end(value) {
  await this.unsubscribe()
  return { value, done: true }
}

function self() {
  return this
}

for (const Iterated of [Subscription, DurableSubscription]) {
  Iterated.prototype.next = next
  Iterated.prototype.return = end
  Iterated.prototype[Symbol.asyncIterator] = self
}

// -- Callback subscriptions: the native side calls with a whole batch ------------------
// A batch holds messages and, in their place in the order, notices: each notice goes to
// `options.onError(err)` (an Error with `code` 'lagged' and `missed`, or 'decode'), or
// becomes a process warning without one. Delivery goes on either way.
function noticeError(notice) {
  const Class = byCode[notice.code] ? byCode[notice.code].constructor : BusError
  const err = new Class(notice.message)
  err.code = notice.code
  if (notice.missed != null) err.missed = notice.missed
  return err
}

function perMessage(callback, options) {
  if (typeof callback !== 'function') return callback // undefined, or a TypeError natively
  const onError = options == null ? undefined : options.onError
  if (onError !== undefined && typeof onError !== 'function') {
    const err = new TypeError(`options.onError must be a function, not ${typeof onError}`)
    err.code = 'ERR_INVALID_ARG_TYPE'
    throw err
  }
  const throttles = {}
  return function deliverBatch(batch) {
    for (const item of batch) {
      try {
        if (item instanceof Message) callback(item)
        else if (onError) onError(noticeError(item))
        else warn(throttles, noticeError(item))
      } catch (err) {
        // As an EventEmitter listener's: reported as uncaught, after the rest of the batch.
        process.nextTick(() => {
          throw err
        })
      }
    }
  }
}

// A subscription is a Promise first: iterating the Promise (a forgotten `await`) says so.
function awaitFirst(promise, call) {
  promise[Symbol.asyncIterator] = function () {
    throw new TypeError(`${call} returns a Promise of the subscription: write \`const sub = await bus.${call}\` before \`for await (const msg of sub)\``)
  }
  return promise
}

const subscribe = Bus.prototype.subscribe
const queueSubscribe = Bus.prototype.queueSubscribe
Bus.prototype.subscribe = function (pattern, callback, options) {
  return awaitFirst(subscribe.call(this, pattern, perMessage(callback, options), options), 'subscribe(...)')
}
Bus.prototype.queueSubscribe = function (pattern, group, callback, options) {
  return awaitFirst(queueSubscribe.call(this, pattern, group, perMessage(callback, options), options), 'queueSubscribe(...)')
}
for (const method of ['durableSubscribe', 'durableSubscribeAs']) {
  const native = Bus.prototype[method]
  Bus.prototype[method] = function (...args) {
    return awaitFirst(native.apply(this, args), `${method}(...)`)
  }
}

// -- Connection events: an async iterator; status() in the shape of nats.js's ----------
ConnectionEvents.prototype.next = async function () {
  const event = await this.nextEvent()
  return event === null ? DONE : { value: event, done: false }
}
ConnectionEvents.prototype.return = async function (value) {
  return { value, done: true }
}
ConnectionEvents.prototype[Symbol.asyncIterator] = self

// nats.js's `for await (const s of nc.status())`: each event also as `type` and `data`.
// The events are taken from the call on (not from the first `next()`), as nats.js does.
Bus.prototype.status = function status() {
  const events = this.connectionEvents()
  return (async function* () {
    for await (const event of events) {
      yield { type: event.kind, data: event.detail, kind: event.kind, detail: event.detail }
    }
  })()
}

// nats.js's `nc.closed()`: resolves once the bus is closed (by close() or drain()).
const closedOf = new WeakMap()
function closedState(bus) {
  let state = closedOf.get(bus)
  if (state === undefined) {
    let resolve
    const promise = new Promise((r) => (resolve = r))
    state = { promise, resolve }
    closedOf.set(bus, state)
  }
  return state
}
for (const method of ['close', 'drain']) {
  const native = Bus.prototype[method]
  Bus.prototype[method] = function () {
    const done = native.call(this)
    const state = closedState(this)
    done.then(() => state.resolve(), () => {})
    return done
  }
}
Bus.prototype.closed = function () {
  return closedState(this).promise
}

// -- serve: a responder loop, as Rust's busbar::serve and C's busbar_subscription_serve -
// Answers every request on `sub` with what `handler` returns (data as for publish; the
// handler may be async) until the subscription ends; resolves with how many were
// answered. No single message stops it: a lag notice is skipped, a handler that throws is
// a process warning and its request goes unanswered, a reply that cannot be sent is
// dropped; only a closed bus ends it early (code 'closed').
async function serve(sub, handler) {
  let answered = 0
  for (;;) {
    let item
    try {
      item = await sub.next()
    } catch (err) {
      if (err && err.code === 'lagged') continue
      throw err
    }
    if (item.done) return answered
    const request = item.value
    let reply
    try {
      reply = await handler(request)
    } catch (err) {
      process.emitWarning(`busbar: serve() handler failed on ${request.subject}: ${err && err.message}`, { type: 'BusbarWarning' })
      continue
    }
    if (request.replyTo == null) continue
    try {
      await request.respond(reply)
      answered++
    } catch (err) {
      if (err && err.code === 'closed') throw err
    }
  }
}
module.exports.serve = serve

// -- services: a handler loop over core's jobs (docs/design.md §5) ----------------------
// `service.addEndpoint(name, subject, handler)`: each request of the endpoint is a job
// (core's Service::endpoint_jobs, which counts, sends error replies and leaves the group
// after failures); the handler's value (or Promise) is the reply, and a handler that
// throws answers with an error reply: its message and its `code` (core's rule: kept when
// a whole number from 100 to 999, else 500).
const { Service } = module.exports
Service.prototype.addEndpoint = async function addEndpoint(name, subject, handler) {
  if (typeof handler !== 'function') {
    throw new TypeError('addEndpoint(name, subject, handler): handler must be a function')
  }
  const jobs = await this.endpointJobs(name, subject)
  ;(async () => {
    for (let job = await jobs.next(); job != null; job = await jobs.next()) {
      try {
        job.reply(await handler(job.request))
      } catch (err) {
        // core keeps the code when it is from 100 to 999, else sends 500
        job.fail(String((err && err.message) || err), err && Number.isSafeInteger(err.code) ? err.code : undefined)
      }
    }
  })().catch((err) => {
    process.emitWarning(`busbar: endpoint ${name} stopped: ${err && err.message}`, { type: 'BusbarWarning' })
  })
}
