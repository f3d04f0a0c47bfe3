// Home: the six scenarios and the flash sales live now. Opened from an invite share (its
// `scene`), it tells the API, which counts the open for the sharer.
const session = require('../../utils/session.js')
const home = require('../../utils/home.js')
const share = require('../../utils/share.js')
const { yuan } = require('../../utils/money.js')
const { guard } = require('../../utils/page.js')

Component({
  data: { tiles: home.TILES, sales: [], error: '', busy: false },
  methods: {
    onLoad(query) {
      const scene = share.sceneOf(query)
      if (scene) share.resolve(session.api(), scene).catch(() => {}) // counting is best effort
      return this.load()
    },
    onPullDownRefresh() {
      return this.load().then(() => wx.stopPullDownRefresh())
    },
    load() {
      return guard(this, async () => {
        const page = await home.load(session.api())
        this.setData({ sales: page.flashSales.map((s) => ({ ...s, price: yuan(s.price_fen) })) })
      })
    },
    open(e) {
      const tile = home.TILES.find((t) => t.page === e.currentTarget.dataset.page)
      home.go(wx, tile)
    },
    openSale(e) {
      wx.navigateTo({ url: `/pages/flashsale/flashsale?id=${e.currentTarget.dataset.id}` })
    },
  },
})
