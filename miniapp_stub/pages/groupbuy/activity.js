// A group-buy activity: open a group (pay as the leader), then share it; or join a group
// that is already open.
const session = require('../../utils/session.js')
const groupbuy = require('../../utils/groupbuy.js')
const share = require('../../utils/share.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { activity: null, price: '', opened: null, share: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      return guard(this, async () => {
        const api = session.api()
        const id = query && query.id ? Number(query.id) : (await groupbuy.activities(api))[0].id
        const activity = await groupbuy.activity(api, id)
        this.setData({ activity, price: yuan(activity.group_price_fen) })
      })
    },
    open() {
      const api = session.api()
      return guard(this, async () => {
        const opened = await groupbuy.open(api, this.data.activity.id, { key: tapKey(this, api, 'open') })
        await api.pay(opened.order_no)
        tapDone(this, 'open') // paid: the next tap is a new one
        await groupbuy.opened(api, opened.group_no)
        this.setData({ opened, share: await groupbuy.shareGroup(api, opened.group_no) })
      })
    },
    joinOpen(e) {
      wx.navigateTo({ url: `/pages/groupbuy/group?g=${e.currentTarget.dataset.group}` })
    },
    onShareAppMessage() {
      const title = `${(this.data.activity && this.data.activity.title) || '好店+'} 一起拼`
      if (!this.data.share) return { title, path: '/pages/groupbuy/activity' }
      return share.message(this.data.share, title)
    },
  },
})
