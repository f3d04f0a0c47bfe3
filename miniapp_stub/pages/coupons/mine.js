// My coupons; tapping one shows its live code for the till.
const session = require('../../utils/session.js')
const coupons = require('../../utils/coupons.js')
const { guard } = require('../../utils/page.js')

Component({
  data: { coupons: [], status: 'unused', error: '', busy: false },
  methods: {
    onLoad(query) {
      if (query && query.status) this.setData({ status: query.status })
      return guard(this, async () => this.setData({ coupons: await coupons.mine(session.api(), this.data.status) }))
    },
    show(e) {
      wx.navigateTo({ url: `/pages/coupons/code?id=${e.currentTarget.dataset.id}` })
    },
  },
})
