// The page's way to the one API client: made from the global `wx` on first use. Tests (and a
// page opened for another signed-in user) hand one in with use().
'use strict'

const { createApi } = require('./api.js')

let current = null

module.exports = {
  api() {
    if (!current) current = createApi(wx) // eslint-disable-line no-undef
    return current
  },
  use(api) {
    current = api
    return api
  },
}
