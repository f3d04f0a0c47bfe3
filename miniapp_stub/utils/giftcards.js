// Gift cards: buy one (a paid order issues the card), give it to a friend as a share, and the
// friend claims it from the landing the share opens.
'use strict'

const share = require('./share.js')

async function designs(api) {
  return (await api.get('/gift-cards/designs')).items
}

async function buy(api, designId, faceValueFen, { quantity = 1, key } = {}) {
  return api.post('/gift-cards/orders', { design_id: designId, face_value_fen: faceValueFen, quantity }, { key })
}

async function mine(api) {
  return (await api.get('/me/gift-cards')).items
}

async function give(api, cardId, greeting, { key } = {}) {
  return api.post(`/me/gift-cards/${cardId}/gifts`, { greeting }, { key })
}

// What the give page's onShareAppMessage returns: the gift's own share path.
function shareMessage(gift, title = 'A gift card for you') {
  return share.message(gift.share, title)
}

async function landing(api, query) {
  const { scene, target } = await share.landing(api, query, 'gift', 'gift')
  return { scene, gift: await api.get(`/gifts/${target}`) }
}

async function claim(api, giftNo, { scene, key } = {}) {
  return api.post(`/gifts/${giftNo}/claim`, scene ? { scene } : {}, { key })
}

module.exports = { designs, buy, mine, give, shareMessage, landing, claim }
