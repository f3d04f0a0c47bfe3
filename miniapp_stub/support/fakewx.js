// A `wx` for node: the parts of the WeChat runtime the stub uses, each doing what WeChat does
// against the local sandbox of a running `haodian serve`:
//   login          -> a real login code for this fake user, from the sandbox
//   request        -> a real HTTP call (node's fetch)
//   requestPayment -> the sandbox's stand-in for the WeChat app: it checks paySign with the
//                     merchant's key, pays the prepay_id, and WeChat Pay notifies the API
//   getLocation    -> a fixed GCJ-02 position
'use strict'

const SANDBOX = '/_sandbox/wechat'
const METHODS = ['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT'] // wx.request's
const TABS = require('../app.json').tabBar.list.map((t) => t.pagePath)

async function http(method, url, body, headers = {}) {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  let data = text
  try { data = text ? JSON.parse(text) : null } catch { /* not JSON: keep the text */ }
  return { statusCode: res.status, data, header: Object.fromEntries(res.headers) }
}

function callback(promise, { success, fail, complete }) {
  promise.then(
    (res) => { if (success) success(res); if (complete) complete(res) },
    (err) => {
      const e = { errMsg: err && err.errMsg ? err.errMsg : `fail ${err && err.message}` }
      if (fail) fail(e)
      if (complete) complete(e)
    },
  )
}

function fakeWx(base, { appid = 'wxdemo0000000001', unionid, location = { latitude: 30.5928, longitude: 114.3055 } } = {}) {
  let openid = null
  const storage = new Map()
  const seen = { requests: [], payments: [], toasts: [], navigations: [] }

  async function user() {
    if (!openid) {
      const res = await http('POST', `${base}${SANDBOX}/users`, unionid ? { appid, unionid } : { appid })
      if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`sandbox user: ${res.statusCode}`)
      openid = res.data.openid
    }
    return openid
  }

  const wx = {
    seen,
    get openid() { return openid },
    user,
    login(options) {
      callback((async () => {
        const id = await user()
        const res = await http('POST', `${base}${SANDBOX}/users/${id}/login-code`)
        return { code: res.data.code, errMsg: 'login:ok' }
      })(), options)
    },
    request({ url, method = 'GET', data, header = {}, success, fail, complete }) {
      if (!METHODS.includes(method)) { // as WeChat's runtime refuses it
        callback(Promise.reject({ errMsg: `request:fail invalid method ${method}` }), { success, fail, complete })
        return { abort() {} }
      }
      seen.requests.push({ method, url, header })
      const body = method === 'GET' || data === undefined ? undefined : data
      callback(http(method, url, body, header).then((r) => ({ ...r, errMsg: 'request:ok' })), { success, fail, complete })
      return { abort() {} }
    },
    requestPayment({ timeStamp, nonceStr, package: pkg, signType, paySign, success, fail, complete }) {
      seen.payments.push(pkg)
      callback((async () => {
        const res = await http('POST', `${base}${SANDBOX}/pay/request-payment`, {
          appId: appid, timeStamp, nonceStr, package: pkg, signType, paySign,
        })
        if (res.statusCode !== 200) throw { errMsg: `requestPayment:fail ${JSON.stringify(res.data)}` }
        return { errMsg: 'requestPayment:ok' }
      })(), { success, fail, complete })
    },
    getLocation({ type, success, fail, complete }) {
      callback(Promise.resolve({ ...location, accuracy: 30, type, errMsg: 'getLocation:ok' }), { success, fail, complete })
    },
    setStorageSync(k, v) { storage.set(k, v) },
    getStorageSync(k) { return storage.has(k) ? storage.get(k) : '' },
    showToast(o) { seen.toasts.push(o && o.title) },
    showLoading() {},
    hideLoading() {},
    navigateTo(o) {
      const page = String(o && o.url).replace(/^\/+/, '').split('?')[0]
      if (TABS.includes(page)) throw new Error(`navigateTo:fail can not navigateTo a tabbar page ${page}`)
      seen.navigations.push(o && o.url)
    },
    switchTab(o) {
      const page = String(o && o.url).replace(/^\/+/, '').split('?')[0]
      if (!TABS.includes(page)) throw new Error(`switchTab:fail ${page} is not a tabBar page`)
      seen.navigations.push(o && o.url)
    },
    redirectTo(o) { seen.navigations.push(o && o.url) },
    stopPullDownRefresh() {},
  }
  return wx
}

module.exports = { fakeWx, http, SANDBOX }
