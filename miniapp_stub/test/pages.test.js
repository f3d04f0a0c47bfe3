// Pages rendered by miniprogram-simulate with data from the live server: the coupon's live
// code and the group landing opened from a share's scene.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { renderPage, text } = require('../support/simulate.js')
const { shopper, clerk, eventually } = require('../support/server.js')
const session = require('../utils/session.js')
const coupons = require('../utils/coupons.js')
const groupbuy = require('../utils/groupbuy.js')
const locator = require('../utils/locator.js')

test('the live-code page shows a code the clerk can write off, and stops when closed', async (t) => {
  const { wx, api } = await shopper()
  const offer = (await coupons.centre(api)).find((c) => c.claimable)
  const coupon = await coupons.claim(api, offer.template_id)
  session.use(api)
  const comp = renderPage('pages/coupons/code', wx)
  t.after(() => comp.detach())
  assert.equal(text(comp, '.loading'), '正在生成券码…')
  await comp.instance.onLoad({ id: String(coupon.id) })
  const shown = text(comp, '.digits')
  assert.match(shown, /^\d{12,24}$/)
  assert.match(text(comp, '.expires'), /^\d+ 秒后刷新/)
  assert.equal(comp.instance._live.pending, true) // the next code is on its way
  comp.detach()
  assert.equal(comp.instance._live.pending, false)
  // What the page showed is the coupon's live code: the till writes it off.
  const till = await (await clerk()).writeOff(shown)
  assert.equal(till.statusCode, 201, JSON.stringify(till.data))
  assert.ok((await coupons.mine(api, 'used')).some((c) => c.id === coupon.id))
})

test('the group landing opened from a share shows the group and lets a friend join', async (t) => {
  const leader = await shopper()
  const activity = (await groupbuy.activities(leader.api)).find((a) => a.status === 'live')
  const opened = await groupbuy.open(leader.api, activity.id)
  await leader.api.pay(opened.order_no)
  assert.equal((await groupbuy.opened(leader.api, opened.group_no)).status, 'open')
  const share = await groupbuy.shareGroup(leader.api, opened.group_no)

  const friend = await shopper()
  session.use(friend.api)
  const comp = renderPage('pages/groupbuy/group', friend.wx)
  t.after(() => comp.detach())
  await comp.instance.onLoad({ scene: encodeURIComponent(share.scene) })
  assert.equal(text(comp, '.error'), undefined)
  assert.equal(text(comp, '.title'), activity.title)
  assert.equal(text(comp, '.left'), `还差 ${activity.group_size - 1} 人成团`)
  const members = comp.querySelectorAll('.member')
  assert.equal(members.length, 1)
  assert.match(members[0].dom.textContent, /团长/)
  assert.ok(comp.querySelector('.join'))

  await comp.instance.join()
  assert.equal(text(comp, '.error'), undefined)
  assert.match(text(comp, '.joined'), /^已参团，座位 \d+$/)
  assert.equal(friend.wx.seen.payments.length, 1)
  assert.equal(comp.querySelector('.join'), undefined)
  // Once the friend's payment lands, a refresh of the page shows them in the group.
  await eventually(async () => {
    await comp.instance.refresh()
    return comp.querySelectorAll('.member').length === 2
  })
  assert.equal(text(comp, '.left'), `还差 ${activity.group_size - 2} 人成团`)
})

test('the menu page: a cancelled payment shows why, and tapping again pays the same order', async (t) => {
  const { wx, api } = await shopper()
  const { stores } = await locator.nearby(api, wx, { service: 'pickup' })
  session.use(api)
  const comp = renderPage('pages/menu/menu', wx)
  t.after(() => comp.detach())
  await comp.instance.onLoad({ store: String(stores[0].id) })
  const item = comp.instance.data.items.find((i) => !i.sold_out && i.stock > 0)
  comp.instance.add({ currentTarget: { dataset: { sku: item.sku_id } } })
  const pay = wx.requestPayment
  wx.requestPayment = (o) => o.fail({ errMsg: 'requestPayment:fail cancel' }) // the shopper backs out
  await comp.instance.checkout()
  assert.equal(text(comp, '.error'), 'requestPayment:fail cancel')
  assert.equal(comp.instance.data.errorCode, 'PAYMENT_CANCELLED')
  wx.requestPayment = pay
  await comp.instance.checkout() // the same tap again: the same order, now paid
  assert.equal(text(comp, '.error'), undefined)
  const orders = (await api.get('/orders')).items
  assert.equal(orders.length, 1)
  assert.equal(comp.instance.data.order.order_no, orders[0].order_no)
  assert.equal(wx.seen.payments.length, 1) // the cancelled one never reached WeChat Pay
  await eventually(async () => (await api.get(`/orders/${orders[0].order_no}`)).paid_at)
})
