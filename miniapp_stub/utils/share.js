// Share links: a page opened from a share carries `scene` (a mini-program code scans in as
// `query.scene`, a card message as the page's own parameter); the API says what it points at.
'use strict'

function sceneOf(query) {
  if (!query) return null
  if (query.scene) return decodeURIComponent(query.scene)
  return null
}

async function resolve(api, scene) {
  return api.get(`/shares/${encodeURIComponent(scene)}`)
}

async function make(api, kind, target) {
  return api.post('/shares', { kind, target: String(target) })
}

// What onShareAppMessage returns for a share the API made.
function message(share, title) {
  return { title, path: '/' + String(share.path).replace(/^\/+/, '') }
}

module.exports = { sceneOf, resolve, make, message }
