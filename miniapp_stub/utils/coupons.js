// The coupon centre (what can be claimed now) and my coupons.
'use strict'

async function centre(api) {
  return (await api.get('/coupon-center')).items
}

// One tap of "claim": pass the tap's key so a retry of the same tap claims once.
async function claim(api, templateId, { key } = {}) {
  return (await api.post(`/coupon-center/${templateId}/claim`, undefined, { key })).coupon
}

async function mine(api, status) {
  return (await api.get('/me/coupons', status ? { status } : undefined)).items
}

module.exports = { centre, claim, mine }
