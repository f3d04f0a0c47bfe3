// Membership: tier and growth, points, stored value with top-up plans, and the member code
// (a live code the till scans), refreshed before it expires.
const session = require('../../utils/session.js')
const membership = require('../../utils/membership.js')
const { liveCode, memberCode } = require('../../utils/livecode.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { summary: null, balance: '', plans: [], code: null, error: '', busy: false },
  methods: {
    onLoad() {
      const api = session.api()
      this._live = liveCode(memberCode(api), (c) => this.setData({ code: c }))
      return guard(this, async () => {
        await this.load()
        this.setData({ plans: (await membership.topUpPlans(api)).map((p) => ({ ...p, pay: yuan(p.pay_fen), credit: yuan(p.credit_fen) })) })
        await this._live.start()
      })
    },
    async load() {
      const summary = await membership.summary(session.api())
      this.setData({ summary, balance: yuan(summary.stored_value_fen) })
    },
    topUp(e) {
      const api = session.api()
      const plan = Number(e.currentTarget.dataset.plan)
      return guard(this, async () => {
        const order = await membership.topUp(api, plan, { key: tapKey(this, api, 'top-up') })
        await api.pay(order.order_no)
        tapDone(this, 'top-up') // paid: the next tap is a new one
        await this.load()
      })
    },
    onUnload() {
      if (this._live) this._live.stop()
    },
  },
  lifetimes: {
    detached() { this.onUnload() },
  },
})
