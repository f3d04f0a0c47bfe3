// Flash sales: the live ones, and the grab. The grab answers 202 at once with the order's
// number (Redis decided); the order itself appears a moment later, then it is paid as any.
'use strict'

const { until } = require('./poll.js')

async function live(api) {
  const items = (await api.get('/flash-sales')).items
  return items.filter((s) => s.status === 'live')
}

async function sale(api, saleId) {
  return api.get(`/flash-sales/${saleId}`)
}

async function grab(api, saleId, { quantity = 1, key } = {}) {
  return api.post(`/flash-sales/${saleId}/orders`, { quantity }, { key })
}

// Wait until the grabbed order exists (the worker writes it from the sale's stream).
function orderOf(api, orderNo) {
  return until(() => api.get(`/orders/${orderNo}`), () => true, { retry: (err) => err.status === 404 })
}

module.exports = { live, sale, grab, orderOf }
