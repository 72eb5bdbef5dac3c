'use strict'
// The package entry: the native module (loaded by the generated index.js) plus the two
// pieces that are plain JavaScript. Keeping them here lets a message that waits in a batch
// reach `for await` without a native call per message.
module.exports = require('./index.js')
// busbar's version, "major.minor.patch" (the same in every language). The native module
// comes from the platform package of exactly this version (an exact optional dependency).
module.exports.version = require('./package.json').version

const { Bus, DurableSubscription, Message, NoticeThrottle, Subscription } = module.exports

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
  const err = new Error(notice.message)
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

const subscribe = Bus.prototype.subscribe
const queueSubscribe = Bus.prototype.queueSubscribe
Bus.prototype.subscribe = function (pattern, callback, options) {
  return subscribe.call(this, pattern, perMessage(callback, options))
}
Bus.prototype.queueSubscribe = function (pattern, group, callback, options) {
  return queueSubscribe.call(this, pattern, group, perMessage(callback, options))
}
