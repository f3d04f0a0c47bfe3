// Store locator: the shopper's position (GCJ-02) and the nearest open stores.
const session = require('../../utils/session.js')
const locator = require('../../utils/locator.js')
const { guard } = require('../../utils/page.js')

Component({
  data: { stores: [], service: 'pickup', error: '', busy: false },
  methods: {
    onLoad(query) {
      if (query && query.service) this.setData({ service: query.service })
      return this.load()
    },
    load() {
      return guard(this, async () => {
        const { stores } = await locator.nearby(session.api(), wx, { service: this.data.service })
        this.setData({ stores: stores.map((s) => ({ ...s, km: (s.distance_m / 1000).toFixed(1) })) })
      })
    },
    choose(e) {
      wx.navigateTo({ url: `/pages/menu/menu?store=${e.currentTarget.dataset.id}` })
    },
  },
})
