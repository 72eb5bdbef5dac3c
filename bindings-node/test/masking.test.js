'use strict'
// The shared masking vectors (tests/vectors/masking.json), run through a bus that acts as
// a principal by configuration alone (policy, keyRing, principal, roles).
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, it, after } = require('node:test')

const busbar = require('..')
const { take, rejectsWith } = require('./support/contract')

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '../../tests/vectors/masking.json'), 'utf8'))
// publish() sets no `classification` attribute or headers and subscriptions have no class filter in
// Node, so those cases belong to the Rust suite; every other case runs here.
const runnable = vectors.cases.filter(
  (c) => !('classification' in c) && !('filter_classes' in c) && !('headers' in c)
)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'busbar-node-masking-'))
after(() => fs.rmSync(dir, { recursive: true, force: true }))

function fileOf(name, value) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(value))
  return file
}

describe('masking vectors', () => {
  it('runs most cases', () => {
    assert.ok(runnable.length >= 35, `${runnable.length} runnable cases`)
  })

  const keyRing = fileOf('ring.json', vectors.key_ring)
  for (const c of runnable) {
    it(c.name, async () => {
      const policy = fileOf(`policy-${c.policy}.json`, vectors.policies[c.policy])
      const bus = await busbar.connect({ policy, keyRing, principal: 'vectors', roles: c.roles.join(',') })
      try {
        const pattern = c.pattern ?? c.subject
        if (c.outcome === 'forbidden') {
          await rejectsWith(bus.subscribe(pattern), 'forbidden')
          return
        }
        const sub = await bus.subscribe(pattern)
        // `input` is a JSON value (a string too), `input_text` raw text.
        await bus.publish(c.subject, 'input_text' in c ? c.input_text : Buffer.from(JSON.stringify(c.input)))
        if (c.outcome === 'withheld') {
          await assert.rejects(take(sub, 1, 200), /only 0 of 1/)
          return
        }
        assert.equal(c.outcome, 'delivered')
        const [msg] = await take(sub, 1)
        if ('delivered_text' in c) {
          assert.equal(msg.data.toString('utf8'), c.delivered_text)
        } else {
          assert.deepEqual(JSON.parse(msg.data.toString('utf8')), c.delivered)
        }
      } finally {
        await bus.close()
      }
    })
  }
})
