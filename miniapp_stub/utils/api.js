// The one client of the haodian API over wx.request.
//
// - Signs in with wx.login -> POST /auth/login, keeps the token pair, and on a 401 refreshes
//   once (or signs in again when the refresh token is gone) and repeats the request.
// - Every POST that moves money or stock carries an Idempotency-Key. A tap makes one key;
//   the retries of that tap (a network error, a 5xx, the 401 refresh) reuse it, so the
//   server answers the first outcome again instead of acting twice.
// - Errors come back as one type, ApiError, with the envelope's `code` and `message`.
// - pay() asks the API for the wx.requestPayment parameters and hands them to WeChat.
'use strict'

const config = require('../config.js')

const PREFIX = '/api/v1'

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code)
    this.name = 'ApiError'
    this.status = status // 0: no answer (network)
    this.code = code
    this.details = details
  }
}

// POSTs that change no money and no stock: no key (sign-in, sharing, addresses).
const PLAIN_POSTS = [/^\/auth\//, /^\/shares$/, /^\/me\/addresses$/, /^\/takeout\/quote$/]

function newKey() {
  let key = Date.now().toString(36) + '-'
  for (let i = 0; i < 4; i++) key += Math.floor(Math.random() * 0x100000000).toString(36)
  return key.slice(0, 64)
}

function promisify(wx, name, options) {
  return new Promise((resolve, reject) => {
    wx[name]({ ...options, success: resolve, fail: reject })
  })
}

function createApi(wx, options = {}) {
  const baseUrl = String(options.baseUrl || config.baseUrl).replace(/\/+$/, '')
  const appid = options.appid || config.appid
  const retries = options.retries === undefined ? 1 : options.retries
  let token = null
  let refreshToken = null
  let signingIn = null
  let renewing = null
  let member = null

  function raw(method, path, { data, headers = {} } = {}) {
    return new Promise((resolve, reject) => {
      wx.request({
        url: baseUrl + PREFIX + path,
        method,
        data,
        header: { 'content-type': 'application/json', ...headers },
        success: resolve,
        fail: (err) => reject(new ApiError(0, 'NETWORK', (err && err.errMsg) || 'request failed')),
      })
    })
  }

  function failure(res) {
    const body = res.data && typeof res.data === 'object' ? res.data : {}
    const err = body.error || {}
    return new ApiError(res.statusCode, err.code || `HTTP_${res.statusCode}`, err.message, err.details)
  }

  async function login() {
    const { code } = await promisify(wx, 'login', {})
    const res = await raw('POST', '/auth/login', { data: { code, appid } })
    if (res.statusCode !== 200) throw failure(res)
    token = res.data.token
    refreshToken = res.data.refresh_token
    member = res.data.member
    return res.data
  }

  function signIn() {
    if (!signingIn) signingIn = login().finally(() => { signingIn = null })
    return signingIn
  }

  // One renewal at a time: refresh tokens are single-use, so three requests meeting a 401
  // together wait for the same refresh instead of spending it three times.
  function renew() {
    if (!renewing) renewing = doRenew().finally(() => { renewing = null })
    return renewing
  }

  async function doRenew() {
    if (refreshToken) {
      const res = await raw('POST', '/auth/refresh', { data: { refresh_token: refreshToken } })
      if (res.statusCode === 200) {
        token = res.data.token
        refreshToken = res.data.refresh_token
        return
      }
    }
    token = null
    await signIn()
  }

  async function call(method, path, { data, key } = {}) {
    if (!token) await signIn()
    const headers = () => {
      const h = { authorization: `Bearer ${token}` }
      if (key) h['idempotency-key'] = key
      return h
    }
    let renewed = false
    for (let attempt = 0; ; attempt++) {
      let res
      try {
        res = await raw(method, path, { data, headers: headers() })
      } catch (err) {
        if (attempt < retries && (key || method === 'GET')) continue // same tap, same key
        throw err
      }
      if (res.statusCode === 401 && !renewed) {
        renewed = true
        await renew()
        attempt--
        continue
      }
      if (res.statusCode >= 500 && attempt < retries && (key || method === 'GET')) continue
      if (res.statusCode >= 400) throw failure(res)
      return res.data
    }
  }

  const api = {
    ApiError,
    baseUrl,
    appid,
    get member() { return member },
    get signedIn() { return Boolean(token) },
    login: signIn,
    // A new tap: pass its key to every attempt of the same action.
    tap: newKey,
    get: (path, query) => call('GET', path + queryString(query)),
    post: (path, data, { key } = {}) =>
      call('POST', path, { data, key: key || (PLAIN_POSTS.some((p) => p.test(path)) ? null : newKey()) }),
    put: (path, data) => call('PUT', path, { data }), // wx.request has no PATCH
    del: (path) => call('DELETE', path),
    // WeChat Pay for an order: balances first where asked (`tenders`), then the rest in WeChat.
    async pay(orderNo, tenders = {}, { key } = {}) {
      const params = await api.post(`/orders/${orderNo}/pay`, { appid, ...tenders }, { key })
      if (params.paid) return params
      try {
        await promisify(wx, 'requestPayment', {
          timeStamp: params.timeStamp,
          nonceStr: params.nonceStr,
          package: params.package,
          signType: params.signType,
          paySign: params.paySign,
        })
      } catch (err) {
        // No answer from the API (status 0): the page keeps the tap's key, so paying again
        // replays the same order instead of placing a second one.
        const msg = (err && err.errMsg) || 'requestPayment:fail'
        throw new ApiError(0, /cancel/.test(msg) ? 'PAYMENT_CANCELLED' : 'PAYMENT_FAILED', msg)
      }
      return params
    },
    // Drop the tokens (tests, and the "sign out" button); the next call signs in again.
    forget() { token = null; refreshToken = null },
    // Spoil the access token (tests of the 401 path).
    spoilToken() { token = 'spoiled.' + token },
  }
  return api
}

function queryString(query) {
  if (!query) return ''
  const parts = Object.keys(query)
    .filter((k) => query[k] !== undefined && query[k] !== null && query[k] !== '')
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(query[k])}`)
  return parts.length ? `?${parts.join('&')}` : ''
}

module.exports = { createApi, ApiError, newKey, PREFIX }
