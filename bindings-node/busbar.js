'use strict'
// The package entry: the native module (loaded by the generated index.js) plus the two
// pieces that are plain JavaScript. Keeping them here lets a message that waits in a batch
// reach `for await` without a native call per message.
module.exports = require('./index.js')

const { Bus, DurableSubscription, Message, Subscription } = module.exports

// -- Notices: a lag notice (code 'lagged', `missed`) and an undecodable message ('decode')
// A message that could not be decoded (a foreign producer's) never stops delivery: with no
// `onError` to take it, it becomes a process warning (and counts in `stats().undecodable`).
function warn(err) {
  process.emitWarning(err.message, { type: 'BusbarWarning', code: `BUSBAR_${err.code.toUpperCase()}` })
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
        warn(err)
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
  return function deliverBatch(batch) {
    for (const item of batch) {
      try {
        if (item instanceof Message) callback(item)
        else if (onError) onError(noticeError(item))
        else warn(noticeError(item))
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
