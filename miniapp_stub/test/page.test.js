// A page's tap keys: kept while an action has no answer (so tapping again retries it), gone
// once the server answered, success or refusal.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { ApiError, newKey } = require('../utils/api.js')
const { guard, tapKey, tapDone } = require('../utils/page.js')
const home = require('../utils/home.js')
const { fakeWx } = require('../support/fakewx.js')

function fakePage() {
  return { data: {}, setData(d) { Object.assign(this.data, d) } }
}

const api = { tap: newKey }

test('a tap without an answer keeps its key; an answered one does not', async () => {
  const page = fakePage()
  const first = tapKey(page, api, 'order')
  await guard(page, async () => { throw new ApiError(0, 'NETWORK', 'request:fail timeout') })
  assert.equal(page.data.error, 'request:fail timeout')
  assert.equal(tapKey(page, api, 'order'), first) // tapping again retries the same order
  await guard(page, async () => { throw new ApiError(409, 'SOLD_OUT', 'sold out') })
  assert.equal(page.data.errorCode, 'SOLD_OUT')
  const second = tapKey(page, api, 'order')
  assert.notEqual(second, first) // refused: the next tap is a new action
  await guard(page, async () => { tapDone(page, 'order') })
  assert.notEqual(tapKey(page, api, 'order'), second)
  assert.equal(page.data.busy, false)
})

test('the home tiles open their pages the way WeChat allows (tab pages by switchTab)', () => {
  const wx = fakeWx('http://127.0.0.1:1')
  for (const tile of home.TILES) home.go(wx, tile)
  assert.deepEqual(wx.seen.navigations, home.TILES.map((t) => t.page))
  assert.throws(() => wx.navigateTo({ url: '/pages/stores/stores' }), /tabbar/)
})

test('a 409 REQUEST_IN_PROGRESS keeps the key: the first attempt is still running', async () => {
  const page = fakePage()
  const key = tapKey(page, api, 'pay')
  await guard(page, async () => { throw new ApiError(409, 'REQUEST_IN_PROGRESS', 'in progress') })
  assert.equal(tapKey(page, api, 'pay'), key)
})
