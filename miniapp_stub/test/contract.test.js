// The stub's calls against the served OpenAPI document: a path renamed on one side only
// fails here, before a shopper meets it.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { BASE } = require('../support/server.js')
const { calls, missing } = require('../support/contract.js')

async function servedDocument() {
  const res = await fetch(`${BASE}/docs/openapi.json`)
  assert.equal(res.status, 200)
  return res.json()
}

test('every operation the stub calls is in the served OpenAPI document', async () => {
  const doc = await servedDocument()
  const used = calls()
  assert.ok(used.length >= 40, `found only ${used.length} calls: is the parser still reading them?`)
  for (const expected of ['POST /api/v1/auth/login', 'POST /api/v1/auth/refresh', 'POST /api/v1/orders/{}/pay',
    'GET /api/v1/stores/nearby', 'POST /api/v1/groups/{}/join', 'GET /api/v1/me/coupons/{}/code']) {
    assert.ok(used.includes(expected), `${expected} is among the calls read from the source`)
  }
  assert.deepEqual(missing(used, doc), [])
})

test('the check fails when a path is renamed on one side only', async () => {
  const doc = await servedDocument()
  const used = calls()
  // The stub calls a path the server does not have...
  const wrong = [...used.filter((c) => c !== 'GET /api/v1/stores/nearby'), 'GET /api/v1/store/nearby']
  assert.deepEqual(missing(wrong, doc), ['GET /api/v1/store/nearby'])
  // ...or the server renames one the stub calls.
  const renamed = { ...doc, paths: { ...doc.paths } }
  renamed.paths['/api/v1/groups/{group_no}/enter'] = renamed.paths['/api/v1/groups/{group_no}/join']
  delete renamed.paths['/api/v1/groups/{group_no}/join']
  assert.deepEqual(missing(used, renamed), ['POST /api/v1/groups/{}/join'])
  // A method the path does not serve counts as missing too.
  assert.deepEqual(missing(['DELETE /api/v1/stores/nearby'], doc), ['DELETE /api/v1/stores/nearby'])
})
