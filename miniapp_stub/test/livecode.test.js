// The live code's schedule, on codes from the live server: the next code is fetched before
// the current one expires, an error is retried soon, and stop() ends it.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { shopper } = require('../support/server.js')
const coupons = require('../utils/coupons.js')
const { liveCode, couponCode, MARGIN_S } = require('../utils/livecode.js')

function fakeTimers() {
  const pending = []
  return {
    pending,
    setTimer: (fn, ms) => { pending.push({ fn, ms }); return pending.length },
    clearTimer: (id) => { pending[id - 1].cleared = true },
    async fire() {
      const t = pending.filter((p) => !p.cleared && !p.fired).pop()
      t.fired = true
      await t.fn()
    },
  }
}

test('a new code comes before the current one expires, and none after stop()', async () => {
  const { api } = await shopper()
  const offer = (await coupons.centre(api)).find((c) => c.claimable)
  const coupon = await coupons.claim(api, offer.template_id)
  let fetches = 0
  const fetchCode = couponCode(api, coupon.id)
  const counted = () => { fetches++; return fetchCode() }
  const shown = []
  const timers = fakeTimers()
  const live = liveCode(counted, (c) => shown.push(c.digits), timers)
  const first = await live.start()
  assert.equal(fetches, 1)
  assert.equal(timers.pending[0].ms, (first.expires_in - MARGIN_S) * 1000)
  assert.ok(timers.pending[0].ms < first.expires_in * 1000)
  await timers.fire() // the refresh time comes
  assert.equal(fetches, 2)
  assert.equal(shown.length, 2)
  assert.notEqual(shown[1], shown[0])
  assert.equal(live.pending, true)
  live.stop()
  assert.equal(live.pending, false)
  assert.equal(timers.pending.filter((t) => !t.cleared && !t.fired).length, 0)
})

test('a failed fetch shows the error and tries again in three seconds', async () => {
  const { api } = await shopper()
  const errors = []
  const timers = fakeTimers()
  const live = liveCode(couponCode(api, 2 ** 40), () => assert.fail('no code for a coupon I do not have'), {
    ...timers, onError: (err) => errors.push(err),
  })
  await live.start()
  assert.equal(errors.length, 1)
  assert.equal(errors[0].status, 404)
  assert.equal(timers.pending[0].ms, 3000)
  live.stop()
})
