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

// What a landing page shows: the share's target when it was opened from a share (resolving
// the scene counts the open for the sharer), else its own parameter (`?g=`, `?gift=`).
async function landing(api, query, kind, param) {
  const scene = sceneOf(query)
  let target = query && query[param]
  if (scene) {
    const s = await resolve(api, scene)
    if (s.kind !== kind) throw new Error(`this share opens a ${s.kind}, not a ${kind}`)
    target = s.target
  }
  if (!target) throw new Error(`no ${kind} to show`)
  return { scene, target }
}

// What onShareAppMessage returns for a share the API made.
function message(share, title) {
  return { title, path: '/' + String(share.path).replace(/^\/+/, '') }
}

module.exports = { sceneOf, resolve, make, message, landing }
