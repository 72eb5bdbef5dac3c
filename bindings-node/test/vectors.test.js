'use strict'
// The shared subject vectors (tests/vectors/subjects.json), as every language's suite reads them.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { describe, it } = require('node:test')

const { subjectMatches, validateSubject, validatePattern } = require('..')

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '../../tests/vectors/subjects.json'), 'utf8'))

function cases(list) {
  const all = vectors[list]
  assert.ok(Array.isArray(all) && all.length >= 100, `${list} holds ${all && all.length} cases; cut short?`)
  return all
}

function checkValidity(list, validate) {
  const failures = []
  for (const { input, valid, note } of cases(list)) {
    try {
      validate(input)
      if (!valid) failures.push(`${JSON.stringify(input)} accepted; ${note}`)
    } catch (err) {
      if (valid) failures.push(`${JSON.stringify(input)} refused (${err.message}); ${note}`)
      else if (err.code !== 'invalid_subject' || !(err instanceof Error)) {
        failures.push(`${JSON.stringify(input)} refused with code ${err.code}; ${note}`)
      }
    }
  }
  assert.deepEqual(failures, [], `${failures.length} ${list} failures`)
}

describe('shared subject vectors', () => {
  it('validateSubject', () => checkValidity('validate_subject', validateSubject))
  it('validatePattern', () => checkValidity('validate_pattern', validatePattern))
  it('subjectMatches', () => {
    const failures = cases('matches')
      .filter(({ pattern, subject, matches }) => subjectMatches(pattern, subject) !== matches)
      .map(({ pattern, subject, matches, note }) => `${JSON.stringify([pattern, subject])} should be ${matches}; ${note}`)
    assert.deepEqual(failures, [])
  })
  it('names the subject and the rule', () => {
    assert.throws(() => validateSubject('orders..eu'), (err) => {
      assert.equal(err.code, 'invalid_subject')
      assert.match(err.message, /orders\.\.eu/)
      assert.match(err.message, /empty token/)
      return true
    })
  })
})

// The shared JSON payload vectors (tests/vectors/json_payloads.json): an object publishes
// JSON.stringify's text, unchanged by the binding and core, marked application/json.
describe('JSON payload vectors', () => {
  const { cases: payloads } = JSON.parse(
    fs.readFileSync(path.join(__dirname, '../../tests/vectors/json_payloads.json'), 'utf8'),
  )
  it('publishes the exact text of each case', async () => {
    assert.ok(payloads.length >= 14, `${payloads.length} cases: the file was cut short`)
    const { connect } = require('..')
    const bus = await connect()
    const sub = await bus.subscribe('json.payload')
    try {
      for (const { name, value, json } of payloads) {
        await bus.publish('json.payload', value)
        const { value: msg } = await sub.next()
        assert.equal(msg.data.toString('utf8'), json, name)
        assert.equal(msg.contentType, 'application/json', name)
      }
    } finally {
      await bus.close()
    }
  })
})
