// What every page does around an API call: show it is busy, show the error's message (the
// envelope's, through ApiError) instead of failing silently. Pages stay thin: each handler is
// one `guard(this, () => utilsModule.action(...))`.
'use strict'

async function guard(page, fn) {
  page.setData({ busy: true, error: '', errorCode: '' })
  try {
    return await fn()
  } catch (err) {
    // The server answered (a 4xx): that tap is over, the next one is a new action. Without an
    // answer (network, 5xx) the kept key makes the next tap a retry of the same one.
    const answered = err && err.status >= 400 && err.status < 500
    if (answered && err.code !== 'REQUEST_IN_PROGRESS') page._keys = {}
    page.setData({ error: (err && err.message) || String(err), errorCode: (err && err.code) || '' })
    return undefined
  } finally {
    page.setData({ busy: false })
  }
}

// A tap's Idempotency-Key, kept on the page until that action succeeds: tapping again after
// a timeout retries the same action instead of making a second one.
function tapKey(page, api, action) {
  page._keys = page._keys || {}
  if (!page._keys[action]) page._keys[action] = api.tap()
  return page._keys[action]
}

function tapDone(page, action) {
  if (page._keys) delete page._keys[action]
}

module.exports = { guard, tapKey, tapDone }
