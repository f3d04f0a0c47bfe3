// Takeout: a delivery address, the stores that deliver there, a quote for the cart, the order
// (paid like any), then its tracking.
'use strict'

const { cartLines } = require('./pickup.js')

async function addresses(api) {
  return (await api.get('/me/addresses')).items
}

async function addAddress(api, { contact, phone, text, lat, lng }) {
  return api.post('/me/addresses', { contact, phone, text, lat, lng })
}

// PUT, not PATCH (wx.request has none): the fields given change.
async function editAddress(api, addressId, fields) {
  return api.put(`/me/addresses/${addressId}`, fields)
}

async function stores(api, addressId) {
  return (await api.get('/takeout/stores', { address_id: addressId })).items
}

async function quote(api, storeId, addressId, cart, couponIds = []) {
  const body = { store_id: storeId, address_id: addressId, items: cartLines(cart) }
  if (couponIds.length) body.coupon_ids = couponIds
  return api.post('/takeout/quote', body)
}

async function place(api, storeId, addressId, cart, { note, couponIds = [], key } = {}) {
  const body = { store_id: storeId, address_id: addressId, items: cartLines(cart) }
  if (note) body.note = note
  if (couponIds.length) body.coupon_ids = couponIds
  return api.post('/takeout/orders', body, { key })
}

// The tracking page's data: the order's takeout part (status, rider, timeline).
async function track(api, orderNo) {
  const o = await api.get(`/orders/${orderNo}`)
  return { order_no: o.order_no, status: o.status, ...(o.takeout || {}) }
}

module.exports = { addresses, addAddress, editAddress, stores, quote, place, track }
