// My profile: nickname, avatar, birthday, gender. Sent with PUT (the same partial body the
// API takes by PATCH): WeChat's wx.request has no PATCH method.
'use strict'

async function me(api) {
  return api.get('/me')
}

async function update(api, fields) {
  return api.put('/me', fields)
}

module.exports = { me, update }
