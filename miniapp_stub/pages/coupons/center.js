// The coupon centre: what I can claim now; a claim keeps its tap's key until it succeeds.
const session = require('../../utils/session.js')
const coupons = require('../../utils/coupons.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { offers: [], claimed: null, error: '', busy: false },
  methods: {
    onLoad() {
      return this.load()
    },
    load() {
      return guard(this, async () => this.setData({ offers: await coupons.centre(session.api()) }))
    },
    claim(e) {
      const api = session.api()
      const id = e.currentTarget.dataset.id
      return guard(this, async () => {
        const coupon = await coupons.claim(api, id, { key: tapKey(this, api, `claim-${id}`) })
        tapDone(this, `claim-${id}`)
        this.setData({ claimed: coupon, offers: await coupons.centre(api) })
      })
    },
  },
})
