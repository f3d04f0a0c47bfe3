// miniprogram-simulate (WeChat's own component test tool) under node's test runner: it
// expects a DOM (jest's jsdom environment), so one is made here before it loads. Pages are
// written with the Component() constructor, which WeChat and the tool both accept.
'use strict'

const path = require('node:path')
const { JSDOM } = require('jsdom')

const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>')
global.window = dom.window
global.document = dom.window.document

const simulate = require('miniprogram-simulate') // installs global Component and a mock wx

const ROOT = path.join(__dirname, '..')

// Render a page (e.g. 'pages/coupons/code') attached to a document, with `wx` the given one.
function renderPage(page, wx) {
  global.wx = wx
  const id = simulate.load(path.join(ROOT, page), { rootPath: ROOT, compiler: 'simulate' })
  const comp = simulate.render(id)
  comp.attach(document.createElement('parent-wrapper'))
  return comp
}

function text(comp, selector) {
  const node = comp.querySelector(selector)
  return node ? node.dom.textContent.trim() : undefined
}

module.exports = { simulate, renderPage, text }
