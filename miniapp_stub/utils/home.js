// The home page: the six scenario tiles and the flash sales live now.
'use strict'

const flashsale = require('./flashsale.js')

const TILES = [
  { key: 'groupbuy', title: '拼团 Group-buy', page: '/pages/groupbuy/activity' },
  { key: 'takeout', title: '外卖 Takeout', page: '/pages/takeout/takeout' },
  { key: 'giftcards', title: '礼品卡 Gift cards', page: '/pages/giftcards/buy' },
  { key: 'membership', title: '会员 Membership', page: '/pages/membership/membership', tab: true },
  { key: 'coupons', title: '领券中心 Coupons', page: '/pages/coupons/center' },
  { key: 'stores', title: '门店 Stores', page: '/pages/stores/stores', tab: true },
]

// tabBar pages open with wx.switchTab (WeChat refuses navigateTo to them).
function go(wx, tile) {
  if (tile.tab) wx.switchTab({ url: tile.page })
  else wx.navigateTo({ url: tile.page })
}

async function load(api) {
  return { tiles: TILES, flashSales: await flashsale.live(api) }
}

module.exports = { TILES, go, load }
