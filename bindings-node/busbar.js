'use strict'
// The package entry: the native module (loaded by the generated index.js) plus the two
// pieces that are plain JavaScript. Keeping them here lets a message that waits in a batch
// reach `for await` without a native call per message.
module.exports = require('./index.js')

const { Bus, DurableSubscription, Subscription } = module.exports

// -- Subscriptions (plain and durable) are async iterators over nextBatch() ------------
const queued = Symbol('busbar.queued')
const DONE = Object.freeze({ value: undefined, done: true })

async function next() {
  let q = this[queued]
  if (q === undefined) q = this[queued] = { items: [], head: 0 }
  while (q.head >= q.items.length) {
    const batch = await this.nextBatch()
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
function perMessage(callback) {
  if (typeof callback !== 'function') return callback // undefined, or a TypeError natively
  return function deliverBatch(batch) {
    for (const msg of batch) {
      try {
        callback(msg)
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
Bus.prototype.subscribe = function (pattern, callback) {
  return subscribe.call(this, pattern, perMessage(callback))
}
Bus.prototype.queueSubscribe = function (pattern, group, callback) {
  return queueSubscribe.call(this, pattern, group, perMessage(callback))
}
