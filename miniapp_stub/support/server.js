// The running `haodian serve` the tests call: HAODIAN_API (the pytest wrapper sets it), else
// a local demo server on :8000.
'use strict'

const { createApi } = require('../utils/api.js')
const { fakeWx, http } = require('./fakewx.js')

const BASE = (process.env.HAODIAN_API || 'http://127.0.0.1:8000').replace(/\/+$/, '')

// Every fake user made in this process (a test reads all their requests at the end).
const everyone = []

// A new WeChat user of the demo app with a signed-in API client of their own.
async function shopper(options = {}) {
  const wx = fakeWx(BASE, options)
  everyone.push(wx)
  const api = createApi(wx, { baseUrl: BASE, appid: options.appid })
  await api.login()
  return { wx, api }
}

// The demo operator (haodian serve seeds admin / haodian-demo), for setting up a campaign.
async function operator() {
  const res = await http('POST', `${BASE}/api/v1/admin/auth/login`, { username: 'admin', password: 'haodian-demo' })
  if (res.statusCode !== 200) throw new Error(`operator login: ${res.statusCode} ${JSON.stringify(res.data)}`)
  const headers = { authorization: `Bearer ${res.data.token}` }
  return {
    post: (path, body) => http('POST', `${BASE}/api/v1${path}`, body, headers),
    get: (path) => http('GET', `${BASE}/api/v1${path}`, undefined, headers),
  }
}

// The demo clerk (clerk / haodian-clerk, at the demo store), scanning at the till.
async function clerk() {
  const res = await http('POST', `${BASE}/api/v1/staff/auth/login`, { username: 'clerk', password: 'haodian-clerk' })
  if (res.statusCode !== 200) throw new Error(`clerk login: ${res.statusCode} ${JSON.stringify(res.data)}`)
  const headers = { authorization: `Bearer ${res.data.token}` }
  return { writeOff: (code) => http('POST', `${BASE}/api/v1/staff/write-offs`, { code }, headers) }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function eventually(check, { within = 20000, every = 100 } = {}) {
  const until = Date.now() + within
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > until) throw new Error('not within the time allowed')
    await sleep(every)
  }
}

module.exports = { BASE, shopper, operator, clerk, sleep, eventually, everyone }
