// Every scenario's flow end to end, through the utils modules the pages use, against a running
// `haodian serve` (HAODIAN_API): real HTTP, real WeChat sandbox, no answer made up here.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { shopper, operator, eventually, everyone } = require('../support/server.js')
const locator = require('../utils/locator.js')
const pickup = require('../utils/pickup.js')
const coupons = require('../utils/coupons.js')
const { liveCode, couponCode, memberCode } = require('../utils/livecode.js')
const flashsale = require('../utils/flashsale.js')
const home = require('../utils/home.js')
const groupbuy = require('../utils/groupbuy.js')
const giftcards = require('../utils/giftcards.js')
const takeout = require('../utils/takeout.js')
const membership = require('../utils/membership.js')
const profile = require('../utils/profile.js')

const APP = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'app.json'), 'utf8'))

function pageOf(sharePath) {
  return String(sharePath).replace(/^\/+/, '').split('?')[0]
}

async function paid(api, orderNo) {
  return eventually(async () => {
    const o = await api.get(`/orders/${orderNo}`)
    return o.paid_at ? o : null
  })
}

async function nearestPickupStore(api, wx) {
  const { stores } = await locator.nearby(api, wx, { service: 'pickup' })
  for (const store of stores) {
    const items = await pickup.menu(api, store.id)
    const sku = items.find((i) => !i.sold_out && i.stock >= 2)
    if (sku) return { store, sku }
  }
  throw new Error('no nearby pickup store with stock')
}

test('sign in with wx.login, and the token refreshed once on a 401', async () => {
  const { wx, api } = await shopper()
  assert.ok(api.member.id > 0)
  const me = await api.get('/me')
  assert.equal(me.id, api.member.id)
  api.spoilToken()
  assert.equal((await api.get('/me')).id, me.id) // 401 -> refresh -> the same request again
  const refreshes = wx.seen.requests.filter((r) => r.url.endsWith('/auth/refresh'))
  assert.equal(refreshes.length, 1)
  await assert.rejects(api.get('/orders/NOSUCHORDER0001'), (err) => {
    assert.equal(err.name, 'ApiError')
    assert.equal(err.status, 404)
    assert.equal(typeof err.code, 'string')
    assert.ok(err.message.length > 0)
    return true
  })
})

test('change my nickname the way wx.request can (PUT)', async () => {
  const { wx, api } = await shopper()
  const changed = await profile.update(api, { nickname: '小红' })
  assert.equal(changed.nickname, '小红')
  assert.equal((await profile.me(api)).nickname, '小红')
  assert.ok(wx.seen.requests.every((r) => ['GET', 'POST', 'PUT', 'DELETE'].includes(r.method)))
})

test('find a store near me, order for pickup and pay with WeChat Pay', async () => {
  const { wx, api } = await shopper()
  const { stores, here } = await locator.nearby(api, wx, { service: 'pickup' })
  assert.ok(stores.length > 0)
  assert.deepEqual(here, { lat: 30.5928, lng: 114.3055 })
  const distances = stores.map((s) => s.distance_m)
  assert.deepEqual(distances, [...distances].sort((a, b) => a - b))
  const { store, sku } = await nearestPickupStore(api, wx)
  const order = await pickup.placeOrder(api, store.id, { [sku.sku_id]: 2 })
  assert.equal(order.status, 'pending_payment')
  assert.equal(order.goods_fen, sku.price_fen * 2)
  await api.pay(order.order_no)
  assert.equal(wx.seen.payments.length, 1)
  const done = await paid(api, order.order_no)
  assert.equal(done.paid_fen, order.payable_fen)
  // The order and the payment (money and stock) carried a key; the sign-in did not need one.
  for (const r of wx.seen.requests.filter((x) => x.method === 'POST')) {
    const keyed = Boolean(r.header['idempotency-key'])
    assert.equal(keyed, !r.url.includes('/auth/'), r.url)
  }
  assert.ok(done.pickup_code)
  assert.ok((await pickup.myOrders(api)).some((o) => o.order_no === order.order_no))
})

test('one tap that loses its answer is retried with the same key: one order', async () => {
  const { wx, api } = await shopper()
  const { store, sku } = await nearestPickupStore(api, wx)
  // The network drops the answer of the first POST /orders after the server acted on it.
  const request = wx.request
  let dropped = 0
  wx.request = (o) => {
    if (o.method === 'POST' && o.url.endsWith('/api/v1/orders') && dropped === 0) {
      dropped++
      return request({ ...o, success: () => o.fail({ errMsg: 'request:fail timeout' }) })
    }
    return request(o)
  }
  const order = await pickup.placeOrder(api, store.id, { [sku.sku_id]: 1 })
  wx.request = request
  const posts = wx.seen.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/orders'))
  assert.equal(posts.length, 2)
  assert.ok(posts[0].header['idempotency-key'])
  assert.equal(posts[0].header['idempotency-key'], posts[1].header['idempotency-key'])
  const mine = (await pickup.myOrders(api)).filter((o) => o.store_id === store.id)
  assert.deepEqual(mine.map((o) => o.order_no), [order.order_no])
})

test('claim a coupon in the centre and show it as a live code', async () => {
  const { api } = await shopper()
  const offer = (await coupons.centre(api)).find((c) => c.claimable)
  assert.ok(offer, 'the demo has a claimable coupon')
  const key = api.tap()
  const coupon = await coupons.claim(api, offer.template_id, { key })
  const again = await coupons.claim(api, offer.template_id, { key }) // the same tap, retried
  assert.equal(again.id, coupon.id)
  assert.ok((await coupons.mine(api)).some((c) => c.id === coupon.id))
  const codes = []
  const timers = []
  const live = liveCode(couponCode(api, coupon.id), (c) => codes.push(c), {
    setTimer: (fn, ms) => { timers.push(ms); return timers.length },
    clearTimer: () => {},
  })
  const first = await live.start()
  assert.equal(codes.length, 1)
  assert.match(first.digits, /^\d{12,24}$/)
  assert.ok(first.expires_in > 0)
  assert.equal(timers[0], (first.expires_in - 5) * 1000) // the next code before this one ends
  live.stop()
})

test('a flash sale shows on the home page, is grabbed and paid', async () => {
  const { api } = await shopper()
  const op = await operator()
  const { store, sku } = await nearestPickupStore(api, (await shopper()).wx)
  const now = Date.now()
  const made = await op.post('/admin/flash-sales', {
    sku_id: sku.sku_id, price_fen: 100, units: 5, per_member_limit: 1, title: `stub ${now}`,
    starts_at: new Date(now - 1000).toISOString(), ends_at: new Date(now + 3600e3).toISOString(),
  })
  assert.equal(made.statusCode, 201, JSON.stringify(made.data))
  const page = await home.load(api)
  assert.equal(page.tiles.length, 6)
  assert.ok(page.flashSales.some((s) => s.id === made.data.id))
  const grabbed = await flashsale.grab(api, made.data.id)
  assert.ok(grabbed.order_no)
  const order = await flashsale.orderOf(api, grabbed.order_no)
  assert.equal(order.goods_fen, 100)
  await api.pay(order.order_no)
  await paid(api, order.order_no)
  await assert.rejects(flashsale.grab(api, made.data.id), (err) => err.status === 409)
  assert.ok(store.id > 0)
})

test('open a group, share it, two more shoppers join from its scene: the group forms', async () => {
  const leader = await shopper()
  const activity = (await groupbuy.activities(leader.api)).find((a) => a.status === 'live')
  assert.ok(activity, 'the demo has a live group-buy')
  const opened = await groupbuy.open(leader.api, activity.id)
  await leader.api.pay(opened.order_no)
  assert.equal((await groupbuy.opened(leader.api, opened.group_no)).status, 'open') // friends may join now
  const share = await groupbuy.shareGroup(leader.api, opened.group_no)
  assert.ok(APP.pages.includes(pageOf(share.path)), `${share.path} is a page of app.json`)
  const friends = []
  for (let i = 1; i < activity.group_size; i++) friends.push(await shopper())
  for (const friend of friends) {
    // The query a card share opens the landing with: the group and the share's scene.
    const query = Object.fromEntries(new URLSearchParams(share.path.split('?')[1] || ''))
    assert.equal(query.scene, share.scene)
    const view = await groupbuy.landing(friend.api, query)
    assert.equal(view.group.group_no, opened.group_no)
    const seat = await groupbuy.join(friend.api, opened.group_no, { scene: share.scene })
    await friend.api.pay(seat.order_no)
  }
  const formed = await eventually(async () => {
    const g = await groupbuy.group(leader.api, opened.group_no)
    return g.seats_left === 0 && g.paid === activity.group_size ? g : null
  })
  assert.equal(formed.members.filter((m) => m.is_leader).length, 1)
  const mine = (await leader.api.get('/me/shares')).items.find((s) => s.scene === share.scene)
  assert.ok(mine.opens >= friends.length, `each landing counted an open: ${mine.opens}`)
})

test('buy a gift card, give it, and another shopper claims it from the share', async () => {
  const giver = await shopper()
  const design = (await giftcards.designs(giver.api))[0]
  const face = design.face_values_fen[0]
  const order = await giftcards.buy(giver.api, design.id, face)
  await giver.api.pay(order.order_no)
  const card = await eventually(async () => (await giftcards.mine(giver.api)).find((c) => c.face_value_fen === face))
  const gift = await giftcards.give(giver.api, card.id, '生日快乐')
  const message = giftcards.shareMessage(gift)
  assert.ok(APP.pages.includes(pageOf(message.path)), `${message.path} is a page of app.json`)
  const friend = await shopper()
  const view = await giftcards.landing(friend.api, { scene: gift.share.scene })
  assert.equal(view.gift.gift_no, gift.gift_no)
  assert.equal(view.gift.amount_fen, face)
  const claimed = await giftcards.claim(friend.api, gift.gift_no, { scene: gift.share.scene })
  assert.equal(claimed.balance_fen, face)
  assert.ok((await giftcards.mine(friend.api)).some((c) => c.id === claimed.id))
  assert.ok(!(await giftcards.mine(giver.api)).some((c) => c.id === card.id && c.status === 'active'))
})

test('order takeout to an address and follow it', async () => {
  const { wx, api } = await shopper()
  const here = await locator.whereAmI(wx)
  const added = await takeout.addAddress(api, {
    contact: '小王', phone: '13800001111', text: '武汉市江汉区 测试路 1 号', lat: here.lat, lng: here.lng,
  })
  const address = await takeout.editAddress(api, added.id, { contact: '王先生' }) // PUT: no PATCH in WeChat
  assert.equal(address.contact, '王先生')
  assert.equal(address.text, added.text)
  const stores = await takeout.stores(api, address.id)
  assert.ok(stores.length > 0, 'a store delivers to the address')
  const store = stores[0]
  const items = (await pickup.menu(api, store.id)).filter((i) => !i.sold_out && i.stock >= 3)
  const sku = items.sort((a, b) => b.price_fen - a.price_fen)[0]
  const cart = { [sku.sku_id]: 3 }
  const quote = await takeout.quote(api, store.id, address.id, cart)
  const order = await takeout.place(api, store.id, address.id, cart, { note: '不要辣' })
  assert.equal(order.payable_fen, quote.payable_fen)
  await api.pay(order.order_no)
  await paid(api, order.order_no)
  const tracking = await takeout.track(api, order.order_no)
  assert.equal(tracking.order_no, order.order_no)
  assert.equal(tracking.note, '不要辣')
  assert.ok(Array.isArray(tracking.timeline))
})

test('top up stored value and show the member code', async () => {
  const { api } = await shopper()
  const before = await membership.summary(api)
  const plan = (await membership.topUpPlans(api))[0]
  const order = await membership.topUp(api, plan.id)
  await api.pay(order.order_no)
  const after = await eventually(async () => {
    const s = await membership.summary(api)
    return s.stored_value_fen === before.stored_value_fen + plan.credit_fen ? s : null
  })
  assert.equal(typeof after.tier, 'string')
  const codes = []
  const live = liveCode(memberCode(api), (c) => codes.push(c), { setTimer: () => 1, clearTimer: () => {} })
  await live.start()
  live.stop()
  assert.equal(codes.length, 1)
  assert.match(codes[0].digits, /^\d+$/)
})

test('every POST that moves money or stock, in every flow above, carried an Idempotency-Key', () => {
  // Written here, not taken from utils/api.js: a POST wrongly listed there as plain fails.
  const plain = ['/auth/login', '/auth/refresh', '/shares', '/me/addresses', '/takeout/quote']
  const posts = everyone.flatMap((wx) => wx.seen.requests).filter((r) => r.method === 'POST')
  assert.ok(posts.length >= 40, `${posts.length} POSTs seen`)
  for (const r of posts) {
    const path = new URL(r.url).pathname.replace(/^\/api\/v1/, '')
    assert.equal(Boolean(r.header['idempotency-key']), !plain.includes(path), path)
  }
})
