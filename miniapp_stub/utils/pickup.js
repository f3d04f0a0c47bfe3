// A store's menu and a pickup order: the cart is SKU -> quantity; placing it holds the stock,
// paying it through WeChat Pay makes it ready for pickup at the counter.
'use strict'

async function menu(api, storeId) {
  const out = await api.get(`/stores/${storeId}/menu`, { in_stock: 'true' })
  return out.items
}

function cartLines(cart) {
  return Object.keys(cart)
    .filter((sku) => cart[sku] > 0)
    .map((sku) => ({ sku_id: Number(sku), quantity: cart[sku] }))
}

async function placeOrder(api, storeId, cart, { couponIds = [], key } = {}) {
  const body = { store_id: storeId, items: cartLines(cart) }
  if (couponIds.length) body.coupon_ids = couponIds
  return api.post('/orders', body, { key })
}

async function order(api, orderNo) {
  return api.get(`/orders/${orderNo}`)
}

async function myOrders(api) {
  return (await api.get('/orders')).items
}

async function cancel(api, orderNo, reason) {
  return api.post(`/orders/${orderNo}/cancel`, reason ? { reason } : {})
}

module.exports = { menu, cartLines, placeOrder, order, myOrders, cancel }
