// Home: the six scenarios and the flash sales live now. Opened from an invite share, it
// carries the inviter in `scene`; signing in with it credits the invite.
const session = require('../../utils/session.js')
const home = require('../../utils/home.js')
const { yuan } = require('../../utils/money.js')
const { guard } = require('../../utils/page.js')

Component({
  data: { tiles: home.TILES, sales: [], error: '', busy: false },
  methods: {
    onLoad() {
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
      wx.navigateTo({ url: e.currentTarget.dataset.page })
    },
    openSale(e) {
      wx.navigateTo({ url: `/pages/flashsale/flashsale?id=${e.currentTarget.dataset.id}` })
    },
  },
})
