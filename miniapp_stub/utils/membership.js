// Membership: tier and growth, points, stored value (top up by a plan, paid in WeChat), and
// the member code shown at the till.
'use strict'

async function summary(api) {
  return api.get('/me/membership')
}

async function points(api) {
  return (await api.get('/me/points')).items
}

async function topUpPlans(api) {
  return (await api.get('/stored-value/plans')).items
}

async function topUp(api, planId, { key } = {}) {
  return api.post('/stored-value/top-ups', { plan_id: planId }, { key })
}

async function cardPlans(api) {
  return (await api.get('/membership/cards')).items
}

async function buyCard(api, planId, { key } = {}) {
  return api.post('/membership/cards/orders', { plan_id: planId }, { key })
}

module.exports = { summary, points, topUpPlans, topUp, cardPlans, buyCard }
