// Which API operations the stub calls, read from its own source, and which of them a served
// OpenAPI document lacks. A call is `api.get|post|put|del('<path>'...)` (or a template
// literal, whose ${...} parts are path parameters) or `raw('<METHOD>', '<path>'...)`.
'use strict'

const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const PREFIX = '/api/v1'
const VERBS = { get: 'GET', post: 'POST', put: 'PUT', del: 'DELETE' }

function sources() {
  const out = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.js')) out.push(full)
    }
  }
  walk(path.join(ROOT, 'utils'))
  walk(path.join(ROOT, 'pages'))
  return out
}

function normalise(p) {
  return p.split('?')[0].replace(/\$\{[^}]*\}/g, '{}').replace(/\{[^}]*\}/g, '{}')
}

function calls(files = sources()) {
  const found = new Set()
  const viaApi = /\bapi\.(get|post|put|del)\(\s*(['`])(\/[^'`]*)\2/g
  const viaRaw = /\braw\(\s*'(GET|POST|PATCH|DELETE)',\s*(['`])(\/[^'`]*)\2/g
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8')
    for (const m of text.matchAll(viaApi)) found.add(`${VERBS[m[1]]} ${PREFIX}${normalise(m[3])}`)
    for (const m of text.matchAll(viaRaw)) found.add(`${m[1]} ${PREFIX}${normalise(m[3])}`)
  }
  return [...found].sort()
}

function operations(doc) {
  const out = new Set()
  for (const [p, ops] of Object.entries(doc.paths || {})) {
    for (const method of Object.keys(ops)) out.add(`${method.toUpperCase()} ${normalise(p)}`)
  }
  return out
}

function missing(callList, doc) {
  const served = operations(doc)
  return callList.filter((c) => !served.has(c))
}

module.exports = { calls, missing, operations, sources }
