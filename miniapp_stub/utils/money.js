'use strict'

// Money is integer fen everywhere; only the screen shows yuan.
function yuan(fen) {
  const n = Number(fen) || 0
  const sign = n < 0 ? '-' : ''
  const abs = Math.abs(n)
  return `${sign}¥${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`
}

module.exports = { yuan }
