// The group landing: opened inside the mini-program with ?g=<group_no>, or from a share with
// its scene. Shows who is in, the seats left and the deadline; "join" takes a seat and pays.
const session = require('../../utils/session.js')
const groupbuy = require('../../utils/groupbuy.js')
const { yuan } = require('../../utils/money.js')
const { guard, tapKey, tapDone } = require('../../utils/page.js')

Component({
  data: { group: null, scene: '', price: '', joined: null, error: '', busy: false },
  methods: {
    onLoad(query) {
      return guard(this, async () => {
        const view = await groupbuy.landing(session.api(), query)
        this.show(view.group)
        this.setData({ scene: view.scene || '' })
      })
    },
    refresh() {
      return guard(this, async () => this.show(await groupbuy.group(session.api(), this.data.group.group_no)))
    },
    onPullDownRefresh() {
      return this.refresh().then(() => wx.stopPullDownRefresh())
    },
    show(group) {
      this.setData({ group, price: yuan(group.group_price_fen) })
    },
    join() {
      const api = session.api()
      const { group, scene } = this.data
      return guard(this, async () => {
        const seat = await groupbuy.join(api, group.group_no, { scene, key: tapKey(this, api, 'join') })
        await api.pay(seat.order_no)
        tapDone(this, 'join')
        this.setData({ joined: seat })
        this.show(await groupbuy.group(api, group.group_no))
      })
    },
    onShareAppMessage() {
      const g = this.data.group
      const scene = this.data.scene ? `&scene=${encodeURIComponent(this.data.scene)}` : ''
      return { title: `${g.title}: 还差 ${g.seats_left} 人`, path: `/pages/groupbuy/group?g=${g.group_no}${scene}` }
    },
  },
})
