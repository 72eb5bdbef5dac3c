'use strict'
// The shared masking vectors (tests/vectors/masking.json), every case: through a bus that
// acts as a principal by configuration alone (policy, keyRing, principal, roles), a class
// filter through subscribeAs(..., { classes }), and again through a durable consumer opened
// with durableSubscribeAs.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, it, after } = require('node:test')

const busbar = require('..')
const { take, rejectsWith } = require('./support/contract')

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '../../tests/vectors/masking.json'), 'utf8'))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-node-masking-'))
after(() => fs.rmSync(dir, { recursive: true, force: true }))

function fileOf(name, value) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(value))
  return file
}

const keyRing = fileOf('ring.json', vectors.key_ring)
const policyOf = (c) => fileOf(`policy-${c.policy}.json`, vectors.policies[c.policy])
// `input` is a JSON value (a string too), `input_text` raw text.
const dataOf = (c) => ('input_text' in c ? c.input_text : Buffer.from(JSON.stringify(c.input)))
const attributesOf = (c) => ({ headers: c.headers, classification: c.classification })

function checkDelivered(c, msg) {
  if ('delivered_text' in c) {
    assert.equal(msg.data.toString('utf8'), c.delivered_text)
  } else {
    assert.deepEqual(JSON.parse(msg.data.toString('utf8')), c.delivered)
  }
  if ('delivered_headers' in c) assert.deepEqual(msg.headers, c.delivered_headers)
}

describe('masking vectors', () => {
  it('runs every case', () => {
    assert.ok(vectors.cases.length >= 58, `${vectors.cases.length} cases`)
  })

  for (const c of vectors.cases) {
    it(c.name, async () => {
      const bus = await busbar.connect({ policy: policyOf(c), keyRing, principal: 'vectors', roles: c.roles.join(',') })
      try {
        const pattern = c.pattern ?? c.subject
        if (c.outcome === 'forbidden') {
          await rejectsWith(bus.subscribe(pattern), 'forbidden')
          return
        }
        const sub =
          'filter_classes' in c
            ? await bus.subscribeAs('vectors', pattern, { roles: c.roles, classes: c.filter_classes })
            : await bus.subscribe(pattern)
        await bus.publish(c.subject, dataOf(c), attributesOf(c))
        if (c.outcome === 'withheld' || c.outcome === 'filtered') {
          await assert.rejects(take(sub, 1, 200), /only 0 of 1/)
          return
        }
        assert.equal(c.outcome, 'delivered')
        const [msg] = await take(sub, 1)
        checkDelivered(c, msg)
      } finally {
        await bus.close()
      }
    })
  }
})

describe('masking vectors through durableSubscribeAs', () => {
  for (const c of vectors.cases.filter((c) => !('filter_classes' in c))) {
    it(c.name, async () => {
      const bus = await busbar.connect({ policy: policyOf(c), keyRing })
      try {
        const pattern = c.pattern ?? c.subject
        await bus.declareStream('VECTORS', [pattern])
        const open = () => bus.durableSubscribeAs('vectors', 'VECTORS', 'reader', { roles: c.roles, filter: pattern })
        if (c.outcome === 'forbidden') {
          await rejectsWith(open(), 'forbidden')
          return
        }
        await bus.publishDurable(c.subject, dataOf(c), attributesOf(c))
        const sub = await open()
        try {
          const next = sub.next()
          if (c.outcome === 'withheld' || c.outcome === 'filtered') {
            const quiet = await Promise.race([next, new Promise((resolve) => setTimeout(() => resolve('quiet'), 200))])
            assert.equal(quiet, 'quiet')
            return
          }
          const { value: msg } = await next
          await msg.ack()
          checkDelivered(c, msg)
        } finally {
          await sub.unsubscribe()
        }
      } finally {
        await bus.close()
      }
    })
  }

  it('needs the policy layer and a string principal', async () => {
    const bus = await busbar.connect()
    try {
      await rejectsWith(bus.durableSubscribeAs('who', 'S', 'c'), 'invalid_argument')
      assert.throws(() => bus.durableSubscribeAs(5, 'S', 'c'), TypeError)
    } finally {
      await bus.close()
    }
  })
})
