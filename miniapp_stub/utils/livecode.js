// A live code (a coupon's, the member code): it expires in `expires_in` seconds, so the page
// fetches the next one a little before that, and stops when the page goes away. `fetch` is
// the API call; `onCode` receives each code; timers are injectable for tests.
'use strict'

const MARGIN_S = 5 // ask this long before expiry (a slow network still gets there in time)

function liveCode(fetch, onCode, { setTimer = setTimeout, clearTimer = clearTimeout, onError } = {}) {
  let timer = null
  let stopped = false
  let current = null

  async function next() {
    timer = null
    if (stopped) return current
    try {
      current = await fetch()
    } catch (err) {
      if (onError) onError(err)
      if (!stopped) timer = setTimer(next, 3000) // try again soon
      return current
    }
    if (stopped) return current
    onCode(current)
    const wait = Math.max(1, (Number(current.expires_in) || 30) - MARGIN_S)
    timer = setTimer(next, wait * 1000)
    return current
  }

  return {
    start: next,
    refresh() {
      if (timer) clearTimer(timer)
      return next()
    },
    stop() {
      stopped = true
      if (timer) clearTimer(timer)
      timer = null
    },
    get pending() { return timer !== null },
    get current() { return current },
  }
}

function couponCode(api, couponId) {
  return () => api.get(`/me/coupons/${couponId}/code`)
}

function memberCode(api) {
  return () => api.get('/me/member-code')
}

module.exports = { liveCode, couponCode, memberCode, MARGIN_S }
